//! A segment's mailboxes: settings checked against the tenant's own Graph credentials and
//! OAuth connections, passwords sealed to their mailbox, and the secret a server mailbox
//! signs in with, opened for one use (a connection test or an alert).

use secrecy::{ExposeSecret as _, SecretString};

use crate::app::App;
use crate::domain::{
    Cloud, Direction, EmailAddress, FieldErrors, MailProtocol, PasswordDestination, Security,
    SignInMethod, keep_stored_password, parse_host, parse_name, parse_port,
};
use crate::mail::refusals::{self, SignedInWith};
use crate::mail::{self, Credential, ProbeOutcome, ServerSettings};
use crate::microsoft::errors::AdviceContext;
use crate::microsoft::graph::MailboxAccess;
use crate::microsoft::{CallError, MicrosoftError};
use crate::services::graph_credentials::OpenError;
use crate::store::mailboxes::{
    self, Connection, Mailbox, MailboxFields, SealedPassword, Server, ServerAuth,
};
use crate::store::tenants::TenantId;
use crate::store::{graph_credentials, oauth_connections};

/// The mailbox form as typed. Ids of credentials and connections are looked up in the
/// signed-in tenant only, whatever was posted.
pub struct MailboxInput<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub direction: &'a str,
    pub protocol: &'a str,
    pub graph_credential_id: &'a str,
    pub host: &'a str,
    pub port: &'a str,
    pub security: &'a str,
    pub username: &'a str,
    /// "oauth" signs in with an OAuth connection, "app" app-only with a Graph credential's
    /// app; anything else with a password.
    pub authentication: &'a str,
    pub oauth_connection_id: &'a str,
    /// The Graph credential whose app signs in app-only ("Microsoft 365 app").
    pub app_credential_id: &'a str,
    /// Empty when the admin typed none.
    pub password: Option<SecretString>,
    pub enabled: bool,
}

/// Turns the form into settings to save, sealing a new password to mailbox `mailbox_id`;
/// `stored` is the mailbox as saved before, when it exists.
pub async fn parse_settings(
    app: &App,
    tenant: &TenantId,
    input: MailboxInput<'_>,
    mailbox_id: &str,
    stored: Option<&Mailbox>,
) -> Result<Result<MailboxFields, FieldErrors>, sqlx::Error> {
    let mut errors = FieldErrors::new();
    let name = errors.check(
        "name",
        parse_name(input.name, 100, "Enter a name, such as Support inbox."),
    );
    let email = errors.check("email", EmailAddress::parse(input.email));
    let protocol = errors.check("protocol", MailProtocol::parse(input.protocol));
    let direction = errors.check("direction", Direction::parse(input.direction));
    if let (Some(direction), Some(protocol)) = (direction, protocol) {
        errors.check("direction", direction.check(protocol));
    }
    let connection = match protocol {
        None => None,
        Some(MailProtocol::Graph) => {
            graph_connection(app, tenant, input.graph_credential_id, &mut errors).await?
        }
        Some(protocol) => {
            let mailbox = ServerMailbox {
                id: mailbox_id,
                email: email.as_ref(),
                protocol,
            };
            server_connection(app, tenant, &input, &mailbox, stored, &mut errors).await?
        }
    };
    Ok(match (name, email, protocol, direction, connection) {
        (Some(name), Some(email), Some(protocol), Some(direction), Some(connection))
            if errors.is_empty() =>
        {
            Ok(MailboxFields {
                name,
                email: email.to_string(),
                direction,
                protocol,
                connection,
                enabled: input.enabled,
            })
        }
        _ => Err(errors),
    })
}

async fn graph_connection(
    app: &App,
    tenant: &TenantId,
    credential_id: &str,
    errors: &mut FieldErrors,
) -> Result<Option<Connection>, sqlx::Error> {
    Ok(
        match graph_credentials::get(&app.db, tenant, credential_id).await? {
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
        },
    )
}

/// The mailbox a server connection is parsed for.
struct ServerMailbox<'a> {
    id: &'a str,
    /// None when the address typed did not parse.
    email: Option<&'a EmailAddress>,
    protocol: MailProtocol,
}

