//! External APIs: the tenant's Microsoft Graph credentials, entered once and shared by its
//! Graph mailboxes, and tested against Microsoft for real.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::{Date, Duration};

use super::certificates::{CertificateFile, CertificateView, RenewForm, VersionForm, admin};
use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Path, Query, TenantCtx};
use super::{Layout, changed_meanwhile, format_time};
use crate::app::{App, AppState};
use crate::domain::{
    AuditAction, AuthMethod, CERTIFICATE_VALIDITY_MONTHS, ClientId, Cloud, CredentialName,
    DirectoryId, ExpiryStatus, FieldErrors, MailProtocol, RoleReview, exchange_role,
    parse_certificate_validity, parse_expiry_date,
};
use crate::microsoft::errors::AdviceContext;
use crate::microsoft::graph::{AppCredentials, MailboxAccess};
use crate::microsoft::{Advice, CallError, MicrosoftError};
use crate::services;
use crate::services::certificate_lifecycle::{
    self, CertificateOwner, LifecycleError, Switch, graph_credential_common_name,
};
use crate::store::certificates::{self, Owner, OwnerKind, Slot};
use crate::store::graph_credentials::{
    self, Authentication, CredentialFields, GraphCredential, SealedGraphSecret, new_credential_id,
};
use crate::store::{SaveError, mailboxes};

/// A credential as the pages show it; never its secret.
pub struct CredentialView {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub directory: String,
    pub directory_id: String,
    pub cloud: &'static str,
    pub auth_method: AuthMethod,
    /// The last day it works: the secret's expiry date, or the certificate's end.
    pub expires_on: String,
    pub expiry: ExpiryStatus,
    /// Client secrets only.
    pub secret_replaced_at: Option<String>,
    /// Certificates only: the current certificate's thumbprint, as Azure lists it.
    pub thumbprint: Option<String>,
    pub last_test: Option<(bool, String, String)>,
    /// How many Graph mailboxes use it (known on the list page).
    pub mailbox_count: i64,
}

impl CredentialView {
    pub fn new(credential: &GraphCredential, app: &App) -> Self {
        Self {
            id: credential.id.clone(),
            name: credential.name.clone(),
            client_id: credential.client_id.to_string(),
            directory: credential.directory.clone(),
            directory_id: credential.directory_id.hyphenated().to_string(),
            cloud: credential.cloud.label(),
            auth_method: credential.auth_method(),
            expires_on: credential.expires_on().to_string(),
            expiry: ExpiryStatus::of(credential.expires_on(), app.clock.now()),
            secret_replaced_at: match &credential.authentication {
                Authentication::ClientSecret { replaced_at, .. } => Some(format_time(*replaced_at)),
                Authentication::Certificate { .. } => None,
            },
            thumbprint: match &credential.authentication {
                Authentication::ClientSecret { .. } => None,
                Authentication::Certificate { thumbprint, .. } => Some(thumbprint.clone()),
            },
            last_test: credential
                .last_test
                .as_ref()
                .map(|test| (test.ok, format_time(test.at), test.summary.clone())),
            mailbox_count: 0,
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "graph_credentials/list.html")]
pub struct ListPage {
    layout: Layout,
    slug: String,
    credentials: Vec<CredentialView>,
}

pub async fn list(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
) -> Result<ListPage, AppError> {
    let credentials = graph_credentials::list(&state.db, &ctx.tenant.id).await?;
    let usage = mailboxes::credential_usage(&state.db, &ctx.tenant.id).await?;
    Ok(ListPage {
        layout: ctx.layout("External APIs", "external-apis"),
        slug: ctx.tenant.slug.clone(),
        credentials: credentials
            .iter()
            .map(|credential| CredentialView {
                mailbox_count: usage.get(&credential.id).copied().unwrap_or(0),
                ..CredentialView::new(credential, &state)
            })
            .collect(),
    })
}

/// What the admin typed. Secrets are never sent back.
#[derive(Deserialize, Default)]
pub struct CredentialForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    secret_expires_on: String,
    #[serde(default)]
    client_secret: Option<SecretString>,
    /// `client_secret` or `certificate`.
    #[serde(default)]
    auth_method: String,
    /// How many months a certificate Portico generates is valid.
    #[serde(default)]
    valid_months: String,
    /// The credential's version when the form was loaded.
    #[serde(default)]
    version: i64,
}

