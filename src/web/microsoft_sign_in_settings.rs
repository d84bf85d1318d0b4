//! The "Sign in with Microsoft" settings page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::certificates::{CertificateFile, CertificateView, RenewForm, VersionForm, admin};
use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Path, Query, TenantCtx};
use super::microsoft_sign_in::redirect_uri;
use super::{Layout, changed_meanwhile, format_time};
use crate::app::{App, AppState};
use crate::domain::{
    AuditAction, AuthMethod, CERTIFICATE_VALIDITY_MONTHS, CONSUMERS_DIRECTORY, CertificateOnSave,
    ClientId, Cloud, CurrentProof, DirectoryId, ExpiryStatus, FieldErrors,
    PERSONAL_ACCOUNTS_DIRECTORY, SecretOnSave, StoredSecret, certificate_on_save,
    parse_certificate_validity, secret_expiry_on_save, secret_on_save,
};
use crate::microsoft::errors::AdviceContext;
use crate::microsoft::{Advice, CallError};
use crate::services::certificate_lifecycle::{
    self, CertificateOwner, LifecycleError, SealedCertificate, Switch, sign_in_common_name,
};
use crate::store::SaveError;
use crate::store::certificates::{self, Owner, OwnerKind, Slot};
use crate::store::microsoft_sign_in::{
    self, CredentialChange, SealedSignInSecret, SecretChange, SettingsUpdate, SignInSettings,
};

/// Certificates Portico generates are valid this long unless the admin chooses otherwise.
const DEFAULT_VALIDITY_MONTHS: &str = "12";

#[derive(Template, WebTemplate)]
#[template(path = "microsoft_sign_in/settings.html")]
pub struct SettingsPage {
    layout: Layout,
    slug: String,
    redirect_uri: String,
    form: SettingsForm,
    errors: FieldErrors,
    clouds: Vec<(&'static str, &'static str)>,
    has_secret: bool,
    secret_replaced_at: Option<String>,
    /// Beside "Secret expires on": the stored secret's date, or that it is unknown.
    secret_expiry_hint: String,
    /// The Application (client) ID saved, which the certificate goes to in Azure.
    saved_client_id: Option<String>,
    /// The certificate sign-in signs with (certificate settings).
    certificate: Option<CertificateView>,
    /// A renewal, or the certificate to replace the client secret, waiting for the admin
    /// to switch to it.
    next_certificate: Option<CertificateView>,
    validity_months: [u32; 3],
    resolved_directory: Option<String>,
    saved: bool,
    notice: Option<&'static str>,
    /// Why switching to the next certificate was refused.
    switch_refused: Option<Advice>,
    /// What is saved now, shown when someone else saved after this admin opened the page.
    saved_now: Option<String>,
}

/// What the admin typed. The client secret is never sent back to the browser.
#[derive(Deserialize, Default)]
pub struct SettingsForm {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    auto_create_agents: Option<String>,
    #[serde(default)]
    remove_secret: Option<String>,
    #[serde(default)]
    client_secret: Option<SecretString>,
    /// Required with a new secret; for the stored one, entered or corrected alone.
    #[serde(default)]
    secret_expires_on: String,
    /// `client_secret` (a secret, or none) or `certificate`.
    #[serde(default)]
    auth_method: String,
    /// How many months a certificate Portico generates is valid.
    #[serde(default)]
    valid_months: String,
    /// The settings' version when the form was loaded (0 before the first save).
    #[serde(default)]
    version: i64,
}

impl SettingsForm {
    fn from_settings(settings: &SignInSettings) -> Self {
        Self {
            client_id: settings.client_id.to_string(),
            directory: settings.directory.clone().unwrap_or_default(),
            cloud: settings.cloud.as_str().into(),
            enabled: settings.enabled.then(|| "on".into()),
            auto_create_agents: settings.auto_create_agents.then(|| "on".into()),
            remove_secret: None,
            client_secret: None,
            // Empty, not the stored date: a new secret's date is typed, never carried over.
            secret_expires_on: String::new(),
            auth_method: settings.auth_method.as_str().into(),
            valid_months: DEFAULT_VALIDITY_MONTHS.into(),
            version: settings.version,
        }
    }
}

