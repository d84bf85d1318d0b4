//! The "Sign in with Microsoft" settings page.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Query, TenantCtx};
use super::microsoft_sign_in::redirect_uri;
use super::{Layout, changed_meanwhile, format_time};
use crate::app::AppState;
use crate::domain::{
    AuditAction, CONSUMERS_DIRECTORY, ClientId, Cloud, DirectoryId, FieldErrors,
    PERSONAL_ACCOUNTS_DIRECTORY,
};
use crate::microsoft::CallError;
use crate::store::SaveError;
use crate::store::microsoft_sign_in::{
    self, SecretChange, SettingsUpdate, SignInSettings, secret_context,
};

#[derive(Template, WebTemplate)]
#[template(path = "microsoft/settings.html")]
pub struct SettingsPage {
    layout: Layout,
    slug: String,
    redirect_uri: String,
    form: SettingsForm,
    errors: FieldErrors,
    clouds: Vec<(&'static str, &'static str)>,
    has_secret: bool,
    secret_replaced_at: Option<String>,
    resolved_directory: Option<String>,
    saved: bool,
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
            version: settings.version,
        }
    }
}

fn page(
    state: &AppState,
    ctx: &TenantCtx,
    stored: Option<&SignInSettings>,
    form: SettingsForm,
    errors: FieldErrors,
    saved: bool,
) -> SettingsPage {
    SettingsPage {
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
        resolved_directory: stored
            .filter(|s| s.directory.as_deref().is_some_and(|d| d.contains('.')))
            .and_then(|s| s.directory_id)
            .map(|id| id.hyphenated().to_string()),
        saved,
        saved_now: None,
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    saved: Option<String>,
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
            ..SettingsForm::default()
        },
        SettingsForm::from_settings,
    );
    Ok(page(
        &state,
        &ctx,
        stored.as_ref(),
        form,
        FieldErrors::new(),
        query.saved.is_some(),
    ))
}

pub async fn save(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(mut form): Form<SettingsForm>,
) -> Result<Response, AppError> {
    let stored = microsoft_sign_in::get(&state.db, &ctx.tenant.id).await?;
    let mut errors = FieldErrors::new();
    let client_id = errors.check("client_id", ClientId::parse(&form.client_id));
    let directory = errors.check("directory", DirectoryId::parse_optional(&form.directory));
    let cloud = errors.check("cloud", Cloud::parse(&form.cloud));
    let auto_create = form.auto_create_agents.is_some();
    if auto_create && matches!(directory, Some(None)) {
        errors.add(
            "auto_create_agents",
            "Only with a Directory (tenant) ID: without one, anyone with a Microsoft account could create an agent.",
        );
    }
    let new_secret = form
        .client_secret
        .take()
        .filter(|secret| !secret.expose_secret().trim().is_empty());
    let (Some(client_id), Some(directory), Some(cloud), true) =
        (client_id, directory, cloud, errors.is_empty())
    else {
        return Ok(
            Rejected(page(&state, &ctx, stored.as_ref(), form, errors, false)).into_response(),
        );
    };

    let directory_id = match &directory {
        None => None,
        Some(directory) => match state.microsoft.resolve_directory(cloud, directory).await {
            // A domain such as outlook.com resolves to the personal accounts' directory.
            Ok(guid) if guid == CONSUMERS_DIRECTORY => {
                let errors = FieldErrors::single("directory", PERSONAL_ACCOUNTS_DIRECTORY);
                return Ok(
                    Rejected(page(&state, &ctx, stored.as_ref(), form, errors, false))
                        .into_response(),
                );
            }
            Ok(guid) => Some(guid),
            Err(error) => {
                let message = match error {
                    CallError::Microsoft(_) => {
                        "Microsoft knows no directory by this name. Copy the Directory (tenant) ID from the app's Overview page in Azure."
                    }
                    CallError::Unreachable(_) | CallError::Unexpected(_) => {
                        "Microsoft could not be reached to look up this domain. Try again, or enter the directory's GUID."
                    }
                };
                let errors = FieldErrors::single("directory", message);
                return Ok(
                    Rejected(page(&state, &ctx, stored.as_ref(), form, errors, false))
                        .into_response(),
                );
            }
        },
    };
    let secret = match (new_secret, form.remove_secret.is_some()) {
        (Some(secret), _) => SecretChange::Replace {
            sealed: state
                .config
                .secret_key
                .seal(&secret, &secret_context(&ctx.tenant.id)),
        },
        (None, true) => SecretChange::Remove,
        (None, false) => SecretChange::Keep,
    };
    let update = SettingsUpdate {
        client_id,
        directory: directory.as_ref().map(ToString::to_string),
        directory_id,
        cloud,
        enabled: form.enabled.is_some(),
        auto_create_agents: auto_create,
        secret,
    };
    match microsoft_sign_in::save(&state.db, &ctx.tenant.id, form.version, &update).await {
        Ok(()) => {}
        Err(SaveError::Stale) => {
            let current = microsoft_sign_in::get(&state.db, &ctx.tenant.id).await?;
            let form = SettingsForm {
                version: current.as_ref().map_or(0, |settings| settings.version),
                ..form
            };
            let errors = changed_meanwhile("these settings");
            let mut again = page(&state, &ctx, current.as_ref(), form, errors, false);
            again.saved_now = current.as_ref().map(describe);
            return Ok(Conflict(again).into_response());
        }
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
    Ok(Redirect::to(&ctx.path("/settings/microsoft-sign-in?saved=1")).into_response())
}

/// The saved settings in one line, for an admin whose save came second; never the secret.
fn describe(settings: &SignInSettings) -> String {
    format!(
        "Application (client) ID {}; Directory (tenant) ID {}; {}; {}; create agents on first \
         sign-in {}; client secret {}",
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
        if settings.client_secret_sealed.is_some() {
            "set"
        } else {
            "none"
        },
    )
}

/// What changed, for the audit log: names and public values only, never the secret.
fn describe_changes(before: Option<&SignInSettings>, after: &SettingsUpdate) -> String {
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
        changes.push(format!(
            "create agents on first sign-in {}",
            if after.auto_create_agents {
                "on"
            } else {
                "off"
            }
        ));
    }
    match after.secret {
        SecretChange::Replace { .. } => changes.push("client secret replaced".into()),
        SecretChange::Remove => changes.push("client secret removed".into()),
        SecretChange::Keep => {}
    }
    if changes.is_empty() {
        "saved without changes".into()
    } else {
        changes.join("; ")
    }
}
