//! "Test connection" for IMAP, POP3 and SMTP mailboxes: reach the server, secure the
//! connection, sign in and sign out, and say in plain words which step failed and what the
//! server said.
//!
//! The three line protocols are written by hand (a few commands each) rather than pulled in
//! as three client crates; TLS, base64 and PEM come from crates. Sending mail (expiry
//! alerts, `outgoing`) is lettre's.

mod connection;
mod imap;
mod oauth;
pub mod outgoing;
mod pop3;
pub mod refusals;
mod smtp;

use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::{ExposeSecret, SecretString};

use crate::domain::{MailProtocol, Security};
use crate::egress::EgressPolicy;
use oauth::TokenCredentials;

/// Where and how to reach one mail server. `Debug` shows the credential as `[REDACTED]`.
#[derive(Debug, Clone, Copy)]
pub struct ServerSettings<'a> {
    /// IMAP, POP3 or SMTP; Graph mailboxes have no server to test.
    pub protocol: MailProtocol,
    pub host: &'a str,
    pub port: u16,
    pub security: Security,
    pub username: &'a str,
    pub credential: Credential<'a>,
}

/// What proves the user name: a password, or an OAuth 2.0 access token (sent with the
/// XOAUTH2 mechanism, as Microsoft 365 and Google expect). `Debug` shows neither.
#[derive(Clone, Copy)]
pub enum Credential<'a> {
    Password(&'a SecretString),
    OAuthToken(&'a SecretString),
}

impl std::fmt::Debug for Credential<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password(_) => formatter.write_str("Password([REDACTED])"),
            Self::OAuthToken(_) => formatter.write_str("OAuthToken([REDACTED])"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// Bounds the DNS lookup and TCP connection together, the TLS handshake, and each read
    /// and write on its own: a slow but live server is not cut off halfway.
    pub timeout: Duration,
    /// Trusted in addition to the public web roots: a company's private CA, or a test's.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// What a tenant's mail servers may resolve to; checked before any byte is sent.
    pub egress: EgressPolicy,
}

/// The step of a connection test, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Dns,
    /// The egress policy: the server resolves inside the network Portico runs in.
    Destination,
    Connect,
    Tls,
    Greeting,
    StartTls,
    Authentication,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Self::Dns => "DNS lookup",
            Self::Destination => "Destination check",
            Self::Connect => "TCP connection",
            Self::Tls => "TLS certificate/handshake",
            Self::Greeting => "Server greeting",
            Self::StartTls => "STARTTLS upgrade",
            Self::Authentication => "Sign-in",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// Signed in and out again; `server_says` says so and quotes the server's greeting:
    /// `Signed in; the server said: "Dovecot (Debian) ready."`.
    Connected { server_says: String },
    /// `message` is in plain words and quotes the server where it said something.
    Failed { stage: Stage, message: String },
}

/// Connects, secures, signs in and signs out of the server in `settings`.
pub async fn probe(settings: &ServerSettings<'_>, options: &ProbeOptions) -> ProbeOutcome {
    let result = match settings.protocol {
        MailProtocol::Imap => imap::probe(settings, options).await,
        MailProtocol::Pop3 => pop3::probe(settings, options).await,
        MailProtocol::Smtp => smtp::probe(settings, options).await,
        MailProtocol::Graph => Err(Failure::new(
            Stage::Connect,
            "Microsoft Graph mailboxes have no mail server to connect to: test their credential instead.",
        )),
    };
    match result {
        Ok(server_says) => ProbeOutcome::Connected { server_says },
        Err(Failure { stage, message }) => {
            tracing::debug!(
                protocol = settings.protocol.as_str(),
                host = settings.host,
                port = settings.port,
                stage = stage.label(),
                "mail server test failed"
            );
            ProbeOutcome::Failed { stage, message }
        }
    }
}

/// Reads the certificates of a PEM file (a `--mail-ca-file`) to trust as extra roots.
pub fn load_pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("The certificate file is not valid PEM: {error}."))?;
    if certificates.is_empty() {
        return Err("The certificate file holds no \"BEGIN CERTIFICATE\" block.".into());
    }
    Ok(certificates)
}

