//! OAuth connections: delegated consent for IMAP, POP, SMTP or Graph mail, completed at
//! the one `/oauth/callback` every tenant shares.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use time::{Date, OffsetDateTime};
use tower_sessions::Session;

use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Path, Query, TenantCtx};
use super::session::{self, OAuthFlash, PendingOAuthConnection};
use super::{Layout, changed_meanwhile, format_time};
use crate::app::{App, AppState};
use crate::domain::{
    AuditAction, ClientId, Cloud, ExpiryStatus, FieldErrors, OAuthAuthority, OAuthPurpose,
    OAuthStatus, Role, StoredSecret, UserStatus, parse_expiry_date, parse_name,
    secret_expiry_on_save,
};
use crate::egress::EgressPolicy;
use crate::microsoft::errors::AdviceContext;
use crate::microsoft::{CallError, MicrosoftError};
use crate::services;
use crate::services::oauth_connections::AuthenticationError;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::oauth_connections::{
    self, ConnectionFields, OAuthConnection, SealedClientSecret, new_connection_id,
};
use crate::store::tenants::{self, Tenant};
use crate::store::users::{self, User};
use crate::store::{SaveError, mailboxes};

/// The redirect URI to register for delegated OAuth, the same for every tenant.
pub fn redirect_uri(app: &App) -> String {
    app.config.public_url("/oauth/callback")
}

/// A connection as the pages show it; never a token or secret.
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub directory: String,
    pub cloud: &'static str,
    pub purpose: &'static str,
    pub scope: String,
    pub has_secret: bool,
    /// The client secret's "Secret expires on" and how soon that is; `None` while unknown.
    pub secret_expiry: Option<(Date, ExpiryStatus)>,
    pub status: OAuthStatus,
    /// "Authenticated as ... since ..., token renewed at ..." and the like.
    pub status_text: String,
    /// Addresses of the mailboxes that sign in with it (known on the list page).
    pub mailboxes: Vec<String>,
}

