use std::net::TcpListener as StdTcpListener;
use std::time::{Duration, Instant};

use portico::domain::{MailProtocol, Security};
use portico::egress::EgressPolicy;
use portico::mail::{Credential, ProbeOptions, ProbeOutcome, ServerSettings, Stage, probe};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::servers::{PASSWORD, UNICODE_PASSWORD, UNICODE_USER, USER, mail_servers};
use crate::support::serve_on_loopback;

pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// The test servers listen on loopback, which the operator opens as PORTICO_EGRESS_ALLOW
/// would.
pub(super) fn loopback_allowed() -> EgressPolicy {
    EgressPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()])
}

/// Options that trust the test CA, as `--mail-ca-file` would for a private CA.
pub(super) fn trusting_test_ca() -> ProbeOptions {
    ProbeOptions {
        timeout: TIMEOUT,
        extra_roots: vec![mail_servers().ca.clone()],
        egress: loopback_allowed(),
    }
}

pub(super) struct Attempt<'a> {
    pub(super) protocol: MailProtocol,
    pub(super) host: &'a str,
    pub(super) port: u16,
    pub(super) security: Security,
    pub(super) username: &'a str,
    pub(super) password: &'a str,
    /// Signs in with this OAuth 2.0 access token instead of the password.
    pub(super) oauth_token: Option<&'a str>,
}

impl Attempt<'_> {
    pub(super) fn new(protocol: MailProtocol, port: u16, security: Security) -> Self {
        Attempt {
            protocol,
            host: "localhost",
            port,
            security,
            username: USER,
            password: PASSWORD,
            oauth_token: None,
        }
    }

    pub(super) async fn probe(&self, options: &ProbeOptions) -> ProbeOutcome {
        let secret = SecretString::from(self.oauth_token.unwrap_or(self.password));
        let credential = match self.oauth_token {
            Some(_) => Credential::OAuthToken(&secret),
            None => Credential::Password(&secret),
        };
        let settings = ServerSettings {
            protocol: self.protocol,
            host: self.host,
            port: self.port,
            security: self.security,
            username: self.username,
            credential,
        };
        probe(&settings, options).await
    }
}

pub(super) fn connected(outcome: ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::Connected { server_says } => server_says,
        failed => panic!("expected to sign in, got {failed:?}"),
    }
}

pub(super) fn failed_at(expected: Stage, outcome: ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::Failed { stage, message } if stage == expected => message,
        other => panic!("expected a failure at {expected:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn imap_over_tls_signs_in() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Imap, servers.imaps, Security::Tls);

    let says = connected(attempt.probe(&trusting_test_ca()).await);

    assert_eq!(
        says,
        "Signed in; the server said: \"Dovecot (Debian) ready.\""
    );
}

#[tokio::test]
async fn imap_with_starttls_signs_in() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Imap, servers.imap, Security::StartTls);

    let says = connected(attempt.probe(&trusting_test_ca()).await);

    assert!(says.starts_with("Signed in; the server said: "), "{says}");
}

#[tokio::test]
async fn imap_signs_in_with_a_password_that_is_not_ascii() {
    let servers = mail_servers();
    let attempt = Attempt {
        username: UNICODE_USER,
        password: UNICODE_PASSWORD,
        ..Attempt::new(MailProtocol::Imap, servers.imaps, Security::Tls)
    };

    connected(attempt.probe(&trusting_test_ca()).await);
}

#[tokio::test]
async fn pop3_over_tls_signs_in() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Pop3, servers.pop3s, Security::Tls);

    let says = connected(attempt.probe(&trusting_test_ca()).await);

    assert_eq!(
        says,
        "Signed in; the server said: \"Dovecot (Debian) ready.\""
    );
}

#[tokio::test]
async fn pop3_with_stls_signs_in() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Pop3, servers.pop3, Security::StartTls);

    connected(attempt.probe(&trusting_test_ca()).await);
}

#[tokio::test]
async fn smtp_with_starttls_signs_in() {
    let servers = mail_servers();
    let attempt = Attempt::new(
        MailProtocol::Smtp,
        servers.smtp_starttls,
        Security::StartTls,
    );

    let says = connected(attempt.probe(&trusting_test_ca()).await);

    assert!(says.starts_with("Signed in; the server said: "), "{says}");
}

#[tokio::test]
async fn smtp_over_tls_signs_in() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Smtp, servers.smtps, Security::Tls);

    connected(attempt.probe(&trusting_test_ca()).await);
}

#[tokio::test]
async fn smtp_signs_in_with_auth_login_when_plain_is_not_offered() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Smtp, servers.smtps_login_only, Security::Tls);

    connected(attempt.probe(&trusting_test_ca()).await);
}

#[tokio::test]
async fn wrong_passwords_fail_at_sign_in_with_the_servers_words() {
    let servers = mail_servers();
    let cases = [
        (
            MailProtocol::Imap,
            servers.imaps,
            "[AUTHENTICATIONFAILED] Authentication failed.",
        ),
        (
            MailProtocol::Pop3,
            servers.pop3s,
            "[AUTH] Authentication failed.",
        ),
        (
            MailProtocol::Smtp,
            servers.smtps,
            "535 5.7.8 Authentication credentials invalid",
        ),
    ];
    for (protocol, port, server_words) in cases {
        let attempt = Attempt {
            password: "wrong-password-42",
            ..Attempt::new(protocol, port, Security::Tls)
        };

        let message = failed_at(
            Stage::Authentication,
            attempt.probe(&trusting_test_ca()).await,
        );

        assert!(message.contains(server_words), "{protocol:?}: {message}");
        assert!(
            !message.contains("wrong-password-42"),
            "{protocol:?}: {message}"
        );
    }
}

