//! The one error type of the web layer, and the one place it becomes a page.

use askama::Template;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::crypto::HashError;
use crate::store::StoreError;
use crate::store::users::ChangeUserError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    /// The page exists, but not for this method (a form posted to a page that only shows).
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("forbidden")]
    Forbidden,
    #[error("the setup link is missing or wrong")]
    SetupLinkRequired,
    #[error("the form's security token is missing or wrong")]
    CsrfRejected,
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("too many failed attempts from this address")]
    TooManyAttempts,
    /// A machine endpoint (/metrics) was called without its bearer token.
    #[error("bearer token required")]
    TokenRequired,
    /// The form, query or path could not be read into what the page expects.
    #[error("unreadable request: {0}")]
    Unreadable(String),
    #[error("sign-in required")]
    SignInRequired { login_path: String },
    /// The database does not answer (down, unreachable, every connection busy). That
    /// passes: the page says to try again, with 503 so load balancers know too.
    #[error("the database is unavailable: {0}")]
    DatabaseUnavailable(String),
    /// Password hashing is saturated (its queue is full): answered at once with 503 and
    /// Retry-After, rather than held until the request times out.
    #[error("too many sign-ins at once")]
    Busy,
    #[error(transparent)]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

macro_rules! internal_from {
    ($($source:ty),* $(,)?) => {$(
        impl From<$source> for AppError {
            fn from(err: $source) -> Self {
                Self::Internal(Box::new(err))
            }
        }
    )*};
}

impl From<HashError> for AppError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => Self::Busy,
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<crate::services::accounts::CheckError> for AppError {
    fn from(err: crate::services::accounts::CheckError) -> Self {
        match err {
            crate::services::accounts::CheckError::Database(err) => err.into(),
            crate::services::accounts::CheckError::Hash(err) => err.into(),
            crate::services::accounts::CheckError::Change(err) => err.into(),
        }
    }
}

