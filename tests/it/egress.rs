//! The egress policy: a tenant's mail servers and OAuth URLs never reach the network Portico
//! runs in unless the operator allows it. Each service here counts the connections it gets,
//! so "refused" means nothing connected, not only that a page said so.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portico::domain::{MailProtocol, Security};
use portico::egress::EgressPolicy;
use portico::mail::outgoing::{self, OutgoingMessage, Route, SendError};
use portico::mail::{Credential, ProbeOptions, ServerSettings};
use secrecy::SecretString;
use tokio::io::AsyncWriteExt as _;
use uuid::uuid;

use crate::on_both_backends;
use crate::support::{
    Backend, Browser, TestApp, TestDatabase, default_secret_expiry, serve_on_loopback,
    spawn_app_with,
};

on_both_backends!(
    internal_mail_servers_are_refused_at_save_and_never_connected_to,
    internal_oauth_urls_are_refused_at_save_and_a_name_inside_is_never_sent_the_code,
);

const BANNER: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3";

/// A service on loopback that greets like SSH and counts who connected.
pub(crate) async fn loopback_service() -> (u16, Arc<AtomicUsize>) {
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let port = serve_on_loopback(move |mut stream| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            let _ = stream.write_all(format!("{BANNER}\r\n").as_bytes()).await;
        }
    })
    .await;
    (port, connections)
}

/// A Portico whose operator opened no internal range.
async fn app_without_allowances(backend: Backend) -> TestApp {
    spawn_app_with(TestDatabase::create(backend).await, |config| {
        config.egress = EgressPolicy::default();
    })
    .await
}

/// Adds the segment "Support" to acme; returns its page.
pub(crate) async fn segment(admin: &Browser) -> String {
    admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap()
}

/// The fields of an incoming mailbox on `host`:`port` without TLS, signing in with a
/// password.
pub(crate) fn server_mailbox<'a>(
    protocol: &'a str,
    host: &'a str,
    port: &'a str,
    username: &'a str,
    password: &'a str,
) -> [(&'a str, &'a str); 11] {
    [
        ("name", "Support inbox"),
        ("email", "support@example.com"),
        ("protocol", protocol),
        ("direction", "incoming"),
        ("host", host),
        ("port", port),
        ("security", "none"),
        ("username", username),
        ("authentication", "password"),
        ("password", password),
        ("enabled", "on"),
    ]
}

const MAILBOX_PASSWORD: &str = "Mailbox-Password-1";