async fn server_connection(
    app: &App,
    tenant: &TenantId,
    input: &MailboxInput<'_>,
    mailbox: &ServerMailbox<'_>,
    stored: Option<&Mailbox>,
    errors: &mut FieldErrors,
) -> Result<Option<Connection>, sqlx::Error> {
    let protocol = mailbox.protocol;
    let security = errors.check("security", Security::parse(input.security));
    let host = errors.check(
        "host",
        parse_host(input.host).and_then(|host| {
            // A name is checked when it is resolved, before anything is sent.
            match app.config.egress.check_literal(&host) {
                Ok(()) => Ok(host),
                Err(refused) => Err(refused.for_setting("Server")),
            }
        }),
    );
    let port = security
        .and_then(|security| errors.check("port", parse_port(input.port, protocol, security)));
    let method = SignInMethod::parse(input.authentication);
    // An app signs in as the mailbox itself: there is no other account to name.
    let username = match (method, mailbox.email) {
        (SignInMethod::MicrosoftApp, Some(email)) => email.to_string(),
        _ => input.username.trim().to_owned(),
    };
    if username.is_empty() && method != SignInMethod::MicrosoftApp {
        errors.add(
            "username",
            "Enter the user name the server expects, often the email address.",
        );
    }
    if method.sends_a_token() && security == Some(Security::None) {
        errors.add(
            "security",
            "An OAuth token is a bearer credential: choose TLS or STARTTLS to use it.",
        );
    }
    // A password left from before goes with any other choice: no stale secret stays behind.
    let auth = match method {
        SignInMethod::OAuthConnection => {
            match oauth_connections::get(&app.db, tenant, input.oauth_connection_id).await? {
                Some(connection) => match connection.purpose.check_fits(protocol) {
                    Ok(()) => Some(ServerAuth::OAuth {
                        connection_id: connection.id,
                    }),
                    Err(message) => {
                        errors.add("oauth_connection_id", message);
                        None
                    }
                },
                None => {
                    errors.add(
                        "oauth_connection_id",
                        "Choose one of your OAuth connections.",
                    );
                    None
                }
            }
        }
        SignInMethod::MicrosoftApp => {
            app_auth(
                app,
                tenant,
                input.app_credential_id,
                host.as_deref(),
                errors,
            )
            .await?
        }
        SignInMethod::Password => {
            let destination = PasswordDestination {
                protocol: Some(protocol),
                host: host.as_deref(),
                port,
                security,
                username: &username,
            };
            password_auth(app, tenant, input, mailbox.id, stored, &destination, errors)
        }
    };
    Ok(match (security, host, port, auth) {
        (Some(security), Some(host), Some(port), Some(auth)) => Some(Connection::Server {
            host,
            port,
            security,
            username,
            auth,
        }),
        _ => None,
    })
}

/// App-only sign-in with one of the tenant's Graph credentials, whose Exchange token goes
/// only to Exchange Online's own servers for the credential's cloud.
async fn app_auth(
    app: &App,
    tenant: &TenantId,
    credential_id: &str,
    host: Option<&str>,
    errors: &mut FieldErrors,
) -> Result<Option<ServerAuth>, sqlx::Error> {
    let Some(credential) = graph_credentials::get(&app.db, tenant, credential_id).await? else {
        errors.add(
            "app_credential_id",
            "Choose one of your Graph credentials from External APIs.",
        );
        return Ok(None);
    };
    if let Some(host) = host
        && !app
            .microsoft
            .is_exchange_online_host(credential.cloud, host)
    {
        errors.add("host", not_exchange_online(credential.cloud));
        return Ok(None);
    }
    Ok(Some(ServerAuth::App {
        credential_id: credential.id,
    }))
}

/// Why an app-only mailbox may not name this server.
fn not_exchange_online(cloud: Cloud) -> String {
    let domains: Vec<String> = cloud
        .exchange_online_domains()
        .iter()
        .map(|domain| format!("*.{domain}"))
        .collect();
    format!(
        "A Microsoft 365 app signs in only to Exchange Online's own servers ({}, {} cloud), \
         so its token never reaches another server: use outlook.office365.com for IMAP and \
         POP3, smtp.office365.com for SMTP.",
        domains.join(", "),
        cloud.label()
    )
}

