//! Mailboxes tested in the background against the real Dovecot: a mailbox whose server starts
//! refusing its password is Failing after two checks, on every page admins look at, and
//! alerted once; it recovers and that is alerted once. Two instances check each mailbox
//! once per interval; one tenant's hanging servers delay another's check by less than one
//! check timeout. Time moves by the injected clock: no test sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portico::config::SmtpRelay;
use portico::crypto::SecretKey;
use portico::domain::{CheckState, MailProtocol, Security};
use portico::mail::{Credential, ProbeOutcome, ServerSettings, probe};
use portico::services::{alerts, mailbox_checks};
use portico::store::mailbox_checks as check_store;
use portico::store::tenants::Tenant;
use secrecy::SecretString;
use time::Duration;
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;
use uuid::Uuid;

use super::alerts::readable;
use super::probe::trusting_test_ca;
use super::servers::mail_servers;
use crate::on_both_backends;
use crate::support::{Backend, Browser, TestApp, TestDatabase, eventually};
use crate::support::{serve_on_loopback, spawn_app_with};

on_both_backends!(
    a_mailbox_whose_server_refuses_its_password_is_failing_after_two_checks_and_alerted_once,
    two_instances_check_each_mailbox_once_per_interval,
    a_tenant_whose_servers_hang_delays_another_tenants_check_by_less_than_one_timeout,
    checks_are_off_when_the_interval_is_zero,
);

const METRICS_TOKEN: &str = "checks-metrics-token-0123456789";
/// One check's timeout in these tests: short, so hanging servers cost little time, and long
/// against a sign-in to the local Dovecot.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// An instance on `database` sealing with `key`, trusting the test mail CA, sending alerts
/// through the test SMTP server as its relay.
async fn instance(database: TestDatabase, key: &SecretKey) -> TestApp {
    let servers = mail_servers();
    let key = key.clone();
    let relay = format!("smtp://127.0.0.1:{}", servers.smtp_plain);
    spawn_app_with(database, move |config| {
        config.secret_key = key.into();
        config.mail_ca_file = Some(servers.ca_file.clone());
        config.smtp_relay = Some(SmtpRelay {
            url: SecretString::from(relay),
            from: "Portico <portico@example.test>".into(),
        });
        config.metrics.token = Some(SecretString::from(METRICS_TOKEN));
        config.mailbox_check_timeout = CHECK_TIMEOUT;
    })
    .await
}

/// A Dovecot account of the test's own, so it may change the password; once Dovecot
/// signs it in.
async fn own_account(password: &str) -> String {
    let user = format!("watched-{}@example.test", Uuid::new_v4().simple());
    mail_servers().set_password(&user, password);
    wait_until_dovecot(&user, password, true).await;
    user
}

/// Waits until Dovecot signs `user` in with `password` (`accepts`) or refuses it: Dovecot
/// reads its accounts again within a second of a change.
async fn wait_until_dovecot(user: &str, password: &str, accepts: bool) {
    let options = trusting_test_ca();
    let secret = SecretString::from(password.to_owned());
    let settings = ServerSettings {
        protocol: MailProtocol::Imap,
        host: "localhost",
        port: mail_servers().imaps,
        security: Security::Tls,
        username: user,
        credential: Credential::Password(&secret),
    };
    let what = if accepts { "accepting" } else { "refusing" };
    eventually(
        std::time::Duration::from_secs(10),
        &format!("Dovecot {what} the password of {user}"),
        async || {
            matches!(
                probe(&settings, &options).await,
                ProbeOutcome::Connected { .. }
            ) == accepts
        },
    )
    .await;
}

/// A segment of `slug` named `segment_name`; returns its page.
async fn segment(admin: &Browser, slug: &str, segment_name: &str) -> String {
    admin
        .submit(
            &format!("/t/{slug}/segments"),
            &format!("/t/{slug}/segments"),
            &[("name", segment_name), ("description", "")],
        )
        .await
        .location
        .unwrap()
}

/// An IMAP (TLS) mailbox `name` in the segment at `segment`, signing in as `user` with
/// `password` on 127.0.0.1:`port`; returns its page.
async fn imap_mailbox(
    admin: &Browser,
    segment: &str,
    name: &str,
    user: &str,
    password: &str,
    port: u16,
) -> String {
    let made = admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &[
                ("name", name),
                ("email", user),
                ("protocol", "imap"),
                ("direction", "incoming"),
                ("host", "127.0.0.1"),
                ("port", &port.to_string()),
                ("security", "tls"),
                ("username", user),
                ("authentication", "password"),
                ("password", password),
                ("enabled", "on"),
            ],
        )
        .await;
    made.location
        .unwrap_or_else(|| panic!("{name} not saved: {}", made.body))
}

