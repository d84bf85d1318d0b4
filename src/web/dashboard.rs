//! The tenant's home page and each user's own profile.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::error::{AppError, Rejected, Throttled};
use super::extract::{ClientIp, Form, Query, TenantCtx};
use super::{Layout, format_time};
use crate::accounts::{self, CurrentPassword};
use crate::app::AppState;
use crate::domain::{AuditAction, FieldErrors, NewPassword, Role};
use crate::expiry::{self, Expiring};
use crate::store::{Page, audit, users};

#[derive(Template, WebTemplate)]
#[template(path = "dashboard.html")]
pub struct DashboardPage {
    layout: Layout,
    user_name: String,
    is_admin: bool,
    slug: String,
    active_admins: i64,
    active_agents: i64,
    recent: Vec<AuditLine>,
    /// What expires within 30 days, has expired or fails: secrets, certificates and
    /// OAuth connections, failing ones first.
    attention: Vec<Expiring>,
}

/// An audit entry as the pages show it.
pub struct AuditLine {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub ip: String,
}

impl From<audit::AuditEventRow> for AuditLine {
    fn from(row: audit::AuditEventRow) -> Self {
        Self {
            at: format_time(row.created_at()),
            actor: row.actor,
            action: row.action,
            target: row.target,
            detail: row.detail,
            ip: row.ip.unwrap_or_default(),
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<DashboardPage, AppError> {
    let (mut active_admins, mut active_agents, mut recent) = (0, 0, Vec::new());
    let mut attention = Vec::new();
    if ctx.is_admin() {
        attention = expiry::of_tenant(&state, &ctx.tenant.id)
            .await?
            .into_iter()
            .filter(Expiring::needs_attention)
            .collect();
        for (role, count) in users::count_active_by_role(&state.db, &ctx.tenant.id).await? {
            match role {
                Role::Admin => active_admins = count,
                Role::Agent => active_agents = count,
            }
        }
        let latest = audit::list(&state.db, &ctx.tenant.id, Page::new(None, 8)).await?;
        recent = latest.rows.into_iter().map(AuditLine::from).collect();
    }
    Ok(DashboardPage {
        layout: ctx.layout(ctx.tenant.name.clone(), "dashboard"),
        user_name: ctx.user.display_name.clone(),
        is_admin: ctx.is_admin(),
        slug: ctx.tenant.slug.clone(),
        active_admins,
        active_agents,
        recent,
        attention,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "profile.html")]
pub struct ProfilePage {
    layout: Layout,
    email: String,
    display_name: String,
    role: &'static str,
    slug: String,
    errors: FieldErrors,
    saved: bool,
}

fn profile_page(ctx: &TenantCtx, errors: FieldErrors, saved: bool) -> ProfilePage {
    ProfilePage {
        layout: ctx.layout("Your profile", "profile"),
        email: ctx.user.email.clone(),
        display_name: ctx.user.display_name.clone(),
        role: ctx.user.role.label(),
        slug: ctx.tenant.slug.clone(),
        errors,
        saved,
    }
}

#[derive(Deserialize)]
pub struct ProfileQuery {
    #[serde(default)]
    saved: Option<String>,
}

pub async fn profile(ctx: TenantCtx, Query(query): Query<ProfileQuery>) -> ProfilePage {
    profile_page(&ctx, FieldErrors::new(), query.saved.is_some())
}

#[derive(Deserialize)]
pub struct ChangePasswordForm {
    current_password: Option<SecretString>,
    new_password: Option<SecretString>,
}

/// Anyone may change their own password, proving they know the current one.
pub async fn change_password(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ClientIp(ip): ClientIp,
    Form(form): Form<ChangePasswordForm>,
) -> Result<Response, AppError> {
    let empty = || SecretString::from("");
    let mut errors = FieldErrors::new();
    let new_password = errors.check(
        "new_password",
        NewPassword::parse(form.new_password.unwrap_or_else(empty)),
    );
    let typed = form.current_password.unwrap_or_else(empty);
    match accounts::check_current_password(&state, &ctx.tenant, &ctx.user, typed, ip).await? {
        CurrentPassword::Confirmed | CurrentPassword::NoneSet => {}
        CurrentPassword::Wrong => {
            errors.add("current_password", "This is not your current password.");
        }
        CurrentPassword::Throttled => {
            let errors = FieldErrors::single(
                "current_password",
                "Too many wrong passwords. Wait 15 minutes and try again.",
            );
            return Ok(Throttled(profile_page(&ctx, errors, false)).into_response());
        }
    }
    let Some(new_password) = new_password.filter(|_| errors.is_empty()) else {
        return Ok(Rejected(profile_page(&ctx, errors, false)).into_response());
    };
    let hash = state.passwords.hash(new_password.into_secret()).await?;
    users::set_own_password_hash(&state.db, &ctx.tenant.id, &ctx.user.id, &hash).await?;
    ctx.audit(
        &state,
        AuditAction::OwnPasswordChanged,
        &ctx.user.email,
        "",
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path("/profile?saved=1")).into_response())
}
