//! A segment's mailboxes: Microsoft Graph ones pick a shared credential from External APIs;
//! IMAP, POP3 and SMTP ones carry their own server settings.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Path, Query, TenantCtx};
use super::graph_credentials::CredentialView;
use super::{Layout, changed_meanwhile, format_time};
use crate::app::{App, AppState};
use crate::domain::{
    AuditAction, Direction, EmailAddress, FieldErrors, MailProtocol, OAuthStatus, Security,
    parse_host, parse_name, parse_port,
};
use crate::mail::{self, Credential, ProbeOutcome, ServerSettings};
use crate::microsoft::CallError;
use crate::microsoft::errors::AdviceContext;
use crate::microsoft::graph::MailboxAccess;
use crate::services;
use crate::store::mailboxes::{
    self, Connection, Mailbox, MailboxFields, Server, ServerAuth, password_context,
};
use crate::store::segments::{self, Segment};
use crate::store::{SaveError, graph_credentials, oauth_connections};

/// A mailbox as a list row.
pub struct MailboxRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub protocol: &'static str,
    pub direction: &'static str,
    /// The Graph credential's name, or the server's host and port.
    pub reaches_through: String,
    pub enabled: bool,
    pub last_test: Option<(bool, String, String)>,
}

impl From<&Mailbox> for MailboxRow {
    fn from(mailbox: &Mailbox) -> Self {
        let reaches_through = match (&mailbox.graph_credential_name, &mailbox.server) {
            (Some(credential), _) => credential.clone(),
            (None, Some(server)) => format!("{}:{}", server.host, server.port),
            (None, None) => String::new(),
        };
        Self {
            id: mailbox.id.clone(),
            name: mailbox.name.clone(),
            email: mailbox.email.clone(),
            protocol: mailbox.protocol.label(),
            direction: mailbox.direction.label(),
            reaches_through,
            enabled: mailbox.enabled,
            last_test: mailbox
                .last_test
                .as_ref()
                .map(|(at, ok, summary)| (*ok, format_time(*at), summary.clone())),
        }
    }
}

/// What the admin typed; the password is never sent back.
#[derive(Deserialize)]
pub struct MailboxForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    direction: String,
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    graph_credential_id: String,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: String,
    #[serde(default)]
    security: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    authentication: String,
    #[serde(default)]
    oauth_connection_id: String,
    #[serde(default)]
    password: Option<SecretString>,
    #[serde(default)]
    enabled: Option<String>,
    /// The mailbox's version when the form was loaded (0 on the add form).
    #[serde(default)]
    version: i64,
}

impl Default for MailboxForm {
    fn default() -> Self {
        Self {
            name: String::new(),
            email: String::new(),
            direction: Direction::Both.as_str().into(),
            protocol: MailProtocol::Graph.as_str().into(),
            graph_credential_id: String::new(),
            host: String::new(),
            port: String::new(),
            security: Security::Tls.as_str().into(),
            username: String::new(),
            authentication: "password".into(),
            oauth_connection_id: String::new(),
            password: None,
            enabled: Some("on".into()),
            version: 0,
        }
    }
}

impl MailboxForm {
    fn of(mailbox: &Mailbox) -> Self {
        let server = mailbox.server.as_ref();
        Self {
            name: mailbox.name.clone(),
            email: mailbox.email.clone(),
            direction: mailbox.direction.as_str().into(),
            protocol: mailbox.protocol.as_str().into(),
            graph_credential_id: mailbox.graph_credential_id.clone().unwrap_or_default(),
            host: server.map(|s| s.host.clone()).unwrap_or_default(),
            port: server.map(|s| s.port.to_string()).unwrap_or_default(),
            security: server.map_or(Security::Tls, |s| s.security).as_str().into(),
            username: server.map(|s| s.username.clone()).unwrap_or_default(),
            authentication: if server.is_some_and(|s| s.oauth_connection_id.is_some()) {
                "oauth".into()
            } else {
                "password".into()
            },
            oauth_connection_id: server
                .and_then(|s| s.oauth_connection_id.clone())
                .unwrap_or_default(),
            password: None,
            enabled: mailbox.enabled.then(|| "on".into()),
            version: mailbox.version,
        }
    }