internal_from!(
    crate::crypto::SealError,
    crate::crypto::certificates::CertificateError,
);

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error::{Io, PoolClosed, PoolTimedOut, Protocol, Tls, WorkerCrashed};
        match err {
            // Protocol: what a connection cut while it opens looks like.
            PoolTimedOut | PoolClosed | Io(_) | Tls(_) | Protocol(_) | WorkerCrashed => {
                Self::DatabaseUnavailable(err.to_string())
            }
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Database(err) => err.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// Sessions live in the database: a session store that fails means the database does.
impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        use tower_sessions::session::Error::Store;
        use tower_sessions::session_store::Error::Backend;
        match err {
            Store(Backend(message)) => Self::DatabaseUnavailable(message),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<crate::store::SaveError> for AppError {
    fn from(err: crate::store::SaveError) -> Self {
        match err {
            crate::store::SaveError::NotFound => Self::NotFound,
            crate::store::SaveError::Database(err) => err.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<ChangeUserError> for AppError {
    fn from(err: ChangeUserError) -> Self {
        match err {
            ChangeUserError::NotFound => Self::NotFound,
            ChangeUserError::Database(err) => err.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<crate::services::graph_credentials::OpenError> for AppError {
    fn from(err: crate::services::graph_credentials::OpenError) -> Self {
        use crate::services::graph_credentials::OpenError;
        match err {
            // A certificate credential always has a current certificate; one without is gone.
            OpenError::NoCertificate => Self::NotFound,
            OpenError::Database(err) => err.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<crate::services::mailboxes::TestError> for AppError {
    fn from(err: crate::services::mailboxes::TestError) -> Self {
        use crate::services::mailboxes::TestError;
        match err {
            TestError::Database(err) => err.into(),
            TestError::Credential(err) => err.into(),
            TestError::NoCredential => Self::NotFound,
        }
    }
}

impl From<crate::services::certificate_lifecycle::LifecycleError> for AppError {
    fn from(err: crate::services::certificate_lifecycle::LifecycleError) -> Self {
        use crate::services::certificate_lifecycle::LifecycleError;
        match err {
            LifecycleError::Save(err) => err.into(),
            LifecycleError::Database(err) => err.into(),
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// How long a client told `Busy` should wait: a full hashing queue is worked off in about
/// two seconds.
const BUSY_RETRY_AFTER_SECONDS: &str = "5";

/// What the page should say; attached to the response so `render_error_pages`, which knows
/// the request id, draws it.
#[derive(Debug, Clone)]
struct ErrorPage {
    title: &'static str,
    message: &'static str,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::SignInRequired { login_path } => {
                return Redirect::to(&login_path).into_response();
            }
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing here, or it belongs to an organization you are not signed in to.",
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "This page cannot do that",
                "This page exists, but not for what your browser sent. Nothing was changed. Go \
                 back and use the page's own links and buttons.",
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "This page is for your organization's admins. Ask one of them if you need a change.",
            ),
            Self::SetupLinkRequired => (
                StatusCode::FORBIDDEN,
                "Setup link required",
                "Open the setup link Portico printed in its log when it started; it holds a \
                 one-time token. Restarting Portico prints a new one.",
            ),
            Self::CsrfRejected => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "Nothing was changed. Go back, reload the page and submit the form again.",
            ),
            Self::TokenRequired => {
                // Plain text: Prometheus, not a person, reads this one.
                return (
                    StatusCode::UNAUTHORIZED,
                    [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                    "This endpoint takes the bearer token set by PORTICO_METRICS_TOKEN.\n",
                )
                    .into_response();
            }
            Self::Unreadable(reason) => {
                tracing::debug!(%reason, "request refused");
                (
                    StatusCode::BAD_REQUEST,
                    "This request could not be read",
                    "Portico could not read what your browser sent (a field twice, or text it \
                     cannot decode). Nothing was changed. Go back, reload the page and try again.",
                )
            }
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too much data",
                "The form sent more data than Portico accepts. Nothing was changed.",
            ),
            Self::TooManyAttempts => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed attempts",
                "Too many wrong links or passwords came from your address. Wait 15 minutes, \
                 then open the link you were given again.",
            ),
            Self::DatabaseUnavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Portico is unavailable for a moment",
                    "Portico cannot reach its database right now, so nothing was changed. Try \
                     again in a minute; if it lasts, tell your operator.",
                )
            }
            Self::Busy => {
                let mut response = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, BUSY_RETRY_AFTER_SECONDS)],
                )
                    .into_response();
                response.extensions_mut().insert(ErrorPage {
                    title: "Portico is busy",
                    message: "Too many people are signing in at this moment, so nothing was \
                              checked or changed. Wait a few seconds and try again.",
                });
                return response;
            }
            Self::Internal(err) => {
                tracing::error!(error = %err, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "Portico could not complete this request and changed nothing. Try again; if \
                     it keeps failing, give your operator the reference below.",
                )
            }
        };
        let mut response = status.into_response();
        response
            .extensions_mut()
            .insert(ErrorPage { title, message });
        response
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorTemplate<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    reference: &'a str,
}

/// Middleware: draws the page of any `AppError`, with the request id as the reference a
/// support call can find in the logs.
pub async fn render_error_pages(request: Request, next: Next) -> Response {
    let reference = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut response = next.run(request).await;
    let Some(page) = response.extensions_mut().remove::<ErrorPage>() else {
        return response;
    };
    let status = response.status();
    let template = ErrorTemplate {
        status: status.as_u16(),
        title: page.title,
        message: page.message,
        reference: &reference,
    };
    let mut drawn = match template.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "error page failed to render");
            (status, page.title).into_response()
        }
    };
    // The headers an error set for the client (Retry-After) stay with its page.
    if let Some(retry_after) = response.headers().get(header::RETRY_AFTER) {
        drawn
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.clone());
    }
    drawn
}

/// A form shown again with messages beside its fields, answered as 400 Bad Request.
pub struct Rejected<T>(pub T);

impl<T: IntoResponse> IntoResponse for Rejected<T> {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, self.0).into_response()
    }
}

/// A form shown again because someone else saved the same row first, answered as 409 Conflict.
pub struct Conflict<T>(pub T);

impl<T: IntoResponse> IntoResponse for Conflict<T> {
    fn into_response(self) -> Response {
        (StatusCode::CONFLICT, self.0).into_response()
    }
}

/// A form shown again because the client must wait, answered as 429 Too Many Requests.
pub struct Throttled<T>(pub T);

impl<T: IntoResponse> IntoResponse for Throttled<T> {
    fn into_response(self) -> Response {
        (StatusCode::TOO_MANY_REQUESTS, self.0).into_response()
    }
}

/// A page explaining that a service Portico depends on failed, answered as 502 Bad Gateway.
pub struct BadGateway<T>(pub T);

impl<T: IntoResponse> IntoResponse for BadGateway<T> {
    fn into_response(self) -> Response {
        (StatusCode::BAD_GATEWAY, self.0).into_response()
    }
}

/// The fallback route.
pub async fn not_found() -> AppError {
    AppError::NotFound
}

/// The fallback of a route asked with a method it lacks.
pub async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