impl ConnectionView {
    fn new(connection: &OAuthConnection, now: OffsetDateTime) -> Self {
        let status_text = match connection.status {
            OAuthStatus::NotAuthenticated => "Not authenticated".to_owned(),
            OAuthStatus::Authenticated => format!(
                "Authenticated as {} since {}{}",
                connection
                    .authenticated_as
                    .as_deref()
                    .unwrap_or("an unnamed account"),
                connection
                    .authenticated_at
                    .map(format_time)
                    .unwrap_or_default(),
                connection
                    .renewed_at
                    .filter(|renewed| Some(*renewed) != connection.authenticated_at)
                    .map(|renewed| format!(", token renewed at {}", format_time(renewed)))
                    .unwrap_or_default()
            ),
            OAuthStatus::NeedsReauthentication => format!(
                "Needs re-authentication: {}",
                connection
                    .status_reason
                    .as_deref()
                    .unwrap_or("the token no longer works")
            ),
        };
        Self {
            id: connection.id.clone(),
            name: connection.name.clone(),
            client_id: connection.client_id.to_string(),
            directory: connection.directory.clone(),
            cloud: connection.cloud.label(),
            purpose: connection.purpose.label(),
            scope: connection.scope.clone(),
            has_secret: connection.client_secret_sealed.is_some(),
            secret_expiry: connection
                .secret_expires_on
                .map(|date| (date, ExpiryStatus::of(date, now))),
            status: connection.status,
            status_text,
            mailboxes: Vec::new(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_connections/list.html")]
pub struct ListPage {
    layout: Layout,
    slug: String,
    connections: Vec<ConnectionView>,
}

pub async fn list(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
) -> Result<ListPage, AppError> {
    let connections = oauth_connections::list(&state.db, &ctx.tenant.id).await?;
    let mut usage = mailboxes::oauth_connection_usage(&state.db, &ctx.tenant.id).await?;
    let now = state.clock.now();
    Ok(ListPage {
        layout: ctx.layout("OAuth connections", "oauth"),
        slug: ctx.tenant.slug.clone(),
        connections: connections
            .iter()
            .map(|connection| ConnectionView {
                mailboxes: usage.remove(&connection.id).unwrap_or_default(),
                ..ConnectionView::new(connection, now)
            })
            .collect(),
    })
}

/// What the admin typed; the client secret is never sent back.
#[derive(Deserialize)]
pub struct ConnectionForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    directory: String,
    #[serde(default)]
    cloud: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    authorization_url: String,
    #[serde(default)]
    token_url: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    client_secret: Option<SecretString>,
    /// Required with a new secret; on the Edit form, entered alone for the stored one.
    #[serde(default)]
    secret_expires_on: String,
    /// The connection's version when the form was loaded (0 on the add form).
    #[serde(default)]
    version: i64,
}

impl Default for ConnectionForm {
    fn default() -> Self {
        Self {
            name: String::new(),
            client_id: String::new(),
            directory: String::new(),
            cloud: Cloud::Global.as_str().into(),
            purpose: OAuthPurpose::Imap.as_str().into(),
            authorization_url: String::new(),
            token_url: String::new(),
            scope: String::new(),
            client_secret: None,
            secret_expires_on: String::new(),
            version: 0,
        }
    }
}

impl ConnectionForm {
    fn of(connection: &OAuthConnection) -> Self {
        Self {
            name: connection.name.clone(),
            client_id: connection.client_id.to_string(),
            directory: connection.directory.clone(),
            cloud: connection.cloud.as_str().into(),
            purpose: connection.purpose.as_str().into(),
            authorization_url: connection.authorization_url.clone().unwrap_or_default(),
            token_url: connection.token_url.clone().unwrap_or_default(),
            scope: if connection.purpose == OAuthPurpose::Custom {
                connection.scope.clone()
            } else {
                String::new()
            },
            client_secret: None,
            // Empty, not the stored date: a new secret's date is typed, never carried over.
            secret_expires_on: String::new(),
            version: connection.version,
        }
    }

    fn without_secret(self) -> Self {
        Self {
            client_secret: None,
            ..self
        }
    }

    fn parse(&self, egress: &EgressPolicy) -> Result<ConnectionFields, FieldErrors> {
        let mut errors = FieldErrors::new();
        let name = errors.check(
            "name",
            parse_name(&self.name, 80, "Enter a name, such as Support IMAP."),
        );
        let client_id = errors.check("client_id", ClientId::parse(&self.client_id));
        let authority = errors.check("directory", OAuthAuthority::parse(&self.directory));
        let cloud = errors.check("cloud", Cloud::parse(&self.cloud));
        let purpose = errors.check("purpose", OAuthPurpose::parse(&self.purpose));
        let url = |field: &'static str, label: &str, raw: &str, errors: &mut FieldErrors| {
            let raw = raw.trim();
            if raw.is_empty() {
                return None;
            }
            match url::Url::parse(raw) {
                // The client secret and refresh tokens travel to these URLs: https only, and
                // not into the operator's network (a name is checked when it is resolved).
                Ok(url) if url.scheme() == "https" => match egress.check_url(&url) {
                    Ok(()) => Some(url.to_string()),
                    Err(refused) => {
                        errors.add(field, refused.for_setting(label));
                        None
                    }
                },
                _ => {
                    errors.add(
                        field,
                        "Enter an https:// URL, or leave it empty for Microsoft's.",
                    );
                    None
                }
            }
        };
        let authorization_url = url(
            "authorization_url",
            "Authorization URL",
            &self.authorization_url,
            &mut errors,
        );
        let token_url = url("token_url", "Token URL", &self.token_url, &mut errors);
        let scope = match purpose {
            Some(OAuthPurpose::Custom) => {
                let scope = self.scope.split_whitespace().collect::<Vec<_>>().join(" ");
                if scope.is_empty() || scope.len() > 1000 {
                    errors.add("scope", "Enter the scopes to ask for, separated by spaces (include offline_access).");
                }
                Some(scope)
            }
            Some(purpose) => purpose.scope().map(str::to_owned),
            None => None,
        };
        match (
            name,
            client_id,
            authority,
            cloud,
            purpose,
            scope,
            errors.is_empty(),
        ) {
            (
                Some(name),
                Some(client_id),
                Some(authority),
                Some(cloud),
                Some(purpose),
                Some(scope),
                true,
            ) => Ok(ConnectionFields {
                name,
                client_id,
                directory: authority.segment(),
                cloud,
                purpose,
                authorization_url,
                token_url,
                scope,
            }),
            _ => Err(errors),
        }
    }
}

/// Choices of the form's dropdowns.
pub struct FormChoices {
    clouds: Vec<(&'static str, &'static str)>,
    purposes: Vec<(&'static str, &'static str)>,
}

fn choices() -> FormChoices {
    FormChoices {
        clouds: Cloud::ALL.iter().map(|c| (c.as_str(), c.label())).collect(),
        purposes: OAuthPurpose::ALL
            .iter()
            .map(|p| (p.as_str(), p.label()))
            .collect(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_connections/new.html")]
pub struct NewPage {
    layout: Layout,
    slug: String,
    redirect_uri: String,
    form: ConnectionForm,
    errors: FieldErrors,
    choices: FormChoices,
}

fn new_page(state: &App, ctx: &TenantCtx, form: ConnectionForm, errors: FieldErrors) -> NewPage {
    NewPage {
        layout: ctx.layout("Add an OAuth connection", "oauth"),
        slug: ctx.tenant.slug.clone(),
        redirect_uri: redirect_uri(state),
        form: form.without_secret(),
        errors,
        choices: choices(),
    }
}

pub async fn new(State(state): State<AppState>, AdminCtx(ctx): AdminCtx) -> NewPage {
    new_page(&state, &ctx, ConnectionForm::default(), FieldErrors::new())
}

fn typed_secret(form: &mut ConnectionForm) -> Option<SecretString> {
    form.client_secret
        .take()
        .filter(|secret| !secret.expose_secret().trim().is_empty())
}

pub async fn create(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Form(mut form): Form<ConnectionForm>,
) -> Result<Response, AppError> {
    let secret = typed_secret(&mut form);
    let today = state.clock.now().date();
    let expiry = secret_expiry_on_save(
        &form.secret_expires_on,
        secret.is_some(),
        StoredSecret::None,
        today,
    );
    let (fields, expires_on) = match (form.parse(&state.config.egress), expiry) {
        (Ok(fields), Ok(expires_on)) => (fields, expires_on),
        (fields, expiry) => {
            let mut errors = fields.err().unwrap_or_default();
            errors.check("secret_expires_on", expiry);
            errors.ask_secret_again("client_secret", secret.is_some());
            return Ok(Rejected(new_page(&state, &ctx, form, errors)).into_response());
        }
    };
    let id = new_connection_id();
    // A typed secret comes with its date: `secret_expiry_on_save` requires it.
    let sealed = secret.zip(expires_on).map(|(secret, expires_on)| {
        let keys = &state.config.secret_key;
        let sealed = SealedClientSecret::seal(keys, &ctx.tenant.id, &id, &secret);
        (sealed, expires_on)
    });
    let client_secret = sealed.as_ref().map(|(sealed, date)| (sealed, *date));
    match oauth_connections::create(&state.db, &ctx.tenant.id, &id, &fields, client_secret).await {
        Ok(()) => {}
        Err(SaveError::NameTaken) => {
            let mut errors = FieldErrors::single("name", "Another connection has this name.");
            errors.ask_secret_again("client_secret", sealed.is_some());
            return Ok(Rejected(new_page(&state, &ctx, form, errors)).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    let secret_detail = client_secret
        .map(|(_, date)| format!(", client secret expires on {date}"))
        .unwrap_or_default();
    let detail = format!(
        "{}, Application (client) ID {}{secret_detail}",
        fields.purpose.label(),
        fields.client_id
    );
    ctx.audit(
        &state,
        AuditAction::OAuthConnectionCreated,
        &fields.name,
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/oauth-connections/{id}"))).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_connections/show.html")]
pub struct ShowPage {
    layout: Layout,
    slug: String,
    redirect_uri: String,
    connection: ConnectionView,
    form: ConnectionForm,
    errors: FieldErrors,
    choices: FormChoices,
    /// What "Update client secret" had typed in its "Secret expires on", apart from the
    /// Edit form's.
    replace_expires_on: String,
    flash: Option<OAuthFlash>,
}

async fn load(state: &App, ctx: &TenantCtx, id: &str) -> Result<OAuthConnection, AppError> {
    oauth_connections::get(&state.db, &ctx.tenant.id, id)
        .await?
        .ok_or(AppError::NotFound)
}

fn show_page(state: &App, ctx: &TenantCtx, connection: &OAuthConnection) -> ShowPage {
    ShowPage {
        layout: ctx.layout(connection.name.clone(), "oauth"),
        slug: ctx.tenant.slug.clone(),
        redirect_uri: redirect_uri(state),
        connection: ConnectionView::new(connection, state.clock.now()),
        form: ConnectionForm::of(connection),
        errors: FieldErrors::new(),
        choices: choices(),
        replace_expires_on: String::new(),
        flash: None,
    }
}

pub async fn show(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    session: Session,
    Path((_, id)): Path<(String, String)>,
) -> Result<ShowPage, AppError> {
    let connection = load(&state, &ctx, &id).await?;
    let mut page = show_page(&state, &ctx, &connection);
    page.flash = session::take_oauth_flash(&session, &id).await?;
    Ok(page)
}

/// The Edit form's client secret and its date: keys of their own, since the "Update client
/// secret" card on the same page has `client_secret` and `secret_expires_on` fields too.
const EDIT_SECRET_FIELD: &str = "edit_client_secret";
const EDIT_EXPIRY_FIELD: &str = "edit_secret_expires_on";

pub async fn update(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<ConnectionForm>,
) -> Result<Response, AppError> {
    let connection = load(&state, &ctx, &id).await?;
    let typed = form
        .client_secret
        .as_ref()
        .is_some_and(|secret| !secret.expose_secret().trim().is_empty());
    let rejected = |form: ConnectionForm, mut errors: FieldErrors| {
        errors.ask_secret_again(EDIT_SECRET_FIELD, typed);
        let mut page = show_page(&state, &ctx, &connection);
        page.form = form.without_secret();
        page.errors = errors;
        Rejected(page).into_response()
    };
    let fields = match form.parse(&state.config.egress) {
        Ok(fields) => fields,
        Err(errors) => return Ok(rejected(form, errors)),
    };
    let new_secret = match services::oauth_connections::client_secret_to_save(
        &state,
        &connection,
        &fields,
        form.client_secret.as_ref(),
    ) {
        Ok(new_secret) => new_secret,
        Err(message) => {
            return Ok(rejected(
                form,
                FieldErrors::single(EDIT_SECRET_FIELD, message),
            ));
        }
    };
    let stored = StoredSecret::of(
        connection.client_secret_sealed.is_some(),
        connection.secret_expires_on,
    );
    let today = state.clock.now().date();
    let expires_on =
        match secret_expiry_on_save(&form.secret_expires_on, new_secret.is_some(), stored, today) {
            Ok(expires_on) => expires_on,
            Err(message) => {
                return Ok(rejected(
                    form,
                    FieldErrors::single(EDIT_EXPIRY_FIELD, message),
                ));
            }
        };
    match oauth_connections::update(
        &state.db,
        &ctx.tenant.id,
        &id,
        form.version,
        &fields,
        new_secret.as_ref(),
        expires_on,
    )
    .await
    {
        Ok(()) => {}
        Err(SaveError::NameTaken) => {
            let errors = FieldErrors::single("name", "Another connection has this name.");
            return Ok(rejected(form, errors));
        }
        Err(SaveError::Stale) => {
            return changed_meanwhile_page(&state, &ctx, &id, form, typed).await;
        }
        Err(other) => return Err(other.into()),
    }
    let secret_detail = match (new_secret.is_some(), expires_on) {
        (true, Some(date)) => format!("client secret replaced, expires on {date}; "),
        (false, Some(date)) => format!(
            "secret expires on {date} (was {}); ",
            was(connection.secret_expires_on)
        ),
        (_, None) => String::new(),
    };
    let detail = format!(
        "{}; {secret_detail}authenticate again",
        fields.purpose.label()
    );
    ctx.audit(
        &state,
        AuditAction::OAuthConnectionChanged,
        &fields.name,
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/oauth-connections/{id}"))).into_response())
}

/// A stored "Secret expires on" as the audit log reads it.
fn was(expires_on: Option<Date>) -> String {
    expires_on.map_or_else(|| "unknown".to_owned(), |date| date.to_string())
}

/// The Edit form again, over the connection as someone else just saved it: nothing was
/// saved, and what this admin typed (but a secret) stays.
async fn changed_meanwhile_page(
    state: &App,
    ctx: &TenantCtx,
    id: &str,
    form: ConnectionForm,
    typed: bool,
) -> Result<Response, AppError> {
    let current = load(state, ctx, id).await?;
    let mut page = show_page(state, ctx, &current);
    page.form = ConnectionForm {
        version: current.version,
        ..form.without_secret()
    };
    page.errors = changed_meanwhile("this connection");
    page.errors.ask_secret_again(EDIT_SECRET_FIELD, typed);
    Ok(Conflict(page).into_response())
}

#[derive(Deserialize)]
pub struct SecretForm {
    client_secret: Option<SecretString>,
    #[serde(default)]
    secret_expires_on: String,
    /// The connection's version when the page was loaded.
    #[serde(default)]
    version: i64,
}

/// What "Update client secret" does: a new secret with its date, or the stored secret's
/// date alone.
enum SecretUpdate {
    Replace(SecretString, Date),
    Expiry(Date),
}

impl SecretForm {
    fn parse(self, stored_secret: bool, today: Date) -> Result<SecretUpdate, FieldErrors> {
        let secret = self
            .client_secret
            .filter(|secret| !secret.expose_secret().trim().is_empty());
        let date = self.secret_expires_on.trim();
        match (secret, stored_secret, date.is_empty()) {
            (Some(secret), _, _) => parse_expiry_date(date, today)
                .map(|date| SecretUpdate::Replace(secret, date))
                .map_err(|message| {
                    let mut errors = FieldErrors::single("secret_expires_on", message);
                    errors.ask_secret_again("client_secret", true);
                    errors
                }),
            (None, true, false) => parse_expiry_date(date, today)
                .map(SecretUpdate::Expiry)
                .map_err(|message| FieldErrors::single("secret_expires_on", message)),
            (None, true, true) => Err(FieldErrors::single(
                "client_secret",
                "Paste the new client secret's Value with its expiry date, or enter the stored \
                 secret's expiry date alone.",
            )),
            (None, false, _) => Err(FieldErrors::single(
                "client_secret",
                "Paste the new client secret's Value.",
            )),
        }
    }
}

/// "Update Client Secret", as XCALLY calls it: a new secret and its expiry date, or the
/// stored secret's date alone (which is not secret), entered without the secret.
pub async fn replace_secret(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<SecretForm>,
) -> Result<Response, AppError> {
    let connection = load(&state, &ctx, &id).await?;
    let (version, typed_date) = (form.version, form.secret_expires_on.clone());
    let stored_secret = connection.client_secret_sealed.is_some();
    let update = match form.parse(stored_secret, state.clock.now().date()) {
        Ok(update) => update,
        Err(errors) => {
            let mut page = show_page(&state, &ctx, &connection);
            page.form.version = version;
            page.replace_expires_on = typed_date;
            page.errors = errors;
            return Ok(Rejected(page).into_response());
        }
    };
    let tenant = &ctx.tenant.id;
    let (saved, action, detail) = match &update {
        SecretUpdate::Replace(secret, expires_on) => {
            let sealed = SealedClientSecret::seal(&state.config.secret_key, tenant, &id, secret);
            let saved = oauth_connections::replace_secret(
                &state.db,
                tenant,
                &id,
                version,
                &sealed,
                *expires_on,
            )
            .await;
            let detail = format!("new secret expires on {expires_on}");
            (saved, AuditAction::OAuthConnectionSecretReplaced, detail)
        }
        SecretUpdate::Expiry(expires_on) => {
            let saved =
                oauth_connections::set_secret_expiry(&state.db, tenant, &id, version, *expires_on)
                    .await;
            let detail = format!(
                "secret expires on {expires_on} (was {})",
                was(connection.secret_expires_on)
            );
            (
                saved,
                AuditAction::OAuthConnectionSecretExpiryChanged,
                detail,
            )
        }
    };
    match saved {
        Ok(()) => {}
        Err(SaveError::Stale) => {
            let current = load(&state, &ctx, &id).await?;
            let mut page = show_page(&state, &ctx, &current);
            page.replace_expires_on = typed_date;
            page.errors = changed_meanwhile("this connection");
            let typed = matches!(update, SecretUpdate::Replace(..));
            page.errors.ask_secret_again("client_secret", typed);
            return Ok(Conflict(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    ctx.audit(&state, action, &connection.name, &detail, ip)
        .await?;
    Ok(Redirect::to(&ctx.path(&format!("/oauth-connections/{id}"))).into_response())
}

#[derive(Deserialize)]
pub struct AuthenticateForm {
    /// The mailbox address, when started from a mailbox: Microsoft preselects it.
    #[serde(default)]
    login_hint: String,
}

/// "Authenticate": sends the admin's browser to the authorization endpoint.
pub async fn authenticate(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    session: Session,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<AuthenticateForm>,
) -> Result<Redirect, AppError> {
    let connection = load(&state, &ctx, &id).await?;
    let secret = services::oauth_connections::client_secret(&state, &connection)?;
    let delegated =
        services::oauth_connections::delegated_app(&state, &connection, secret.as_ref());
    let hint = Some(form.login_hint.trim()).filter(|hint| !hint.is_empty());
    let (url, flow) = state
        .microsoft
        .delegated_authorization_url(&delegated, &redirect_uri(&state), hint)
        .map_err(|e| AppError::Internal(Box::new(e)))?;
    let pending = PendingOAuthConnection {
        tenant_id: ctx.tenant.id.as_str().to_owned(),
        settings_version: connection.version,
        connection_id: connection.id,
        user_id: ctx.user.id.as_str().to_owned(),
        started_at: state.clock.now().unix_timestamp(),
        flow,
    };
    session::start_oauth_connection(&session, pending).await?;
    Ok(Redirect::to(url.as_str()))
}

pub async fn delete(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, AppError> {
    let connection = load(&state, &ctx, &id).await?;
    match oauth_connections::delete(&state.db, &ctx.tenant.id, &id).await {
        Ok(()) => {}
        Err(SaveError::InUse) => {
            let users = mailboxes::oauth_connection_usage(&state.db, &ctx.tenant.id)
                .await?
                .remove(&id)
                .unwrap_or_default();
            let mut page = show_page(&state, &ctx, &connection);
            page.errors = FieldErrors::single(
                "delete",
                format!(
                    "These mailboxes sign in with this connection: {}. Switch them to another connection or a password first.",
                    users.join(", ")
                ),
            );
            return Ok(Rejected(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    ctx.audit(
        &state,
        AuditAction::OAuthConnectionDeleted,
        &connection.name,
        "",
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path("/oauth-connections")).into_response())
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Template, WebTemplate)]
#[template(path = "oauth_connections/expired.html")]
pub struct ExpiredPage {
    layout: Layout,
}

/// The Authenticate this browser started, when the callback may complete it.
struct Authenticating {
    pending: PendingOAuthConnection,
    tenant: Tenant,
    admin: User,
    connection: OAuthConnection,
}

/// This browser's pending Authenticate (taken: it is single use), when `returned_state` is
/// its own, it has not expired, the same admin is still signed in and still an active admin,
/// and the connection's settings are those consented to.
async fn authenticating(
    state: &App,
    session: &Session,
    returned_state: &str,
) -> Result<Option<Authenticating>, AppError> {
    let pending = session::take_oauth_connection(session).await?;
    let signed_in = session::signed_in(session).await?;
    let (Some(pending), Some(signed_in)) = (pending, signed_in) else {
        return Ok(None);
    };
    let now = state.clock.now();
    let state_matches = crate::crypto::constant_time_eq(returned_state, &pending.flow.state);
    let same_admin =
        signed_in.tenant_id == pending.tenant_id && signed_in.user_id == pending.user_id;
    if !state_matches || pending.is_expired(now) || !same_admin || signed_in.is_expired(now) {
        return Ok(None);
    }
    let Some(tenant) = tenants::find_by_id(&state.db, &pending.tenant_id).await? else {
        return Ok(None);
    };
    let admin = users::get(&state.db, &tenant.id, &pending.user_id)
        .await?
        .filter(|user| user.role == Role::Admin && user.status == UserStatus::Active);
    let connection = oauth_connections::get(&state.db, &tenant.id, &pending.connection_id).await?;
    // Settings changed since Authenticate: the consent was for other settings.
    let connection = connection.filter(|connection| connection.version == pending.settings_version);
    Ok(match (admin, connection) {
        (Some(admin), Some(connection)) => Some(Authenticating {
            pending,
            tenant,
            admin,
            connection,
        }),
        _ => None,
    })
}

/// `/oauth/callback`, for every tenant. Its URL names no tenant: the tenant, the
/// connection and the admin come only from this browser's pending Authenticate, and must
/// all still hold.
pub async fn callback(
    State(state): State<AppState>,
    session: Session,
    ClientIp(ip): ClientIp,
    Query(query): Query<CallbackQuery>,
) -> Result<Response, AppError> {
    let expired = || {
        Rejected(ExpiredPage {
            layout: Layout::public("Authentication expired", String::new()),
        })
        .into_response()
    };
    let Some(returned_state) = query.state.as_deref() else {
        return Ok(expired());
    };
    let Some(Authenticating {
        pending,
        tenant,
        admin,
        connection,
    }) = authenticating(&state, &session, returned_state).await?
    else {
        return Ok(expired());
    };
    let page = format!("/t/{}/oauth-connections/{}", tenant.slug, connection.id);

    let Some(outcome) = finish(&state, &connection, &pending, &query).await? else {
        return Ok(expired());
    };
    let flash = match outcome {
        Ok(who) => {
            let detail = format!("authenticated as {who}");
            let event = NewAuditEvent {
                action: AuditAction::OAuthConnectionAuthenticated,
                actor_user_id: Some(admin.id.as_str()),
                actor: &admin.email,
                target: &connection.name,
                detail: &detail,
                ip: Some(ip),
            };
            audit::record(&state.db, &tenant.id, event).await?;
            OAuthFlash {
                connection_id: connection.id.clone(),
                ok: true,
                message: format!("Authenticated as {who}. Portico now renews the token by itself."),
            }
        }
        Err(message) => OAuthFlash {
            connection_id: connection.id.clone(),
            ok: false,
            message,
        },
    };
    session::set_oauth_flash(&session, flash).await?;
    Ok(Redirect::to(&page).into_response())
}

/// Completes the authentication with Microsoft's answer: `Ok(who)` signed in, or what went
/// wrong in words. `None` when the answer holds neither a code nor an error.
async fn finish(
    state: &App,
    connection: &OAuthConnection,
    pending: &PendingOAuthConnection,
    query: &CallbackQuery,
) -> Result<Option<Result<String, String>>, AppError> {
    Ok(Some(
        match (query.error.as_deref(), query.code.as_deref()) {
            (Some(error), _) => Err(explain(
                state,
                connection,
                &CallError::Microsoft(Box::new(MicrosoftError::from_redirect(
                    error,
                    query.error_description.as_deref(),
                ))),
            )),
            (None, Some(code)) => {
                match services::oauth_connections::complete_authentication(
                    state,
                    connection,
                    &redirect_uri(state),
                    code,
                    &pending.flow,
                )
                .await
                {
                    Ok(outcome) => outcome.map_err(|error| explain(state, connection, &error)),
                    Err(changed @ AuthenticationError::SettingsChanged) => Err(changed.to_string()),
                    Err(other) => return Err(AppError::Internal(Box::new(other))),
                }
            }
            (None, None) => return Ok(None),
        },
    ))
}

/// Microsoft's answer in plain words, with its code and references.
fn explain(state: &App, connection: &OAuthConnection, error: &CallError) -> String {
    match error {
        CallError::Microsoft(error) => {
            let consent = format!(
                "{}/{}/adminconsent?client_id={}",
                state.microsoft.login_base(connection.cloud),
                connection.directory,
                connection.client_id
            );
            let advice = error.advice(&AdviceContext {
                redirect_uri: &redirect_uri(state),
                confidential_client: connection.client_secret_sealed.is_some(),
                certificate_page: None,
                admin_consent_url: Some(&consent),
            });
            let code = error
                .code
                .map(|code| format!(" (AADSTS{code})"))
                .unwrap_or_default();
            let trace = error
                .trace_id
                .as_deref()
                .map(|trace| format!(" Trace ID: {trace}."))
                .unwrap_or_default();
            format!(
                "{}{code}. {} {}{trace}",
                advice.title, advice.meaning, advice.next_step
            )
        }
        CallError::Destination(refused) => {
            format!("{refused} Nothing was sent there, and nothing was stored.")
        }
        other => format!("{other}. Nothing was stored; try again."),
    }
}