async fn page(
    state: &App,
    ctx: &TenantCtx,
    stored: Option<&SignInSettings>,
    form: SettingsForm,
    errors: FieldErrors,
) -> Result<SettingsPage, AppError> {
    let now = state.clock.now();
    let uses_certificate = stored.is_some_and(|s| s.auth_method == AuthMethod::Certificate);
    let view = |slot| async move {
        // Settings with a client secret have no current certificate, at most a next one.
        if slot == Slot::Current && !uses_certificate {
            return Ok::<_, AppError>(None);
        }
        let stored =
            certificates::get(&state.db, &ctx.tenant.id, Owner::MicrosoftSignIn, slot).await?;
        Ok(stored.map(|certificate| CertificateView::new(&certificate, now)))
    };
    Ok(SettingsPage {
        layout: ctx.layout("Sign in with Microsoft", "settings"),
        slug: ctx.tenant.slug.clone(),
        redirect_uri: redirect_uri(state),
        form: SettingsForm {
            client_secret: None,
            ..form
        },
        errors,
        clouds: Cloud::ALL.iter().map(|c| (c.as_str(), c.label())).collect(),
        has_secret: stored.is_some_and(|s| s.client_secret_sealed.is_some()),
        secret_replaced_at: stored.and_then(|s| s.secret_replaced_at).map(format_time),
        secret_expiry_hint: secret_expiry_hint(stored, now),
        saved_client_id: stored.map(|s| s.client_id.to_string()),
        certificate: view(Slot::Current).await?,
        next_certificate: view(Slot::Next).await?,
        validity_months: CERTIFICATE_VALIDITY_MONTHS,
        resolved_directory: stored
            .filter(|s| s.directory.as_deref().is_some_and(|d| d.contains('.')))
            .and_then(|s| s.directory_id)
            .map(|id| id.hyphenated().to_string()),
        saved: false,
        notice: None,
        switch_refused: None,
        saved_now: None,
    })
}

