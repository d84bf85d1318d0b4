//! Sessions end when their user's credentials change: an admin's password reset and a
//! Microsoft unlink end every session of the user, a user's own password change ends their
//! other sessions; and a first local password needs a fresh Microsoft sign-in.

use portico::domain::{DisplayName, EmailAddress, Role};
use portico::store::users::{self, NewUser};
use time::Duration;

use crate::microsoft_sign_in::{CONTOSO, restricted_tenant};
use crate::on_both_backends;
use crate::support::fake_microsoft::FakeUser;
use crate::support::{Backend, Browser, PASSWORD, Page, TestApp, spawn_app};

on_both_backends!(
    an_admins_password_reset_ends_every_session_of_the_user,
    a_microsoft_unlink_ends_every_session_of_the_user,
    an_own_password_change_ends_the_other_sessions_only,
    a_first_password_needs_a_fresh_microsoft_sign_in,
);

async fn assert_signed_in(browser: &Browser) {
    browser.get("/t/acme/").await.assert_status(200);
}

async fn assert_signed_out(browser: &Browser) {
    browser
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");
}

/// The session rows stored for the user.
async fn sessions_of(app: &TestApp, user_id: &str) -> usize {
    app.all_rows()
        .await
        .into_iter()
        .filter(|(table, row)| {
            table.ends_with("sessions")
                && row
                    .iter()
                    .any(|(column, value)| column == "user_id" && value == user_id)
        })
        .count()
}

/// `count` browsers signed in as the user with the shared password.
async fn signed_in_browsers(app: &TestApp, email: &str, count: usize) -> Vec<Browser> {
    let mut browsers = Vec::new();
    for _ in 0..count {
        let browser = app.browser();
        browser
            .sign_in("acme", email, PASSWORD)
            .await
            .assert_redirect("/t/acme/");
        browsers.push(browser);
    }
    browsers
}

async fn an_admins_password_reset_ends_every_session_of_the_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let agent = app
        .create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let other = app
        .create_user(&tenant, "other@acme.test", Role::Agent)
        .await;
    let agents = signed_in_browsers(&app, "agent@acme.test", 2).await;
    let bystander = signed_in_browsers(&app, "other@acme.test", 1).await;
    assert_eq!(sessions_of(&app, agent.as_str()).await, 2);

    let page = format!("/t/acme/users/{}", agent.as_str());
    admin
        .submit(
            &page,
            &format!("{page}/password"),
            &[("password", "a fresh long password")],
        )
        .await
        .assert_redirect(&format!("{page}?done=password"));

    for browser in &agents {
        assert_signed_out(browser).await;
    }
    assert_eq!(sessions_of(&app, agent.as_str()).await, 0);
    // Nobody else is signed out: the admin, another user.
    assert_signed_in(&admin).await;
    assert_signed_in(&bystander[0]).await;
    assert_eq!(sessions_of(&app, other.as_str()).await, 1);
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.contains(&(
            "user.password_reset".into(),
            "agent@acme.test".into(),
            "2 sessions ended".into()
        )),
        "{audit:?}"
    );
    app.browser()
        .sign_in("acme", "agent@acme.test", "a fresh long password")
        .await
        .assert_redirect("/t/acme/");
}

async fn a_microsoft_unlink_ends_every_session_of_the_user(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = restricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    let ana = app
        .microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana Contoso")
        .await;
    let by_microsoft = app.browser();
    by_microsoft
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    let by_password = signed_in_browsers(&app, "ana@contoso.com", 1).await;
    assert_signed_in(&by_microsoft).await;
    assert_eq!(sessions_of(&app, ana.as_str()).await, 2);

    let page = format!("/t/acme/users/{}", ana.as_str());
    admin
        .submit(&page, &format!("{page}/microsoft-unlink"), &[])
        .await
        .assert_redirect(&format!("{page}?done=unlinked"));

    assert_signed_out(&by_microsoft).await;
    assert_signed_out(&by_password[0]).await;
    assert_signed_in(&admin).await;
    assert_eq!(sessions_of(&app, ana.as_str()).await, 0);
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.contains(&(
            "user.microsoft_unlinked".into(),
            "ana@contoso.com".into(),
            "2 sessions ended".into()
        )),
        "{audit:?}"
    );
}

