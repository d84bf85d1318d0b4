//! Expiry alerts, received by the real SMTP server: sent once per threshold even by two
//! Portico instances sharing one database, through the deployment's relay or the tenant's
//! own SMTP mailbox, and recorded in the audit log; and one tenant whose mail server hangs
//! holds up another tenant's alert by at most one send timeout.

use portico::config::SmtpRelay;
use portico::crypto::SecretKey;
use portico::services::alerts::{self, AlertRun};
use secrecy::SecretString;
use time::{Date, Duration, OffsetDateTime};
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use super::servers::{PASSWORD, USER, mail_servers};
use crate::on_both_backends;
use crate::support::{Backend, Browser, PASSWORD as ADMIN_PASSWORD, TestApp, TestDatabase};
use crate::support::{captured_logs, eventually, serve_on_loopback, spawn_app_with};

on_both_backends!(
    two_instances_send_each_threshold_once_through_the_relay,
    alerts_go_through_the_tenants_own_smtp_mailbox_and_failures_are_shown,
    a_tarpit_sender_in_one_tenant_delays_another_tenants_alert_by_at_most_one_send_timeout,
);

const DIRECTORY: &str = "7a7a7a7a-1111-4222-8333-444444444444";
const APP: &str = "7b7b7b7b-5555-4666-8777-888888888888";
const PUBLIC_URL: &str = "http://portal.acme.test";

/// An instance on `database`, sealing with `key`, relaying through the test SMTP server's
/// port without TLS when `relay` is set, and trusting the test mail CA.
async fn instance(database: TestDatabase, key: &SecretKey, relay: bool) -> TestApp {
    let servers = mail_servers();
    let key = key.clone();
    let relay_url = format!("smtp://127.0.0.1:{}", servers.smtp_plain);
    spawn_app_with(database, move |config| {
        // One public URL for the deployment, as its instances share in production.
        config.base_url = PUBLIC_URL.parse().unwrap();
        config.secret_key = key.into();
        config.mail_ca_file = Some(servers.ca_file.clone());
        if relay {
            config.smtp_relay = Some(SmtpRelay {
                url: SecretString::from(relay_url),
                from: "Portico <portico@example.test>".into(),
            });
        }
    })
    .await
}

/// A Graph credential whose client secret expires on `ends_on`.
async fn secret_credential(admin: &Browser, ends_on: Date) {
    named_secret_credential(admin, "acme", "Support mail", ends_on).await;
}

/// A Graph credential `name` of the tenant `slug`, its client secret ending on `ends_on`.
async fn named_secret_credential(admin: &Browser, slug: &str, name: &str, ends_on: Date) {
    admin
        .add_graph_credential(
            slug,
            &[
                ("name", name),
                ("client_id", APP),
                ("directory", DIRECTORY),
                ("auth_method", "client_secret"),
                ("client_secret", "Alert~Canary-Secret"),
                ("secret_expires_on", &ends_on.to_string()),
            ],
        )
        .await;
}

/// A message as a person reads it: headers unfolded (RFC 5322 2.2.3) and the body's
/// quoted-printable (RFC 2045 6.7, which lettre picks for lines of links) decoded.
pub(super) fn readable(message: &str) -> String {
    let unfolded = message.replace("\r\n ", " ").replace("=\r\n", "");
    let mut text = String::new();
    let mut rest = unfolded.as_str();
    while let Some(at) = rest.find('=') {
        text.push_str(&rest[..at]);
        match u8::from_str_radix(rest.get(at + 1..at + 3).unwrap_or("xx"), 16) {
            Ok(byte) => {
                text.push(char::from(byte));
                rest = &rest[at + 3..];
            }
            Err(_) => {
                text.push('=');
                rest = &rest[at + 1..];
            }
        }
    }
    text.push_str(rest);
    text
}

/// Moves every instance's clock so that `ends_on` is `days` days away.
fn days_before(apps: &[&TestApp], ends_on: Date, days: i64) {
    for app in apps {
        let today = app.state.clock.now().date();
        app.state
            .clock
            .advance(Duration::days((ends_on - today).whole_days() - days));
    }
}

/// Both instances run the alert job at once, twice.
async fn run_both(a: &TestApp, b: &TestApp) -> AlertRun {
    let mut total = AlertRun::default();
    for _ in 0..2 {
        let (one, other) = tokio::join!(alerts::run(&a.state), alerts::run(&b.state));
        for run in [one.unwrap(), other.unwrap()] {
            total.planned += run.planned;
            total.sent += run.sent;
            total.failed += run.failed;
        }
    }
    total
}

