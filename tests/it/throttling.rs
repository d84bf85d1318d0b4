//! Every check of a password or one-time token is limited: the setup link per address, a
//! signed-in user's current password per account and address, and the one-time Microsoft
//! links per address. (Sign-in itself: auth.rs.)

use portico::domain::Role;
use time::Duration;

use crate::on_both_backends;
use crate::support::{Backend, PASSWORD, TestApp, spawn_app};

on_both_backends!(
    wrong_setup_links_pause_setup_for_that_address,
    wrong_current_passwords_pause_password_changes_and_sign_in,
    wrong_one_time_links_pause_links_from_that_address,
);

async fn wrong_setup_links_pause_setup_for_that_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let setup = app.setup_url().unwrap();
    let path = setup.trim_start_matches(&app.url(""));
    let token = path.trim_start_matches("/setup?token=");
    let browser = app.browser();
    let form_token = browser.get(path).await.csrf_token();
    let fields = |token| {
        [
            ("csrf_token", form_token.clone()),
            ("token", token),
            ("tenant_name", "Acme Corp".to_owned()),
            ("slug", "acme".to_owned()),
            ("display_name", "Ana".to_owned()),
            ("email", "ana@acme.test".to_owned()),
            ("password", "long enough password".to_owned()),
        ]
    };
    let post = |token: &str| {
        let fields = fields(token.to_owned());
        let browser = &browser;
        async move {
            let fields: Vec<(&str, &str)> = fields
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            browser.post_raw("/setup", &fields).await
        }
    };
    // Wrong links count whether opened or posted.
    for n in 0..9 {
        browser
            .get(&format!("/setup?token=guess-{n}"))
            .await
            .assert_status(403)
            .assert_contains("Setup link required");
    }
    post("guess-9").await.assert_status(403);

    // Now even the right link waits, for the page and the form alike.
    browser
        .get(path)
        .await
        .assert_status(429)
        .assert_contains("Too many failed attempts");
    post(token).await.assert_status(429);
    assert_eq!(
        portico::store::tenants::count(&app.state.db).await.unwrap(),
        0
    );

    // A quarter of an hour later the link works again.
    app.state.clock.advance(Duration::minutes(15));
    browser
        .get(path)
        .await
        .assert_status(200)
        .assert_contains("Set up Portico");
    post(token).await.assert_redirect("/t/acme/");
}

async fn wrong_current_passwords_pause_password_changes_and_sign_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let agent = app.browser();
    agent
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    let change = |current: &'static str| {
        let agent = &agent;
        async move {
            agent
                .submit(
                    "/t/acme/profile",
                    "/t/acme/profile/password",
                    &[
                        ("current_password", current),
                        ("new_password", "a brand new password"),
                    ],
                )
                .await
        }
    };
    for _ in 0..5 {
        change("a wrong guess")
            .await
            .assert_status(400)
            .assert_contains("This is not your current password.");
    }
    // A stolen session cannot go on guessing: even the right password waits now.
    change(PASSWORD)
        .await
        .assert_status(429)
        .assert_contains("Too many wrong passwords. Wait 15 minutes and try again.");
    let audit = app.audit_actions(&tenant).await;
    let rejected = audit
        .iter()
        .filter(|(action, target, _)| {
            action == "user.own_password_rejected" && target == "agent@acme.test"
        })
        .count();
    assert_eq!(rejected, 5);
    assert!(audit.iter().any(|(action, target, _)| {
        action == "sign_in.throttled" && target == "agent@acme.test"
    }));
    assert!(
        !audit
            .iter()
            .any(|(action, _, _)| action == "user.own_password_changed")
    );

    // The guesses count against the account at sign-in too; the password is unchanged.
    app.browser()
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_status(429);
    app.browser()
        .sign_in("acme", "agent@acme.test", "a brand new password")
        .await
        .assert_status(429);
}

/// A one-time link for Carol made by an admin of acme; returns its path.
async fn link_for_carol(app: &TestApp) -> String {
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let carol = app
        .create_user(&tenant, "carol@acme.test", Role::Agent)
        .await;
    let carol_page = format!("/t/acme/users/{}", carol.as_str());
    let page = admin
        .submit(&carol_page, &format!("{carol_page}/microsoft-link"), &[])
        .await;
    let marker = "id=\"link-url\">";
    let start = page.body.find(marker).unwrap() + marker.len();
    let link = page.body[start..].split('<').next().unwrap();
    link.trim_start_matches(&app.url("")).to_owned()
}

async fn wrong_one_time_links_pause_links_from_that_address(backend: Backend) {
    let app = spawn_app(backend).await;
    let link = link_for_carol(&app).await;
    let visitor = app.browser();
    visitor
        .get(&link)
        .await
        .assert_status(200)
        .assert_contains("carol@acme.test");
    for n in 0..20 {
        visitor
            .get(&format!("/t/acme/auth/microsoft/link/guessed-{n}"))
            .await
            .assert_status(400);
    }
    // Twenty wrong links from this address: the right one waits too, and says why.
    visitor
        .get(&link)
        .await
        .assert_status(429)
        .assert_contains("Too many failed attempts")
        .assert_lacks("carol@acme.test");
    let confirm = visitor.get("/t/acme/login").await;
    visitor
        .post_raw(&link, &[("csrf_token", &confirm.csrf_token())])
        .await
        .assert_status(429);
    let tenant = portico::store::tenants::find_by_slug(&app.state.db, "acme")
        .await
        .unwrap()
        .unwrap();
    let audit = app.audit_actions(&tenant).await;
    let rejected = audit
        .iter()
        .filter(|(action, _, _)| action == "user.microsoft_link_rejected")
        .count();
    assert_eq!(rejected, 20);
    assert!(
        audit
            .iter()
            .any(|(action, _, _)| action == "sign_in.throttled")
    );
    // The address is paused for password sign-in as well: one budget of guesses.
    app.browser()
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_status(429);
}