    fn without_password(self) -> Self {
        Self {
            password: None,
            ..self
        }
    }
}

/// Everything the mailbox form shows besides the values.
pub struct FormChoices {
    credentials: Vec<CredentialView>,
    /// The tenant's OAuth connections: id, name and status.
    oauth_connections: Vec<(String, String, &'static str)>,
    protocols: Vec<(&'static str, &'static str)>,
    directions: Vec<(&'static str, &'static str)>,
    securities: Vec<(&'static str, &'static str)>,
}

async fn form_choices(state: &App, ctx: &TenantCtx) -> Result<FormChoices, AppError> {
    let credentials = graph_credentials::list(&state.db, &ctx.tenant.id).await?;
    let oauth_connections = oauth_connections::list(&state.db, &ctx.tenant.id)
        .await?
        .into_iter()
        .map(|connection| {
            let status = match connection.status {
                OAuthStatus::Authenticated => "authenticated",
                OAuthStatus::NotAuthenticated => "not authenticated yet",
                OAuthStatus::NeedsReauthentication => "needs re-authentication",
            };
            (connection.id, connection.name, status)
        })
        .collect();
    Ok(FormChoices {
        oauth_connections,
        credentials: credentials
            .iter()
            .map(|credential| CredentialView::new(credential, state))
            .collect(),
        protocols: MailProtocol::ALL
            .iter()
            .map(|p| (p.as_str(), p.label()))
            .collect(),
        directions: Direction::ALL
            .iter()
            .map(|d| (d.as_str(), d.label()))
            .collect(),
        securities: Security::ALL
            .iter()
            .map(|s| (s.as_str(), s.label()))
            .collect(),
    })
}

/// Turns the form into settings to save, sealing a new password to this mailbox. Ids of
/// credentials are looked up in the signed-in tenant only, whatever the form posted.
async fn parse(
    state: &App,
    ctx: &TenantCtx,
    form: &mut MailboxForm,
    mailbox_id: &str,
    stored: Option<&Mailbox>,
) -> Result<Result<MailboxFields, FieldErrors>, AppError> {
    let mut errors = FieldErrors::new();
    let name = errors.check(
        "name",
        parse_name(&form.name, 100, "Enter a name, such as Support inbox."),
    );
    let email = errors.check("email", EmailAddress::parse(&form.email));
    let protocol = errors.check("protocol", MailProtocol::parse(&form.protocol));
    let direction = errors.check("direction", Direction::parse(&form.direction));
    if let (Some(direction), Some(protocol)) = (direction, protocol) {
        errors.check("direction", direction.check(protocol));
    }
    let new_password = form
        .password
        .take()
        .filter(|password| !password.expose_secret().is_empty());

    let connection = match protocol {
        None => None,
        Some(MailProtocol::Graph) => {
            match graph_credentials::get(&state.db, &ctx.tenant.id, &form.graph_credential_id)
                .await?
            {
                Some(credential) => Some(Connection::Graph {
                    credential_id: credential.id,
                }),
                None => {
                    errors.add(
                        "graph_credential_id",
                        "Choose one of your Graph credentials from External APIs.",
                    );
                    None
                }
            }
        }
        Some(protocol) => {
            let security = errors.check("security", Security::parse(&form.security));
            let host = errors.check(
                "host",
                parse_host(&form.host).and_then(|host| {
                    // A name is checked when it is resolved, before anything is sent.
                    match state.config.egress.check_literal(&host) {
                        Ok(()) => Ok(host),
                        Err(refused) => Err(refused.for_setting("Server")),
                    }
                }),
            );
            let port = security.and_then(|security| {
                errors.check("port", parse_port(&form.port, protocol, security))
            });
            let username = form.username.trim().to_owned();
            if username.is_empty() {
                errors.add(
                    "username",
                    "Enter the user name the server expects, often the email address.",
                );
            }
            if form.authentication == "oauth" && security == Some(Security::None) {
                errors.add(
                    "security",
                    "An OAuth token is a bearer credential: choose TLS or STARTTLS to use it.",
                );
            }
            let auth = if form.authentication == "oauth" {
                let connection =
                    oauth_connections::get(&state.db, &ctx.tenant.id, &form.oauth_connection_id)
                        .await?;
                match connection {
                    // A password left from before goes: no stale secret stays behind.
                    Some(connection) => Some(ServerAuth::OAuth {
                        connection_id: connection.id,
                    }),
                    None => {
                        errors.add(
                            "oauth_connection_id",
                            "Choose one of your OAuth connections.",
                        );
                        None
                    }
                }
            } else {
                // A stored password belongs to where it was entered for: it is kept only
                // while protocol, server, port, security and username stay the same.
                let moved_from = stored.and_then(|mailbox| {
                    let server = mailbox.server.as_ref()?;
                    server.password_sealed.as_ref()?;
                    Some(
                        [
                            ("Protocol", Some(mailbox.protocol) != Some(protocol)),
                            ("Server", host.as_deref() != Some(server.host.as_str())),
                            ("Port", port != Some(server.port)),
                            ("Security", security != Some(server.security)),
                            ("Username", username != server.username),
                        ]
                        .into_iter()
                        .filter(|(_, changed)| *changed)
                        .map(|(label, _)| label)
                        .collect::<Vec<_>>(),
                    )
                });
                match (&new_password, moved_from) {
                    (Some(password), _) => Some(ServerAuth::Password {
                        sealed: Some(
                            state
                                .config
                                .secret_key
                                .seal(password, &password_context(&ctx.tenant.id, mailbox_id)),
                        ),
                    }),
                    (None, Some(changed)) if changed.is_empty() => {
                        Some(ServerAuth::Password { sealed: None })
                    }
                    (None, Some(changed)) => {
                        errors.add(
                            "password",
                            format!(
                                "You changed the {}: the stored password was entered for the \
                                 old settings and is never sent anywhere else. Enter the \
                                 mailbox's password again.",
                                changed.join(", ")
                            ),
                        );
                        None
                    }
                    (None, None) => {
                        errors.add("password", "Enter the mailbox's password.");
                        None
                    }
                }
            };
            match (security, host, port, auth) {
                (Some(security), Some(host), Some(port), Some(auth)) => Some(Connection::Server {
                    host,
                    port,
                    security,
                    username,
                    auth,
                }),
                _ => None,
            }
        }
    };
    Ok(
        match (
            name,
            email,
            protocol,
            direction,
            connection,
            errors.is_empty(),
        ) {
            (Some(name), Some(email), Some(protocol), Some(direction), Some(connection), true) => {
                Ok(MailboxFields {
                    name,
                    email: email.to_string(),
                    direction,
                    protocol,
                    connection,
                    enabled: form.enabled.is_some(),
                })
            }
            _ => Err(errors),
        },
    )
}

/// One line for the audit log: what the mailbox reaches and how; never a password.
fn describe(fields: &MailboxFields) -> String {
    match &fields.connection {
        Connection::Graph { .. } => {
            format!("{}, {}", fields.protocol.label(), fields.direction.label())
        }
        Connection::Server {
            host,
            port,
            security,
            username,
            auth,
        } => format!(
            "{} {host}:{port} ({}), user {username}, {}, {}",
            fields.protocol.label(),
            security.label(),
            fields.direction.label(),
            match auth {
                ServerAuth::Password { sealed: Some(_) } => "new password",
                ServerAuth::Password { sealed: None } => "password kept",
                ServerAuth::OAuth { .. } => "OAuth 2.0",
            }
        ),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "mailboxes/new.html")]
pub struct NewPage {
    layout: Layout,
    slug: String,
    segment: Segment,
    form: MailboxForm,
    errors: FieldErrors,
    choices: FormChoices,
    password_hint: &'static str,
}

/// The password field's hint: whether leaving it empty keeps a stored one.
fn password_hint(has_password: bool) -> &'static str {
    if has_password {
        "A password is stored; leave empty to keep it."
    } else {
        "Stored encrypted; never shown again."
    }
}

