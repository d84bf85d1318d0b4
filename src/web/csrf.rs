//! Cross-site request forgery defense for every state-changing request: the form must
//! carry the session's token, and a browser-sent Origin must be Portico's own.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::error::AppError;
use super::session;
use crate::app::AppState;
use crate::crypto::constant_time_eq;

/// Form field every template's forms include.
pub const FIELD: &str = "csrf_token";

/// Largest form Portico reads; larger bodies are refused with 413.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

pub async fn verify(
    State(state): State<AppState>,
    session: Session,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    match checked(&state, &session, request).await {
        Ok(request) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

async fn checked(
    state: &AppState,
    session: &Session,
    request: Request,
) -> Result<Request, AppError> {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let own_origin = state.config.base_url.origin().ascii_serialization();
        if origin.as_bytes() != own_origin.as_bytes() {
            return Err(AppError::CsrfRejected);
        }
    }
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| AppError::PayloadTooLarge)?;
    let offered = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == FIELD)
        .map(|(_, value)| value.into_owned());
    let expected = session::existing_csrf_token(session).await?;
    match (offered, expected) {
        (Some(offered), Some(expected)) if constant_time_eq(&offered, &expected) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(AppError::CsrfRejected),
    }
}
