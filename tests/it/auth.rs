//! Local sign-in, sessions, throttling and the CSRF defense.

use portico::domain::Role;

use std::collections::BTreeMap;

use crate::on_both_backends;
use crate::support::{Backend, PASSWORD, TestApp, spawn_app};

on_both_backends!(
    sign_in_lands_on_the_dashboard_under_a_new_session_id,
    wrong_password_unknown_email_and_disabled_user_get_one_message,
    repeated_failures_are_throttled_and_audited,
    sign_out_destroys_the_session,
    pages_need_a_signed_in_user,
    post_without_form_token_is_refused_and_changes_nothing,
    post_from_another_origin_is_refused,
    pages_move_the_idle_deadline_at_most_once_a_minute,
    a_thousand_anonymous_sign_in_page_views_write_no_row,
    anonymous_form_tokens_hold_only_with_their_signed_cookie,
);

async fn sign_in_lands_on_the_dashboard_under_a_new_session_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;

    let browser = app.browser();
    let login = browser.get("/t/acme/login").await;
    login
        .assert_status(200)
        .assert_contains("Sign in")
        .assert_contains("Acme Corp");
    // The page makes no session (its form token is in a cookie of its own).
    assert_eq!(browser.session_cookie(), None);
    let cookie = login
        .headers
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("portico_form="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http must not get Secure cookies: {cookie}"
    );
    // An attacker plants a session id of their choosing before sign-in.
    let before = tower_sessions::session::Id::default().to_string();
    browser.set_session_cookie(&before);

    browser
        .sign_in("acme", "Agent@Acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    let after = browser.session_cookie().unwrap();
    assert_ne!(before, after, "the session id must change at sign-in");

    browser
        .get("/t/acme/")
        .await
        .assert_status(200)
        .assert_contains("Welcome, agent");

    // The id known before sign-in (planted by an attacker, say) opens nothing.
    let attacker = app.browser();
    attacker.set_session_cookie(&before);
    attacker
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");

    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit
            .iter()
            .any(|(action, target, _)| action == "sign_in" && target == "agent@acme.test")
    );
}

async fn wrong_password_unknown_email_and_disabled_user_get_one_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let agent_id = app
        .create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    admin
        .submit(
            &format!("/t/acme/users/{}", agent_id.as_str()),
            &format!("/t/acme/users/{}/status", agent_id.as_str()),
            &[("status", "disabled")],
        )
        .await
        .assert_redirect(&format!("/t/acme/users/{}?done=status", agent_id.as_str()));

    for (email, password) in [
        ("admin@acme.test", "not the password"),
        ("nobody@acme.test", PASSWORD),
        ("agent@acme.test", PASSWORD),
    ] {
        let browser = app.browser();
        let page = browser.sign_in("acme", email, password).await;
        page.assert_status(400)
            .assert_contains("Email or password is incorrect.")
            .assert_contains(&format!("value=\"{email}\""))
            .assert_lacks(password);
        browser
            .get("/t/acme/")
            .await
            .assert_redirect("/t/acme/login");
    }

    let failures: Vec<(String, String)> = app
        .audit_actions(&tenant)
        .await
        .into_iter()
        .filter(|(action, _, _)| action == "sign_in.failed")
        .map(|(_, target, detail)| (target, detail))
        .collect();
    assert!(failures.contains(&("admin@acme.test".into(), "wrong password".into())));
    assert!(failures.contains(&("nobody@acme.test".into(), "unknown email".into())));
    assert!(failures.contains(&("agent@acme.test".into(), "account is disabled".into())));
}

async fn repeated_failures_are_throttled_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let browser = app.browser();
    for _ in 0..5 {
        browser
            .sign_in("acme", "agent@acme.test", "wrong password!")
            .await
            .assert_status(400);
    }
    // Even the right password waits now.
    browser
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("Too many failed sign-ins");
    browser
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");
    let audit = app.audit_actions(&tenant).await;
    assert!(audit.iter().any(|(action, target, _)| action == "sign_in.throttled" && target == "agent@acme.test"));

    // Another account of the tenant is not locked by this one's failures.
    app.create_user(&tenant, "other@acme.test", Role::Agent)
        .await;
    app.browser()
        .sign_in("acme", "other@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
}

