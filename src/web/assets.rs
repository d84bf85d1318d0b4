//! The stylesheet, script and icons, compiled into the binary so it runs from any directory.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use sha2::{Digest as _, Sha256};

use super::error::AppError;
use super::extract::Path;

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "portico.css",
        "text/css; charset=utf-8",
        include_str!("../../static/portico.css"),
    ),
    (
        "portico.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/portico.js"),
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
];

/// Pages link assets with `?v=` this fingerprint of their content, so a long cache never
/// serves a stale file after an upgrade.
pub fn version() -> &'static str {
    static FINGERPRINT: LazyLock<String> = LazyLock::new(|| {
        let mut hasher = Sha256::new();
        for (name, _, body) in ASSETS {
            hasher.update(name.as_bytes());
            hasher.update(body.as_bytes());
        }
        hasher.finalize()[..6]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    });
    &FINGERPRINT
}

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
