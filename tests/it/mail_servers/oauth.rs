//! OAuth 2.0 (XOAUTH2) sign-in. The Dovecot and aiosmtpd of `servers` take passwords only,
//! so small responders here play Exchange Online's part: each checks the exact XOAUTH2
//! string, answers success for the right token, and refuses any other as Microsoft and
//! Google do, with a base64 JSON challenge, an empty line from the client, then NO or 535.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use portico::domain::{MailProtocol, Security};
use portico::mail::{ProbeOptions, Stage};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use super::probe::{Attempt, TIMEOUT, connected, failed_at, loopback_allowed, trusting_test_ca};
use super::servers::{USER, mail_servers};
use crate::support::serve_on_loopback;

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.right-token";
const WRONG_TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.expired-token";
/// What the right token's sign-in must send, decoded, spelled out rather than built.
const EXPECTED: &str = "user=agent@example.test\x01auth=Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.right-token\x01\x01";
/// The JSON of the refusal, base64-encoded in the challenge (`+ eyJzdGF0dXMiOiI0MDEiLC...`).
const REFUSAL: &str = r#"{"status":"401","schemes":"bearer","scope":"https://outlook.office.com/IMAP.AccessAsUser.All"}"#;

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// IMAP, with or without SASL-IR (the token on the AUTHENTICATE line).
    Imap {
        sasl_ir: bool,
    },
    Pop3,
    Smtp,
}

/// How the client sent its XOAUTH2 string, and the string decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Heard {
    pub(crate) form: Form,
    pub(crate) sasl: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// On the command line, as an initial response.
    OneLine,
    /// On its own line, after the server's `+` or `334`.
    AfterPrompt,
}

/// Decides whether a decoded XOAUTH2 string signs in.
type Check = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a responder's connection runs over: plain TCP, or TLS from the first byte.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A responder on 127.0.0.1 that accepts any number of connections.
pub(crate) struct Responder {
    pub(crate) port: u16,
    heard: mpsc::UnboundedReceiver<Heard>,
}

impl Responder {
    /// Accepts `expected` (a decoded XOAUTH2 string) and refuses anything else.
    async fn start(kind: Kind, expected: String) -> Self {
        Self::serve(kind, None, Arc::new(move |sasl| sasl == expected), None).await
    }

    /// Speaks TLS from the first byte with the mail servers' certificate (which Portico
    /// trusts through `--mail-ca-file`), and signs in whatever `check` accepts: as
    /// Exchange Online, which checks the token it is given, not one it knew beforehand.
    pub(crate) async fn over_tls(
        kind: Kind,
        check: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self::serve(kind, Some(tls_acceptor()), Arc::new(check), None).await
    }

    /// Over TLS, refuses every sign-in with `final_words` (after the challenge), as
    /// Exchange Online words its refusals: "535 5.7.139 ..." or "AUTHENTICATE failed.".
    pub(crate) async fn refusing_over_tls(kind: Kind, final_words: &str) -> Self {
        let refusal = Some(final_words.to_owned());
        Self::serve(kind, Some(tls_acceptor()), Arc::new(|_| false), refusal).await
    }

    async fn serve(
        kind: Kind,
        tls: Option<tokio_rustls::TlsAcceptor>,
        check: Check,
        refusal: Option<String>,
    ) -> Self {
        let (sender, heard) = mpsc::unbounded_channel();
        let port = serve_on_loopback(move |tcp| {
            let (tls, check, heard) = (tls.clone(), Arc::clone(&check), sender.clone());
            let refusal = refusal.clone();
            async move {
                let stream: Box<dyn Stream> = match tls {
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(stream) => Box::new(stream),
                        Err(_) => return,
                    },
                    None => Box::new(tcp),
                };
                let mut peer = Peer {
                    stream: BufReader::new(stream),
                    check,
                    heard,
                    refusal,
                };
                match kind {
                    Kind::Imap { sasl_ir } => peer.imap(sasl_ir).await,
                    Kind::Pop3 => peer.pop3().await,
                    Kind::Smtp => peer.smtp().await,
                }
            }
        })
        .await;
        Self { port, heard }
    }

    /// Everything the responder heard so far; the probe has finished, so nothing is pending.
    pub(crate) fn heard(&mut self) -> Vec<Heard> {
        let mut heard = Vec::new();
        while let Ok(one) = self.heard.try_recv() {
            heard.push(one);
        }
        heard
    }

    fn attempt(&self, protocol: MailProtocol, token: &'static str) -> Attempt<'static> {
        Attempt {
            host: "127.0.0.1",
            oauth_token: Some(token),
            ..Attempt::new(protocol, self.port, Security::None)
        }
    }
}