async fn two_instances_send_each_threshold_once_through_the_relay(backend: Backend) {
    let servers = mail_servers();
    let database = TestDatabase::create(backend).await;
    let shared = database.shared();
    let key = SecretKey::generate();
    let a = instance(database, &key, true).await;
    let b = instance(shared, &key, true).await;
    let (tenant, admin) = a.tenant_with_admin("acme").await;
    let ends_on = (OffsetDateTime::now_utc() + Duration::days(40)).date();
    secret_credential(&admin, ends_on).await;

    let recipient = format!("it-{}@acme.test", Uuid::new_v4().simple());
    let other = format!("ops-{}@acme.test", Uuid::new_v4().simple());
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[
                ("recipients", &format!("{recipient}\n{other}")),
                ("sender_mailbox_id", ""),
            ],
        )
        .await
        .assert_redirect("/t/acme/expiring?saved=1");

    days_before(&[&a, &b], ends_on, 31);
    assert_eq!(run_both(&a, &b).await, AlertRun::default());
    assert!(servers.received_by(&recipient).is_empty());

    let mut expected = Vec::new();
    for (days, words) in [
        (30, "expires within 30 days"),
        (7, "expires within 7 days"),
        (1, "expires by tomorrow"),
        (-1, "expired on"),
    ] {
        days_before(&[&a, &b], ends_on, days);
        let run = run_both(&a, &b).await;
        assert_eq!(
            (run.planned, run.sent, run.failed),
            (1, 1, 0),
            "{days}: {run:?}"
        );
        expected.push(words);
        let received: Vec<String> = servers
            .received_by(&recipient)
            .iter()
            .map(|message| readable(message))
            .collect();
        assert_eq!(received.len(), expected.len(), "{days}: {received:#?}");
        let latest = received
            .iter()
            .find(|message| message.contains(words))
            .unwrap_or_else(|| panic!("no message says {words:?}: {received:#?}"));
        assert!(latest.contains(&format!(
            "Subject: Portico: The client secret of the Graph credential Support mail {words}"
        )));
        assert!(latest.contains("From: Portico <portico@example.test>"));
        assert!(latest.contains(&format!("{PUBLIC_URL}/t/acme/external-apis/")));
        assert!(latest.contains(&format!("Every expiry date: {PUBLIC_URL}/t/acme/expiring")));
        assert!(!latest.contains("Alert~Canary-Secret"));
        assert_eq!(servers.received_by(&other).len(), expected.len());
    }
    // Nothing more is due, whoever runs the job.
    assert_eq!(run_both(&a, &b).await, AlertRun::default());

    let sent: Vec<_> = a
        .audit_actions(&tenant)
        .await
        .into_iter()
        .filter(|(action, _, _)| action == "expiry_alert.sent")
        .collect();
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(
        sent.iter()
            .all(|(_, target, detail)| target == "Support mail"
                && detail.contains(&format!(
                    "told {recipient}, {other} through the deployment's mail relay"
                )))
    );
    let admin = b.browser();
    admin
        .sign_in("acme", "admin@acme.test", ADMIN_PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    let page = admin.get("/t/acme/expiring").await;
    page.assert_contains("badge ok\">Sent</span>")
        .assert_contains("The client secret of the Graph credential Support mail expired on")
        .assert_contains(&recipient);
}