async fn internal_mail_servers_are_refused_at_save_and_never_connected_to(backend: Backend) {
    let app = app_without_allowances(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let segment = segment(&admin).await;
    let (port, connections) = loopback_service().await;
    let port = port.to_string();
    let new = format!("{segment}/mailboxes/new");
    let create = format!("{segment}/mailboxes");

    // Literal internal addresses are refused beside the Server field, the rest kept.
    for (address, range) in [
        ("127.0.0.1", "a loopback address"),
        (
            "169.254.169.254",
            "a link-local address (cloud metadata services live there)",
        ),
        ("10.0.0.5", "a private network address"),
        ("::1", "a loopback address"),
    ] {
        admin
            .submit(
                &new,
                &create,
                &server_mailbox(
                    "imap",
                    address,
                    &port,
                    "support@example.com",
                    MAILBOX_PASSWORD,
                ),
            )
            .await
            .assert_status(400)
            .assert_contains("The Server is ")
            .assert_contains(range)
            .assert_contains("ask its operator to allow that range")
            .assert_contains("value=\"support@example.com\"")
            .assert_lacks(MAILBOX_PASSWORD);
    }

    // A name is judged when it is resolved: saved, then refused before anything is sent.
    let mailbox = admin
        .submit(
            &new,
            &create,
            &server_mailbox(
                "imap",
                "localhost",
                &port,
                "support@example.com",
                MAILBOX_PASSWORD,
            ),
        )
        .await
        .location
        .unwrap();
    let tested = admin
        .submit(&mailbox, &format!("{mailbox}/test"), &[])
        .await;
    tested
        .assert_status(200)
        .assert_contains("Destination check")
        .assert_contains("a loopback address")
        .assert_lacks("SSH-2.0")
        .assert_lacks("refused the connection");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

/// An OAuth connection's Advanced URLs: a literal inside is refused at save; a name that
/// resolves inside is refused when the code is redeemed, and the code and client secret go
/// nowhere.
async fn internal_oauth_urls_are_refused_at_save_and_a_name_inside_is_never_sent_the_code(
    backend: Backend,
) {
    let app = app_without_allowances(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let (port, connections) = loopback_service().await;
    let client_id = uuid!("66666666-6666-4666-8666-666666666666").to_string();
    let expires_on = default_secret_expiry();
    let add = |token_url: String| {
        let (admin, client_id, expires_on) = (&admin, &client_id, &expires_on);
        async move {
            let fields = [
                ("name", "Support IMAP"),
                ("client_id", client_id.as_str()),
                ("directory", "contoso.onmicrosoft.com"),
                ("cloud", "global"),
                ("purpose", "imap"),
                ("authorization_url", "https://id.example.com/authorize"),
                ("token_url", token_url.as_str()),
                ("client_secret", "OAuth-Client-Secret-1"),
                ("secret_expires_on", expires_on.as_str()),
            ];
            admin
                .submit(
                    "/t/acme/oauth-connections/new",
                    "/t/acme/oauth-connections",
                    &fields,
                )
                .await
        }
    };

    for internal in [
        format!("https://127.0.0.1:{port}/token"),
        "https://169.254.169.254/token".to_owned(),
        "https://[::ffff:127.0.0.1]/token".to_owned(),
    ] {
        add(internal)
            .await
            .assert_status(400)
            .assert_contains("The Token URL is ")
            .assert_lacks("OAuth-Client-Secret-1");
    }

    let created = add(format!("https://localhost:{port}/token")).await;
    let page = created
        .location
        .clone()
        .unwrap_or_else(|| panic!("{}", created.body));
    let to_provider = admin
        .submit(&page, &format!("{page}/authenticate"), &[])
        .await;
    let authorize = url::Url::parse(&to_provider.location.clone().unwrap()).unwrap();
    let state = authorize
        .query_pairs()
        .find(|(key, _)| key == "state")
        .map(|(_, value)| value.into_owned())
        .unwrap();
    let answer = admin
        .get(&format!("/oauth/callback?code=Secret-Code-1&state={state}"))
        .await;
    let shown = match answer.location.clone() {
        Some(next) => admin.get(&next).await,
        None => answer,
    };
    shown
        .assert_contains("a loopback address")
        .assert_contains("Nothing was sent there")
        .assert_contains("Not authenticated")
        .assert_lacks("Secret-Code-1");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

/// Expiry alerts through a tenant's SMTP mailbox take the same road: a server inside is
/// never connected to, whatever the message.
#[tokio::test]
async fn alert_mail_to_a_server_inside_is_refused_before_connecting() {
    let (port, connections) = loopback_service().await;
    let password = SecretString::from("Mailbox-Password-1");
    let options = ProbeOptions {
        timeout: Duration::from_secs(5),
        extra_roots: Vec::new(),
        egress: EgressPolicy::default(),
    };
    let server = ServerSettings {
        protocol: MailProtocol::Smtp,
        host: "localhost",
        port,
        security: Security::StartTls,
        username: "alerts@example.com",
        credential: Credential::Password(&password),
    };
    let to = ["admin@example.com".to_owned()];
    let message = OutgoingMessage {
        from: "alerts@example.com",
        to: &to,
        subject: "A secret expires",
        body: "In 7 days.".to_owned(),
    };

    let sent = outgoing::send(Route::Mailbox(server), &message, &options).await;

    assert!(
        matches!(&sent, Err(SendError::Destination(_))),
        "{:?}",
        sent.err().map(|e| e.to_string())
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}