fn id_of(page: &str) -> String {
    page.rsplit('/').next().unwrap().to_owned()
}

/// One interval (the default hour) passes on every instance's clock.
fn an_interval_passes(apps: &[&TestApp]) {
    for app in apps {
        app.state.clock.advance(Duration::minutes(60));
    }
}

/// An interval passes, then the check job and the alert job run: (passed, failed, alerts
/// sent).
async fn next_interval(app: &TestApp) -> (usize, usize, usize) {
    an_interval_passes(&[app]);
    let checked = mailbox_checks::run(&app.state).await.unwrap();
    let sent = alerts::run(&app.state).await.unwrap();
    assert_eq!(sent.failed, 0, "{sent:?}");
    (checked.passed, checked.failed, sent.sent)
}

async fn metrics(app: &TestApp) -> String {
    reqwest::Client::new()
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn a_mailbox_whose_server_refuses_its_password_is_failing_after_two_checks_and_alerted_once(
    backend: Backend,
) {
    let servers = mail_servers();
    let app = instance(TestDatabase::create(backend).await, &SecretKey::generate()).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let recipient = format!("it-{}@acme.test", Uuid::new_v4().simple());
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[("recipients", &recipient), ("sender_mailbox_id", "")],
        )
        .await
        .assert_redirect("/t/acme/expiring?saved=1");
    let password = "first password";
    let user = own_account(password).await;
    let segment = segment(&admin, "acme", "Support").await;
    let mailbox = imap_mailbox(
        &admin,
        &segment,
        "Support inbox",
        &user,
        password,
        servers.imaps,
    )
    .await;
    admin
        .get(&mailbox)
        .await
        .assert_contains("Tested every 60 minutes; not tested yet");

    // The first run places the check within the hour; an hour on, it passes.
    let first = mailbox_checks::run(&app.state).await.unwrap();
    assert_eq!(first.added, 1);
    assert_eq!(next_interval(&app).await, (1, 0, 0));
    let audited_before = app.audit_actions(&tenant).await.len();
    admin
        .get(&mailbox)
        .await
        .assert_contains("the last test, at ")
        .assert_contains(", passed.");

    // The password is changed on the server. One failure is not Failing yet.
    servers.set_password(&user, "changed on the server");
    wait_until_dovecot(&user, password, false).await;
    assert_eq!(next_interval(&app).await, (0, 1, 0));
    for page in [
        "/t/acme/",
        "/t/acme/expiring",
        segment.as_str(),
        mailbox.as_str(),
    ] {
        admin.get(page).await.assert_lacks("Failing since");
    }
    admin
        .get(&mailbox)
        .await
        .assert_contains("failed (1 in a row)");

    // The second is: every page admins look at says since when, and what the server said.
    assert_eq!(next_interval(&app).await, (0, 1, 1));
    let record = check_store::get(&app.state.db, &tenant.id, &id_of(&mailbox))
        .await
        .unwrap()
        .unwrap();
    let since = portico::domain::format_time(record.failures_since.unwrap());
    for page in [
        "/t/acme/",
        "/t/acme/expiring",
        segment.as_str(),
        mailbox.as_str(),
    ] {
        admin
            .get(page)
            .await
            .assert_status(200)
            .assert_contains(&format!(
                "<strong>Support inbox</strong> ({user}): Failing since {since}: Sign-in failed"
            ))
            .assert_contains("AUTHENTICATIONFAILED")
            .assert_lacks(password);
    }
    let received: Vec<String> = servers
        .received_by(&recipient)
        .iter()
        .map(|m| readable(m))
        .collect();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert!(received[0].contains(&format!(
        "Subject: Portico: The mailbox Support inbox is failing since {since}"
    )));
    assert!(received[0].contains("Sign-in failed"));
    assert!(received[0].contains(&format!("/t/acme/mailboxes/{}", id_of(&mailbox))));
    assert!(!received[0].contains(password));

    // Still failing an hour later: nobody is told again.
    assert_eq!(next_interval(&app).await, (0, 1, 0));
    assert_eq!(servers.received_by(&recipient).len(), 1);
    let text = metrics(&app).await;
    assert!(
        text.contains("portico_mailboxes_by_check_state{state=\"failing\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portico_mailbox_checks_total{outcome=\"failed\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("portico_mailbox_checks_total{outcome=\"passed\"} 1"),
        "{text}"
    );

    // The admin sets the server's password back: it recovers, shown and told once.
    servers.set_password(&user, password);
    wait_until_dovecot(&user, password, true).await;
    assert_eq!(next_interval(&app).await, (1, 0, 1));
    for page in [
        "/t/acme/",
        "/t/acme/expiring",
        segment.as_str(),
        mailbox.as_str(),
    ] {
        admin
            .get(page)
            .await
            .assert_lacks("Failing since")
            .assert_contains(&format!(
                "<strong>Support inbox</strong> ({user}) works again since"
            ))
            .assert_contains(&format!("(it had failed since {since})"));
    }
    let received: Vec<String> = servers
        .received_by(&recipient)
        .iter()
        .map(|m| readable(m))
        .collect();
    assert_eq!(received.len(), 2, "{received:#?}");
    assert!(received.iter().any(|message| message.contains(&format!(
        "Subject: Portico: The mailbox Support inbox works again (it had failed since {since})"
    ))));
    assert_eq!(next_interval(&app).await, (1, 0, 0));
    assert_eq!(servers.received_by(&recipient).len(), 2);
    let text = metrics(&app).await;
    assert!(
        text.contains("portico_mailboxes_by_check_state{state=\"passing\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portico_mailboxes_by_check_state{state=\"failing\"} 0"),
        "{text}"
    );

    // The recovery leaves the pages after a day.
    app.state.clock.advance(Duration::hours(25));
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("works again since");

    // Five checks since, and the audit log gained the two alerts sent, not a row per check.
    let audit = app.audit_actions(&tenant).await;
    assert_eq!(audit.len(), audited_before + 2, "{audit:?}");
    let sent: Vec<_> = audit
        .iter()
        .filter(|(action, target, _)| action == "expiry_alert.sent" && target == "Support inbox")
        .collect();
    assert_eq!(sent.len(), 2, "{audit:?}");
}

async fn two_instances_check_each_mailbox_once_per_interval(backend: Backend) {
    let servers = mail_servers();
    let database = TestDatabase::create(backend).await;
    let shared = database.shared();
    let key = SecretKey::generate();
    let a = instance(database, &key).await;
    let b = instance(shared, &key).await;
    let (_, admin) = a.tenant_with_admin("acme").await;
    let password = "shared by six";
    let user = own_account(password).await;
    let segment = segment(&admin, "acme", "Support").await;
    for n in 0..6 {
        imap_mailbox(
            &admin,
            &segment,
            &format!("Inbox {n}"),
            &user,
            password,
            servers.imaps,
        )
        .await;
    }

    // Both instances see the new mailboxes at once: each gets one place in the next hour.
    let started = a.state.clock.now().unix_timestamp();
    let (on_a, on_b) = tokio::join!(mailbox_checks::run(&a.state), mailbox_checks::run(&b.state));
    assert_eq!(on_a.unwrap().added + on_b.unwrap().added, 6);
    let pool = sqlx::AnyPool::connect(&a.database_url()).await.unwrap();
    let places: Vec<i64> = sqlx::query_scalar("SELECT next_check_at FROM mailbox_checks")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(places.len(), 6);
    assert!(
        places
            .iter()
            .all(|at| (started..started + 3600).contains(at)),
        "{places:?} not within the hour from {started}"
    );
    assert!(
        places.iter().any(|at| *at != places[0]),
        "not spread: {places:?}"
    );

    for interval in 0..2 {
        an_interval_passes(&[&a, &b]);
        let (on_a, on_b) =
            tokio::join!(mailbox_checks::run(&a.state), mailbox_checks::run(&b.state));
        let (on_a, on_b) = (on_a.unwrap(), on_b.unwrap());
        assert_eq!(
            on_a.passed + on_b.passed,
            6,
            "interval {interval}: {on_a:?} {on_b:?}"
        );
        assert_eq!(on_a.failed + on_b.failed, 0);
        // Within the interval, neither checks any again.
        let (again_a, again_b) =
            tokio::join!(mailbox_checks::run(&a.state), mailbox_checks::run(&b.state));
        assert_eq!(again_a.unwrap().passed + again_b.unwrap().passed, 0);
    }
    let passing = check_store::count_by_state(&a.state.db).await.unwrap();
    assert!(passing.contains(&(CheckState::Passing, 6)), "{passing:?}");
    let checks = |text: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix("portico_mailbox_checks_total{outcome=\"passed\"} "))
            .map_or(0, |count| count.parse::<usize>().unwrap())
    };
    assert_eq!(checks(&metrics(&a).await) + checks(&metrics(&b).await), 12);
}