/// What the page says of the stored secret's expiry, beside the date field.
fn secret_expiry_hint(stored: Option<&SignInSettings>, now: OffsetDateTime) -> String {
    match stored.filter(|s| s.client_secret_sealed.is_some()) {
        None => "The date Azure shows under Expires. Required with a client secret.".into(),
        Some(settings) => match settings.secret_expires_on {
            Some(date) => format!(
                "The stored secret expires on {date} ({}). Required with a new secret; to \
                 correct the stored one's, enter it alone.",
                ExpiryStatus::of(date, now).label().to_lowercase()
            ),
            None => "The stored secret's expiry is unknown: enter the date Azure shows under \
                     Expires (the secret need not be typed again). Required with a new secret."
                .into(),
        },
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
    done: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Query(query): Query<ShowQuery>,
) -> Result<SettingsPage, AppError> {
    let stored = microsoft_sign_in::get(&state.db, &ctx.tenant.id).await?;
    let form = stored.as_ref().map_or_else(
        || SettingsForm {
            cloud: Cloud::Global.as_str().into(),
            enabled: Some("on".into()),
            auth_method: AuthMethod::ClientSecret.as_str().into(),
            valid_months: DEFAULT_VALIDITY_MONTHS.into(),
            ..SettingsForm::default()
        },
        SettingsForm::from_settings,
    );
    let mut page = page(&state, &ctx, stored.as_ref(), form, FieldErrors::new()).await?;
    page.saved = query.saved.is_some();
    let uses_certificate = stored
        .as_ref()
        .is_some_and(|s| s.auth_method == AuthMethod::Certificate);
    page.notice = match query.done.as_deref() {
        Some("renewed") if !uses_certificate => Some(
            "A certificate is ready. Sign-in keeps using the client secret until you upload the certificate to the app in Azure and switch to it below.",
        ),
        Some("renewed") => Some(
            "A new certificate is ready. Upload it to the app in Azure, then switch to it below.",
        ),
        Some("switched") => Some(
            "Sign-in now uses the new certificate. Once nothing else uses the old certificate or client secret, remove it from the app in Azure.",
        ),
        _ => None,
    };
    Ok(page)
}

/// A save's form, parsed against the stored settings; the directory's GUID is still to be
/// resolved.
struct ParsedSave {
    client_id: ClientId,
    directory: Option<DirectoryId>,
    cloud: Cloud,
    enabled: bool,
    auto_create_agents: bool,
    current: CurrentProof,
    chosen: AuthMethod,
    /// A next certificate waits for the switch already.
    next_waiting: bool,
    /// How long a certificate generated by this save is valid.
    valid_for: Option<Duration>,
    new_secret: Option<SecretString>,
    /// The "Secret expires on" to store with the new or the stored secret; `None` keeps it.
    secret_expires_on: Option<Date>,
    remove_secret: bool,
}

impl ParsedSave {
    /// What happens to the certificates: a new one is not generated while the next one
    /// waits for the switch.
    fn certificate(&self) -> CertificateOnSave {
        match certificate_on_save(self.current, self.chosen) {
            CertificateOnSave::PrepareNext if self.next_waiting => CertificateOnSave::Keep,
            other => other,
        }
    }

    /// Whether the stored secret signs in until the switch to a certificate.
    fn prepares_next(&self) -> bool {
        certificate_on_save(self.current, self.chosen) == CertificateOnSave::PrepareNext
    }
}

/// Whether a next certificate waits for the switch already, and how long the one this save
/// generates is valid: one is generated only when the settings move to a certificate, and
/// not again while the next one waits.
async fn certificate_to_generate(
    state: &App,
    ctx: &TenantCtx,
    certificate: Option<CertificateOnSave>,
    valid_months: &str,
    errors: &mut FieldErrors,
) -> Result<(bool, Option<Duration>), sqlx::Error> {
    let prepares = certificate == Some(CertificateOnSave::PrepareNext);
    let next_waiting = prepares
        && certificates::get(
            &state.db,
            &ctx.tenant.id,
            Owner::MicrosoftSignIn,
            Slot::Next,
        )
        .await?
        .is_some();
    let generates = certificate == Some(CertificateOnSave::UseNew) || (prepares && !next_waiting);
    let valid_for = generates
        .then(|| errors.check("valid_months", parse_certificate_validity(valid_months)))
        .flatten();
    Ok((next_waiting, valid_for))
}

async fn parse_save(
    state: &App,
    ctx: &TenantCtx,
    stored: Option<&SignInSettings>,
    form: &mut SettingsForm,
) -> Result<Result<ParsedSave, FieldErrors>, AppError> {
    let mut errors = FieldErrors::new();
    let client_id = errors.check("client_id", ClientId::parse(&form.client_id));
    let directory = errors.check("directory", DirectoryId::parse_optional(&form.directory));
    let cloud = errors.check("cloud", Cloud::parse(&form.cloud));
    // A form without the choice (a page from before certificates) keeps the secret's way.
    let chosen = if form.auth_method.is_empty() {
        Some(AuthMethod::ClientSecret)
    } else {
        errors.check("auth_method", AuthMethod::parse(&form.auth_method))
    };
    let current = stored.map_or(CurrentProof::Nothing, |s| {
        CurrentProof::of(s.auth_method, s.client_secret_sealed.is_some())
    });
    let certificate = chosen.map(|chosen| certificate_on_save(current, chosen));
    let (next_waiting, valid_for) =
        certificate_to_generate(state, ctx, certificate, &form.valid_months, &mut errors).await?;
    let auto_create_agents = form.auto_create_agents.is_some();
    if auto_create_agents && matches!(directory, Some(None)) {
        errors.add(
            "auto_create_agents",
            "Only with a Directory (tenant) ID: without one, anyone with a Microsoft account could create an agent.",
        );
    }
    let new_secret = form
        .client_secret
        .take()
        .filter(|secret| !secret.expose_secret().trim().is_empty());
    let remove_secret = form.remove_secret.is_some();
    let stored_secret = StoredSecret::of(
        stored.is_some_and(|s| s.client_secret_sealed.is_some()),
        stored.and_then(|s| s.secret_expires_on),
    );
    let secret_expires_on = chosen.and_then(|chosen| {
        let (raw, today) = (&form.secret_expires_on, state.clock.now().date());
        let expiry = match secret_on_save(current, chosen, new_secret.is_some(), remove_secret) {
            // The secret goes, and its date with it.
            SecretOnSave::Drop => Ok(None),
            kept_or_replaced => {
                let replaced = kept_or_replaced == SecretOnSave::Replace;
                secret_expiry_on_save(raw, replaced, stored_secret, today)
            }
        };
        errors.check("secret_expires_on", expiry).flatten()
    });
    let (Some(client_id), Some(directory), Some(cloud), Some(chosen), true) =
        (client_id, directory, cloud, chosen, errors.is_empty())
    else {
        return Ok(Err(errors));
    };
    Ok(Ok(ParsedSave {
        client_id,
        directory,
        cloud,
        enabled: form.enabled.is_some(),
        auto_create_agents,
        current,
        chosen,
        next_waiting,
        valid_for,
        new_secret,
        secret_expires_on,
        remove_secret,
    }))
}

/// The directory's GUID, as Microsoft resolves what the admin typed.
async fn resolve_directory(
    state: &App,
    cloud: Cloud,
    directory: Option<&DirectoryId>,
) -> Result<Option<Uuid>, FieldErrors> {
    let Some(directory) = directory else {
        return Ok(None);
    };
    let message = match state.microsoft.resolve_directory(cloud, directory).await {
        // A domain such as outlook.com resolves to the personal accounts' directory.
        Ok(guid) if guid == CONSUMERS_DIRECTORY => PERSONAL_ACCOUNTS_DIRECTORY,
        Ok(guid) => return Ok(Some(guid)),
        Err(CallError::Microsoft(_)) => {
            "Microsoft knows no directory by this name. Copy the Directory (tenant) ID from the app's Overview page in Azure."
        }
        Err(CallError::Unreachable(_) | CallError::Unexpected(_) | CallError::Destination(_)) => {
            "Microsoft could not be reached to look up this domain. Try again, or enter the directory's GUID."
        }
    };
    Err(FieldErrors::single("directory", message))
}

/// The settings to store, with the certificate `generated` for them, if any.
fn settings_update<'a>(
    state: &App,
    ctx: &TenantCtx,
    parsed: ParsedSave,
    directory_id: Option<Uuid>,
    generated: Option<&'a SealedCertificate>,
) -> SettingsUpdate<'a> {
    let credential = match (parsed.certificate(), generated) {
        (CertificateOnSave::UseNew, Some(generated)) => {
            CredentialChange::UseCertificate(generated.to_store())
        }
        (CertificateOnSave::PrepareNext, Some(generated)) => {
            CredentialChange::AddNextCertificate(generated.to_store())
        }
        (CertificateOnSave::Drop, _) => CredentialChange::UseClientSecret,
        _ => CredentialChange::Keep,
    };
    let typed = parsed.new_secret.is_some();
    let secret = match (
        secret_on_save(parsed.current, parsed.chosen, typed, parsed.remove_secret),
        parsed.new_secret,
        parsed.secret_expires_on,
    ) {
        (SecretOnSave::Replace, Some(secret), Some(expires_on)) => SecretChange::Replace {
            sealed: SealedSignInSecret::seal(&state.config.secret_key, &ctx.tenant.id, "", &secret),
            expires_on,
        },
        (SecretOnSave::Drop, _, _) => SecretChange::Remove,
        (SecretOnSave::Keep, _, Some(expires_on)) => SecretChange::SetExpiry(expires_on),
        _ => SecretChange::Keep,
    };
    SettingsUpdate {
        client_id: parsed.client_id,
        directory: parsed.directory.as_ref().map(ToString::to_string),
        directory_id,
        cloud: parsed.cloud,
        enabled: parsed.enabled,
        auto_create_agents: parsed.auto_create_agents,
        secret,
        credential,
    }
}

