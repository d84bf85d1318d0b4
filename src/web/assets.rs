//! The stylesheet and icons, compiled into the binary so it runs from any directory.

use axum::http::header;
use axum::response::IntoResponse;

use super::error::AppError;
use super::extract::Path;

/// Pages link assets with `?v=` this version, so a long cache never serves a stale file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "portico.css",
        "text/css; charset=utf-8",
        include_str!("../../static/portico.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../static/favicon.svg"),
    ),
    (
        "microsoft.svg",
        "image/svg+xml",
        include_str!("../../static/microsoft.svg"),
    ),
    (
        "portico.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/portico.js"),
    ),
];

pub async fn serve(Path(file): Path<String>) -> Result<impl IntoResponse, AppError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or(AppError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "public, max-age=604800, immutable"),
        ],
        *body,
    ))
}