/// A mail server that takes every connection and never says a word, counting how many it
/// holds open at once.
async fn tarpit() -> (u16, Arc<AtomicUsize>) {
    let open = Arc::new(AtomicUsize::new(0));
    let most_open = Arc::new(AtomicUsize::new(0));
    let most = most_open.clone();
    let port = serve_on_loopback(move |mut stream| {
        let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now_open, Ordering::SeqCst);
        let open = open.clone();
        async move {
            let mut buffer = [0_u8; 1024];
            while matches!(stream.read(&mut buffer).await, Ok(read) if read > 0) {}
            open.fetch_sub(1, Ordering::SeqCst);
        }
    })
    .await;
    (port, most_open)
}

async fn a_tenant_whose_servers_hang_delays_another_tenants_check_by_less_than_one_timeout(
    backend: Backend,
) {
    let servers = mail_servers();
    let app = instance(TestDatabase::create(backend).await, &SecretKey::generate()).await;
    let (tarpit_port, most_open) = tarpit().await;
    // Acme has five mailboxes on a server that never answers: more than the places checks
    // share, so one after another, or all at once, they would hold up everyone else.
    let (acme, acme_admin) = app.tenant_with_admin("acme").await;
    let acme_segment = segment(&acme_admin, "acme", "Tarpits").await;
    for n in 0..5 {
        imap_mailbox(
            &acme_admin,
            &acme_segment,
            &format!("Hangs {n}"),
            "someone@acme.test",
            "whatever it is",
            tarpit_port,
        )
        .await;
    }
    let (bravo, bravo_admin) = app.tenant_with_admin("bravo").await;
    let password = "bravo works";
    let user = own_account(password).await;
    let bravo_segment = segment(&bravo_admin, "bravo", "Support").await;
    let bravo_mailbox = id_of(
        &imap_mailbox(
            &bravo_admin,
            &bravo_segment,
            "Bravo inbox",
            &user,
            password,
            servers.imaps,
        )
        .await,
    );
    assert_eq!(mailbox_checks::run(&app.state).await.unwrap().added, 6);
    // Acme's checks came due first.
    let pool = sqlx::AnyPool::connect(&app.database_url()).await.unwrap();
    for (tenant, due_at) in [(&acme, 1_i64), (&bravo, 2)] {
        sqlx::query("UPDATE mailbox_checks SET next_check_at = $1 WHERE tenant_id = $2")
            .bind(due_at)
            .bind(tenant.id.as_str())
            .execute(&pool)
            .await
            .unwrap();
    }

    let started = Instant::now();
    let state = app.state.clone();
    let job = tokio::spawn(async move { mailbox_checks::run(&state).await });
    let bravo_checked = async || checked_at_all(&app, &bravo, &bravo_mailbox).await;
    eventually(4 * CHECK_TIMEOUT, "Bravo's check", bravo_checked).await;
    let waited = started.elapsed();
    assert!(
        waited < CHECK_TIMEOUT,
        "Bravo's check waited {waited:?}, more than one check timeout ({CHECK_TIMEOUT:?})"
    );
    let run = job.await.unwrap().unwrap();
    assert_eq!((run.passed, run.failed), (1, 5), "{run:?}");
    // Acme's checks went one at a time, each ended by the timeout.
    assert_eq!(most_open.load(Ordering::SeqCst), 1);
    let page = acme_admin.get(&acme_segment).await;
    page.assert_contains("No answer within 3 seconds");
}

/// Whether the mailbox's check has run once.
async fn checked_at_all(app: &TestApp, tenant: &Tenant, mailbox_id: &str) -> bool {
    check_store::get(&app.state.db, &tenant.id, mailbox_id)
        .await
        .unwrap()
        .is_some_and(|record| record.last_checked_at.is_some())
}

async fn checks_are_off_when_the_interval_is_zero(backend: Backend) {
    let servers = mail_servers();
    let app = spawn_app_with(TestDatabase::create(backend).await, |config| {
        config.mail_ca_file = Some(servers.ca_file.clone());
        config.mailbox_check_interval = None;
    })
    .await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let segment = segment(&admin, "acme", "Support").await;
    let password = "never checked";
    let user = own_account(password).await;
    let mailbox = imap_mailbox(
        &admin,
        &segment,
        "Quiet inbox",
        &user,
        password,
        servers.imaps,
    )
    .await;
    an_interval_passes(&[&app]);
    let run = mailbox_checks::run(&app.state).await.unwrap();
    assert_eq!(run, mailbox_checks::CheckRun::default());
    admin
        .get(&mailbox)
        .await
        .assert_contains("Off: your operator turned background checks off.")
        .assert_contains("Not tested yet");
}
