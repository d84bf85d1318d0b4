//! Delegated OAuth connections: Authenticate through `/oauth/callback`, then renewal.

use portico::domain::Role;
use portico::services;
use portico::services::oauth_connections::Renewal;
use portico::store::oauth_connections;
use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, FakeUser};
use crate::support::{Backend, Browser, PASSWORD, Page, TestApp, spawn_app};

const CONTOSO: Uuid = uuid!("88888888-8888-4888-8888-888888888888");
pub(crate) const OAUTH_APP: Uuid = uuid!("99999999-9999-4999-8999-999999999999");
pub(crate) const SECRET: &str = "Delegated~Secret.77";

on_both_backends!(
    authenticate_round_trip_ends_authenticated_as_the_mailbox_user,
    declined_consent_is_explained_and_stores_nothing,
    callbacks_are_single_use_fresh_and_bound_to_the_admin,
    renewal_rotates_the_refresh_token_and_invalid_grant_asks_for_the_user,
    two_renewers_at_once_renew_once_and_outages_only_postpone,
);

/// The app in Contoso with `/oauth/callback` under Web, a user, and a connection made by
/// an admin of "acme"; returns the admin and the connection's page.
pub(crate) async fn connection(app: &TestApp) -> (Browser, String) {
    app.register_azure_app(
        FakeApp::new(OAUTH_APP, CONTOSO)
            .web_redirect_uri(&app.url("/oauth/callback"))
            .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(90)),
    );
    app.microsoft.add_user(FakeUser::new(
        CONTOSO,
        "support@contoso.com",
        "Support mailbox",
    ));
    app.microsoft.sign_in_as("support@contoso.com");
    let (_, admin) = app.tenant_with_admin("acme").await;
    let page = admin
        .add_oauth_connection(
            "acme",
            &[
                ("name", "Support IMAP"),
                ("client_id", &OAUTH_APP.to_string()),
                ("directory", "contoso.onmicrosoft.com"),
                ("purpose", "imap"),
                ("client_secret", SECRET),
            ],
        )
        .await;
    (admin, page)
}

/// Clicks Authenticate and lets the fake Microsoft answer; returns the callback URL.
pub(crate) async fn authorize(admin: &Browser, page: &str) -> String {
    let to_microsoft = admin
        .submit(
            page,
            &format!("{page}/authenticate"),
            &[("login_hint", "support@contoso.com")],
        )
        .await;
    let authorize_url = to_microsoft.location.clone().unwrap();
    assert!(
        authorize_url.contains("code_challenge_method=S256"),
        "{authorize_url}"
    );
    assert!(
        authorize_url.contains("login_hint=support%40contoso.com"),
        "{authorize_url}"
    );
    let microsoft = admin.get_url(&authorize_url).await;
    microsoft
        .location
        .clone()
        .unwrap_or_else(|| panic!("Microsoft did not redirect: {}", microsoft.body))
}

pub(crate) async fn status_of(app: &TestApp) -> oauth_connections::OAuthConnection {
    let tenant = app.tenant("acme").await;
    oauth_connections::list(&app.state.db, &tenant.id)
        .await
        .unwrap()
        .remove(0)
}

pub(crate) async fn follow(admin: &Browser, callback: &str) -> Page {
    let answer = admin.get_url(callback).await;
    match answer.location.clone() {
        Some(page) => admin.get(&page).await,
        None => answer,
    }
}

async fn authenticate_round_trip_ends_authenticated_as_the_mailbox_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;
    admin
        .get(&page)
        .await
        .assert_contains("Not authenticated")
        .assert_contains(&app.url("/oauth/callback"))
        .assert_contains("offline_access https://outlook.office365.com/IMAP.AccessAsUser.All")
        .assert_lacks(SECRET);

    let callback = authorize(&admin, &page).await;
    assert!(
        callback.starts_with(&app.url("/oauth/callback?")),
        "{callback}"
    );
    follow(&admin, &callback).await.assert_contains(
        "Authenticated as support@contoso.com. Portico now renews the token by itself.",
    );
    admin
        .get("/t/acme/oauth-connections")
        .await
        .assert_contains("Authenticated as support@contoso.com since");

    let stored = status_of(&app).await;
    let sealed = stored.refresh_token_sealed.unwrap();
    assert!(sealed.starts_with("v1."));
    assert!(stored.access_token_sealed.unwrap().starts_with("v1."));
    let tenant = app.tenant("acme").await;
    assert!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(action, target, detail)| {
                action == "oauth_connection.authenticated"
                    && target == "Support IMAP"
                    && detail == "authenticated as support@contoso.com"
            })
    );
}

async fn declined_consent_is_explained_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;
    app.microsoft.cancel_next_sign_in();
    let callback = authorize(&admin, &page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Sign-in cancelled")
        .assert_contains("Not authenticated");
    assert!(status_of(&app).await.refresh_token_sealed.is_none());
}

