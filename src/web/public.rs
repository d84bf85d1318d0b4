//! Pages outside any tenant: the front page and the health probes.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::Layout;
use super::error::{AppError, Rejected};
use super::extract::{Path, Query};
use crate::app::AppState;
use crate::domain::Slug;

#[derive(Template, WebTemplate)]
#[template(path = "home.html")]
pub struct HomePage {
    layout: Layout,
    slug: String,
    slug_error: Option<String>,
}

#[derive(Deserialize)]
pub struct GoQuery {
    slug: Option<String>,
}

/// The front page asks for the organization's short name and goes to its sign-in page.
/// It never lists tenants.
pub async fn home(Query(query): Query<GoQuery>) -> Response {
    let Some(typed) = query.slug else {
        return HomePage {
            layout: Layout::public("Portico", String::new()),
            slug: String::new(),
            slug_error: None,
        }
        .into_response();
    };
    match Slug::parse(&typed) {
        Ok(slug) => Redirect::to(&format!("/t/{slug}/login")).into_response(),
        Err(message) => Rejected(HomePage {
            layout: Layout::public("Portico", String::new()),
            slug: typed,
            slug_error: Some(message),
        })
        .into_response(),
    }
}

/// Liveness: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers. Load balancers stop sending traffic while it does not.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(std::time::Duration::from_secs(3), state.db.ping()).await {
        Ok(Ok(())) => "ready".into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database timed out").into_response(),
    }
}

/// `/t/{slug}` without the trailing slash.
pub async fn tenant_root(Path(slug): Path<String>) -> Result<Redirect, AppError> {
    let slug = Slug::parse(&slug).map_err(|_| AppError::NotFound)?;
    Ok(Redirect::permanent(&format!("/t/{slug}/")))
}