async fn an_own_password_change_ends_the_other_sessions_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let agent = app
        .create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let browsers = signed_in_browsers(&app, "agent@acme.test", 3).await;
    let (changing, others) = browsers.split_first().unwrap();
    let before = changing.session_cookie();

    changing
        .submit(
            "/t/acme/profile",
            "/t/acme/profile/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "my new long password"),
            ],
        )
        .await
        .assert_redirect("/t/acme/profile?saved=1");

    changing
        .get("/t/acme/profile?saved=1")
        .await
        .assert_status(200)
        .assert_contains("Your other sessions were signed out.");
    assert_eq!(changing.session_cookie(), before);
    for browser in others {
        assert_signed_out(browser).await;
    }
    assert_signed_in(&admin).await;
    assert_eq!(sessions_of(&app, agent.as_str()).await, 1);
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.contains(&(
            "user.own_password_changed".into(),
            "agent@acme.test".into(),
            "2 other sessions ended".into()
        )),
        "{audit:?}"
    );
}

async fn set_first_password(browser: &Browser) -> Page {
    browser
        .submit(
            "/t/acme/profile",
            "/t/acme/profile/password",
            &[("new_password", "my first long password")],
        )
        .await
}

async fn a_first_password_needs_a_fresh_microsoft_sign_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let _admin = restricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    let ana = users::create(
        &app.state.db,
        &tenant.id,
        &NewUser {
            email: EmailAddress::parse("ana@contoso.com").unwrap(),
            display_name: DisplayName::parse("Ana").unwrap(),
            role: Role::Agent,
            password_hash: None,
        },
    )
    .await
    .unwrap();
    app.microsoft.add_user(
        FakeUser::new(CONTOSO, "ana@contoso.com", "Ana Contoso").email("ana@contoso.com"),
    );
    app.microsoft.sign_in_as("ana@contoso.com");
    let earlier = app.browser();
    earlier
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    let password_set = async || {
        users::password_hash(&app.state.db, &tenant.id, &ana)
            .await
            .unwrap()
            .is_some()
    };

    // Eleven minutes after signing in with Microsoft, the session may not set one, and the
    // page says how to become able to.
    app.state.clock.advance(Duration::minutes(11));
    let how = "To set a password, sign out, sign in again with Microsoft, and set it here \
               within 10 minutes.";
    earlier
        .get("/t/acme/profile")
        .await
        .assert_status(200)
        .assert_contains("Set a password")
        .assert_contains(how)
        .assert_lacks("Current password");
    set_first_password(&earlier)
        .await
        .assert_status(400)
        .assert_contains("Not now: a first password can only be set within 10 minutes")
        .assert_contains(how)
        .assert_lacks("my first long password");
    assert!(!password_set().await);

    // A fresh Microsoft sign-in may, within the ten minutes.
    let fresh = app.browser();
    fresh
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    fresh
        .get("/t/acme/profile")
        .await
        .assert_contains("You signed in with Microsoft just now, so you can set one until");
    app.state.clock.advance(Duration::minutes(9));
    set_first_password(&fresh)
        .await
        .assert_redirect("/t/acme/profile?saved=1");
    assert!(password_set().await);
    assert_signed_in(&fresh).await;
    assert_signed_out(&earlier).await;
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.contains(&(
            "user.own_password_set".into(),
            "ana@contoso.com".into(),
            "1 other session ended".into()
        )),
        "{audit:?}"
    );
    app.browser()
        .sign_in("acme", "ana@contoso.com", "my first long password")
        .await
        .assert_redirect("/t/acme/");
    // From now on a change needs the current password, fresh sign-in or not.
    fresh
        .submit(
            "/t/acme/profile",
            "/t/acme/profile/password",
            &[("new_password", "another long password")],
        )
        .await
        .assert_status(400)
        .assert_contains("This is not your current password.");
}