/// The server side of TLS with the mail servers' certificate.
fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let servers = mail_servers();
    let certificates = CertificateDer::pem_file_iter(&servers.certificate_file)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&servers.key_file).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certificates, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// One connection to a responder. `None` from a read means the client hung up.
struct Peer {
    stream: BufReader<Box<dyn Stream>>,
    check: Check,
    heard: mpsc::UnboundedSender<Heard>,
    /// The last words of a refusal, instead of the protocol's usual ones.
    refusal: Option<String>,
}

impl Peer {
    async fn say(&mut self, line: &str) {
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    async fn hear(&mut self) -> Option<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        Some(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// Records what the client sent and whether it is exactly the expected string.
    fn accepts(&self, form: Form, base64: &str) -> bool {
        let sasl = match BASE64.decode(base64) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) => format!("<not base64: {error}>"),
        };
        let accepted = (self.check)(&sasl);
        self.heard.send(Heard { form, sasl }).unwrap();
        accepted
    }

    /// After a refusal's challenge, the client must answer with an empty line.
    async fn heard_empty_line(&mut self) -> bool {
        self.hear().await.as_deref() == Some("")
    }

    /// Exchange Online's IMAP, as far as a sign-in goes.
    async fn imap(&mut self, sasl_ir: bool) {
        self.say("* OK The Microsoft Exchange IMAP4 service is ready.")
            .await;
        while let Some(line) = self.hear().await {
            let (tag, command) = line.split_once(' ').unwrap_or((&line, ""));
            let (tag, command) = (tag.to_owned(), command.to_owned());
            let upper = command.to_ascii_uppercase();
            if upper == "CAPABILITY" {
                let sasl_ir = if sasl_ir { " SASL-IR" } else { "" };
                self.say(&format!(
                    "* CAPABILITY IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2{sasl_ir} UIDPLUS"
                ))
                .await;
                self.say(&format!("{tag} OK CAPABILITY completed.")).await;
            } else if upper.starts_with("AUTHENTICATE XOAUTH2") {
                let (form, response) = match command.split_once("XOAUTH2 ") {
                    Some((_, initial)) if sasl_ir => (Form::OneLine, initial.to_owned()),
                    Some(_) => {
                        self.say(&format!("{tag} BAD SASL-IR was not offered."))
                            .await;
                        continue;
                    }
                    None => {
                        self.say("+ ").await;
                        let Some(response) = self.hear().await else {
                            return;
                        };
                        (Form::AfterPrompt, response)
                    }
                };
                if self.accepts(form, &response) {
                    self.say(&format!("{tag} OK AUTHENTICATE completed.")).await;
                } else {
                    self.say(&format!("+ {}", BASE64.encode(REFUSAL))).await;
                    if self.heard_empty_line().await {
                        let words = self
                            .refusal
                            .clone()
                            .unwrap_or_else(|| "AUTHENTICATE failed.".into());
                        self.say(&format!("{tag} NO {words}")).await;
                    } else {
                        self.say(&format!("{tag} BAD expected an empty line."))
                            .await;
                    }
                }
            } else if upper == "LOGOUT" {
                self.say("* BYE Microsoft Exchange Server IMAP4 server signing off.")
                    .await;
                self.say(&format!("{tag} OK LOGOUT completed.")).await;
                return;
            } else {
                self.say(&format!("{tag} BAD Command Error. 10")).await;
            }
        }
    }

    /// Exchange Online's POP3, which takes AUTH XOAUTH2 with or without an initial response.
    async fn pop3(&mut self) {
        self.say("+OK The Microsoft Exchange POP3 service is ready.")
            .await;
        while let Some(line) = self.hear().await {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("AUTH XOAUTH2") {
                let (form, response) = match line.split_once("XOAUTH2 ") {
                    Some((_, initial)) => (Form::OneLine, initial.to_owned()),
                    None => {
                        self.say("+ ").await;
                        let Some(response) = self.hear().await else {
                            return;
                        };
                        (Form::AfterPrompt, response)
                    }
                };
                if self.accepts(form, &response) {
                    self.say("+OK User successfully authenticated.").await;
                } else {
                    self.say(&format!("+ {}", BASE64.encode(REFUSAL))).await;
                    if self.heard_empty_line().await {
                        self.say("-ERR Authentication failure: unknown user name or bad password.")
                            .await;
                    } else {
                        self.say("-ERR expected an empty line.").await;
                    }
                }
            } else if upper == "CAPA" {
                for reply in ["+OK", "TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER", "."] {
                    self.say(reply).await;
                }
            } else if upper == "QUIT" {
                self.say("+OK Microsoft Exchange Server POP3 server signing off.")
                    .await;
                return;
            } else {
                self.say("-ERR Protocol error. 14").await;
            }
        }
    }

