//! "Sign in with Microsoft": the button's target, the one callback every tenant shares,
//! and the pages that explain why a sign-in did not work.

use std::net::IpAddr;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;
use tower_sessions::Session;

use super::Layout;
use super::error::{AppError, BadGateway, Rejected};
use super::extract::{ClientIp, CsrfToken, Path, PathTenant, Query};
use super::observe::RequestSpan;
use super::session::{self, PendingMicrosoftSignIn};
use crate::app::{App, AppState};
use crate::crypto::certificates::CertificateInfo;
use crate::crypto::sha256_hex;
use crate::domain::{AuthMethod, CONSUMERS_DIRECTORY};
use crate::metrics::{SignInMethod, SignInResult};
use crate::microsoft::errors::AdviceContext;
use crate::microsoft::graph::ClientProof;
use crate::microsoft::sign_in::{SignInApp, SignInError, VerifiedIdentity};
use crate::microsoft::{CallError, MicrosoftError};
use crate::services::accounts::{self, MicrosoftSignInOutcome};
use crate::services::throttle;
use crate::store::certificates::{self, Owner, Slot};
use crate::store::microsoft_sign_in::{self, SignInSettings};
use crate::store::tenants::{self, Tenant};
use crate::store::{identities, users};

/// The redirect URI registered in Azure: the same for every tenant, built from the
/// configured public URL (never the Host header), so it is right behind a TLS proxy.
pub fn redirect_uri(app: &App) -> String {
    app.config.public_url("/auth/microsoft/callback")
}

/// The tenant's settings, when Sign in with Microsoft is configured and enabled.
async fn enabled_settings(app: &App, tenant: &Tenant) -> Result<SignInSettings, AppError> {
    microsoft_sign_in::get(&app.db, &tenant.id)
        .await?
        .filter(|settings| settings.enabled)
        .ok_or(AppError::NotFound)
}

/// What proves Portico to Microsoft for the tenant's sign-in, opened for one request.
enum OpenedProof {
    /// A public client: nothing to prove.
    None,
    Secret(SecretString),
    Certificate {
        private_key: SecretString,
        certificate: CertificateInfo,
    },
}

impl OpenedProof {
    fn proof(&self) -> Option<ClientProof<'_>> {
        match self {
            Self::None => None,
            Self::Secret(secret) => Some(ClientProof::Secret(secret)),
            Self::Certificate {
                private_key,
                certificate,
            } => Some(ClientProof::Certificate {
                private_key,
                certificate,
            }),
        }
    }
}

async fn open_proof(
    app: &App,
    tenant: &Tenant,
    settings: &SignInSettings,
) -> Result<OpenedProof, AppError> {
    let key = &app.config.secret_key;
    match (settings.auth_method, &settings.client_secret_sealed) {
        (AuthMethod::ClientSecret, None) => Ok(OpenedProof::None),
        (AuthMethod::ClientSecret, Some(sealed)) => {
            Ok(OpenedProof::Secret(sealed.open(key, &tenant.id, "")?))
        }
        (AuthMethod::Certificate, _) => {
            let stored =
                certificates::get(&app.db, &tenant.id, Owner::MicrosoftSignIn, Slot::Current)
                    .await?
                    .ok_or(AppError::NotFound)?;
            Ok(OpenedProof::Certificate {
                private_key: stored
                    .private_key_sealed
                    .open(key, &tenant.id, &stored.id)?,
                certificate: CertificateInfo::read(&stored.certificate_pem)?,
            })
        }
    }
}

fn sign_in_app<'a>(settings: &'a SignInSettings, proof: &'a OpenedProof) -> SignInApp<'a> {
    SignInApp {
        client_id: settings.client_id,
        directory: settings.directory_id,
        cloud: settings.cloud,
        proof: proof.proof(),
        // A verified domain typed by the admin makes the best hint.
        domain_hint: settings.directory.as_deref().filter(|d| d.contains('.')),
    }
}

/// The button: sends the browser to Microsoft.
pub async fn start(
    State(state): State<AppState>,
    PathTenant(tenant): PathTenant,
    session: Session,
) -> Result<Redirect, AppError> {
    begin(&state, &tenant, &session, None).await
}

#[derive(Template, WebTemplate)]
#[template(path = "microsoft_sign_in/link.html")]
pub struct LinkPage {
    layout: Layout,
    tenant_name: String,
    user_name: String,
    user_email: String,
}