async fn sign_out_destroys_the_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, browser) = app.tenant_with_admin("acme").await;
    let session = browser.session_cookie().unwrap();
    browser
        .submit("/t/acme/", "/t/acme/logout", &[])
        .await
        .assert_redirect("/t/acme/login");
    browser
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");

    // A copy of the old cookie is worthless too: the session is gone on the server.
    let replay = app.browser();
    replay.set_session_cookie(&session);
    replay
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");
    let audit = app.audit_actions(&tenant).await;
    assert!(audit.iter().any(|(action, _, _)| action == "sign_out"));
}

async fn pages_need_a_signed_in_user(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_tenant("acme", "Acme Corp").await;
    let browser = app.browser();
    for page in [
        "/t/acme/",
        "/t/acme/users",
        "/t/acme/audit",
        "/t/acme/profile",
    ] {
        browser.get(page).await.assert_redirect("/t/acme/login");
    }
    browser.get("/t/nope/login").await.assert_status(404);
}

async fn post_without_form_token_is_refused_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let fields = [
        ("display_name", "Mallory"),
        ("email", "mallory@acme.test"),
        ("role", "admin"),
        ("password", "long enough password"),
    ];
    admin
        .post_raw("/t/acme/users", &fields)
        .await
        .assert_status(403)
        .assert_contains("This form has expired");
    let mut forged = vec![("csrf_token", "forged-token")];
    forged.extend_from_slice(&fields);
    admin
        .post_raw("/t/acme/users", &forged)
        .await
        .assert_status(403);

    admin
        .get("/t/acme/users")
        .await
        .assert_status(200)
        .assert_lacks("mallory@acme.test");
    assert!(
        !app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(_, target, _)| target == "mallory@acme.test")
    );
}