    /// Exchange Online's SMTP submission, as far as a sign-in goes.
    async fn smtp(&mut self) {
        self.say("220 fake.outlook.test Microsoft ESMTP MAIL Service ready")
            .await;
        while let Some(line) = self.hear().await {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO ") {
                for reply in [
                    "250-fake.outlook.test Hello",
                    "250-SIZE 157286400",
                    "250-AUTH LOGIN XOAUTH2",
                    "250 SMTPUTF8",
                ] {
                    self.say(reply).await;
                }
            } else if upper.starts_with("AUTH XOAUTH2") {
                let (form, response) = match line.split_once("XOAUTH2 ") {
                    Some((_, initial)) => (Form::OneLine, initial.to_owned()),
                    None => {
                        self.say("334 ").await;
                        let Some(response) = self.hear().await else {
                            return;
                        };
                        (Form::AfterPrompt, response)
                    }
                };
                if self.accepts(form, &response) {
                    self.say("235 2.7.0 Authentication successful").await;
                } else {
                    self.say(&format!("334 {}", BASE64.encode(REFUSAL))).await;
                    if self.heard_empty_line().await {
                        let words = self
                            .refusal
                            .clone()
                            .unwrap_or_else(|| "535 5.7.3 Authentication unsuccessful".into());
                        self.say(&words).await;
                    } else {
                        self.say("501 5.5.2 expected an empty line").await;
                    }
                }
            } else if upper == "QUIT" {
                self.say("221 2.0.0 Service closing transmission channel")
                    .await;
                return;
            } else {
                self.say("500 5.3.3 Unrecognized command").await;
            }
        }
    }
}

fn plain_text() -> ProbeOptions {
    ProbeOptions {
        timeout: TIMEOUT,
        extra_roots: Vec::new(),
        egress: loopback_allowed(),
    }
}

/// Asserts a refusal explains the challenge, quotes the server, and never shows the token.
fn assert_explains_refusal(message: &str, server_words: &str) {
    for expected in [
        "The server refused the OAuth 2.0 access token",
        "status 401: the token is not valid, has expired",
        "bearer token for the scope \"https://outlook.office.com/IMAP.AccessAsUser.All\"",
        server_words,
    ] {
        assert!(message.contains(expected), "{expected:?} not in {message}");
    }
    assert!(!message.contains("expired-token"), "{message}");
    assert!(!message.contains("dXNlcj1"), "{message}");
}

#[tokio::test]
async fn imap_signs_in_with_the_token_on_the_authenticate_line() {
    let mut responder = Responder::start(Kind::Imap { sasl_ir: true }, EXPECTED.into()).await;

    let says = connected(
        responder
            .attempt(MailProtocol::Imap, TOKEN)
            .probe(&plain_text())
            .await,
    );

    assert_eq!(
        says,
        "Signed in; the server said: \"The Microsoft Exchange IMAP4 service is ready.\""
    );
    assert_eq!(
        responder.heard(),
        [Heard {
            form: Form::OneLine,
            sasl: EXPECTED.into()
        }]
    );
}

#[tokio::test]
async fn imap_without_sasl_ir_sends_the_token_after_the_prompt() {
    let mut responder = Responder::start(Kind::Imap { sasl_ir: false }, EXPECTED.into()).await;

    connected(
        responder
            .attempt(MailProtocol::Imap, TOKEN)
            .probe(&plain_text())
            .await,
    );

    assert_eq!(
        responder.heard(),
        [Heard {
            form: Form::AfterPrompt,
            sasl: EXPECTED.into()
        }]
    );
}

#[tokio::test]
async fn imap_refusing_a_token_says_why_without_showing_it() {
    for sasl_ir in [true, false] {
        let responder = Responder::start(Kind::Imap { sasl_ir }, EXPECTED.into()).await;

        let message = failed_at(
            Stage::Authentication,
            responder
                .attempt(MailProtocol::Imap, WRONG_TOKEN)
                .probe(&plain_text())
                .await,
        );

        assert_explains_refusal(&message, "it said: \"AUTHENTICATE failed.\"");
    }
}