async fn segment_of(state: &App, ctx: &TenantCtx, id: &str) -> Result<Segment, AppError> {
    segments::get(&state.db, &ctx.tenant.id, id)
        .await?
        .ok_or(AppError::NotFound)
}

pub async fn new(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, segment_id)): Path<(String, String)>,
) -> Result<NewPage, AppError> {
    Ok(NewPage {
        layout: ctx.layout("Add a mailbox", "segments"),
        slug: ctx.tenant.slug.clone(),
        segment: segment_of(&state, &ctx, &segment_id).await?,
        form: MailboxForm::default(),
        errors: FieldErrors::new(),
        choices: form_choices(&state, &ctx).await?,
        password_hint: password_hint(false),
    })
}

pub async fn create(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, segment_id)): Path<(String, String)>,
    Form(mut form): Form<MailboxForm>,
) -> Result<Response, AppError> {
    let segment = segment_of(&state, &ctx, &segment_id).await?;
    let id = mailboxes::new_mailbox_id();
    let fields = match parse(&state, &ctx, &mut form, &id, None).await? {
        Ok(fields) => fields,
        Err(errors) => {
            return Ok(Rejected(NewPage {
                layout: ctx.layout("Add a mailbox", "segments"),
                slug: ctx.tenant.slug.clone(),
                segment,
                form: form.without_password(),
                errors,
                choices: form_choices(&state, &ctx).await?,
                password_hint: password_hint(false),
            })
            .into_response());
        }
    };
    mailboxes::create(&state.db, &ctx.tenant.id, &segment.id, &id, &fields).await?;
    let detail = format!("in {}: {}", segment.name, describe(&fields));
    ctx.audit(
        &state,
        AuditAction::MailboxCreated,
        &fields.email,
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/mailboxes/{id}"))).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "mailboxes/show.html")]
pub struct ShowPage {
    layout: Layout,
    slug: String,
    mailbox: MailboxRow,
    segment_id: String,
    /// For the breadcrumb back to the mailbox's segment.
    segment_name: String,
    form: MailboxForm,
    errors: FieldErrors,
    choices: FormChoices,
    segments: Vec<Segment>,
    notice: Option<&'static str>,
    test: Option<(bool, String)>,
    password_hint: &'static str,
    /// The OAuth connection the mailbox signs in with, to authenticate from here.
    oauth_connection_id: Option<String>,
}

async fn load(state: &App, ctx: &TenantCtx, id: &str) -> Result<Mailbox, AppError> {
    mailboxes::get(&state.db, &ctx.tenant.id, id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn show_page(state: &App, ctx: &TenantCtx, mailbox: &Mailbox) -> Result<ShowPage, AppError> {
    let has_password = mailbox
        .server
        .as_ref()
        .is_some_and(|server| server.password_sealed.is_some());
    let segments = segments::list(&state.db, &ctx.tenant.id).await?;
    let segment_name = segments
        .iter()
        .find(|segment| segment.id == mailbox.segment_id)
        .map(|segment| segment.name.clone())
        .unwrap_or_default();
    Ok(ShowPage {
        layout: ctx.layout(mailbox.name.clone(), "segments"),
        slug: ctx.tenant.slug.clone(),
        mailbox: MailboxRow::from(mailbox),
        segment_id: mailbox.segment_id.clone(),
        segment_name,
        form: MailboxForm::of(mailbox),
        errors: FieldErrors::new(),
        choices: form_choices(state, ctx).await?,
        segments,
        notice: None,
        test: None,
        password_hint: password_hint(has_password),
        oauth_connection_id: mailbox
            .server
            .as_ref()
            .and_then(|server| server.oauth_connection_id.clone()),
    })
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
    let mailbox = load(&state, &ctx, &id).await?;
    let mut page = show_page(&state, &ctx, &mailbox).await?;
    page.notice = match query.done.as_deref() {
        Some("saved") => Some("Mailbox saved."),
        Some("moved") => Some("Mailbox moved."),
        _ => None,
    };
    Ok(page)
}

pub async fn update(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(mut form): Form<MailboxForm>,
) -> Result<Response, AppError> {
    let mailbox = load(&state, &ctx, &id).await?;
    let fields = match parse(&state, &ctx, &mut form, &id, Some(&mailbox)).await? {
        Ok(fields) => fields,
        Err(errors) => {
            let mut page = show_page(&state, &ctx, &mailbox).await?;
            page.form = form.without_password();
            page.errors = errors;
            return Ok(Rejected(page).into_response());
        }
    };
    match mailboxes::update(&state.db, &ctx.tenant.id, &id, form.version, &fields).await {
        Ok(()) => {}
        Err(SaveError::Stale) => {
            let current = load(&state, &ctx, &id).await?;
            let mut page = show_page(&state, &ctx, &current).await?;
            page.form = MailboxForm {
                version: current.version,
                ..form.without_password()
            };
            page.errors = changed_meanwhile("this mailbox");
            return Ok(Conflict(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    ctx.audit(
        &state,
        AuditAction::MailboxChanged,
        &fields.email,
        &describe(&fields),
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/mailboxes/{id}?done=saved"))).into_response())
}

#[derive(Deserialize)]
pub struct MoveForm {
    #[serde(default)]
    segment_id: String,
    /// The mailbox's version when the page was loaded.
    #[serde(default)]
    version: i64,
}

pub async fn move_to(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
    Form(form): Form<MoveForm>,
) -> Result<Response, AppError> {
    let mailbox = load(&state, &ctx, &id).await?;
    let Some(target) = segments::get(&state.db, &ctx.tenant.id, &form.segment_id).await? else {
        let mut page = show_page(&state, &ctx, &mailbox).await?;
        page.form.version = form.version;
        page.errors = FieldErrors::single("segment_id", "Choose one of your segments.");
        return Ok(Rejected(page).into_response());
    };
    match mailboxes::move_to(&state.db, &ctx.tenant.id, &id, form.version, &target.id).await {
        Ok(()) => {}
        Err(SaveError::Stale) => {
            let current = load(&state, &ctx, &id).await?;
            let mut page = show_page(&state, &ctx, &current).await?;
            page.errors = changed_meanwhile("this mailbox");
            return Ok(Conflict(page).into_response());
        }
        Err(other) => return Err(other.into()),
    }
    let detail = format!("to {}", target.name);
    ctx.audit(
        &state,
        AuditAction::MailboxMoved,
        &mailbox.email,
        &detail,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!("/mailboxes/{id}?done=moved"))).into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    ClientIp(ip): ClientIp,
    Path((_, id)): Path<(String, String)>,
) -> Result<Redirect, AppError> {
    let mailbox = load(&state, &ctx, &id).await?;
    if !mailboxes::delete(&state.db, &ctx.tenant.id, &id).await? {
        return Err(AppError::NotFound);
    }
    ctx.audit(
        &state,
        AuditAction::MailboxDeleted,
        &mailbox.email,
        &mailbox.name,
        ip,
    )
    .await?;
    Ok(Redirect::to(&ctx.path(&format!(
        "/segments/{}?done=deleted",
        mailbox.segment_id
    ))))
}

/// "Test connection": Graph mailboxes are checked with their credential's app token,
/// server mailboxes by really signing in. The result is kept for the lists.
pub async fn test(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id)): Path<(String, String)>,
) -> Result<ShowPage, AppError> {
    let mailbox = load(&state, &ctx, &id).await?;
    let (ok, message) = match (&mailbox.graph_credential_id, &mailbox.server) {
        (Some(credential_id), _) => test_graph(&state, &ctx, &mailbox, credential_id).await?,
        (None, Some(server)) => test_server(&state, &ctx, &mailbox, server).await?,
        (None, None) => (false, "This mailbox has no connection settings.".to_owned()),
    };
    mailboxes::record_test(&state.db, &ctx.tenant.id, &id, ok, &message).await?;
    let mailbox = load(&state, &ctx, &id).await?;
    let mut page = show_page(&state, &ctx, &mailbox).await?;
    page.test = Some((ok, message));
    Ok(page)
}

async fn test_graph(
    state: &App,
    ctx: &TenantCtx,
    mailbox: &Mailbox,
    credential_id: &str,
) -> Result<(bool, String), AppError> {
    let credential = graph_credentials::get(&state.db, &ctx.tenant.id, credential_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let proof = services::graph_credentials::open(state, &ctx.tenant.id, &credential).await?;
    let credentials = proof.credentials(&credential);
    let checked = state
        .microsoft
        .check_mailbox(&credentials, &mailbox.email, state.clock.now())
        .await;
    Ok(match checked {
        Ok(MailboxAccess::Granted) => (
            true,
            format!("Granted: {} can read {}.", credential.name, mailbox.email),
        ),
        Ok(MailboxAccess::Denied) => (
            false,
            format!(
                "Denied: Exchange refuses {} access to {} (an application access policy or RBAC scope excludes it).",
                credential.name, mailbox.email
            ),
        ),
        Ok(MailboxAccess::NotFound) => (
            false,
            format!("Not found: Microsoft 365 has no mailbox {}.", mailbox.email),
        ),
        Err(CallError::Microsoft(error)) => {
            let advice = error.advice(&AdviceContext {
                redirect_uri: "",
                confidential_client: true,
                certificate_page: None,
                admin_consent_url: None,
            });
            (
                false,
                format!("{error}: {}. {}", advice.title, advice.next_step),
            )
        }
        Err(error) => (false, format!("{error}. Try again in a minute.")),
    })
}

/// What a server mailbox signs in with, opened for one test.
enum Secret {
    Password(SecretString),
    OAuthToken(SecretString),
}

async fn test_server(
    state: &App,
    ctx: &TenantCtx,
    mailbox: &Mailbox,
    server: &Server,
) -> Result<(bool, String), AppError> {
    let secret = match (&server.oauth_connection_id, &server.password_sealed) {
        (Some(connection_id), _) => {
            match services::oauth_connections::access_token(state, &ctx.tenant.id, connection_id)
                .await?
            {
                Ok(token) => Secret::OAuthToken(token),
                Err(reason) => return Ok((false, reason)),
            }
        }
        (None, Some(sealed)) => Secret::Password(
            state
                .config
                .secret_key
                .open(sealed, &password_context(&ctx.tenant.id, &mailbox.id))?,
        ),
        (None, None) => {
            return Ok((false, "No password is stored for this mailbox.".to_owned()));
        }
    };
    let settings = ServerSettings {
        protocol: mailbox.protocol,
        host: &server.host,
        port: server.port,
        security: server.security,
        username: &server.username,
        credential: match &secret {
            Secret::Password(password) => Credential::Password(password),
            Secret::OAuthToken(token) => Credential::OAuthToken(token),
        },
    };
    Ok(match mail::probe(&settings, &state.mail_probe).await {
        ProbeOutcome::Connected { server_says } => (
            true,
            format!("Connected and signed in. The server says: {server_says}"),
        ),
        ProbeOutcome::Failed { stage, message } => {
            (false, format!("{} failed: {message}", stage.label()))
        }
    })
}
