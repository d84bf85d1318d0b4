//! Segments: the tenant's business units, each with its mailbox page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Path, Query, TenantCtx};

use super::mailbox_checks::{WatchedLine, watched_lines};
use super::mailboxes::MailboxRow;
use super::{Layout, changed_meanwhile};
use crate::app::AppState;
use crate::domain::{AuditAction, FieldErrors, parse_name};
use crate::store::SaveError;
use crate::store::segments::{self, Segment};
use crate::store::{Page, mailboxes};

const PAGE_SIZE: u32 = 50;

/// Name and description as typed.
#[derive(Deserialize, Default)]
pub struct SegmentForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// The segment's version when the form was loaded (0 on the add form).
    #[serde(default)]
    version: i64,
}

impl SegmentForm {
    /// Trimmed values, or the errors beside each field.
    fn parse(&self) -> Result<(String, String), FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = errors.check(
            "name",
            parse_name(&self.name, 80, "Enter a name, such as Sales or Support."),
        );
        let description = self.description.trim();
        if description.chars().count() > 500 {
            errors.add("description", "Use at most 500 characters.");
        }
        match name.filter(|_| errors.is_empty()) {
            Some(name) => Ok((name, description.to_owned())),
            None => Err(errors),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "segments/list.html")]
pub struct ListPage {
    layout: Layout,
    slug: String,
    segments: Vec<Segment>,
    form: SegmentForm,
    errors: FieldErrors,
}

async fn list_page(
    state: &AppState,
    ctx: &TenantCtx,
    form: SegmentForm,
    errors: FieldErrors,
) -> Result<ListPage, AppError> {
    Ok(ListPage {
        layout: ctx.layout("Segments", "segments"),
        slug: ctx.tenant.slug.clone(),
        segments: segments::list(&state.db, &ctx.tenant.id).await?,
        form,
        errors,
    })
}

pub async fn list(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
) -> Result<ListPage, AppError> {
    list_page(&state, &ctx, SegmentForm::default(), FieldErrors::new()).await
}

pub async fn create(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(form): Form<SegmentForm>,
) -> Result<Response, AppError> {
    let (name, description) = match form.parse() {
        Ok(values) => values,
        Err(errors) => {
            return Ok(Rejected(list_page(&state, &ctx, form, errors).await?).into_response());
        }
    };
    let id = match segments::create(&state.db, &ctx.tenant.id, &name, &description).await {
        Ok(id) => id,
        Err(SaveError::NameTaken) => {
            let errors = FieldErrors::single("name", "A segment with this name exists.");
            return Ok(Rejected(list_page(&state, &ctx, form, errors).await?).into_response());
        }
        Err(err) => return Err(err.into()),
    };
    ctx.audit(&state, AuditAction::SegmentCreated, &name, &description, ip)
        .await?;
    Ok(Redirect::to(&ctx.path(&format!("/segments/{id}"))).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "segments/show.html")]
pub struct ShowPage {
    layout: Layout,
    slug: String,
    segment: Segment,
    mailboxes: Vec<MailboxRow>,
    search: String,
    page: u32,
    has_next: bool,
    form: SegmentForm,
    errors: FieldErrors,
    notice: Option<&'static str>,
    /// The segment's mailboxes whose background checks fail, or that recently work again.
    watched_mailboxes: Vec<WatchedLine>,
}

#[derive(Deserialize)]
pub struct ShowQuery {
    q: Option<String>,
    page: Option<u32>,
    done: Option<String>,
}

async fn show_page(
    state: &AppState,
    ctx: &TenantCtx,
    id: &str,
    query: ShowQuery,
) -> Result<ShowPage, AppError> {
    let search = query.q.unwrap_or_default().trim().to_owned();
    let (segment, paged) = mailboxes::segment_page(
        &state.db,
        &ctx.tenant.id,
        id,
        Some(search.as_str()).filter(|s| !s.is_empty()),
        Page::new(query.page, PAGE_SIZE),
    )
    .await?
    .ok_or(AppError::NotFound)?;
    let watched_mailboxes = watched_lines(state, &ctx.tenant.id, Some(&segment.id)).await?;
    Ok(ShowPage {
        layout: ctx.layout(segment.name.clone(), "segments"),
        slug: ctx.tenant.slug.clone(),
        form: SegmentForm {
            name: segment.name.clone(),
            description: segment.description.clone(),
            version: segment.version,
        },
        segment,
        mailboxes: paged.rows.iter().map(MailboxRow::from).collect(),
        watched_mailboxes,
        search,
        page: paged.page.number,
        has_next: paged.has_next,
        errors: FieldErrors::new(),
        notice: match query.done.as_deref() {
            Some("saved") => Some("Segment saved."),
            Some("deleted") => Some("Mailbox deleted."),
            _ => None,
        },
    })
}

pub async fn show(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<ShowQuery>,
) -> Result<ShowPage, AppError> {
    show_page(&state, &ctx, &id, query).await
}

fn no_query() -> ShowQuery {
    ShowQuery {
        q: None,
        page: None,
        done: None,
    }
}

pub async fn update(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<SegmentForm>,
) -> Result<Response, AppError> {
    let rejected = |page: ShowPage| Rejected(page).into_response();
    let (name, description) = match form.parse() {
        Ok(values) => values,
        Err(errors) => {
            let mut page = show_page(&state, &ctx, &id, no_query()).await?;
            page.form = form;
            page.errors = errors;
            return Ok(rejected(page));
        }
    };
    match segments::update(
        &state.db,
        &ctx.tenant.id,
        &id,
        form.version,
        &name,
        &description,
    )
    .await
    {
        Ok(()) => {}
        Err(SaveError::NameTaken) => {
            let mut page = show_page(&state, &ctx, &id, no_query()).await?;
            page.form = form;
            page.errors = FieldErrors::single("name", "A segment with this name exists.");
            return Ok(rejected(page));
        }
        Err(SaveError::Stale) => {
            let mut page = show_page(&state, &ctx, &id, no_query()).await?;
            page.form = SegmentForm {
                version: page.segment.version,
                ..form
            };
            page.errors = changed_meanwhile("this segment");
            return Ok(Conflict(page).into_response());
        }
        Err(err) => return Err(err.into()),
    }
    ctx.audit(&state, AuditAction::SegmentChanged, &name, &description, ip)
        .await?;
    Ok(Redirect::to(&ctx.path(&format!("/segments/{id}?done=saved"))).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let segment = segments::get(&state.db, &ctx.tenant.id, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    match segments::delete(&state.db, &ctx.tenant.id, &id).await {
        Ok(()) => {}
        Err(SaveError::InUse) => {
            let mut page = show_page(&state, &ctx, &id, no_query()).await?;
            page.errors = FieldErrors::single(
                "delete",
                "This segment still has mailboxes. Move them to another segment or delete them first.",
            );
            return Ok(Rejected(page).into_response());
        }
        Err(err) => return Err(err.into()),
    }
    ctx.audit(&state, AuditAction::SegmentDeleted, &segment.name, "", ip)
        .await?;
    Ok(Redirect::to(&ctx.path("/segments")).into_response())
}
