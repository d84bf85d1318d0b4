//! Background work takes turns across tenants: due expiry alerts and OAuth renewals are
//! listed every tenant's first, then every tenant's second, a tenant's fresh work before
//! its retries; and a tenant has one alert being sent at a time, whichever instance sends.
//! (That one tenant's hanging mail server costs another tenant at most one send timeout is
//! shown against real servers in mail_servers/alerts.rs.)

use portico::domain::{ClientId, Cloud, OAuthPurpose};
use portico::services;
use portico::services::oauth_connections::Renewal;
use portico::store::expiry_alerts::{self, Alert, PlannedAlert};
use portico::store::oauth_connections::{
    self, ConnectionFields, SealedAccessToken, SealedRefreshToken, SealedTokens,
};
use portico::store::tenants::TenantId;

use crate::oauth_connections::{authorize, connection as authenticated_connection, follow};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, spawn_app};

on_both_backends!(
    due_alerts_take_turns_across_tenants_and_retries_wait_behind_fresh_ones,
    a_tenant_has_one_alert_claimed_at_a_time,
    due_renewals_take_turns_across_tenants_and_retries_wait_behind_fresh_ones,
    a_renewal_that_finds_the_token_renewed_already_counts_no_failure,
);

/// Plans an alert about `name` at `now`, as the alert job does.
async fn plan(app: &TestApp, tenant: &TenantId, name: &str, now: i64) {
    let alert = PlannedAlert {
        kind: "client_secret",
        subject_id: name,
        instance: "secret",
        threshold: "30_days",
        subject_name: name,
        ends_on: None,
    };
    assert!(
        expiry_alerts::plan(&app.state.db, tenant, &alert, now)
            .await
            .unwrap()
    );
}

async fn due_alert(app: &TestApp, name: &str, now: i64) -> Alert {
    expiry_alerts::due(&app.state.db, now, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|alert| alert.subject_name == name)
        .unwrap_or_else(|| panic!("{name} is not due"))
}

/// `name`'s alert is tried at `now` and fails: due again at once, as a retry.
async fn fail_once(app: &TestApp, name: &str, now: i64) {
    let alert = due_alert(app, name, now).await;
    let db = &app.state.db;
    let lease = expiry_alerts::claim(db, &alert, now, now + 300)
        .await
        .unwrap()
        .unwrap();
    expiry_alerts::release(db, &alert.id, &lease, now, "refused")
        .await
        .unwrap();
}

async fn due_names(app: &TestApp, now: i64, limit: i64) -> Vec<String> {
    expiry_alerts::due(&app.state.db, now, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|alert| alert.subject_name)
        .collect()
}

async fn due_alerts_take_turns_across_tenants_and_retries_wait_behind_fresh_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    let acme = app.create_tenant("acme", "Acme").await.id;
    let bravo = app.create_tenant("bravo", "Bravo").await.id;
    let cargo = app.create_tenant("cargo", "Cargo").await.id;
    // Acme's oldest alert keeps failing, and so does Bravo's only one.
    plan(&app, &acme, "a0", 50).await;
    fail_once(&app, "a0", 60).await;
    for (name, at) in [("a1", 100), ("a2", 101), ("a3", 102)] {
        plan(&app, &acme, name, at).await;
    }
    plan(&app, &bravo, "b1", 103).await;
    fail_once(&app, "b1", 110).await;
    plan(&app, &cargo, "c1", 104).await;
    plan(&app, &cargo, "c2", 105).await;

    // Oldest first, this would be a0 a1 a2 a3 b1 c1 c2: Acme's four before anyone else's.
    assert_eq!(
        due_names(&app, 1000, 100).await,
        ["a1", "c1", "b1", "a2", "c2", "a3", "a0"]
    );
    // A small batch still holds every tenant's turn.
    assert_eq!(due_names(&app, 1000, 3).await, ["a1", "c1", "b1"]);
}

async fn a_tenant_has_one_alert_claimed_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let db = &app.state.db;
    let acme = app.create_tenant("acme", "Acme").await.id;
    let bravo = app.create_tenant("bravo", "Bravo").await.id;
    plan(&app, &acme, "a1", 100).await;
    plan(&app, &acme, "a2", 100).await;
    plan(&app, &bravo, "b1", 100).await;
    let (a1, a2, b1) = (
        due_alert(&app, "a1", 200).await,
        due_alert(&app, "a2", 200).await,
        due_alert(&app, "b1", 200).await,
    );

    // Whoever asks (another instance, say): while a1 is being sent, a2 waits; b1 does not.
    let lease = expiry_alerts::claim(db, &a1, 200, 500)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(expiry_alerts::claim(db, &a2, 200, 500).await.unwrap(), None);
    assert!(
        expiry_alerts::claim(db, &b1, 200, 500)
            .await
            .unwrap()
            .is_some()
    );
    // Once a1 is sent, a2 may go; a claim left by an instance that died lapses.
    assert!(
        expiry_alerts::mark_sent(db, &a1.id, &lease, 210)
            .await
            .unwrap()
    );
    assert!(
        expiry_alerts::claim(db, &a2, 210, 500)
            .await
            .unwrap()
            .is_some()
    );
    plan(&app, &acme, "a3", 100).await;
    let a3 = due_alert(&app, "a3", 210).await;
    assert_eq!(expiry_alerts::claim(db, &a3, 499, 800).await.unwrap(), None);
    assert!(
        expiry_alerts::claim(db, &a3, 500, 800)
            .await
            .unwrap()
            .is_some()
    );
}

