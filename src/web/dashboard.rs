//! The tenant's home page and each user's own profile.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use super::error::{AppError, Conflict, Rejected, Throttled};
use super::extract::{ClientIp, Form, Query, TenantCtx};
use super::mailbox_checks::{WatchedLine, watched_lines};
use super::{Layout, format_time};
use crate::app::AppState;
use crate::domain::{FieldErrors, Role};
use crate::services::accounts::{self, OwnPasswordChange, TypedPasswords};
use crate::services::expiry::{self, Expiring};
use crate::store::users;
use crate::store::{Page, audit};

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
    /// Mailboxes whose background checks fail, or that recently work again.
    watched_mailboxes: Vec<WatchedLine>,
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
            detail: match row.attempts {
                1 => row.detail,
                attempts => format!("{} ({attempts} attempts)", row.detail),
            },
            ip: row.ip.unwrap_or_default(),
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    ctx: TenantCtx,
) -> Result<DashboardPage, AppError> {
    let (mut active_admins, mut active_agents, mut recent) = (0, 0, Vec::new());
    let (mut attention, mut watched_mailboxes) = (Vec::new(), Vec::new());
    if ctx.is_admin() {
        watched_mailboxes = watched_lines(&state, &ctx.tenant.id, None).await?;
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
        watched_mailboxes,
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
    has_password: bool,
    /// Beside the new password: what it takes, and for a user without a password, until
    /// when this session may set one, or how to become able to.
    new_password_hint: String,
}

/// What a user without a password reads beside the form when they may not set one now.
const FIRST_PASSWORD_HOW: &str = "To set a password, sign out, sign in again with \
     Microsoft, and set it here within 10 minutes. That shows the Microsoft account is \
     still yours.";

fn profile_page(
    state: &AppState,
    ctx: &TenantCtx,
    errors: FieldErrors,
    saved: bool,
) -> ProfilePage {
    let microsoft_at = ctx.signed_in.microsoft_signed_in_at();
    let may_set =
        !ctx.user.has_password && accounts::may_set_first_password(microsoft_at, state.clock.now());
    ProfilePage {
        layout: ctx.layout("Your profile", "profile"),
        email: ctx.user.email.clone(),
        display_name: ctx.user.display_name.clone(),
        role: ctx.user.role.label(),
        slug: ctx.tenant.slug.clone(),
        errors,
        saved,
        has_password: ctx.user.has_password,
        new_password_hint: match microsoft_at {
            _ if ctx.user.has_password => {
                "At least 12 characters. Your other sessions will be signed out.".to_owned()
            }
            Some(at) if may_set => format!(
                "At least 12 characters. You signed in with Microsoft just now, so you can \
                 set one until {}.",
                format_time(at + accounts::FIRST_PASSWORD_WINDOW)
            ),
            _ => FIRST_PASSWORD_HOW.to_owned(),
        },
    }
}

#[derive(Deserialize)]
pub struct ProfileQuery {
    #[serde(default)]
    saved: Option<String>,
}

pub async fn profile(
    State(state): State<AppState>,
    ctx: TenantCtx,
    Query(query): Query<ProfileQuery>,
) -> ProfilePage {
    profile_page(&state, &ctx, FieldErrors::new(), query.saved.is_some())
}

#[derive(Deserialize)]
pub struct ChangePasswordForm {
    current_password: Option<SecretString>,
    new_password: Option<SecretString>,
}

/// Changes the signed-in user's own password (see [`accounts::change_own_password`]);
/// this session goes on.
pub async fn change_password(
    State(state): State<AppState>,
    ctx: TenantCtx,
    session: Session,
    ClientIp(ip): ClientIp,
    Form(form): Form<ChangePasswordForm>,
) -> Result<Response, AppError> {
    let typed = |field: Option<SecretString>| field.unwrap_or_else(|| SecretString::from(""));
    let changed = accounts::change_own_password(
        &state,
        &ctx.tenant,
        &ctx.user,
        ctx.signed_in.microsoft_signed_in_at(),
        TypedPasswords {
            current: typed(form.current_password),
            new: typed(form.new_password),
        },
        session.id().as_ref(),
        ip,
    )
    .await?;
    let page = |errors| profile_page(&state, &ctx, errors, false);
    Ok(match changed {
        OwnPasswordChange::Changed => Redirect::to(&ctx.path("/profile?saved=1")).into_response(),
        OwnPasswordChange::Refused(errors) => Rejected(page(errors)).into_response(),
        OwnPasswordChange::Throttled(errors) => Throttled(page(errors)).into_response(),
        OwnPasswordChange::SetMeanwhile(errors) => Conflict(page(errors)).into_response(),
    })
}
