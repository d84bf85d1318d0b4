//! Background work takes turns across tenants: due OAuth renewals are listed every
//! tenant's first, then every tenant's second, a tenant's fresh work before its retries.

use portico::connections::{self, Renewal};
use portico::domain::{ClientId, Cloud, OAuthPurpose};
use portico::store::oauth_connections::{self, ConnectionFields, SealedTokens};
use portico::store::tenants::TenantId;

use crate::oauth_connections::{authorize, connection as authenticated_connection, follow};
use crate::on_both_backends;
use crate::support::{Backend, TestApp, spawn_app};

on_both_backends!(
    due_renewals_take_turns_across_tenants_and_retries_wait_behind_fresh_ones,
    a_renewal_that_finds_the_token_renewed_already_counts_no_failure,
);

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
    let tokens = SealedTokens {
        access_token: "sealed-access",
        expires_at,
        refresh_token: Some("sealed-refresh"),
    };
    oauth_connections::store_authentication(db, tenant, &id, "user@example.test", &tokens, 0)
        .await
        .unwrap();
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
    let tenant = portico::store::tenants::find_by_slug(&app.state.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let read_when_due = oauth_connections::list(&app.state.db, &tenant.id)
        .await
        .unwrap()
        .remove(0);

    let requests = app.microsoft.token_requests();
    let first = connections::renew(&app.state, &read_when_due)
        .await
        .unwrap();
    let second = connections::renew(&app.state, &read_when_due)
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
    assert_eq!(connections::renew_due(&app.state).await.unwrap(), 1);
}
