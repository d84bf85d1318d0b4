//! The Audit log page: who did what, when, from where.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use serde::Deserialize;

use super::Layout;
use super::dashboard::AuditLine;
use super::error::AppError;
use super::extract::{AdminCtx, Query};
use crate::app::AppState;
use crate::store::{Page, audit};

const PAGE_SIZE: u32 = 50;

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    layout: Layout,
    events: Vec<AuditLine>,
    page: u32,
    has_next: bool,
}

#[derive(Deserialize)]
pub struct AuditQuery {
    page: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Query(query): Query<AuditQuery>,
) -> Result<AuditPage, AppError> {
    let paged = audit::list(&state.db, &ctx.tenant.id, Page::new(query.page, PAGE_SIZE)).await?;
    Ok(AuditPage {
        layout: ctx.layout("Audit log", "audit"),
        events: paged.rows.into_iter().map(AuditLine::from).collect(),
        page: paged.page.number,
        has_next: paged.has_next,
    })
}
