//! Local sign-in and sign-out.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use super::error::{AppError, Rejected, Throttled};
use super::extract::{ClientIp, CsrfToken, Form, PathTenant, TenantCtx};
use super::observe::RequestSpan;
use super::{Layout, session};
use crate::app::AppState;
use crate::domain::AuditAction;
use crate::services::accounts::{self, SignInOutcome};
use crate::store::microsoft_sign_in;
use crate::store::tenants::Tenant;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    layout: Layout,
    tenant_name: String,
    slug: String,
    email: String,
    error: Option<&'static str>,
    microsoft_enabled: bool,
}

impl LoginPage {
    async fn new(
        state: &AppState,
        tenant: Tenant,
        csrf_token: String,
        email: String,
        error: Option<&'static str>,
    ) -> Result<Self, AppError> {
        let microsoft_enabled = microsoft_sign_in::get(&state.db, &tenant.id)
            .await?
            .is_some_and(|settings| settings.enabled);
        Ok(Self {
            layout: Layout::public(format!("Sign in to {}", tenant.name), csrf_token),
            tenant_name: tenant.name,
            slug: tenant.slug,
            email,
            error,
            microsoft_enabled,
        })
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: Option<SecretString>,
}

pub async fn show(
    State(state): State<AppState>,
    PathTenant(tenant): PathTenant,
    CsrfToken(csrf_token): CsrfToken,
) -> Result<LoginPage, AppError> {
    LoginPage::new(&state, tenant, csrf_token, String::new(), None).await
}

pub async fn sign_in(
    State(state): State<AppState>,
    PathTenant(tenant): PathTenant,
    session: Session,
    ClientIp(ip): ClientIp,
    CsrfToken(csrf_token): CsrfToken,
    span: RequestSpan,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    let password = form.password.unwrap_or_else(|| SecretString::from(""));
    let outcome =
        accounts::sign_in_with_password(&state, &tenant, &form.email, password, ip).await?;
    Ok(match outcome {
        SignInOutcome::SignedIn(user_id) => {
            span.record_user(user_id.as_str());
            let (method, now) = (session::SignInMethod::Password, state.clock.now());
            session::sign_in(&session, &tenant.id, &user_id, method, now).await?;
            Redirect::to(&format!("/t/{}/", tenant.slug)).into_response()
        }
        SignInOutcome::Refused => {
            let error = "Email or password is incorrect.";
            let page = LoginPage::new(&state, tenant, csrf_token, form.email, Some(error)).await?;
            Rejected(page).into_response()
        }
        SignInOutcome::Throttled => {
            let error = "Too many failed sign-ins. Wait 15 minutes and try again, or ask an \
                         admin to reset your password.";
            let page = LoginPage::new(&state, tenant, csrf_token, form.email, Some(error)).await?;
            Throttled(page).into_response()
        }
    })
}

pub async fn sign_out(
    State(state): State<AppState>,
    ctx: TenantCtx,
    session: Session,
    ClientIp(ip): ClientIp,
) -> Result<Redirect, AppError> {
    ctx.audit(&state, AuditAction::SignOut, &ctx.user.email, "", ip)
        .await?;
    session::sign_out(&session).await?;
    Ok(Redirect::to(&ctx.path("/login")))
}