async fn alerts_go_through_the_tenants_own_smtp_mailbox_and_failures_are_shown(backend: Backend) {
    let servers = mail_servers();
    let key = SecretKey::generate();
    let app = instance(TestDatabase::create(backend).await, &key, false).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let ends_on = (OffsetDateTime::now_utc() + Duration::days(5)).date();
    secret_credential(&admin, ends_on).await;
    let recipient = format!("it-{}@acme.test", Uuid::new_v4().simple());

    // Neither a relay nor a mailbox: the alert waits, and says why.
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("not set up by your operator")
        .assert_contains("Alerts cannot be sent yet");
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[("recipients", "not-an-address"), ("sender_mailbox_id", "")],
        )
        .await
        .assert_status(400)
        .assert_contains("“not-an-address” is not an email address")
        .assert_contains(">not-an-address</textarea>");
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[
                ("recipients", recipient.as_str()),
                ("sender_mailbox_id", ""),
            ],
        )
        .await
        .assert_status(303);
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (1, 0, 1));
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("Not sent yet (1 tries): no mailbox is chosen to send alerts and PORTICO_SMTP_URL is not set");

    // An outgoing SMTP mailbox of the tenant (TLS, signed in with its password) sends it.
    let segment = admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap();
    let smtps = servers.smtps.to_string();
    admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &[
                ("name", "Support out"),
                ("email", USER),
                ("protocol", "smtp"),
                ("direction", "outgoing"),
                ("host", "127.0.0.1"),
                ("port", smtps.as_str()),
                ("security", "tls"),
                ("username", USER),
                ("authentication", "password"),
                ("password", PASSWORD),
                ("enabled", "on"),
            ],
        )
        .await
        .assert_status(303);
    let page = admin.get("/t/acme/expiring").await;
    page.assert_contains(&format!("Support out ({USER})"));
    let mailbox_id = {
        let marker = "<option value=\"";
        let options: Vec<&str> = page.body.split(marker).skip(1).collect();
        let option = options
            .iter()
            .find(|option| option.contains("Support out"))
            .unwrap();
        option[..option.find('"').unwrap()].to_owned()
    };
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[
                ("recipients", recipient.as_str()),
                ("sender_mailbox_id", &mailbox_id),
            ],
        )
        .await
        .assert_status(303);
    // The retry waits for its backoff (a minute after the first try).
    app.state.clock.advance(Duration::minutes(2));
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (0, 1, 0));
    let received: Vec<String> = servers
        .received_by(&recipient)
        .iter()
        .map(|message| readable(message))
        .collect();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert!(received[0].contains(&format!("From: {USER}")));
    assert!(received[0].contains("expires within 7 days"));

    let audit = app.audit_actions(&tenant).await;
    let count = |action: &str| audit.iter().filter(|(a, _, _)| a == action).count();
    assert_eq!(count("expiry_alert.failed"), 1, "{audit:?}");
    assert_eq!(count("expiry_alert.sent"), 1, "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|(action, _, detail)| action == "expiry_alert.sent"
                && detail.contains(&format!("through the mailbox Support out ({USER})")))
    );
    assert!(audit.iter().any(
        |(action, _, detail)| action == "settings.expiry_alerts_changed"
            && *detail == format!("tell {recipient} through the mailbox Support out ({USER})")
    ));
    assert!(!captured_logs().contains(PASSWORD));
}