#[tokio::test]
async fn smtp_signs_in_with_the_token() {
    let mut responder = Responder::start(Kind::Smtp, EXPECTED.into()).await;

    let says = connected(
        responder
            .attempt(MailProtocol::Smtp, TOKEN)
            .probe(&plain_text())
            .await,
    );

    assert_eq!(
        says,
        "Signed in; the server said: \"fake.outlook.test Microsoft ESMTP MAIL Service ready\""
    );
    assert_eq!(
        responder.heard(),
        [Heard {
            form: Form::OneLine,
            sasl: EXPECTED.into()
        }]
    );
}

#[tokio::test]
async fn smtp_refusing_a_token_says_why_without_showing_it() {
    let responder = Responder::start(Kind::Smtp, EXPECTED.into()).await;

    let message = failed_at(
        Stage::Authentication,
        responder
            .attempt(MailProtocol::Smtp, WRONG_TOKEN)
            .probe(&plain_text())
            .await,
    );

    assert_explains_refusal(
        &message,
        "it said: \"535 5.7.3 Authentication unsuccessful\"",
    );
}

#[tokio::test]
async fn pop3_sends_a_short_token_on_the_auth_line() {
    let mut responder = Responder::start(Kind::Pop3, EXPECTED.into()).await;

    connected(
        responder
            .attempt(MailProtocol::Pop3, TOKEN)
            .probe(&plain_text())
            .await,
    );

    assert_eq!(
        responder.heard(),
        [Heard {
            form: Form::OneLine,
            sasl: EXPECTED.into()
        }]
    );
}

/// Real access tokens run to a kilobyte or more, past POP3's 255-octet AUTH line (RFC 5034).
#[tokio::test]
async fn pop3_sends_a_real_sized_token_after_the_prompt() {
    let long_token: &'static str = format!("{TOKEN}.{}", "Q".repeat(1500)).leak();
    let expected = format!("user={USER}\x01auth=Bearer {long_token}\x01\x01");
    let mut responder = Responder::start(Kind::Pop3, expected.clone()).await;

    connected(
        responder
            .attempt(MailProtocol::Pop3, long_token)
            .probe(&plain_text())
            .await,
    );

    assert_eq!(
        responder.heard(),
        [Heard {
            form: Form::AfterPrompt,
            sasl: expected
        }]
    );
}

#[tokio::test]
async fn pop3_refusing_a_token_says_why_without_showing_it() {
    let responder = Responder::start(Kind::Pop3, EXPECTED.into()).await;

    let message = failed_at(
        Stage::Authentication,
        responder
            .attempt(MailProtocol::Pop3, WRONG_TOKEN)
            .probe(&plain_text())
            .await,
    );

    assert_explains_refusal(
        &message,
        "it said: \"Authentication failure: unknown user name or bad password.\"",
    );
}

#[tokio::test]
async fn tokens_that_would_split_the_xoauth2_string_are_refused_before_connecting() {
    let mut responder = Responder::start(Kind::Imap { sasl_ir: true }, EXPECTED.into()).await;
    let attempt = Attempt {
        oauth_token: Some("ya29.secret\x01auth=Bearer other"),
        ..responder.attempt(MailProtocol::Imap, TOKEN)
    };

    let message = failed_at(Stage::Authentication, attempt.probe(&plain_text()).await);

    assert!(message.contains("control-A"), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert_eq!(responder.heard(), []);
}

/// Dovecot and aiosmtpd, as set up in `servers`, offer PLAIN and LOGIN only: IMAP and SMTP
/// list them before sign-in, POP3 in answer to CAPA.
#[tokio::test]
async fn servers_without_xoauth2_say_so() {
    let servers = mail_servers();
    for (protocol, port, expected) in [
        (
            MailProtocol::Imap,
            servers.imaps,
            "does not offer OAuth 2.0 sign-in (XOAUTH2) on this connection; it offers PLAIN, LOGIN.",
        ),
        (
            MailProtocol::Smtp,
            servers.smtps,
            "does not offer OAuth 2.0 sign-in (XOAUTH2) on this connection; it offers LOGIN, PLAIN.",
        ),
        (
            MailProtocol::Pop3,
            servers.pop3s,
            "does not offer OAuth 2.0 sign-in (XOAUTH2) on this connection; it offers PLAIN, LOGIN.",
        ),
    ] {
        let attempt = Attempt {
            oauth_token: Some(TOKEN),
            ..Attempt::new(protocol, port, Security::Tls)
        };

        let message = failed_at(
            Stage::Authentication,
            attempt.probe(&trusting_test_ca()).await,
        );

        assert!(message.contains(expected), "{protocol:?}: {message}");
        assert!(!message.contains("right-token"), "{protocol:?}: {message}");
    }
}