#[tokio::test]
async fn a_port_nobody_listens_on_fails_at_connect() {
    let port = {
        let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let attempt = Attempt {
        host: "127.0.0.1",
        ..Attempt::new(MailProtocol::Imap, port, Security::Tls)
    };

    let message = failed_at(Stage::Connect, attempt.probe(&trusting_test_ca()).await);

    assert!(message.contains("refused the connection"), "{message}");
}

#[tokio::test]
async fn a_certificate_from_an_unknown_authority_fails_at_tls() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Imap, servers.imaps, Security::Tls);
    let public_roots_only = ProbeOptions {
        timeout: TIMEOUT,
        extra_roots: Vec::new(),
        egress: loopback_allowed(),
    };

    let message = failed_at(Stage::Tls, attempt.probe(&public_roots_only).await);

    assert!(message.contains("certificate is not trusted"), "{message}");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_at_tls() {
    let servers = mail_servers();
    let attempt = Attempt {
        host: "127.0.0.2",
        ..Attempt::new(MailProtocol::Imap, servers.imaps, Security::Tls)
    };

    let message = failed_at(Stage::Tls, attempt.probe(&trusting_test_ca()).await);

    assert!(
        message.contains("does not match the name \"127.0.0.2\""),
        "{message}"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_at_starttls() {
    let servers = mail_servers();
    let attempt = Attempt {
        host: "127.0.0.2",
        ..Attempt::new(MailProtocol::Imap, servers.imap, Security::StartTls)
    };

    let message = failed_at(Stage::StartTls, attempt.probe(&trusting_test_ca()).await);

    assert!(
        message.contains("does not match the name \"127.0.0.2\""),
        "{message}"
    );
}

#[tokio::test]
async fn tls_to_a_port_that_speaks_plain_text_fails_at_tls() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Imap, servers.imap, Security::Tls);

    let message = failed_at(Stage::Tls, attempt.probe(&trusting_test_ca()).await);

    assert!(message.contains("did not answer in TLS"), "{message}");
}

#[tokio::test]
async fn smtp_without_starttls_fails_at_starttls() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Smtp, servers.smtp_plain, Security::StartTls);

    let message = failed_at(Stage::StartTls, attempt.probe(&trusting_test_ca()).await);

    assert!(message.contains("does not offer STARTTLS"), "{message}");
}

#[tokio::test]
async fn smtp_without_encryption_explains_that_auth_is_not_offered() {
    let servers = mail_servers();
    let attempt = Attempt::new(MailProtocol::Smtp, servers.smtp_plain, Security::None);

    let message = failed_at(
        Stage::Authentication,
        attempt.probe(&trusting_test_ca()).await,
    );

    assert!(
        message.contains("does not offer sign-in (AUTH)"),
        "{message}"
    );
    assert!(message.contains("choose TLS or STARTTLS"), "{message}");
}

#[tokio::test]
async fn a_server_that_never_speaks_fails_at_greeting_on_time() {
    // Accepts, then holds the connection open without a word.
    let port = serve_on_loopback(|stream| async move {
        let _held = stream;
        std::future::pending::<()>().await;
    })
    .await;
    let attempt = Attempt {
        host: "127.0.0.1",
        ..Attempt::new(MailProtocol::Imap, port, Security::None)
    };
    let options = ProbeOptions {
        timeout: Duration::from_secs(1),
        extra_roots: Vec::new(),
        egress: loopback_allowed(),
    };

    let started = Instant::now();
    let message = failed_at(Stage::Greeting, attempt.probe(&options).await);

    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        message.contains("accepted the connection but sent nothing for 1 second"),
        "{message}"
    );
}

/// A man in the middle can append a command to the server's STARTTLS answer, hoping it is
/// read as if it came over TLS (CVE-2011-0411). No real server does this; a fake one must.
#[tokio::test]
async fn data_injected_before_the_tls_handshake_stops_the_probe() {
    let port = serve_on_loopback(|stream| async move {
        let mut stream = BufReader::new(stream);
        stream.write_all(b"* OK ready\r\n").await.unwrap();
        let mut command = String::new();
        stream.read_line(&mut command).await.unwrap();
        assert_eq!(command, "a STARTTLS\r\n");
        stream
            .write_all(b"a OK Begin TLS\r\n* OK [ALERT] injected\r\n")
            .await
            .unwrap();
        std::future::pending::<()>().await;
    })
    .await;
    let attempt = Attempt {
        host: "127.0.0.1",
        ..Attempt::new(MailProtocol::Imap, port, Security::StartTls)
    };

    let message = failed_at(Stage::StartTls, attempt.probe(&trusting_test_ca()).await);

    assert!(message.contains("could have been injected"), "{message}");
}

#[tokio::test]
async fn an_unknown_host_fails_at_dns() {
    let attempt = Attempt {
        host: "no-such-host.invalid",
        ..Attempt::new(MailProtocol::Smtp, 465, Security::Tls)
    };
    let options = ProbeOptions {
        timeout: Duration::from_secs(5),
        extra_roots: Vec::new(),
        egress: loopback_allowed(),
    };

    let message = failed_at(Stage::Dns, attempt.probe(&options).await);

    assert!(message.contains("no-such-host.invalid"), "{message}");
}
