//! Two instances of Portico on one PostgreSQL behind one public URL, as a load balancer
//! would run them: they behave as one: sessions, sign-ins in flight and background jobs. (PostgreSQL only: several instances need a shared
//! database server; SQLite is one process's file.)

use portico::crypto::SecretKey;
use portico::domain::Role;
use portico::metrics::Job;
use portico::services;
use portico::services::jobs;
use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::oauth_connections::{authorize, connection, follow};
use crate::support::fake_microsoft::{FakeApp, FakeUser};
use crate::support::{
    Backend, Browser, TestApp, TestDatabase, default_secret_expiry, spawn_app_with,
};

const CONTOSO: Uuid = uuid!("44444444-4444-4444-8444-444444444444");
const APP_ID: Uuid = uuid!("55555555-5555-4555-8555-555555555555");

/// Instance A, and instance B on A's database with A's key, public URL and Microsoft.
async fn two_instances() -> Option<(TestApp, TestApp)> {
    if !Backend::postgres_available() {
        return None;
    }
    let database = TestDatabase::create(Backend::Postgres).await;
    let shared = database.shared();
    let key = SecretKey::generate();
    let key_b = key.clone();
    let a = spawn_app_with(database, move |config| config.secret_key = key.into()).await;
    let (base_url, microsoft) = (
        a.state.config.base_url.clone(),
        a.state.config.microsoft.clone(),
    );
    let b = spawn_app_with(shared, move |config| {
        config.secret_key = key_b.into();
        config.base_url = base_url;
        config.microsoft = microsoft;
    })
    .await;
    Some((a, b))
}

async fn assert_dashboard(browser: &Browser, name: &str) {
    browser
        .get("/t/acme/")
        .await
        .assert_status(200)
        .assert_contains(&format!("Welcome, {name}"));
}

#[tokio::test]
async fn a_session_made_on_one_instance_works_and_ends_on_the_other() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let (_, on_a) = a.tenant_with_admin("acme").await;
    let on_b = on_a.at(&b);
    assert_dashboard(&on_b, "admin").await;
    // A form loaded on B is accepted by A: the form token lives in the shared session.
    let form = on_b.get("/t/acme/segments").await;
    on_a.post_raw(
        "/t/acme/segments",
        &[("csrf_token", &form.csrf_token()), ("name", "Sales")],
    )
    .await
    .assert_status(303);
    on_b.get("/t/acme/segments").await.assert_contains("Sales");

    on_b.submit("/t/acme/", "/t/acme/logout", &[])
        .await
        .assert_status(303);
    on_a.get("/t/acme/").await.assert_redirect("/t/acme/login");
}

/// Nothing about a signed-in user is kept in an instance between requests: each reads the
/// session with its user in one statement, so a change made on A holds on B at once.
#[tokio::test]
async fn a_role_change_and_a_disable_on_one_instance_hold_on_the_other_at_once() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let (tenant, admin_on_a) = a.tenant_with_admin("acme").await;
    let bob = a.create_user(&tenant, "bob@acme.test", Role::Agent).await;
    let bob_page = format!("/t/acme/users/{}", bob.as_str());
    let bob_on_b = b.browser();
    bob_on_b
        .sign_in("acme", "bob@acme.test", crate::support::PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    bob_on_b.get("/t/acme/users").await.assert_status(403);

    admin_on_a
        .submit(&bob_page, &format!("{bob_page}/role"), &[("role", "admin")])
        .await
        .assert_redirect(&format!("{bob_page}?done=role"));
    bob_on_b.get("/t/acme/users").await.assert_status(200);

    admin_on_a
        .submit(&bob_page, &format!("{bob_page}/role"), &[("role", "agent")])
        .await
        .assert_redirect(&format!("{bob_page}?done=role"));
    bob_on_b.get("/t/acme/users").await.assert_status(403);

    admin_on_a
        .submit(
            &bob_page,
            &format!("{bob_page}/status"),
            &[("status", "disabled")],
        )
        .await
        .assert_redirect(&format!("{bob_page}?done=status"));
    bob_on_b
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");
}