/// A mail server that accepts every connection and never says a word: a tenant admin's
/// tarpit. It reads (and drops) what it is sent until the client hangs up, and counts the
/// connections it has accepted and the most it held open at once.
struct Tarpit {
    port: u16,
    accepted: watch::Receiver<usize>,
    most_open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Tarpit {
    async fn start() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (accepted_tx, accepted) = watch::channel(0);
        let open = std::sync::Arc::new(AtomicUsize::new(0));
        let most_open = std::sync::Arc::new(AtomicUsize::new(0));
        let most_in = most_open.clone();
        let port = serve_on_loopback(move |mut stream| {
            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
            most_in.fetch_max(now_open, Ordering::SeqCst);
            accepted_tx.send_modify(|count| *count += 1);
            let open = open.clone();
            async move {
                let mut buffer = [0_u8; 1024];
                while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
                open.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .await;
        Self {
            port,
            accepted,
            most_open,
        }
    }

    fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    fn most_open(&self) -> usize {
        self.most_open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until `count` connections have come, at most `within`.
    async fn wait_for(&mut self, count: usize, within: std::time::Duration) {
        let arrived = matches!(
            tokio::time::timeout(within, self.accepted.wait_for(|seen| *seen >= count)).await,
            Ok(Ok(_))
        );
        assert!(
            arrived,
            "the tarpit saw {} connections, not {count}",
            self.accepted()
        );
    }
}

/// An outgoing SMTP mailbox of the tenant `slug` on 127.0.0.1:`port` (TLS, the test
/// account's password), offered as its alert sender; returns its id.
async fn smtp_sender(admin: &Browser, slug: &str, name: &str, port: u16) -> String {
    let segment = admin
        .submit(
            &format!("/t/{slug}/segments"),
            &format!("/t/{slug}/segments"),
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap();
    let made = admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &[
                ("name", name),
                ("email", USER),
                ("protocol", "smtp"),
                ("direction", "outgoing"),
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("security", "tls"),
                ("username", USER),
                ("authentication", "password"),
                ("password", PASSWORD),
                ("enabled", "on"),
            ],
        )
        .await;
    made.assert_status(303);
    made.location
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

/// The tenant `slug`'s alerts go to `recipient`, through the mailbox `sender` (or, empty,
/// the deployment's relay).
async fn tell(admin: &Browser, slug: &str, recipient: &str, sender: &str) {
    admin
        .submit(
            &format!("/t/{slug}/expiring"),
            &format!("/t/{slug}/expiring/alerts"),
            &[("recipients", recipient), ("sender_mailbox_id", sender)],
        )
        .await
        .assert_redirect(&format!("/t/{slug}/expiring?saved=1"));
}

/// How long one alert may take to send, in this test: short, so the test is quick, and
/// long against a send to the local SMTP server.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn a_tarpit_sender_in_one_tenant_delays_another_tenants_alert_by_at_most_one_send_timeout(
    backend: Backend,
) {
    let servers = mail_servers();
    let mut tarpit = Tarpit::start().await;
    let app = spawn_app_with(TestDatabase::create(backend).await, |config| {
        config.mail_ca_file = Some(servers.ca_file.clone());
        config.alert_send_timeout = SEND_TIMEOUT;
    })
    .await;
    let ends_on = (OffsetDateTime::now_utc() + Duration::days(5)).date();

    // Tenant A has three alerts due first. Without a sender they fail at once and wait to
    // be retried; then A's admin points its sender at the tarpit.
    let (acme, acme_admin) = app.tenant_with_admin("acme").await;
    for name in ["First app", "Second app", "Third app"] {
        named_secret_credential(&acme_admin, "acme", name, ends_on).await;
    }
    let acme_recipient = format!("it-{}@acme.test", Uuid::new_v4().simple());
    tell(&acme_admin, "acme", &acme_recipient, "").await;
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (3, 0, 3), "{run:?}");
    let tarpit_sender = smtp_sender(&acme_admin, "acme", "Tarpit out", tarpit.port).await;
    tell(&acme_admin, "acme", &acme_recipient, &tarpit_sender).await;

    // Tenant B's one alert is planned later, and its sender works.
    let (_, bravo_admin) = app.tenant_with_admin("bravo").await;
    named_secret_credential(&bravo_admin, "bravo", "Bravo app", ends_on).await;
    let bravo_sender = smtp_sender(&bravo_admin, "bravo", "Bravo out", servers.smtps).await;
    let bravo_recipient = format!("it-{}@bravo.test", Uuid::new_v4().simple());
    tell(&bravo_admin, "bravo", &bravo_recipient, &bravo_sender).await;

    // A's retries are due again. Taken in creation order, one after another, B's alert
    // would wait behind all three of A's hangs (3 send timeouts).
    app.state.clock.advance(Duration::minutes(2));
    let started = Instant::now();
    let state = app.state.clone();
    let job = tokio::spawn(async move { alerts::run(&state).await });
    eventually(4 * SEND_TIMEOUT, "B's alert arriving", async || {
        !servers.received_by(&bravo_recipient).is_empty()
    })
    .await;
    let bravo_waited = started.elapsed();
    assert!(
        bravo_waited < SEND_TIMEOUT,
        "B's alert took {bravo_waited:?}, more than one send timeout ({SEND_TIMEOUT:?})"
    );
    let received = readable(&servers.received_by(&bravo_recipient)[0]);
    assert!(
        received.contains("Bravo app expires within 7 days"),
        "{received}"
    );
    // Meanwhile A had one send in flight, not more.
    assert!(tarpit.accepted() <= 1, "{} connections", tarpit.accepted());

    // A's next alert goes to the tarpit only once the first has timed out, one at a time.
    tarpit.wait_for(2, 2 * SEND_TIMEOUT).await;
    let second_at = started.elapsed();
    assert!(second_at >= SEND_TIMEOUT, "{second_at:?}");
    assert_eq!(tarpit.most_open(), 1);
    job.abort();
    assert!(servers.received_by(&acme_recipient).is_empty());
    acme_admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("Not sent yet (2 tries): sending took longer than 5 seconds");
    let timed_out = app
        .audit_actions(&acme)
        .await
        .into_iter()
        .filter(|(action, _, _)| action == "expiry_alert.failed")
        .count();
    // Only the first failure of each alert is audited (the one without a sender).
    assert_eq!(timed_out, 3);
    assert!(!captured_logs().contains(PASSWORD));
}