/// A new password sealed to this mailbox, or the stored one kept while it still goes
/// where it was entered for.
fn password_auth(
    app: &App,
    tenant: &TenantId,
    input: &MailboxInput<'_>,
    mailbox_id: &str,
    stored: Option<&Mailbox>,
    destination: &PasswordDestination<'_>,
    errors: &mut FieldErrors,
) -> Option<ServerAuth> {
    let typed = input
        .password
        .as_ref()
        .filter(|password| !password.expose_secret().is_empty());
    if let Some(password) = typed {
        let sealed = SealedPassword::seal(&app.config.secret_key, tenant, mailbox_id, password);
        return Some(ServerAuth::Password {
            sealed: Some(sealed),
        });
    }
    let stored_destination = stored.and_then(|mailbox| {
        let server = mailbox.server.as_ref()?;
        server.password_sealed.as_ref()?;
        Some(PasswordDestination {
            protocol: Some(mailbox.protocol),
            host: Some(&server.host),
            port: Some(server.port),
            security: Some(server.security),
            username: &server.username,
        })
    });
    match keep_stored_password(stored_destination.as_ref(), destination) {
        Ok(()) => Some(ServerAuth::Password { sealed: None }),
        Err(message) => {
            errors.add("password", message);
            None
        }
    }
}

/// What a server mailbox signs in with, opened for one use.
pub enum ServerSecret {
    Password(SecretString),
    OAuthToken(SecretString),
    /// An app-only Exchange Online token: it signs in as the mailbox address.
    AppToken(SecretString),
}

impl ServerSecret {
    /// What kind of proof this is, to explain Exchange Online's refusals of it.
    pub fn signed_in_with(&self) -> SignedInWith {
        match self {
            Self::Password(_) => SignedInWith::Password,
            Self::OAuthToken(_) => SignedInWith::DelegatedToken,
            Self::AppToken(_) => SignedInWith::AppToken,
        }
    }

    /// `failure` followed by what Exchange Online's refusal in it means and what to do.
    pub fn explain(&self, failure: String, mailbox: &Mailbox) -> String {
        match refusals::explain(&failure, &mailbox.email, self.signed_in_with()) {
            Some(explained) => format!("{failure} {}", explained.sentence()),
            None => failure,
        }
    }

    /// The settings `mail` connects with: `server` of `mailbox`, signed in with this secret.
    pub fn settings<'a>(&'a self, mailbox: &'a Mailbox, server: &'a Server) -> ServerSettings<'a> {
        ServerSettings {
            protocol: mailbox.protocol,
            host: &server.host,
            port: server.port,
            security: server.security,
            username: match self {
                Self::AppToken(_) => &mailbox.email,
                Self::Password(_) | Self::OAuthToken(_) => &server.username,
            },
            credential: match self {
                Self::Password(password) => Credential::Password(password),
                Self::OAuthToken(token) | Self::AppToken(token) => Credential::OAuthToken(token),
            },
        }
    }
}

/// Opens the password of `server`, or a current access token of its OAuth connection
/// (renewed first when it is about to expire). `Err(reason)` says in words why there is
/// nothing to sign in with.
pub async fn open_server_secret(
    app: &App,
    tenant: &TenantId,
    mailbox: &Mailbox,
    server: &Server,
) -> Result<Result<ServerSecret, String>, sqlx::Error> {
    if let Some(credential_id) = &server.app_credential_id {
        return app_token(app, tenant, mailbox, server, credential_id).await;
    }
    Ok(
        match (&server.oauth_connection_id, &server.password_sealed) {
            (Some(connection_id), _) => {
                super::oauth_connections::access_token(app, tenant, connection_id)
                    .await?
                    .map(ServerSecret::OAuthToken)
            }
            (None, Some(sealed)) => sealed
                .open(&app.config.secret_key, tenant, &mailbox.id)
                .map(ServerSecret::Password)
                .map_err(|err| format!("The password of {} cannot be read: {err}.", mailbox.name)),
            (None, None) => Err(format!("No password is stored for {}.", mailbox.name)),
        },
    )
}

