//! First run: the setup link creates the first tenant and its admin, once.

use crate::on_both_backends;
use crate::support::{Backend, spawn_app};

on_both_backends!(
    setup_refuses_without_the_token,
    setup_shows_field_errors_and_keeps_what_was_typed,
    setup_creates_tenant_and_admin_then_closes,
);

async fn setup_refuses_without_the_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let browser = app.browser();
    browser
        .get("/setup")
        .await
        .assert_status(403)
        .assert_contains("Setup link required");
    browser.get("/setup?token=guessed").await.assert_status(403);

    // Posting the form with a valid form token but a wrong setup token changes nothing.
    let setup = app.setup_url().unwrap();
    let path = setup.trim_start_matches(&app.url(""));
    let page = browser
        .submit(
            path,
            "/setup",
            &[
                ("token", "guessed"),
                ("tenant_name", "Evil"),
                ("slug", "evil"),
                ("display_name", "Eve"),
                ("email", "eve@evil.test"),
                ("password", "long enough password"),
            ],
        )
        .await;
    page.assert_status(403);
    assert_eq!(
        portico::store::tenants::count(&app.state.db).await.unwrap(),
        0
    );
}

async fn setup_shows_field_errors_and_keeps_what_was_typed(backend: Backend) {
    let app = spawn_app(backend).await;
    let setup = app.setup_url().unwrap();
    let path = setup.trim_start_matches(&app.url(""));
    let token = path.trim_start_matches("/setup?token=");
    let browser = app.browser();
    let page = browser
        .submit(
            path,
            "/setup",
            &[
                ("token", token),
                ("tenant_name", "Acme Corp"),
                ("slug", "Not a slug!"),
                ("display_name", "Ana"),
                ("email", "ana-at-acme"),
                ("password", "short-secret"),
            ],
        )
        .await;
    page.assert_status(400)
        .assert_contains("value=\"Acme Corp\"")
        .assert_contains("value=\"Not a slug!\"")
        .assert_contains("value=\"ana-at-acme\"")
        .assert_contains("Use lowercase letters, digits and hyphens")
        .assert_contains("Enter an email address")
        .assert_lacks("short-secret");
    assert_eq!(
        portico::store::tenants::count(&app.state.db).await.unwrap(),
        0
    );
}

async fn setup_creates_tenant_and_admin_then_closes(backend: Backend) {
    let app = spawn_app(backend).await;
    let setup = app.setup_url().unwrap();
    let path = setup.trim_start_matches(&app.url(""));
    let token = path.trim_start_matches("/setup?token=").to_owned();
    let browser = app.browser();
    browser
        .submit(
            path,
            "/setup",
            &[
                ("token", &token),
                ("tenant_name", "Acme Corp"),
                ("slug", "acme"),
                ("display_name", "Ana Admin"),
                ("email", "Ana@Acme.test"),
                ("password", "correct horse battery"),
            ],
        )
        .await
        .assert_redirect("/t/acme/");

    // Signed in straight away, as the admin.
    browser
        .get("/t/acme/")
        .await
        .assert_status(200)
        .assert_contains("Welcome, Ana Admin")
        .assert_contains("Acme Corp");
    browser
        .get("/t/acme/users")
        .await
        .assert_status(200)
        .assert_contains("ana@acme.test");

    // The link is spent: the page is gone.
    assert!(app.setup_url().is_none());
    app.browser().get(path).await.assert_status(404);

    let tenant = app.tenant("acme").await;
    let actions: Vec<String> = app
        .audit_actions(&tenant)
        .await
        .into_iter()
        .map(|(action, _, _)| action)
        .collect();
    assert!(actions.contains(&"tenant.created".to_owned()));
    assert!(actions.contains(&"user.created".to_owned()));

    // The admin signs in again with the password chosen at setup.
    let again = app.browser();
    again
        .sign_in("acme", "ana@acme.test", "correct horse battery")
        .await
        .assert_redirect("/t/acme/");
}