async fn post_from_another_origin_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let page = admin.get("/t/acme/users/new").await;
    let token = page.csrf_token();
    let response = admin
        .client
        .post(app.url("/t/acme/users"))
        .header("origin", "https://evil.example")
        .form(&[
            ("csrf_token", token.as_str()),
            ("display_name", "Mallory"),
            ("email", "mallory@acme.test"),
            ("role", "agent"),
            ("password", "long enough password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    admin
        .get("/t/acme/users")
        .await
        .assert_lacks("mallory@acme.test");
}

/// A page view reads the session with its user, in one statement, and writes nothing; once
/// a minute has passed since the session last moved its idle deadline, the next page moves
/// it (a write, and a cookie with the full idle time again).
async fn pages_move_the_idle_deadline_at_most_once_a_minute(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let set_cookie = |page: &crate::support::Page| {
        page.headers
            .get("set-cookie")
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let cost = async || {
        let before = app.state.db.queries_started();
        let page = admin.get("/t/acme/profile").await;
        page.assert_status(200);
        (app.state.db.queries_started() - before, set_cookie(&page))
    };
    let (quiet, cookie) = cost().await;
    assert_eq!(quiet, 1, "the profile page reads only the session and user");
    assert_eq!(cookie, None);
    assert_eq!(cost().await, (quiet, None));

    app.state.clock.advance(time::Duration::seconds(61));
    let (touched, cookie) = cost().await;
    assert_eq!(touched, quiet + 1, "the session is saved once");
    let cookie = cookie.unwrap_or_else(|| panic!("the cookie is not sent again"));
    assert!(cookie.contains("Max-Age=7200"), "{cookie}");
    assert_eq!(cost().await, (quiet, None));
}

/// How many rows each table holds.
async fn row_counts(app: &TestApp) -> BTreeMap<String, usize> {
    let mut counts: BTreeMap<String, usize> = app
        .table_names()
        .await
        .into_iter()
        .map(|table| (table, 0))
        .collect();
    for (table, _) in app.all_rows().await {
        *counts.entry(table).or_default() += 1;
    }
    counts
}

/// Anonymous visitors, with cookies and without, open the sign-in page a thousand times:
/// no table gains or loses a row, and no session cookie is handed out.
async fn a_thousand_anonymous_sign_in_page_views_write_no_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let before = row_counts(&app).await;
    assert!(before.len() > 10, "{before:?}");

    let returning = app.browser();
    let cookieless = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for batch in 0..100 {
        let views = (0..10).map(|n| {
            let (cookieless, returning, app) = (&cookieless, &returning, &app);
            async move {
                if n == 0 {
                    let page = returning.get("/t/acme/login").await;
                    (page.status.as_u16(), page.headers)
                } else {
                    let response = cookieless
                        .get(app.url("/t/acme/login"))
                        .send()
                        .await
                        .unwrap();
                    (response.status().as_u16(), response.headers().clone())
                }
            }
        });
        for (status, headers) in futures_util::future::join_all(views).await {
            assert_eq!(status, 200, "batch {batch}");
            for cookie in headers.get_all("set-cookie") {
                let cookie = cookie.to_str().unwrap();
                assert!(!cookie.starts_with("portico_session="), "{cookie}");
            }
        }
    }
    assert_eq!(returning.session_cookie(), None);
    assert_eq!(row_counts(&app).await, before);
}

/// The form token of a page shown before sign-in holds only with the signed cookie that
/// came with it, from Portico's own origin; once signed in, only the session's token holds.
async fn anonymous_form_tokens_hold_only_with_their_signed_cookie(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let credentials = [("email", "agent@acme.test"), ("password", PASSWORD)];
    let with_token = |token: &str| {
        let mut fields = vec![("csrf_token", token.to_owned())];
        fields.extend(credentials.map(|(name, value)| (name, value.to_owned())));
        fields
    };
    let post = async |browser: &crate::support::Browser, fields: &[(&str, String)]| {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        browser.post_raw("/t/acme/login", &fields).await
    };

    let alice = app.browser();
    let token = alice.get("/t/acme/login").await.csrf_token();
    // Another browser's token, a browser without the cookie, a forged cookie: all refused.
    let mallory = app.browser();
    mallory.get("/t/acme/login").await;
    post(&mallory, &with_token(&token)).await.assert_status(403);
    let cookieless = app.browser();
    post(&cookieless, &with_token(&token))
        .await
        .assert_status(403)
        .assert_contains("This form has expired");
    let forged = app.browser();
    let forged_cookie = format!("portico_form={token}.c2lnbmF0dXJl; Path=/");
    let response = forged
        .client
        .post(app.url("/t/acme/login"))
        .header("cookie", forged_cookie)
        .form(&with_token(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // The right pair from another site's page.
    let response = alice
        .client
        .post(app.url("/t/acme/login"))
        .header("origin", "https://evil.example")
        .form(&with_token(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        !app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(action, _, _)| action.starts_with("sign_in")),
        "a refused form was checked"
    );

    // The right pair from Portico's own page signs in; a failed try shows the same token.
    let wrong = [
        ("csrf_token", token.clone()),
        ("email", "agent@acme.test".to_owned()),
        ("password", "not the password".to_owned()),
    ];
    let again = post(&alice, &wrong).await;
    again.assert_status(400);
    assert_eq!(again.csrf_token(), token);
    post(&alice, &with_token(&token))
        .await
        .assert_redirect("/t/acme/");
    // Signed in, the session has its own token: the cookie's no longer holds.
    let profile = alice.get("/t/acme/profile").await;
    assert_ne!(profile.csrf_token(), token);
    alice
        .post_raw("/t/acme/logout", &[("csrf_token", &token)])
        .await
        .assert_status(403);
    alice.get("/t/acme/").await.assert_status(200);
}