/// A current Exchange Online token of the mailbox's app (cached as Graph tokens are).
async fn app_token(
    app: &App,
    tenant: &TenantId,
    mailbox: &Mailbox,
    server: &Server,
    credential_id: &str,
) -> Result<Result<ServerSecret, String>, sqlx::Error> {
    let Some(credential) = graph_credentials::get(&app.db, tenant, credential_id).await? else {
        return Ok(Err(format!(
            "The Graph credential {} signs in with no longer exists.",
            mailbox.name
        )));
    };
    // Checked again at use: the operator's stand-in for Exchange Online may have changed.
    if !app
        .microsoft
        .is_exchange_online_host(credential.cloud, &server.host)
    {
        return Ok(Err(not_exchange_online(credential.cloud)));
    }
    let proof = match super::graph_credentials::open(app, tenant, &credential).await {
        Ok(proof) => proof,
        Err(OpenError::Database(error)) => return Err(error),
        Err(error) => {
            return Ok(Err(format!(
                "The Graph credential {} cannot be used: {error}.",
                credential.name
            )));
        }
    };
    let token = app
        .microsoft
        .exchange_token(&proof.credentials(&credential), app.clock.now())
        .await;
    Ok(match token {
        Ok(token) => Ok(ServerSecret::AppToken(token.secret().clone())),
        Err(CallError::Microsoft(error)) => Err(format!(
            "Microsoft refused an Exchange Online token to the Graph credential {}: {error}: {}",
            credential.name,
            explain_app_token_refusal(&error)
        )),
        Err(error) => Err(format!("{error}. Try again in a minute.")),
    })
}

/// Why a connection test could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("the Graph credential cannot be used: {0}")]
    Credential(#[from] OpenError),
    #[error("the mailbox's Graph credential no longer exists")]
    NoCredential,
}

/// "Test connection": a Graph mailbox is checked with its credential's app token, a server
/// mailbox by really signing in. The result is kept for the lists; `(ok, what happened)`.
pub async fn test_connection(
    app: &App,
    tenant: &TenantId,
    mailbox: &Mailbox,
) -> Result<(bool, String), TestError> {
    let (ok, message) = match (&mailbox.graph_credential_id, &mailbox.server) {
        (Some(credential_id), _) => test_graph(app, tenant, mailbox, credential_id).await?,
        (None, Some(server)) => test_server(app, tenant, mailbox, server).await?,
        (None, None) => (false, "This mailbox has no connection settings.".to_owned()),
    };
    mailboxes::record_test(&app.db, tenant, &mailbox.id, ok, &message).await?;
    Ok((ok, message))
}

async fn test_graph(
    app: &App,
    tenant: &TenantId,
    mailbox: &Mailbox,
    credential_id: &str,
) -> Result<(bool, String), TestError> {
    let credential = graph_credentials::get(&app.db, tenant, credential_id)
        .await?
        .ok_or(TestError::NoCredential)?;
    let proof = super::graph_credentials::open(app, tenant, &credential).await?;
    let checked = app
        .microsoft
        .check_mailbox(
            &proof.credentials(&credential),
            &mailbox.email,
            app.clock.now(),
        )
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
        Err(CallError::Microsoft(error)) => (
            false,
            format!("{error}: {}", explain_app_token_refusal(&error)),
        ),
        Err(error) => (false, format!("{error}. Try again in a minute.")),
    })
}

/// Microsoft's refusal of a Graph credential's app token, in plain words and a next step.
pub fn explain_app_token_refusal(error: &MicrosoftError) -> String {
    let advice = error.advice(&AdviceContext {
        redirect_uri: "",
        confidential_client: true,
        certificate_page: None,
        admin_consent_url: None,
    });
    format!("{}. {}", advice.title, advice.next_step)
}

async fn test_server(
    app: &App,
    tenant: &TenantId,
    mailbox: &Mailbox,
    server: &Server,
) -> Result<(bool, String), TestError> {
    let secret = match open_server_secret(app, tenant, mailbox, server).await? {
        Ok(secret) => secret,
        Err(reason) => return Ok((false, reason)),
    };
    let settings = secret.settings(mailbox, server);
    Ok(match mail::probe(&settings, &app.mail_probe).await {
        ProbeOutcome::Connected { server_says } => (
            true,
            format!("Connected and signed in. The server says: {server_says}"),
        ),
        ProbeOutcome::Failed { stage, message } => (
            false,
            secret.explain(format!("{} failed: {message}", stage.label()), mailbox),
        ),
    })
}