/// The form again with what was wrong; a secret that was `typed` must be typed again.
async fn rejected(
    state: &App,
    ctx: &TenantCtx,
    stored: Option<&SignInSettings>,
    form: SettingsForm,
    mut errors: FieldErrors,
    typed: bool,
) -> Result<Response, AppError> {
    errors.ask_secret_again("client_secret", typed);
    Ok(Rejected(page(state, ctx, stored, form, errors).await?).into_response())
}

pub async fn save(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(mut form): Form<SettingsForm>,
) -> Result<Response, AppError> {
    let stored = microsoft_sign_in::get(&state.db, &ctx.tenant.id).await?;
    let typed = form
        .client_secret
        .as_ref()
        .is_some_and(|secret| !secret.expose_secret().trim().is_empty());
    let parsed = match parse_save(&state, &ctx, stored.as_ref(), &mut form).await? {
        Ok(parsed) => parsed,
        Err(errors) => return rejected(&state, &ctx, stored.as_ref(), form, errors, typed).await,
    };
    let directory_id =
        match resolve_directory(&state, parsed.cloud, parsed.directory.as_ref()).await {
            Ok(directory_id) => directory_id,
            Err(errors) => {
                return rejected(&state, &ctx, stored.as_ref(), form, errors, typed).await;
            }
        };
    let generated = match (parsed.certificate(), parsed.valid_for) {
        (CertificateOnSave::UseNew | CertificateOnSave::PrepareNext, Some(valid_for)) => {
            let (kind, name) = (OwnerKind::MicrosoftSignIn, sign_in_common_name(&ctx.tenant));
            Some(
                certificate_lifecycle::generate(&state, &ctx.tenant.id, kind, name, valid_for)
                    .await?,
            )
        }
        _ => None,
    };
    let done = if parsed.prepares_next() {
        "?saved=1&done=renewed"
    } else {
        "?saved=1"
    };
    let update = settings_update(&state, &ctx, parsed, directory_id, generated.as_ref());
    match microsoft_sign_in::save(&state.db, &ctx.tenant.id, form.version, &update).await {
        Ok(()) => {}
        Err(SaveError::Stale) => return saved_meanwhile(&state, &ctx, form, typed).await,
        Err(other) => return Err(other.into()),
    }
    let detail = describe_changes(stored.as_ref(), &update);
    ctx.audit(
        &state,
        AuditAction::MicrosoftSignInSettingsChanged,
        "Sign in with Microsoft",
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/settings/microsoft-sign-in{done}"))).into_response())
}

/// The settings page after this admin's save came second: what is saved now, and their
/// form again, at the version now stored.
async fn saved_meanwhile(
    state: &App,
    ctx: &TenantCtx,
    form: SettingsForm,
    typed: bool,
) -> Result<Response, AppError> {
    let current = microsoft_sign_in::get(&state.db, &ctx.tenant.id).await?;
    let form = SettingsForm {
        version: current.as_ref().map_or(0, |settings| settings.version),
        ..form
    };
    let mut errors = changed_meanwhile("these settings");
    errors.ask_secret_again("client_secret", typed);
    let mut again = page(state, ctx, current.as_ref(), form, errors).await?;
    again.saved_now = current.as_ref().map(describe);
    Ok(Conflict(again).into_response())
}

/// The saved settings in one line, for an admin whose save came second; never the secret.
fn describe(settings: &SignInSettings) -> String {
    format!(
        "Application (client) ID {}; Directory (tenant) ID {}; {}; {}; create agents on first \
         sign-in {}; {}",
        settings.client_id,
        settings
            .directory
            .as_deref()
            .unwrap_or("none (any Microsoft account)"),
        settings.cloud.label(),
        if settings.enabled {
            "enabled"
        } else {
            "disabled"
        },
        if settings.auto_create_agents {
            "on"
        } else {
            "off"
        },
        match (
            settings.auth_method,
            settings.client_secret_sealed.is_some()
        ) {
            (AuthMethod::Certificate, _) => "certificate",
            (AuthMethod::ClientSecret, true) => match settings.secret_expires_on {
                Some(_) => "client secret set",
                None => "client secret set, expiry unknown",
            },
            (AuthMethod::ClientSecret, false) => "no client secret",
        },
    )
}

/// What changed, for the audit log: names and public values only, never the secret.
fn describe_changes(before: Option<&SignInSettings>, after: &SettingsUpdate) -> String {
    let mut changes = describe_field_changes(before, after);
    changes.extend(describe_proof_changes(before, after));
    if changes.is_empty() {
        "saved without changes".into()
    } else {
        changes.join("; ")
    }
}

fn describe_field_changes(before: Option<&SignInSettings>, after: &SettingsUpdate) -> Vec<String> {
    let mut changes = Vec::new();
    let before_client = before.map(|b| b.client_id);
    if before_client != Some(after.client_id) {
        changes.push(format!("Application (client) ID {}", after.client_id));
    }
    if before.map(|b| b.directory.clone()) != Some(after.directory.clone()) {
        changes.push(format!(
            "Directory (tenant) ID {}",
            after
                .directory
                .as_deref()
                .unwrap_or("none (any Microsoft account)")
        ));
    }
    if before.map(|b| b.cloud) != Some(after.cloud) {
        changes.push(format!("cloud {}", after.cloud.label()));
    }
    if before.map(|b| b.enabled) != Some(after.enabled) {
        changes.push(if after.enabled { "enabled" } else { "disabled" }.into());
    }
    if before.map(|b| b.auto_create_agents) != Some(after.auto_create_agents) {
        let on = if after.auto_create_agents {
            "on"
        } else {
            "off"
        };
        changes.push(format!("create agents on first sign-in {on}"));
    }
    changes
}

/// What changed of how sign-in proves Portico: its certificate and its client secret.
fn describe_proof_changes(before: Option<&SignInSettings>, after: &SettingsUpdate) -> Vec<String> {
    let mut changes = Vec::new();
    let had_secret = before.is_some_and(|b| b.client_secret_sealed.is_some());
    match &after.credential {
        CredentialChange::UseCertificate(certificate) => changes.push(format!(
            "signs in with a certificate now: generated certificate {} valid until {}{}",
            certificate.thumbprint,
            format_time(certificate.not_after),
            if had_secret {
                "; client secret removed"
            } else {
                ""
            }
        )),
        CredentialChange::UseClientSecret => {
            changes.push("signs in with a client secret now: certificate removed".into());
        }
        CredentialChange::AddNextCertificate(certificate) => changes.push(format!(
            "generated certificate {} valid until {} to replace the client secret; sign-in \
             keeps using the client secret until the switch",
            certificate.thumbprint,
            format_time(certificate.not_after),
        )),
        CredentialChange::Keep => {}
    }
    match (&after.credential, &after.secret) {
        (CredentialChange::UseCertificate(_), _) | (_, SecretChange::Keep) => {}
        (_, SecretChange::Replace { expires_on, .. }) => {
            changes.push(format!("client secret replaced, expires on {expires_on}"));
        }
        (_, SecretChange::SetExpiry(expires_on)) => {
            let was = before
                .and_then(|b| b.secret_expires_on)
                .map_or_else(|| "unknown".to_owned(), |date| date.to_string());
            changes.push(format!("secret expires on {expires_on} (was {was})"));
        }
        (_, SecretChange::Remove) if had_secret => changes.push("client secret removed".into()),
        (_, SecretChange::Remove) => {}
    }
    changes
}

/// The tenant's settings, if any.
async fn saved_settings(state: &App, ctx: &TenantCtx) -> Result<SignInSettings, AppError> {
    microsoft_sign_in::get(&state.db, &ctx.tenant.id)
        .await?
        .ok_or(AppError::NotFound)
}

/// The settings page after a form of this page came second to another admin's save.
async fn changed_meanwhile_page(state: &App, ctx: &TenantCtx) -> Result<Response, AppError> {
    let current = microsoft_sign_in::get(&state.db, &ctx.tenant.id).await?;
    let form = current
        .as_ref()
        .map(SettingsForm::from_settings)
        .unwrap_or_default();
    let errors = changed_meanwhile("these settings");
    let page = page(state, ctx, current.as_ref(), form, errors).await?;
    Ok(Conflict(page).into_response())
}

/// "Renew certificate" (or, for settings with a client secret, "Use a certificate
/// instead"): generates the next certificate while the current certificate or secret keeps
/// working, so the admin can upload it to Azure before sign-in switches to it.
pub async fn renew_certificate(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(form): Form<RenewForm>,
) -> Result<Response, AppError> {
    let settings = saved_settings(&state, &ctx).await?;
    let current = CurrentProof::of(
        settings.auth_method,
        settings.client_secret_sealed.is_some(),
    );
    if !current.may_renew() {
        return Err(AppError::NotFound);
    }
    let valid_for = match parse_certificate_validity(&form.valid_months) {
        Ok(valid_for) => valid_for,
        Err(message) => {
            let errors = FieldErrors::single("valid_months", message);
            let form = SettingsForm::from_settings(&settings);
            let page = page(&state, &ctx, Some(&settings), form, errors).await?;
            return Ok(Rejected(page).into_response());
        }
    };
    let owner = CertificateOwner::microsoft_sign_in(&ctx.tenant, &settings);
    let admin = admin(&ctx, ip);
    match certificate_lifecycle::renew(&state, &admin, &owner, form.version, valid_for).await {
        Ok(()) => {}
        Err(LifecycleError::Save(SaveError::Stale)) => {
            return changed_meanwhile_page(&state, &ctx).await;
        }
        Err(other) => return Err(other.into()),
    }
    Ok(Redirect::to(&ctx.path("/settings/microsoft-sign-in?done=renewed")).into_response())
}

/// "Switch to the new certificate", from the current certificate or the client secret,
/// which goes in the same transaction. With a directory set, Portico first asks Microsoft for
/// an app-only token with it (which needs no permission), so a certificate not yet
/// uploaded to Azure never replaces one that works.
pub async fn switch_certificate(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(form): Form<VersionForm>,
) -> Result<Response, AppError> {
    let settings = saved_settings(&state, &ctx).await?;
    let owner = CertificateOwner::microsoft_sign_in(&ctx.tenant, &settings);
    match certificate_lifecycle::switch(&state, &admin(&ctx, ip), &owner, form.version).await {
        Ok(Switch::Done) => Ok(Redirect::to(
            &ctx.path("/settings/microsoft-sign-in?done=switched"),
        )
        .into_response()),
        Ok(Switch::Refused(error)) => {
            let form = SettingsForm::from_settings(&settings);
            let mut page = page(&state, &ctx, Some(&settings), form, FieldErrors::new()).await?;
            page.switch_refused = Some(switch_refusal(&state, error));
            Ok(Rejected(page).into_response())
        }
        Err(LifecycleError::Save(SaveError::Stale)) => changed_meanwhile_page(&state, &ctx).await,
        Err(other) => Err(other.into()),
    }
}

/// Why Microsoft would not take the next certificate, in the admin's words.
fn switch_refusal(state: &App, error: CallError) -> Advice {
    match error {
        CallError::Microsoft(error) => error.advice(&AdviceContext {
            redirect_uri: &redirect_uri(state),
            confidential_client: true,
            certificate_page: None,
            admin_consent_url: None,
        }),
        CallError::Unreachable(_) | CallError::Unexpected(_) | CallError::Destination(_) => {
            Advice {
                title: "Microsoft could not be reached",
                meaning: "Portico did not get a usable answer from Microsoft in time.".into(),
                next_step: "Try again in a minute.".into(),
            }
        }
    }
}

/// The sign-in certificate as a file: `current.cer`, `current.pem`, `next.cer` or
/// `next.pem`. Only the certificate, which is public.
pub async fn download_certificate(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, file)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let file = CertificateFile::parse(&file).ok_or(AppError::NotFound)?;
    let stored = certificates::get(&state.db, &ctx.tenant.id, Owner::MicrosoftSignIn, file.slot)
        .await?
        .ok_or(AppError::NotFound)?;
    file.download(&stored, &format!("portico-sign-in-{}", ctx.tenant.slug))
}
