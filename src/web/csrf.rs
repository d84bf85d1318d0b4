//! Cross-site request forgery defense for every state-changing request: the form must
//! carry the session's token, and a browser-sent Origin must be Portico's own.
//!
//! Pages shown before sign-in (sign-in, setup, a one-time link) have no session, and must
//! not make one: an anonymous visitor would otherwise write a row per page view. Their
//! token travels instead in a cookie signed with the deployment key (`portico_form`), and
//! a form is accepted when it carries the token of that cookie. A session's token, once it
//! has one (from sign-in on), is the only one its forms are held to.

use std::sync::{Arc, OnceLock};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;
use tower_sessions::cookie::{Cookie, SameSite};

use super::error::AppError;
use super::session;
use crate::app::AppState;
use crate::crypto::{Keyring, constant_time_eq, random_token};

/// Form field every template's forms include.
pub const FIELD: &str = "csrf_token";

/// Largest form Portico reads; larger bodies are refused with 413.
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// The cookie of the form token of pages shown before sign-in: `<token>.<signature>`.
const ANONYMOUS_COOKIE: &str = "portico_form";
/// What the cookie's signature is for, so no other signed value passes as one.
const ANONYMOUS_PURPOSE: &str = "form token cookie";

/// The form token of a browser whose session has none: the one its signed cookie carries,
/// or a new one, which becomes the cookie if a page shows it.
#[derive(Clone)]
pub struct AnonymousToken {
    from_cookie: Option<String>,
    minted: Arc<OnceLock<String>>,
}

impl AnonymousToken {
    /// The token of the request's `portico_form` cookie, if Portico signed it.
    fn of_request(headers: &HeaderMap, keys: &Keyring) -> Self {
        let from_cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .filter(|cookie| cookie.name() == ANONYMOUS_COOKIE)
            .find_map(|cookie| {
                let (token, signature) = cookie.value().split_once('.')?;
                let genuine =
                    !token.is_empty() && keys.verify_signature(ANONYMOUS_PURPOSE, token, signature);
                genuine.then(|| token.to_owned())
            });
        Self {
            from_cookie,
            minted: Arc::default(),
        }
    }

    /// The token to put in a page's forms.
    pub fn token(&self) -> String {
        match &self.from_cookie {
            Some(token) => token.clone(),
            None => self.minted.get_or_init(random_token).clone(),
        }
    }

    /// Sets the cookie of a token made for this answer.
    fn set_cookie(&self, response: &mut Response, keys: &Keyring, secure: bool) {
        let Some(token) = self.minted.get().filter(|_| self.from_cookie.is_none()) else {
            return;
        };
        let value = format!("{token}.{}", keys.sign(ANONYMOUS_PURPOSE, token));
        let cookie = Cookie::build((ANONYMOUS_COOKIE, value))
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(secure)
            .path("/")
            .build();
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

pub async fn verify(
    State(state): State<AppState>,
    session: Session,
    mut request: Request,
    next: Next,
) -> Response {
    let keys = &state.config.secret_key;
    let anonymous = AnonymousToken::of_request(request.headers(), keys);
    request.extensions_mut().insert(anonymous.clone());
    let mut response = if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        next.run(request).await
    } else {
        match checked(&state, &session, &anonymous, request).await {
            Ok(request) => next.run(request).await,
            Err(err) => err.into_response(),
        }
    };
    anonymous.set_cookie(&mut response, keys, state.config.secure_cookies());
    response
}

async fn checked(
    state: &AppState,
    session: &Session,
    anonymous: &AnonymousToken,
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
    // The session's token when it has one; only a session without one takes the cookie's.
    let expected = match session::existing_csrf_token(session).await? {
        Some(token) => Some(token),
        None => anonymous.from_cookie.clone(),
    };
    match (offered, expected) {
        (Some(offered), Some(expected)) if constant_time_eq(&offered, &expected) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(AppError::CsrfRejected),
    }
}
