//! A segment's mailboxes: Microsoft Graph ones pick a shared credential from External APIs;
//! IMAP, POP3 and SMTP ones carry their own server settings.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use serde::Deserialize;

use super::error::{AppError, Conflict, Rejected};
use super::extract::{AdminCtx, ClientIp, Form, Path, Query, TenantCtx};
use super::graph_credentials::CredentialView;
use super::mailbox_checks::{WatchedLine, summary as check_summary, watched_lines};
use super::{Layout, changed_meanwhile, format_time};
use crate::app::{App, AppState};
use crate::domain::{
    AuditAction, Direction, FieldErrors, MailProtocol, OAuthStatus, Security, SignInMethod,
};
use crate::services;
use crate::services::mailboxes::MailboxInput;
use crate::store::mailbox_checks;
use crate::store::mailboxes::{self, Connection, Mailbox, MailboxFields, Server, ServerAuth};
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
            (None, Some(server)) => match &server.app_credential_name {
                Some(credential) => format!(
                    "{}:{} · Microsoft 365 app {credential}",
                    server.host, server.port
                ),
                None => format!("{}:{}", server.host, server.port),
            },
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
    /// The Graph credential of "Microsoft 365 app (from External APIs)".
    #[serde(default)]
    app_credential_id: String,
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
            authentication: SignInMethod::Password.as_str().into(),
            oauth_connection_id: String::new(),
            app_credential_id: String::new(),
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
            authentication: server
                .map_or(SignInMethod::Password, sign_in_method)
                .as_str()
                .into(),
            oauth_connection_id: server
                .and_then(|s| s.oauth_connection_id.clone())
                .unwrap_or_default(),
            app_credential_id: server
                .and_then(|s| s.app_credential_id.clone())
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

/// How a saved server mailbox signs in.
fn sign_in_method(server: &Server) -> SignInMethod {
    if server.app_credential_id.is_some() {
        SignInMethod::MicrosoftApp
    } else if server.oauth_connection_id.is_some() {
        SignInMethod::OAuthConnection
    } else {
        SignInMethod::Password
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

/// Turns the form into settings to save (see [`services::mailboxes::parse_settings`]).
async fn parse(
    state: &App,
    ctx: &TenantCtx,
    form: &mut MailboxForm,
    mailbox_id: &str,
    stored: Option<&Mailbox>,
) -> Result<Result<MailboxFields, FieldErrors>, AppError> {
    let input = MailboxInput {
        name: &form.name,
        email: &form.email,
        direction: &form.direction,
        protocol: &form.protocol,
        graph_credential_id: &form.graph_credential_id,
        host: &form.host,
        port: &form.port,
        security: &form.security,
        username: &form.username,
        authentication: &form.authentication,
        oauth_connection_id: &form.oauth_connection_id,
        app_credential_id: &form.app_credential_id,
        password: form.password.take(),
        enabled: form.enabled.is_some(),
    };
    Ok(
        services::mailboxes::parse_settings(state, &ctx.tenant.id, input, mailbox_id, stored)
            .await?,
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
                ServerAuth::App { .. } => "Microsoft 365 app",
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
    /// This mailbox, when its background checks fail or it recently works again.
    watched_mailboxes: Vec<WatchedLine>,
    /// What its background checks found, in a sentence.
    check_summary: String,
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
    let mut watched_mailboxes =
        watched_lines(state, &ctx.tenant.id, Some(&mailbox.segment_id)).await?;
    watched_mailboxes.retain(|watched| watched.mailbox_id == mailbox.id);
    let check = mailbox_checks::get(&state.db, &ctx.tenant.id, &mailbox.id).await?;
    let check_summary = check_summary(
        mailbox.enabled,
        check.as_ref(),
        state.config.mailbox_check_interval,
    );
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
        watched_mailboxes,
        check_summary,
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
    // New settings deserve a fresh look: a Failing mailbox just fixed should not stay
    // Failing for an interval.
    services::mailbox_checks::check_soon(&state, &ctx.tenant.id, &id).await?;
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
    let moved = mailboxes::move_to(
        &state.db,
        &ctx.tenant.id,
        &id,
        form.version,
        &mailbox.segment_id,
        &target.id,
    );
    match moved.await {
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

/// "Test connection": the result shows here and is kept for the lists.
pub async fn test(
    State(state): State<AppState>,
    AdminCtx(ctx): AdminCtx,
    Path((_, id)): Path<(String, String)>,
) -> Result<ShowPage, AppError> {
    let mailbox = load(&state, &ctx, &id).await?;
    let result = services::mailboxes::test_connection(&state, &ctx.tenant.id, &mailbox).await?;
    let mailbox = load(&state, &ctx, &id).await?;
    let mut page = show_page(&state, &ctx, &mailbox).await?;
    page.test = Some(result);
    Ok(page)
}