async fn callbacks_are_single_use_fresh_and_bound_to_the_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;

    // Another browser cannot complete it, and the callback works once.
    let callback = authorize(&admin, &page).await;
    app.browser()
        .get_url(&callback)
        .await
        .assert_status(400)
        .assert_contains("Authentication expired");
    let callback = authorize(&admin, &page).await;
    admin.get_url(&callback).await.assert_redirect(&page);
    admin
        .get_url(&callback)
        .await
        .assert_status(400)
        .assert_contains("Authentication expired");

    // Too late: nothing stored.
    let before = status_of(&app).await.authenticated_at;
    let callback = authorize(&admin, &page).await;
    app.state.clock.advance(Duration::minutes(11));
    admin.get_url(&callback).await.assert_status(400);
    assert_eq!(status_of(&app).await.authenticated_at, before);

    // Settings changed between Authenticate and the callback: the consent was for others.
    let callback = authorize(&admin, &page).await;
    let client_id = OAUTH_APP.to_string();
    let changed = [
        ("name", "Support IMAP"),
        ("client_id", client_id.as_str()),
        ("directory", "contoso.onmicrosoft.com"),
        ("cloud", "global"),
        ("purpose", "smtp"),
    ];
    admin
        .submit(&page, &page, &changed)
        .await
        .assert_redirect(&page);
    admin
        .get_url(&callback)
        .await
        .assert_status(400)
        .assert_contains("Authentication expired");
    assert!(status_of(&app).await.refresh_token_sealed.is_none());

    // Endpoints of the Advanced section must be https.
    let plain = [
        ("name", "Support IMAP"),
        ("client_id", client_id.as_str()),
        ("directory", "contoso.onmicrosoft.com"),
        ("cloud", "global"),
        ("purpose", "imap"),
        ("token_url", "http://127.0.0.1:9/token"),
    ];
    admin
        .submit(&page, &page, &plain)
        .await
        .assert_status(400)
        .assert_contains("Enter an https:// URL");

    // The browser now signed in as someone else (another tenant's admin) cannot finish it.
    let before = status_of(&app).await.authenticated_at;
    let callback = authorize(&admin, &page).await;
    let beta = app.create_tenant("beta", "Beta").await;
    app.create_user(&beta, "admin@beta.test", Role::Admin).await;
    admin
        .sign_in("beta", "admin@beta.test", PASSWORD)
        .await
        .assert_redirect("/t/beta/");
    admin
        .get_url(&callback)
        .await
        .assert_status(400)
        .assert_contains("Authentication expired");
    assert_eq!(status_of(&app).await.authenticated_at, before);
}

async fn renewal_rotates_the_refresh_token_and_invalid_grant_asks_for_the_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;
    let callback = authorize(&admin, &page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as");
    let before = status_of(&app).await;

    // Nothing is due yet; fifty-five minutes later the token is.
    assert_eq!(
        services::oauth_connections::renew_due(&app.state)
            .await
            .unwrap(),
        0
    );
    app.state.clock.advance(Duration::minutes(55));
    assert_eq!(
        services::oauth_connections::renew_due(&app.state)
            .await
            .unwrap(),
        1
    );
    let after = status_of(&app).await;
    assert_ne!(
        after.refresh_token_sealed, before.refresh_token_sealed,
        "the rotated refresh token is stored"
    );
    assert!(after.access_token_expires_at > before.access_token_expires_at);
    admin.get(&page).await.assert_contains("token renewed at");

    // The user's refresh tokens are revoked: the connection asks for the user again.
    app.microsoft.revoke_refresh_tokens();
    app.state.clock.advance(Duration::minutes(55));
    assert_eq!(
        services::oauth_connections::renew_due(&app.state)
            .await
            .unwrap(),
        0
    );
    let revoked = status_of(&app).await;
    assert_eq!(
        revoked.status,
        portico::domain::OAuthStatus::NeedsReauthentication
    );
    assert!(revoked.refresh_token_sealed.is_none());
    admin
        .get("/t/acme/oauth-connections")
        .await
        .assert_contains("Needs re-authentication");
    admin
        .get("/t/acme/")
        .await
        .assert_contains(
            "The OAuth connection <strong>Support IMAP</strong> needs re-authentication",
        )
        .assert_contains("Authenticate again");
    let tenant = app.tenant("acme").await;
    assert!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(action, _, _)| action == "oauth_connection.needs_reauthentication")
    );
}

async fn two_renewers_at_once_renew_once_and_outages_only_postpone(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;
    let callback = authorize(&admin, &page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as");
    app.state.clock.advance(Duration::minutes(55));

    let connection = status_of(&app).await;
    let requests = app.microsoft.token_requests();
    let (first, second) = tokio::join!(
        services::oauth_connections::renew(&app.state, &connection),
        services::oauth_connections::renew(&app.state, &connection)
    );
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
    assert_eq!(outcomes, [Renewal::Renewed, Renewal::Skipped]);
    assert_eq!(app.microsoft.token_requests() - requests, 1);

    // Microsoft is away: the renewal waits and tries later; the status stays.
    app.state.clock.advance(Duration::minutes(55));
    app.microsoft
        .set_delay(Some(std::time::Duration::from_secs(30)));
    let connection = status_of(&app).await;
    assert_eq!(
        services::oauth_connections::renew(&app.state, &connection)
            .await
            .unwrap(),
        Renewal::Postponed
    );
    let postponed = status_of(&app).await;
    assert_eq!(
        postponed.status,
        portico::domain::OAuthStatus::Authenticated
    );
    assert_eq!(postponed.renewal_failures, 1);
}
