//! First run: the one-time setup link creates the first tenant and its first admin.

use std::net::IpAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use super::error::{AppError, Rejected};
use super::extract::{ClientIp, CsrfToken, Form, Query};
use super::{Layout, session};
use crate::app::AppState;
use crate::domain::{
    AuditAction, DisplayName, EmailAddress, FieldErrors, NewPassword, Role, Slug, TenantName,
};
use crate::services::accounts;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::tenants::{self, CreateTenantError};
use crate::store::users::NewUser;

#[derive(Template, WebTemplate)]
#[template(path = "setup.html")]
pub struct SetupPage {
    layout: Layout,
    token: String,
    form: SetupForm,
    errors: FieldErrors,
}

/// What the admin typed; the password is never sent back.
#[derive(Default, Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    tenant_name: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: Option<SecretString>,
}

#[derive(Deserialize)]
pub struct SetupQuery {
    token: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    CsrfToken(csrf_token): CsrfToken,
    Query(query): Query<SetupQuery>,
) -> Result<SetupPage, AppError> {
    let token = query.token.unwrap_or_default();
    check_setup_token(&state, ip, &token).await?;
    Ok(SetupPage {
        layout: Layout::public("Set up Portico", csrf_token),
        token,
        form: SetupForm::default(),
        errors: FieldErrors::new(),
    })
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    CsrfToken(csrf_token): CsrfToken,
    Form(mut form): Form<SetupForm>,
) -> Result<Response, AppError> {
    check_setup_token(&state, ip, &form.token).await?;
    let mut errors = FieldErrors::new();
    let name = errors.check("tenant_name", TenantName::parse(&form.tenant_name));
    let slug = errors.check("slug", Slug::parse(&form.slug));
    let display_name = errors.check("display_name", DisplayName::parse(&form.display_name));
    let email = errors.check("email", EmailAddress::parse(&form.email));
    let password = errors.check(
        "password",
        NewPassword::parse(
            form.password
                .take()
                .unwrap_or_else(|| SecretString::from("")),
        ),
    );
    let (Some(name), Some(slug), Some(display_name), Some(email), Some(password)) =
        (name, slug, display_name, email, password)
    else {
        return Ok(rejected(csrf_token, form, errors));
    };

    let admin = NewUser {
        email: email.clone(),
        display_name,
        role: Role::Admin,
        password_hash: Some(state.passwords.hash(password.into_secret()).await?),
    };
    let (tenant, admin_id) =
        match accounts::create_tenant(&state.db, &slug, &name, Some(&admin), true).await {
            Ok((tenant, Some(admin_id))) => (tenant, admin_id),
            Ok((_, None)) => return Err(AppError::Internal("setup created no admin".into())),
            Err(CreateTenantError::SlugTaken) => {
                let errors = FieldErrors::single("slug", "This short name is taken.");
                return Ok(rejected(csrf_token, form, errors));
            }
            Err(CreateTenantError::SetupComplete) => return Err(setup_refused(&state).await?),
            Err(CreateTenantError::Database(err)) => return Err(err.into()),
        };
    state.close_setup();
    tracing::info!(tenant = %tenant.slug, "setup created the first tenant");

    record_setup(
        &state,
        &tenant.id,
        admin_id.as_str(),
        email.as_str(),
        &tenant.name,
        ip,
    )
    .await?;
    let (method, now) = (session::SignInMethod::Password, state.clock.now());
    session::sign_in(&session, &tenant.id, &admin_id, method, now).await?;
    Ok(Redirect::to(&format!("/t/{}/", tenant.slug)).into_response())
}

fn rejected(csrf_token: String, form: SetupForm, errors: FieldErrors) -> Response {
    let token = form.token.clone();
    Rejected(SetupPage {
        layout: Layout::public("Set up Portico", csrf_token),
        token,
        form,
        errors,
    })
    .into_response()
}

/// The setup link's token, checked at most `MAX_SETUP_FAILURES_PER_ADDRESS` times wrongly
/// per address in the throttle's window; past that even the right one waits.
async fn check_setup_token(state: &AppState, ip: IpAddr, token: &str) -> Result<(), AppError> {
    let now = state.clock.now();
    if state.setup_failures.is_throttled(ip, now) {
        tracing::warn!(%ip, "setup paused for an address after too many wrong setup links");
        return Err(AppError::TooManyAttempts);
    }
    if state.setup_token_matches(token) {
        return Ok(());
    }
    let refused = setup_refused(state).await?;
    if matches!(refused, AppError::SetupLinkRequired) {
        state.setup_failures.record(ip, now);
    }
    Err(refused)
}

/// Without the right token: 403 while setup is open, 404 once it is done.
async fn setup_refused(state: &AppState) -> Result<AppError, AppError> {
    if tenants::count(&state.db).await? == 0 {
        Ok(AppError::SetupLinkRequired)
    } else {
        Ok(AppError::NotFound)
    }
}

async fn record_setup(
    state: &AppState,
    tenant: &tenants::TenantId,
    admin_id: &str,
    admin_email: &str,
    tenant_name: &str,
    ip: IpAddr,
) -> Result<(), sqlx::Error> {
    for (action, target, detail) in [
        (
            AuditAction::TenantCreated,
            tenant_name,
            "created with the setup link",
        ),
        (
            AuditAction::UserCreated,
            admin_email,
            "first admin, created with the setup link",
        ),
    ] {
        audit::record(
            &state.db,
            tenant,
            NewAuditEvent {
                action,
                actor_user_id: Some(admin_id),
                actor: admin_email,
                target,
                detail,
                ip: Some(ip),
            },
        )
        .await?;
    }
    Ok(())
}