impl CredentialForm {
    fn without_secret(self) -> Self {
        Self {
            client_secret: None,
            ..self
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "graph_credentials/new.html")]
pub struct NewPage {
    layout: Layout,
    slug: String,
    form: CredentialForm,
    errors: FieldErrors,
    clouds: Vec<(&'static str, &'static str)>,
    validity_months: [u32; 3],
}

fn clouds() -> Vec<(&'static str, &'static str)> {
    Cloud::ALL.iter().map(|c| (c.as_str(), c.label())).collect()
}

fn new_page(ctx: &TenantCtx, form: CredentialForm, errors: FieldErrors) -> NewPage {
    NewPage {
        layout: ctx.layout("Add a Graph credential", "external-apis"),
        slug: ctx.tenant.slug.clone(),
        form: form.without_secret(),
        errors,
        clouds: clouds(),
        validity_months: CERTIFICATE_VALIDITY_MONTHS,
    }
}

/// Certificates Portico generates are valid this long unless the admin chooses otherwise.
const DEFAULT_VALIDITY_MONTHS: &str = "12";

pub async fn new(AdminCtx(ctx): AdminCtx) -> NewPage {
    let form = CredentialForm {
        cloud: Cloud::Global.as_str().into(),
        auth_method: AuthMethod::Certificate.as_str().into(),
        valid_months: DEFAULT_VALIDITY_MONTHS.into(),
        ..CredentialForm::default()
    };
    new_page(&ctx, form, FieldErrors::new())
}

/// Parses the non-secret fields and resolves the directory to its GUID.
async fn parse_fields(
    state: &App,
    form: &CredentialForm,
    errors: &mut FieldErrors,
) -> Option<CredentialFields> {
    let name = errors.check("name", CredentialName::parse(&form.name));
    let client_id = errors.check("client_id", ClientId::parse(&form.client_id));
    let directory = errors
        .check("directory", DirectoryId::parse_optional(&form.directory))
        .and_then(|directory| {
            if directory.is_none() {
                errors.add(
                    "directory",
                    "Enter the Directory (tenant) ID from the app's Overview page: app-only access needs it.",
                );
            }
            directory
        });
    let cloud = errors.check("cloud", Cloud::parse(&form.cloud));
    let (name, client_id, directory, cloud) = (name?, client_id?, directory?, cloud?);
    match state.microsoft.resolve_directory(cloud, &directory).await {
        Ok(directory_id) => Some(CredentialFields {
            name,
            client_id,
            directory: directory.to_string(),
            directory_id,
            cloud,
        }),
        Err(error) => {
            errors.add("directory", directory_lookup_message(&error));
            None
        }
    }
}

fn directory_lookup_message(error: &CallError) -> &'static str {
    match error {
        CallError::Microsoft(_) => {
            "Microsoft knows no directory by this name. Copy the Directory (tenant) ID from the app's Overview page in Azure."
        }
        CallError::Unreachable(_) | CallError::Unexpected(_) | CallError::Destination(_) => {
            "Microsoft could not be reached to look up this domain. Try again, or enter the directory's GUID."
        }
    }
}

/// The secret and its expiry, both required whenever a secret is set.
fn parse_secret(
    form: &mut CredentialForm,
    today: Date,
    errors: &mut FieldErrors,
) -> Option<(SecretString, Date)> {
    let secret = form
        .client_secret
        .take()
        .filter(|secret| !secret.expose_secret().trim().is_empty());
    if secret.is_none() {
        errors.add("client_secret", "Paste the client secret's Value from Certificates & secrets in Azure (not its Secret ID).");
    }
    let expires_on = errors.check(
        "secret_expires_on",
        parse_expiry_date(&form.secret_expires_on, today),
    );
    Some((secret?, expires_on?))
}

