//! Sending a message by SMTP (expiry alerts): through the deployment's relay
//! (PORTICO_SMTP_URL), or through one of a tenant's own SMTP mailboxes with its password or
//! OAuth token. (A tenant's Graph mailboxes send with Graph's sendMail instead:
//! `Microsoft::send_mail`.) Sending is lettre's: unlike "Test connection", a message carries
//! headers, encodings and envelopes better left to a well-kept crate.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::{Credential, ProbeOptions, ServerSettings};
use crate::domain::Security;
use crate::egress::ResolveError;

/// A plain-text message to some recipients.
pub struct OutgoingMessage<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: String,
}

/// Where a message leaves Portico.
pub enum Route<'a> {
    /// PORTICO_SMTP_URL, in lettre's form: `smtps://user:password@host:465`,
    /// `smtp://user:password@host:587?tls=required` (STARTTLS), or `smtp://host:25` (no TLS).
    Relay(&'a SecretString),
    /// A tenant's SMTP mailbox, signed in as its "Test connection" does.
    Mailbox(ServerSettings<'a>),
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the message could not be made: {0}")]
    Message(String),
    #[error("the mail server settings are not usable: {0}")]
    Settings(String),
    #[error("sending failed: {0}")]
    Smtp(String),
    /// The server's name did not resolve, or resolved where tenants' settings may not reach.
    #[error("{0}")]
    Destination(#[from] ResolveError),
}

/// Sends `message` along `route`.
pub async fn send(
    route: Route<'_>,
    message: &OutgoingMessage<'_>,
    options: &ProbeOptions,
) -> Result<(), SendError> {
    let settings = |e: lettre::transport::smtp::Error| SendError::Settings(e.to_string());
    let transport: AsyncSmtpTransport<Tokio1Executor> = match route {
        Route::Relay(url) => AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
            .map_err(settings)?
            .timeout(Some(options.timeout))
            .build(),
        Route::Mailbox(server) => {
            let mut tls = TlsParameters::builder(server.host.to_owned());
            for root in &options.extra_roots {
                let certificate = Certificate::from_der(root.to_vec()).map_err(settings)?;
                tls = tls.add_root_certificate(certificate);
            }
            let tls = tls.build_rustls().map_err(settings)?;
            let (credentials, mechanisms) = match server.credential {
                Credential::Password(password) => (
                    Credentials::new(
                        server.username.to_owned(),
                        password.expose_secret().to_owned(),
                    ),
                    vec![Mechanism::Plain, Mechanism::Login],
                ),
                Credential::OAuthToken(token) => (
                    Credentials::new(server.username.to_owned(), token.expose_secret().to_owned()),
                    vec![Mechanism::Xoauth2],
                ),
            };
            // lettre is handed the address the egress policy checked, never the name to look
            // up again; TLS still verifies the certificate against the name.
            let addresses = options
                .egress
                .resolve(server.host, server.port, options.timeout)
                .await?;
            let checked = addresses
                .first()
                .map(|address| address.ip().to_string())
                .ok_or_else(|| ResolveError::NoAddresses(server.host.to_owned()))?;
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(checked)
                .port(server.port)
                .tls(match server.security {
                    Security::Tls => Tls::Wrapper(tls),
                    Security::StartTls => Tls::Required(tls),
                    Security::None => Tls::None,
                })
                .credentials(credentials)
                .authentication(mechanisms)
                .timeout(Some(options.timeout))
                .build()
        }
    };
    let invalid = |e: String| SendError::Message(e);
    let mut builder = Message::builder()
        .from(
            message
                .from
                .parse::<Mailbox>()
                .map_err(|e| invalid(e.to_string()))?,
        )
        .subject(message.subject)
        .header(ContentType::TEXT_PLAIN);
    for recipient in message.to {
        builder = builder.to(recipient
            .parse::<Mailbox>()
            .map_err(|e| invalid(e.to_string()))?);
    }
    // lettre picks the transfer encoding: 7bit, or quoted-printable for long lines (links).
    let email = builder
        .body(message.body.clone())
        .map_err(|e| invalid(e.to_string()))?;
    transport
        .send(email)
        .await
        .map(drop)
        .map_err(|e| SendError::Smtp(e.to_string()))
}