#[tokio::test]
async fn a_microsoft_sign_in_started_on_one_instance_completes_on_the_other() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    a.register_azure_app(
        FakeApp::new(APP_ID, CONTOSO)
            .multi_tenant()
            .web_redirect_uri(&a.url("/auth/microsoft/callback"))
            .secret(
                "Fake~Secret.Value-123",
                OffsetDateTime::now_utc() + Duration::days(90),
            ),
    );
    a.microsoft.add_user(
        FakeUser::new(CONTOSO, "ana@contoso.com", "Ana Contoso").email("ana@contoso.com"),
    );
    a.microsoft.sign_in_as("ana@contoso.com");
    let (tenant, admin) = a.tenant_with_admin("acme").await;
    let settings = "/t/acme/settings/microsoft-sign-in";
    admin
        .submit(
            settings,
            settings,
            &[
                ("client_id", &APP_ID.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("cloud", "global"),
                ("client_secret", "Fake~Secret.Value-123"),
                ("secret_expires_on", &default_secret_expiry()),
                ("enabled", "on"),
            ],
        )
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    a.create_user(&tenant, "ana@contoso.com", Role::Agent).await;

    let ana_on_a = a.browser();
    let callback = ana_on_a
        .microsoft_authorize("/t/acme/auth/microsoft")
        .await
        .unwrap();
    // The balancer sends Microsoft's redirect back to the other instance.
    let to_b = callback.replace(&a.address.to_string(), &b.address.to_string());
    assert_ne!(to_b, callback);
    ana_on_a.get_url(&to_b).await.assert_redirect("/t/acme/");
    assert_dashboard(&ana_on_a.at(&b), "ana").await;
    assert_dashboard(&ana_on_a, "ana").await;
}

#[tokio::test]
async fn oauth_renewal_due_on_both_instances_runs_once() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    let (admin, page) = connection(&a).await;
    let callback = authorize(&admin, &page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as");
    // Both instances' clocks reach the renewal horizon; Microsoft answers slowly, so
    // both renewal jobs are due at the same time.
    for app in [&a, &b] {
        app.state.clock.advance(Duration::minutes(55));
    }
    a.microsoft
        .set_delay(Some(std::time::Duration::from_millis(300)));
    let requests = a.microsoft.token_requests();
    let (on_a, on_b) = tokio::join!(
        services::oauth_connections::renew_due(&a.state),
        services::oauth_connections::renew_due(&b.state)
    );
    let mut renewed = [on_a.unwrap(), on_b.unwrap()];
    renewed.sort_unstable();
    assert_eq!(renewed, [0, 1]);
    assert_eq!(a.microsoft.token_requests() - requests, 1);
}

#[tokio::test]
async fn each_background_job_runs_on_one_instance_per_interval() {
    let Some((a, b)) = two_instances().await else {
        return;
    };
    for job in [Job::SessionCleanup, Job::OAuthRenewal, Job::MailboxChecks] {
        let (on_a, on_b) = tokio::join!(
            jobs::run_if_due(&a.state, job),
            jobs::run_if_due(&b.state, job)
        );
        let mut ran = [on_a.unwrap(), on_b.unwrap()];
        ran.sort_unstable();
        assert_eq!(ran, [false, true], "{job:?}");
        // Within the interval, no instance runs it again...
        assert!(!jobs::run_if_due(&a.state, job).await.unwrap());
        assert!(!jobs::run_if_due(&b.state, job).await.unwrap());
    }
    // ...and once it is over, the first instance to ask does.
    b.state.clock.advance(Duration::minutes(15));
    assert!(
        jobs::run_if_due(&b.state, Job::SessionCleanup)
            .await
            .unwrap()
    );
    assert!(
        !jobs::run_if_due(&a.state, Job::SessionCleanup)
            .await
            .unwrap()
    );
}
