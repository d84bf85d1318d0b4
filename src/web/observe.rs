//! What operators see of each request: its log span (request id, route template, then the
//! tenant and user once known), its metrics, and the /metrics endpoint itself.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use tracing::Span;
use tracing::field::Empty;

use super::error::AppError;
use crate::app::{App, AppState};
use crate::crypto::constant_time_eq;
use crate::metrics;
use crate::store::{graph_credentials, mailbox_checks};

const REQUEST_ID: &str = "x-request-id";

/// Label of requests that matched no route: raw paths never become labels.
const UNMATCHED: &str = "unmatched";

/// Longest request id taken from a proxy.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Middleware, outermost: a request id sent from outside (a proxy's `X-Request-Id`) is kept
/// only when short and plain; otherwise Portico makes its own, so no client can write
/// arbitrary text into the logs or an error page's reference.
pub async fn drop_unusable_request_id(mut request: Request) -> Request {
    let usable = request.headers().get(REQUEST_ID).is_none_or(|id| {
        id.len() <= MAX_REQUEST_ID_LEN
            && id
                .as_bytes()
                .iter()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(byte))
    });
    if !usable {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// The span every log line of a request is written in.
pub fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str);
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        request_id,
        tenant = Empty,
        user_id = Empty,
    )
}

/// The request's span, kept in its extensions: inner layers (sessions) enter spans of
/// their own, so the current span is not the request's by the time handlers run. Handlers
/// and extractors take it to add who is asking to every later line of the request.
#[derive(Clone)]
pub struct RequestSpan(Span);

impl RequestSpan {
    pub fn of(parts: &Parts) -> Self {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self(Span::none()))
    }

    pub fn record_tenant(&self, slug: &str) {
        self.0.record("tenant", slug);
    }

    pub fn record_user(&self, user_id: &str) {
        self.0.record("user_id", user_id);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestSpan {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(parts))
    }
}

/// Middleware, right inside the trace layer: hands the request span to extractors, then
/// counts and times the request by method, route template and status.
pub async fn track(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(RequestSpan(Span::current()));
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics.http_request(
        method,
        route.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
        response.status(),
        started.elapsed(),
    );
    response
}

/// Methods outside the standard set share one label, so clients cannot invent series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `/metrics` in Prometheus' text format, behind PORTICO_METRICS_TOKEN when it is set.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    if let Some(token) = &state.config.metrics.token {
        let offered = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(offered, token.expose_secret()) {
            return Err(AppError::TokenRequired);
        }
    }
    let text = scrape(&state).await;
    Ok(([(CONTENT_TYPE, metrics::content_type())], text).into_response())
}

/// The text Prometheus scrapes. Gauges that describe the database are read now; when the
/// database does not answer they keep their last values and the scrape still succeeds.
async fn scrape(app: &App) -> String {
    let pool = app.db.pool_usage();
    app.metrics.set_pool_usage(pool.in_use, pool.idle, pool.max);
    let today = app.clock.now().date();
    let horizon = today + time::Duration::days(metrics::EXPIRY_HORIZON_DAYS);
    match graph_credentials::count_by_expiry(&app.db, today, horizon).await {
        Ok(counts) => app
            .metrics
            .set_credential_expiry(counts.expired, counts.expiring),
        Err(err) => tracing::warn!(error = %err, "metrics: could not count expiring secrets"),
    }
    match mailbox_checks::count_by_state(&app.db).await {
        Ok(counts) => app.metrics.set_mailboxes_by_check_state(&counts),
        Err(err) => tracing::warn!(error = %err, "metrics: could not count mailbox check states"),
    }
    app.metrics.encode()
}