/// What a successful probe reports, quoting the greeting (the part meant for people).
fn signed_in(greeting: &str) -> String {
    if greeting.is_empty() {
        "Signed in.".into()
    } else {
        format!("Signed in; the server said: \"{greeting}\"")
    }
}

/// Why a probe stopped; becomes [`ProbeOutcome::Failed`].
#[derive(Debug)]
struct Failure {
    stage: Stage,
    message: String,
}

impl Failure {
    fn new(stage: Stage, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
        }
    }
}

/// How a probe signs in, checked once before connecting.
enum SignIn<'a> {
    Password(Credentials<'a>),
    OAuth(TokenCredentials<'a>),
}

impl<'a> SignIn<'a> {
    fn of(settings: &ServerSettings<'a>) -> Result<Self, Failure> {
        match settings.credential {
            Credential::Password(password) => {
                Credentials::of(settings.username, password.expose_secret()).map(Self::Password)
            }
            Credential::OAuthToken(token) => {
                TokenCredentials::of(settings.username, token.expose_secret()).map(Self::OAuth)
            }
        }
    }
}

/// The user name and password, checked once for what no line protocol can carry: a line
/// break or NUL would end or split the command and let the rest be read as another one.
struct Credentials<'a> {
    username: &'a str,
    password: &'a str,
}

impl<'a> Credentials<'a> {
    fn of(username: &'a str, password: &'a str) -> Result<Self, Failure> {
        let unsendable = |text: &str| text.contains(['\r', '\n', '\0']);
        if unsendable(username) || unsendable(password) {
            return Err(Failure::new(
                Stage::Authentication,
                "The user name or password contains a line break or NUL character, which cannot be sent to a mail server.",
            ));
        }
        Ok(Self { username, password })
    }

    /// SASL PLAIN's message (RFC 4616): no authorization identity, user name, password.
    fn sasl_plain(&self) -> zeroize::Zeroizing<String> {
        use base64::Engine as _;
        let message = zeroize::Zeroizing::new(format!("\0{}\0{}", self.username, self.password));
        zeroize::Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(message.as_bytes()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_files_yield_their_certificates() {
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = rcgen::CertificateParams::new(vec!["ca.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pem = format!("{}\n{}", certificate.pem(), certificate.pem());

        let loaded = load_pem_certificates(pem.as_bytes()).unwrap();

        assert_eq!(
            loaded,
            vec![certificate.der().clone(), certificate.der().clone()]
        );
    }

    #[test]
    fn files_without_certificates_are_refused() {
        assert!(
            load_pem_certificates(b"")
                .unwrap_err()
                .contains("no \"BEGIN CERTIFICATE\"")
        );
        let truncated = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        assert!(
            load_pem_certificates(truncated)
                .unwrap_err()
                .contains("not valid PEM")
        );
    }

    #[test]
    fn credentials_with_line_breaks_are_refused_without_echoing_them() {
        let password = SecretString::from("hunter2\r\nDELE 1");
        let settings = ServerSettings {
            protocol: MailProtocol::Pop3,
            host: "mail.example",
            port: 995,
            security: Security::Tls,
            username: "agent",
            credential: Credential::Password(&password),
        };

        let failure = SignIn::of(&settings).err().unwrap();

        assert_eq!(failure.stage, Stage::Authentication);
        assert!(!failure.message.contains("hunter2"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn debug_shows_neither_password_nor_token() {
        let secret = SecretString::from("ya29.secret-token");
        for credential in [
            Credential::Password(&secret),
            Credential::OAuthToken(&secret),
        ] {
            let settings = ServerSettings {
                protocol: MailProtocol::Imap,
                host: "mail.example",
                port: 993,
                security: Security::Tls,
                username: "agent",
                credential,
            };

            let debug = format!("{settings:?}");

            assert!(!debug.contains("secret-token"), "{debug}");
            assert!(debug.contains("[REDACTED]"), "{debug}");
        }
    }

    #[test]
    fn sasl_plain_is_base64_of_nul_separated_credentials() {
        let credentials = Credentials {
            username: "tim",
            password: "tanstaaftanstaaf",
        };
        // The example of RFC 4616, section 4.
        assert_eq!(*credentials.sasl_plain(), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    }
}
