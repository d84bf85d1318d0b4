//! Expiry alerts, received by the real SMTP server: sent once per threshold even by two
//! Portico instances sharing one database, through the deployment's relay or the tenant's
//! own SMTP mailbox, and recorded in the audit log.

use portico::alerts::{self, AlertRun};
use portico::config::SmtpRelay;
use portico::crypto::SecretKey;
use secrecy::SecretString;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use super::servers::{PASSWORD, USER, mail_servers};
use crate::on_both_backends;
use crate::support::{Backend, Browser, PASSWORD as ADMIN_PASSWORD, TestApp, TestDatabase};
use crate::support::{captured_logs, spawn_app_with};

on_both_backends!(
    two_instances_send_each_threshold_once_through_the_relay,
    alerts_go_through_the_tenants_own_smtp_mailbox_and_failures_are_shown,
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
    admin
        .submit(
            "/t/acme/external-apis/new",
            "/t/acme/external-apis",
            &[
                ("name", "Support mail"),
                ("client_id", APP),
                ("directory", DIRECTORY),
                ("cloud", "global"),
                ("auth_method", "client_secret"),
                ("client_secret", "Alert~Canary-Secret"),
                ("secret_expires_on", &ends_on.to_string()),
            ],
        )
        .await
        .assert_status(303);
}

/// A message as a person reads it: headers unfolded (RFC 5322 2.2.3) and the body's
/// quoted-printable (RFC 2045 6.7, which lettre picks for lines of links) decoded.
fn readable(message: &str) -> String {
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