fn has_typed_secret(form: &CredentialForm) -> bool {
    form.client_secret
        .as_ref()
        .is_some_and(|secret| !secret.expose_secret().trim().is_empty())
}

/// How a new credential proves itself: the secret typed and its expiry, or a certificate
/// Portico generates, valid this long.
enum NewProof {
    Secret(SecretString, Date),
    Certificate(Duration),
}

fn parse_new_proof(
    form: &mut CredentialForm,
    today: Date,
    errors: &mut FieldErrors,
) -> Option<NewProof> {
    // A form without the choice (a page from before certificates) adds a client secret.
    let method = if form.auth_method.is_empty() {
        Some(AuthMethod::ClientSecret)
    } else {
        errors.check("auth_method", AuthMethod::parse(&form.auth_method))
    };
    match method? {
        AuthMethod::ClientSecret => {
            parse_secret(form, today, errors).map(|(secret, date)| NewProof::Secret(secret, date))
        }
        AuthMethod::Certificate => errors
            .check(
                "valid_months",
                parse_certificate_validity(&form.valid_months),
            )
            .map(NewProof::Certificate),
    }
}

/// Stores the new credential `id` with its proof sealed to it; with what the audit log says
/// of the proof.
async fn store_new(
    state: &App,
    ctx: &TenantCtx,
    id: &str,
    fields: &CredentialFields,
    proof: NewProof,
) -> Result<(Result<(), SaveError>, String), AppError> {
    let tenant = &ctx.tenant.id;
    Ok(match proof {
        NewProof::Secret(secret, expires_on) => {
            let sealed = SealedGraphSecret::seal(&state.config.secret_key, tenant, id, &secret);
            let saved =
                graph_credentials::create(&state.db, tenant, id, fields, &sealed, expires_on).await;
            (saved, format!("client secret expires on {expires_on}"))
        }
        NewProof::Certificate(valid_for) => {
            let common_name = graph_credential_common_name(fields.name.as_str());
            let kind = OwnerKind::GraphCredential;
            let generated =
                certificate_lifecycle::generate(state, tenant, kind, common_name, valid_for)
                    .await?;
            let certificate = generated.to_store();
            let saved = graph_credentials::create_with_certificate(
                &state.db,
                tenant,
                id,
                fields,
                &certificate,
            )
            .await;
            (saved, generated.detail())
        }
    })
}