/// The invited user of a one-time link, if the link is still good. A wrong link counts
/// toward the throttle of its address, and a throttled address is refused even the right one.
async fn invited(
    state: &App,
    tenant: &Tenant,
    token: &str,
    ip: IpAddr,
) -> Result<Option<users::User>, AppError> {
    if throttle::is_throttled(&state.db, &tenant.id, None, ip).await? {
        let detail = "too many wrong one-time links from this address";
        accounts::record_throttled(state, tenant, "one-time link", detail, ip).await?;
        return Err(AppError::TooManyAttempts);
    }
    let now = state.clock.now().unix_timestamp();
    let invited = identities::invited_user(&state.db, &tenant.id, &sha256_hex(token), now).await?;
    let user = match invited {
        Some(user_id) => users::get(&state.db, &tenant.id, user_id.as_str()).await?,
        None => None,
    };
    if user.is_none() {
        accounts::record_link_rejected(state, tenant, ip).await?;
    }
    Ok(user)
}

/// A one-time link from an admin: first says whose account it links, so nobody is
/// signed in somewhere unexpected by following a link.
pub async fn show_link(
    State(state): State<AppState>,
    PathTenant(tenant): PathTenant,
    Path((_, token)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    CsrfToken(csrf_token): CsrfToken,
) -> Result<Response, AppError> {
    let Some(user) = invited(&state, &tenant, &token, ip).await? else {
        return Ok(problem_page(&tenant, Problem::LinkInvalid).into_response());
    };
    Ok(LinkPage {
        layout: Layout::public("Link your Microsoft account", csrf_token),
        tenant_name: tenant.name,
        user_name: user.display_name,
        user_email: user.email,
    }
    .into_response())
}

/// The confirmation: the Microsoft account signed in with next gets linked.
pub async fn start_link(
    State(state): State<AppState>,
    PathTenant(tenant): PathTenant,
    Path((_, token)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    session: Session,
) -> Result<Response, AppError> {
    if invited(&state, &tenant, &token, ip).await?.is_none() {
        return Ok(problem_page(&tenant, Problem::LinkInvalid).into_response());
    }
    // Only the hash is kept: the session store never holds a usable link.
    let redirect = begin(&state, &tenant, &session, Some(sha256_hex(&token))).await?;
    Ok(redirect.into_response())
}

async fn begin(
    state: &App,
    tenant: &Tenant,
    session: &Session,
    link_token_hash: Option<String>,
) -> Result<Redirect, AppError> {
    let settings = enabled_settings(state, tenant).await?;
    let proof = open_proof(state, tenant, &settings).await?;
    let app = sign_in_app(&settings, &proof);
    let (url, flow) = state
        .microsoft
        .authorization_url(&app, &redirect_uri(state))
        .map_err(|e| AppError::Internal(Box::new(e)))?;
    let pending = PendingMicrosoftSignIn {
        tenant_id: tenant.id.as_str().to_owned(),
        started_at: state.clock.now().unix_timestamp(),
        link_token_hash,
        flow,
    };
    session::start_microsoft_sign_in(session, pending).await?;
    Ok(Redirect::to(url.as_str()))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where Microsoft sends the browser back, for every tenant. The tenant is learned only
/// from the sign-in this browser's session started.
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    span: RequestSpan,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let pending = session::take_microsoft_sign_in(&session).await?;
    let now = state.clock.now();
    let (Some(pending), Some(returned_state)) = (pending, query.state.as_deref()) else {
        return Ok(expired_page());
    };
    let Some(tenant) = tenants::find_by_id(&state.db, &pending.tenant_id).await? else {
        return Ok(expired_page());
    };
    span.record_tenant(&tenant.slug);
    if !crate::crypto::constant_time_eq(returned_state, &pending.flow.state)
        || pending.is_expired(now)
    {
        accounts::record_microsoft_failure(
            &state,
            &tenant,
            "sign-in state missing, wrong or expired",
            ip,
        )
        .await?;
        return Ok(expired_page());
    }
    let settings = enabled_settings(&state, &tenant).await?;
    let identity = match verified_identity(&state, &tenant, &settings, &pending, &query, ip).await?
    {
        Ok(identity) => identity,
        Err(page) => return Ok(page),
    };
    let outcome = accounts::sign_in_with_microsoft(
        &state,
        &tenant,
        &settings,
        &identity,
        pending.link_token_hash.as_deref(),
        ip,
    )
    .await?;
    match outcome {
        MicrosoftSignInOutcome::SignedIn(user_id) => {
            span.record_user(user_id.as_str());
            let method = session::SignInMethod::Microsoft;
            session::sign_in(&session, &tenant.id, &user_id, method, now).await?;
            Ok(Redirect::to(&format!("/t/{}/", tenant.slug)).into_response())
        }
        MicrosoftSignInOutcome::NoAccount => {
            Ok(problem_page(&tenant, Problem::NoAccount(identity)).into_response())
        }
        MicrosoftSignInOutcome::Disabled => {
            Ok(problem_page(&tenant, Problem::Disabled).into_response())
        }
        MicrosoftSignInOutcome::InvalidInvite => {
            Ok(problem_page(&tenant, Problem::LinkInvalid).into_response())
        }
        MicrosoftSignInOutcome::LinkedToAnotherUser => {
            Ok(problem_page(&tenant, Problem::LinkedToAnotherUser(identity)).into_response())
        }
    }
}

/// Who Microsoft says signed in: the code redeemed and the ID token verified. `Err` is the
/// page that explains why not, the failure audited.
async fn verified_identity(
    state: &App,
    tenant: &Tenant,
    settings: &SignInSettings,
    pending: &PendingMicrosoftSignIn,
    query: &CallbackQuery,
    ip: IpAddr,
) -> Result<Result<VerifiedIdentity, Response>, AppError> {
    if let Some(error) = query.error.as_deref() {
        let error = MicrosoftError::from_redirect(error, query.error_description.as_deref());
        return Ok(Err(refused_by_microsoft(
            state, tenant, settings, error, ip,
        )
        .await?));
    }
    let Some(code) = query.code.as_deref() else {
        return Ok(Err(expired_page()));
    };
    let proof = open_proof(state, tenant, settings).await?;
    let app = sign_in_app(settings, &proof);
    let completed = state
        .microsoft
        .complete_sign_in(
            &app,
            &redirect_uri(state),
            code,
            &pending.flow,
            state.clock.now(),
        )
        .await;
    Ok(match completed {
        Ok(identity) => Ok(identity),
        Err(SignInError::Call(CallError::Microsoft(error))) => {
            Err(refused_by_microsoft(state, tenant, settings, *error, ip).await?)
        }
        Err(SignInError::Call(error)) => {
            tracing::warn!(error = %error, "Microsoft sign-in could not complete");
            state
                .metrics
                .sign_in(SignInMethod::Microsoft, SignInResult::Error);
            Err(BadGateway(problem_page(tenant, Problem::Unreachable)).into_response())
        }
        Err(SignInError::TokenRefused(reason)) => {
            tracing::warn!(reason = %reason, tenant = %tenant.slug, "ID token refused");
            let detail = format!("Microsoft: {reason}");
            accounts::record_microsoft_failure(state, tenant, &detail, ip).await?;
            Err(problem_page(tenant, Problem::TokenRefused).into_response())
        }
    })
}

/// Microsoft refused the sign-in (an AADSTS error): audited, and explained.
async fn refused_by_microsoft(
    state: &App,
    tenant: &Tenant,
    settings: &SignInSettings,
    error: MicrosoftError,
    ip: IpAddr,
) -> Result<Response, AppError> {
    let detail = format!("Microsoft answered {error}");
    accounts::record_microsoft_failure(state, tenant, &detail, ip).await?;
    let advice = advice_context(state, tenant, settings);
    Ok(problem_page(tenant, Problem::Microsoft(error, advice)).into_response())
}

fn advice_context(state: &App, tenant: &Tenant, settings: &SignInSettings) -> AdviceOwned {
    let login = state.microsoft.login_base(settings.cloud);
    let directory = settings.directory_id.map_or_else(
        || "organizations".to_owned(),
        |id| id.hyphenated().to_string(),
    );
    AdviceOwned {
        redirect_uri: redirect_uri(state),
        confidential_client: settings.auth_method == AuthMethod::Certificate
            || settings.client_secret_sealed.is_some(),
        certificate_page: format!(
            "Portico's Sign in with Microsoft settings ({})",
            state
                .config
                .public_url(&format!("/t/{}/settings/microsoft-sign-in", tenant.slug))
        ),
        admin_consent_url: format!(
            "{login}/{directory}/adminconsent?client_id={}",
            settings.client_id
        ),
    }
}

/// The owned inputs of an `AdviceContext`.
pub struct AdviceOwned {
    redirect_uri: String,
    confidential_client: bool,
    certificate_page: String,
    admin_consent_url: String,
}

/// Why a Microsoft sign-in did not sign anyone in.
enum Problem {
    Microsoft(MicrosoftError, AdviceOwned),
    Unreachable,
    TokenRefused,
    NoAccount(VerifiedIdentity),
    Disabled,
    LinkedToAnotherUser(VerifiedIdentity),
    LinkInvalid,
}

#[derive(Template, WebTemplate)]
#[template(path = "microsoft_sign_in/problem.html")]
pub struct ProblemPage {
    layout: Layout,
    slug: String,
    tenant_name: String,
    title: String,
    meaning: String,
    next_step: String,
    microsoft: Option<MicrosoftError>,
    who: Option<WhoSignedIn>,
}

/// Who Microsoft said signed in, so the person can tell whether they picked the right account.
pub struct WhoSignedIn {
    name: String,
    account: String,
    directory: String,
}

impl From<VerifiedIdentity> for WhoSignedIn {
    fn from(identity: VerifiedIdentity) -> Self {
        let directory = if identity.tid == CONSUMERS_DIRECTORY {
            "personal Microsoft account".to_owned()
        } else {
            format!("directory {}", identity.tid)
        };
        Self {
            name: identity.name.unwrap_or_default(),
            account: identity.username.or(identity.email).unwrap_or_default(),
            directory,
        }
    }
}

fn problem_page(tenant: &Tenant, problem: Problem) -> Rejected<ProblemPage> {
    let (title, meaning, next_step, microsoft, who): (String, String, String, Option<MicrosoftError>, Option<WhoSignedIn>) = match problem {
        Problem::Microsoft(error, context) => {
            let advice = error.advice(&AdviceContext {
                redirect_uri: &context.redirect_uri,
                confidential_client: context.confidential_client,
                certificate_page: Some(&context.certificate_page),
                admin_consent_url: Some(&context.admin_consent_url),
            });
            (advice.title.into(), advice.meaning, advice.next_step, Some(error), None)
        }
        Problem::Unreachable => (
            "Microsoft could not be reached".into(),
            "Portico did not get a usable answer from Microsoft in time. Nothing changed.".into(),
            "Try again in a minute. Local accounts can still sign in with email and password.".into(),
            None,
            None,
        ),
        Problem::TokenRefused => (
            "Sign-in refused".into(),
            "The answer from Microsoft did not pass Portico's checks, so nobody was signed in.".into(),
            "Try again. If it keeps happening, tell your admin: the audit log has the reason.".into(),
            None,
            None,
        ),
        Problem::NoAccount(identity) => (
            "No Portico account for this Microsoft account".into(),
            format!("Microsoft signed you in, but no Portico account of {} is linked to this Microsoft account.", tenant.name),
            "If you picked the wrong account, sign in again and choose another. Otherwise ask an admin to add you, or to send you a one-time link from the Users page.".into(),
            None,
            Some(identity.into()),
        ),
        Problem::Disabled => (
            "Account disabled".into(),
            format!("Your Portico account at {} is disabled.", tenant.name),
            "Ask an admin of your organization to enable it.".into(),
            None,
            None,
        ),
        Problem::LinkedToAnotherUser(identity) => (
            "Microsoft account already in use".into(),
            "This Microsoft account is linked to another Portico user of this organization.".into(),
            "Sign in with the account meant for you, or ask an admin to unlink it first.".into(),
            None,
            Some(identity.into()),
        ),
        Problem::LinkInvalid => (
            "Link expired or already used".into(),
            "This one-time link no longer works.".into(),
            "Ask an admin for a new link.".into(),
            None,
            None,
        ),
    };
    Rejected(ProblemPage {
        layout: Layout::public(title.clone(), String::new()),
        slug: tenant.slug.clone(),
        tenant_name: tenant.name.clone(),
        title,
        meaning,
        next_step,
        microsoft,
        who,
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "microsoft_sign_in/expired.html")]
pub struct ExpiredPage {
    layout: Layout,
}

/// A callback without a matching sign-in of this browser: replayed, too late, or started
/// in another browser. The tenant is unknown, so the page cannot link back to it.
fn expired_page() -> Response {
    Rejected(ExpiredPage {
        layout: Layout::public("Sign-in expired", String::new()),
    })
    .into_response()
}