/// An authenticated connection `name` of `tenant` whose access token expires at
/// `expires_at`; with `failed`, its last renewal failed.
async fn connection(app: &TestApp, tenant: &TenantId, name: &str, expires_at: i64, failed: bool) {
    let db = &app.state.db;
    let id = oauth_connections::new_connection_id();
    let fields = ConnectionFields {
        name: name.into(),
        client_id: ClientId::parse("00000000-0000-4000-8000-000000000001").unwrap(),
        directory: "organizations".into(),
        cloud: Cloud::Global,
        purpose: OAuthPurpose::Imap,
        authorization_url: None,
        token_url: None,
        scope: "offline_access".into(),
    };
    oauth_connections::create(db, tenant, &id, &fields, None)
        .await
        .unwrap();
    let keys = &app.state.config.secret_key;
    let access = SealedAccessToken::seal(keys, tenant, &id, &"access".into());
    let refresh = SealedRefreshToken::seal(keys, tenant, &id, &"refresh".into());
    let tokens = SealedTokens {
        access_token: &access,
        expires_at,
        refresh_token: Some(&refresh),
    };
    // A new connection is at version 1.
    let stored = oauth_connections::store_authentication(
        db,
        tenant,
        &id,
        1,
        "user@example.test",
        &tokens,
        0,
    )
    .await
    .unwrap();
    assert!(stored);
    if failed {
        let lease = oauth_connections::claim_renewal(db, tenant, &id, 0, 60)
            .await
            .unwrap()
            .unwrap();
        oauth_connections::postpone_renewal(db, tenant, &id, &lease, 0)
            .await
            .unwrap();
    }
}

async fn due_renewals_take_turns_across_tenants_and_retries_wait_behind_fresh_ones(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let acme = app.create_tenant("acme", "Acme").await.id;
    let bravo = app.create_tenant("bravo", "Bravo").await.id;
    let cargo = app.create_tenant("cargo", "Cargo").await.id;
    // Acme's soonest-expiring connection failed its last renewal, as did Bravo's only one.
    connection(&app, &acme, "a0", 10, true).await;
    for (name, expires_at) in [("a1", 20), ("a2", 21), ("a3", 22)] {
        connection(&app, &acme, name, expires_at, false).await;
    }
    connection(&app, &bravo, "b1", 15, true).await;
    connection(&app, &cargo, "c1", 30, false).await;
    connection(&app, &cargo, "c2", 31, false).await;
    // Not due: expires after the horizon.
    connection(&app, &cargo, "later", 5000, false).await;

    let due = |limit| {
        let db = app.state.db.clone();
        async move {
            oauth_connections::due_for_renewal(&db, 100, 1000, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|connection| connection.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due(100).await, ["a1", "c1", "b1", "a2", "c2", "a3", "a0"]);
    assert_eq!(due(3).await, ["a1", "c1", "b1"]);
}

/// Two renewers read the connection when it was due; the second claims it only after the
/// first renewed it. It renews nothing, and its turn is not counted as a failure (which
/// would put a healthy connection behind failing ones and make it wait its backoff).
async fn a_renewal_that_finds_the_token_renewed_already_counts_no_failure(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = authenticated_connection(&app).await;
    let callback = authorize(&admin, &page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as");
    app.state.clock.advance(time::Duration::minutes(55));
    let tenant = app.tenant("acme").await;
    let read_when_due = oauth_connections::list(&app.state.db, &tenant.id)
        .await
        .unwrap()
        .remove(0);

    let requests = app.microsoft.token_requests();
    let first = services::oauth_connections::renew(&app.state, &read_when_due)
        .await
        .unwrap();
    let second = services::oauth_connections::renew(&app.state, &read_when_due)
        .await
        .unwrap();
    assert_eq!((first, second), (Renewal::Renewed, Renewal::Skipped));
    assert_eq!(app.microsoft.token_requests() - requests, 1);
    let after = oauth_connections::get(&app.state.db, &tenant.id, &read_when_due.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.renewal_failures, 0);
    // Nothing holds it: the next renewal, when due, is not kept waiting.
    app.state.clock.advance(time::Duration::minutes(55));
    assert_eq!(
        services::oauth_connections::renew_due(&app.state)
            .await
            .unwrap(),
        1
    );
}