pub async fn create(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(mut form): Form<CredentialForm>,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::new();
    // A secret typed beside the Certificate choice is not used: nothing to type again.
    let typed = has_typed_secret(&form) && form.auth_method != AuthMethod::Certificate.as_str();
    let proof = parse_new_proof(&mut form, state.clock.now().date(), &mut errors);
    let fields = parse_fields(&state, &form, &mut errors).await;
    let (Some(fields), Some(proof), true) = (fields, proof, errors.is_empty()) else {
        errors.ask_secret_again("client_secret", typed);
        return Ok(Rejected(new_page(&ctx, form, errors)).into_response());
    };
    let id = new_credential_id();
    let (saved, detail) = store_new(&state, &ctx, &id, &fields, proof).await?;
    match saved {
        Ok(()) => {}
        Err(SaveError::NameTaken) => {
            let mut errors = FieldErrors::single("name", "Another credential has this name.");
            errors.ask_secret_again("client_secret", typed);
            return Ok(Rejected(new_page(&ctx, form, errors)).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    let detail = format!(
        "Application (client) ID {}, Directory (tenant) ID {}, {}, {detail}",
        fields.client_id,
        fields.directory,
        fields.cloud.label()
    );
    ctx.audit(
        &state,
        AuditAction::GraphCredentialCreated,
        fields.name.as_str(),
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/external-apis/{id}"))).into_response())
}

/// The result panel of "Test connection".
pub struct TestOutcome {
    ok: bool,
    /// The Graph token's permissions, judged against the Graph mailboxes using the credential.
    review: Option<RoleReview>,
    advice: Option<Advice>,
    error: Option<MicrosoftError>,
    /// What an Exchange Online token says (asked for once Graph's worked).
    exchange: Option<Result<ExchangeGrant, String>>,
}

/// The Exchange Online side of a credential, from its app-only Exchange token.
pub struct ExchangeGrant {
    /// The token's roles (IMAP.AccessAsApp, POP.AccessAsApp, SMTP.SendAsApp...), judged
    /// against the mailboxes that sign in with the app.
    review: RoleReview,
    /// The enterprise application's Object ID, the token's `oid`.
    service_principal_id: Option<String>,
}

/// An IMAP, POP3 or SMTP mailbox that signs in with the credential's app, for the
/// Exchange Online steps.
pub struct AppMailbox {
    name: String,
    email: String,
    protocol: MailProtocol,
    /// The Exchange permission its protocol needs.
    role: &'static str,
    /// SMTP sends as the mailbox (SendAs); IMAP and POP3 read it (FullAccess).
    sends: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "graph_credentials/show.html")]
pub struct ShowPage {
    layout: Layout,
    slug: String,
    credential: CredentialView,
    /// The certificate Portico signs with (certificate credentials).
    certificate: Option<CertificateView>,
    /// A renewal waiting for the admin to switch to it.
    next_certificate: Option<CertificateView>,
    form: CredentialForm,
    errors: FieldErrors,
    clouds: Vec<(&'static str, &'static str)>,
    validity_months: [u32; 3],
    notice: Option<&'static str>,
    test: Option<TestOutcome>,
    /// Why switching to the next certificate was refused.
    switch_test: Option<TestOutcome>,
    mailbox: String,
    mailbox_result: Option<(MailboxAccess, String)>,
    /// The mailboxes that keep this credential from being deleted.
    in_use_by: Vec<(String, String)>,
    /// The mailboxes that sign in with this app over IMAP, POP3 or SMTP.
    app_mailboxes: Vec<AppMailbox>,
}

impl ShowPage {
    /// The enterprise application's Object ID, once a test read it from a token.
    fn service_principal_id(&self) -> Option<&str> {
        let exchange = self.test.as_ref()?.exchange.as_ref()?.as_ref().ok()?;
        exchange.service_principal_id.as_deref()
    }
}

async fn load(state: &App, ctx: &TenantCtx, id: &str) -> Result<GraphCredential, AppError> {
    graph_credentials::get(&state.db, &ctx.tenant.id, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The credential's page as it is now, after a form of it came second to another admin's
/// save.
async fn changed_meanwhile_page(
    state: &App,
    ctx: &TenantCtx,
    id: &str,
) -> Result<ShowPage, AppError> {
    let current = load(state, ctx, id).await?;
    let mut page = show_page(state, ctx, &current).await?;
    page.errors = changed_meanwhile("this credential");
    Ok(page)
}

async fn show_page(
    state: &App,
    ctx: &TenantCtx,
    credential: &GraphCredential,
) -> Result<ShowPage, AppError> {
    let now = state.clock.now();
    let view = |slot| async move {
        let owner = Owner::GraphCredential(&credential.id);
        let stored = certificates::get(&state.db, &ctx.tenant.id, owner, slot).await?;
        Ok::<_, AppError>(stored.map(|certificate| CertificateView::new(&certificate, now)))
    };
    Ok(ShowPage {
        layout: ctx.layout(credential.name.clone(), "external-apis"),
        slug: ctx.tenant.slug.clone(),
        credential: CredentialView::new(credential, state),
        certificate: view(Slot::Current).await?,
        next_certificate: view(Slot::Next).await?,
        form: CredentialForm {
            name: credential.name.clone(),
            client_id: credential.client_id.to_string(),
            directory: credential.directory.clone(),
            cloud: credential.cloud.as_str().into(),
            secret_expires_on: String::new(),
            client_secret: None,
            auth_method: credential.auth_method().as_str().into(),
            valid_months: DEFAULT_VALIDITY_MONTHS.into(),
            version: credential.version,
        },
        errors: FieldErrors::new(),
        clouds: clouds(),
        validity_months: CERTIFICATE_VALIDITY_MONTHS,
        notice: None,
        test: None,
        switch_test: None,
        mailbox: String::new(),
        mailbox_result: None,
        in_use_by: Vec::new(),
        app_mailboxes: app_mailboxes(state, ctx, &credential.id).await?,
    })
}

async fn app_mailboxes(
    state: &App,
    ctx: &TenantCtx,
    credential_id: &str,
) -> Result<Vec<AppMailbox>, AppError> {
    let mailboxes = mailboxes::signing_in_with_app(&state.db, &ctx.tenant.id, credential_id);
    Ok(mailboxes
        .await?
        .into_iter()
        .filter_map(|(name, email, protocol)| {
            Some(AppMailbox {
                name,
                email,
                protocol,
                role: exchange_role(protocol)?,
                sends: protocol == MailProtocol::Smtp,
            })
        })
        .collect())
}

#[derive(Deserialize)]
pub struct ShowQuery {
    done: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id)): Path<(String, String)>,
    Query(query): Query<ShowQuery>,
) -> Result<ShowPage, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    let mut page = show_page(&state, &ctx, &credential).await?;
    page.notice = match query.done.as_deref() {
        Some("saved") => Some("Saved."),
        Some("secret") => Some("Secret replaced. Test the connection to check it."),
        Some("renewed") => Some(
            "A new certificate is ready. Upload it to the app in Azure, then switch to it below.",
        ),
        Some("switched") => Some(
            "Portico now signs with the new certificate. Once nothing else uses the old one, remove it from the app in Azure.",
        ),
        _ => None,
    };
    Ok(page)
}

pub async fn update(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<CredentialForm>,
) -> Result<Response, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    let mut errors = FieldErrors::new();
    let fields = parse_fields(&state, &form, &mut errors).await;
    if let Some(fields) = &fields {
        refuse_moving_the_secret(&credential, fields, &mut errors);
    }
    let Some(fields) = fields.filter(|_| errors.is_empty()) else {
        let mut page = show_page(&state, &ctx, &credential).await?;
        page.form = form.without_secret();
        page.errors = errors;
        return Ok(Rejected(page).into_response());
    };
    match graph_credentials::update(&state.db, &ctx.tenant.id, &id, form.version, &fields).await {
        Ok(()) => {}
        Err(SaveError::NameTaken) => {
            let mut page = show_page(&state, &ctx, &credential).await?;
            page.form = form.without_secret();
            page.errors = FieldErrors::single("name", "Another credential has this name.");
            return Ok(Rejected(page).into_response());
        }
        Err(SaveError::Stale) => {
            let current = load(&state, &ctx, &id).await?;
            let mut page = show_page(&state, &ctx, &current).await?;
            page.form = CredentialForm {
                version: current.version,
                ..form.without_secret()
            };
            page.errors = changed_meanwhile("this credential");
            return Ok(Conflict(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    state.microsoft.forget_tokens(&id);
    let detail = format!(
        "Application (client) ID {}, Directory (tenant) ID {}, {}",
        fields.client_id,
        fields.directory,
        fields.cloud.label()
    );
    ctx.audit(
        &state,
        AuditAction::GraphCredentialChanged,
        fields.name.as_str(),
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/external-apis/{id}?done=saved"))).into_response())
}

/// A client secret is sent to Microsoft for the app, directory and cloud it was entered for,
/// never for another. (A certificate's private key is never sent: the admin uploads the
/// certificate to whichever app it should prove.)
fn refuse_moving_the_secret(
    credential: &GraphCredential,
    fields: &CredentialFields,
    errors: &mut FieldErrors,
) {
    if !matches!(
        credential.authentication,
        Authentication::ClientSecret { .. }
    ) {
        return;
    }
    let message = "The stored client secret was entered for this app, directory and cloud, \
                   and is never sent for another. To use another app, add a Graph credential \
                   for it.";
    for (field, changed) in [
        ("client_id", credential.client_id != fields.client_id),
        ("directory", credential.directory_id != fields.directory_id),
        ("cloud", credential.cloud != fields.cloud),
    ] {
        if changed {
            errors.add(field, message);
        }
    }
}

/// "Replace secret": a new secret and its new expiry date, as the seeds' "update client secret".
pub async fn replace_secret(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(mut form): Form<CredentialForm>,
) -> Result<Response, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    if credential.auth_method() != AuthMethod::ClientSecret {
        // The page offers no secret to replace; a certificate is renewed instead.
        return Err(AppError::NotFound);
    }
    let mut errors = FieldErrors::new();
    let typed = has_typed_secret(&form);
    let today = state.clock.now().date();
    let Some((secret, expires_on)) = parse_secret(&mut form, today, &mut errors) else {
        errors.ask_secret_again("client_secret", typed);
        let mut page = show_page(&state, &ctx, &credential).await?;
        page.form.secret_expires_on = form.secret_expires_on;
        page.form.version = form.version;
        page.errors = errors;
        return Ok(Rejected(page).into_response());
    };
    let sealed = SealedGraphSecret::seal(&state.config.secret_key, &ctx.tenant.id, &id, &secret);
    match graph_credentials::replace_secret(
        &state.db,
        &ctx.tenant.id,
        &id,
        form.version,
        &sealed,
        expires_on,
    )
    .await
    {
        Ok(()) => {}
        Err(SaveError::Stale) => {
            let mut page = changed_meanwhile_page(&state, &ctx, &id).await?;
            page.errors.ask_secret_again("client_secret", true);
            page.form.secret_expires_on = form.secret_expires_on;
            return Ok(Conflict(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    // A token obtained with the old secret must not outlive it here.
    state.microsoft.forget_tokens(&id);
    let detail = format!("new secret expires on {expires_on}");
    ctx.audit(
        &state,
        AuditAction::GraphCredentialSecretReplaced,
        &credential.name,
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/external-apis/{id}?done=secret"))).into_response())
}

/// "Renew certificate" (or, for a client-secret credential, "Use a certificate instead"):
/// generates the next certificate while the current secret or certificate keeps working,
/// so the admin can upload it to Azure before Portico switches.
pub async fn renew_certificate(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<RenewForm>,
) -> Result<Response, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    let valid_for = match parse_certificate_validity(&form.valid_months) {
        Ok(valid_for) => valid_for,
        Err(message) => {
            let mut page = show_page(&state, &ctx, &credential).await?;
            page.errors = FieldErrors::single("valid_months", message);
            return Ok(Rejected(page).into_response());
        }
    };
    let owner = CertificateOwner::graph_credential(&credential);
    let admin = admin(&ctx, ip);
    match certificate_lifecycle::renew(&state, &admin, &owner, form.version, valid_for).await {
        Ok(()) => {}
        Err(LifecycleError::Save(SaveError::Stale)) => {
            let page = changed_meanwhile_page(&state, &ctx, &id).await?;
            return Ok(Conflict(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    Ok(Redirect::to(&ctx.path(&format!("/external-apis/{id}?done=renewed"))).into_response())
}

/// "Switch to the new certificate": first asks Microsoft for a token with it, so a
/// certificate not yet uploaded to Azure never replaces one that works; then switches.
pub async fn switch_certificate(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<VersionForm>,
) -> Result<Response, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    let owner = CertificateOwner::graph_credential(&credential);
    match certificate_lifecycle::switch(&state, &admin(&ctx, ip), &owner, form.version).await {
        Ok(Switch::Done) => Ok(Redirect::to(
            &ctx.path(&format!("/external-apis/{id}?done=switched")),
        )
        .into_response()),
        Ok(Switch::Refused(error)) => {
            let mut page = show_page(&state, &ctx, &credential).await?;
            page.switch_test = Some(match error {
                CallError::Microsoft(error) => explain(&state, &credential, *error),
                _ => unreachable(),
            });
            Ok(Rejected(page).into_response())
        }
        Err(LifecycleError::Save(SaveError::Stale)) => {
            let page = changed_meanwhile_page(&state, &ctx, &id).await?;
            Ok(Conflict(page).into_response())
        }
        Err(other) => Err(other.into()),
    }
}

/// A certificate file to download: `current.cer`, `current.pem`, `next.cer` or `next.pem`.
/// Only the certificate, which is public; its private key never leaves Portico.
pub async fn download_certificate(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id, file)): Path<(String, String, String)>,
) -> Result<Response, AppError> {
    let file = CertificateFile::parse(&file).ok_or(AppError::NotFound)?;
    let credential = load(&state, &ctx, &id).await?;
    let owner = Owner::GraphCredential(&id);
    let stored = certificates::get(&state.db, &ctx.tenant.id, owner, file.slot)
        .await?
        .ok_or(AppError::NotFound)?;
    file.download(&stored, &credential.name)
}

fn explain(state: &App, credential: &GraphCredential, error: MicrosoftError) -> TestOutcome {
    let consent_url = format!(
        "{}/{}/adminconsent?client_id={}",
        state.microsoft.login_base(credential.cloud),
        credential.directory_id.hyphenated(),
        credential.client_id
    );
    let advice = error.advice(&AdviceContext {
        redirect_uri: "",
        confidential_client: true,
        certificate_page: None,
        admin_consent_url: Some(&consent_url),
    });
    TestOutcome {
        ok: false,
        review: None,
        advice: Some(advice),
        error: Some(error),
        exchange: None,
    }
}

fn unreachable() -> TestOutcome {
    TestOutcome {
        ok: false,
        review: None,
        advice: Some(Advice {
            title: "Microsoft could not be reached",
            meaning: "Portico did not get a usable answer from Microsoft in time.".into(),
            next_step: "Try again in a minute.".into(),
        }),
        error: None,
        exchange: None,
    }
}

/// "Test connection": a real client-credentials request, then the granted permissions,
/// judged against what the mailboxes using the credential do (least privilege).
pub async fn test(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id)): Path<(String, String)>,
) -> Result<ShowPage, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    let proof = services::graph_credentials::open(&state, &ctx.tenant.id, &credential).await?;
    let now = state.clock.now();
    let credentials = proof.credentials(&credential);
    let outcome = match state.microsoft.app_token(&credentials, now).await {
        Ok(token) => {
            let graph_users =
                mailboxes::reading_or_sending_with_graph(&state.db, &ctx.tenant.id, &id).await?;
            let app_users: Vec<(String, MailProtocol)> = app_mailboxes(&state, &ctx, &id)
                .await?
                .into_iter()
                .map(|mailbox| (mailbox.email, mailbox.protocol))
                .collect();
            let unused = graph_users.is_empty() && app_users.is_empty();
            let review = RoleReview::of_graph(&token.roles, &graph_users, unused);
            let exchange = exchange_grant(&state, &credentials, &app_users, unused).await;
            // A mailbox signing in app-only without its protocol's permission fails, and so
            // does any when Exchange gives the app no token at all.
            let exchange_ok = match &exchange {
                Ok(grant) => grant.review.is_sufficient(),
                Err(_) => app_users.is_empty(),
            };
            TestOutcome {
                ok: review.is_sufficient() && exchange_ok,
                review: Some(review),
                advice: None,
                error: None,
                exchange: Some(exchange),
            }
        }
        Err(CallError::Microsoft(error)) => explain(&state, &credential, *error),
        Err(error) => {
            tracing::warn!(error = %error, "Graph credential test could not reach Microsoft");
            unreachable()
        }
    };
    let summary = test_summary(&outcome);
    graph_credentials::record_test(&state.db, &ctx.tenant.id, &id, outcome.ok, &summary).await?;
    let credential = load(&state, &ctx, &id).await?;
    let mut page = show_page(&state, &ctx, &credential).await?;
    page.test = Some(outcome);
    Ok(page)
}

/// What an Exchange Online token for the app grants, judged against the `mailboxes` that
/// sign in with it, or why Microsoft gave none.
async fn exchange_grant(
    state: &App,
    credentials: &AppCredentials<'_>,
    mailboxes: &[(String, MailProtocol)],
    unused: bool,
) -> Result<ExchangeGrant, String> {
    match state
        .microsoft
        .exchange_token(credentials, state.clock.now())
        .await
    {
        Ok(token) => Ok(ExchangeGrant {
            review: RoleReview::of_exchange(&token.roles, mailboxes, unused),
            service_principal_id: token
                .service_principal_id
                .map(|id| id.hyphenated().to_string()),
        }),
        Err(CallError::Microsoft(error)) => Err(format!(
            "{error}: {}",
            services::mailboxes::explain_app_token_refusal(&error)
        )),
        Err(error) => Err(format!("{error}. Try again in a minute.")),
    }
}

/// One line for the list page: what the last test found.
fn test_summary(outcome: &TestOutcome) -> String {
    let Some(review) = &outcome.review else {
        return match (&outcome.error, &outcome.advice) {
            (Some(error), Some(advice)) => format!("{error}: {}", advice.title),
            (_, Some(advice)) => advice.title.to_owned(),
            (_, None) => "Failed".into(),
        };
    };
    let grant = match &outcome.exchange {
        Some(Ok(grant)) => Some(grant),
        _ => None,
    };
    let mut missing = review.missing_with_mailboxes();
    missing.extend(
        grant
            .iter()
            .flat_map(|grant| grant.review.missing_with_mailboxes()),
    );
    if !missing.is_empty() {
        return format!("Missing: {}", missing.join("; "));
    }
    if !outcome.ok {
        return match &outcome.exchange {
            Some(Err(refused)) => format!("No Exchange Online token: {refused}"),
            _ => "Failed".into(),
        };
    }
    let granted = if review.granted.is_empty() {
        "none".to_owned()
    } else {
        review.granted.join(", ")
    };
    let exchange = match grant {
        Some(grant) if !grant.review.granted.is_empty() => {
            format!("; Exchange Online: {}", grant.review.granted.join(", "))
        }
        _ => String::new(),
    };
    let unused = if review.unused {
        "; no mailbox uses it yet"
    } else {
        ""
    };
    format!("Granted: {granted}{exchange}{unused}")
}

#[derive(Deserialize)]
pub struct MailboxForm {
    #[serde(default)]
    mailbox: String,
}

/// "Check mailbox access": the in-portal twin of Test-ApplicationAccessPolicy.
pub async fn check_mailbox(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<MailboxForm>,
) -> Result<Response, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    let mut page = show_page(&state, &ctx, &credential).await?;
    page.mailbox = form.mailbox.clone();
    let mailbox = match crate::domain::EmailAddress::parse(&form.mailbox) {
        Ok(mailbox) => mailbox,
        Err(message) => {
            page.errors = FieldErrors::single("mailbox", message);
            return Ok(Rejected(page).into_response());
        }
    };
    let proof = services::graph_credentials::open(&state, &ctx.tenant.id, &credential).await?;
    let now = state.clock.now();
    match state
        .microsoft
        .check_mailbox(&proof.credentials(&credential), mailbox.as_str(), now)
        .await
    {
        Ok(access) => page.mailbox_result = Some((access, mailbox.to_string())),
        Err(CallError::Microsoft(error)) => page.test = Some(explain(&state, &credential, *error)),
        Err(error) => {
            tracing::warn!(error = %error, "mailbox check could not reach Microsoft");
            page.test = Some(unreachable());
        }
    }
    Ok(page.into_response())
}

/// Deletes a credential no mailbox uses; otherwise lists the mailboxes in the way.
pub async fn delete(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let credential = load(&state, &ctx, &id).await?;
    match graph_credentials::delete(&state.db, &ctx.tenant.id, &id).await {
        Ok(()) => {}
        Err(SaveError::InUse) => {
            let mut page = show_page(&state, &ctx, &credential).await?;
            page.in_use_by = mailboxes::using_credential(&state.db, &ctx.tenant.id, &id).await?;
            return Ok(Rejected(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    state.microsoft.forget_tokens(&id);
    ctx.audit(
        &state,
        AuditAction::GraphCredentialDeleted,
        &credential.name,
        "",
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path("/external-apis")).into_response())
}
