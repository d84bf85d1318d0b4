//! The Users page, roles, and what agents may not see.

use portico::domain::Role;

use crate::on_both_backends;
use crate::support::{Backend, PASSWORD, spawn_app};

on_both_backends!(
    admin_adds_an_agent_who_can_sign_in,
    bad_user_input_is_explained_beside_each_field,
    agents_are_refused_on_admin_pages,
    role_status_and_password_changes_take_effect_and_are_audited,
    the_last_active_admin_cannot_be_demoted_or_disabled,
    users_change_their_own_password,
);

async fn admin_adds_an_agent_who_can_sign_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let page = admin
        .submit(
            "/t/acme/users/new",
            "/t/acme/users",
            &[
                ("display_name", "Bob Agent"),
                ("email", "bob@acme.test"),
                ("role", "agent"),
                ("password", "bobs long password"),
            ],
        )
        .await;
    let location = page.location.clone().unwrap();
    assert!(location.starts_with("/t/acme/users/"), "{location}");
    admin
        .get(&location)
        .await
        .assert_status(200)
        .assert_contains("Bob Agent")
        .assert_contains("bob@acme.test")
        .assert_lacks("bobs long password");
    admin
        .get("/t/acme/users?q=BOB")
        .await
        .assert_contains("bob@acme.test")
        .assert_lacks("admin@acme.test");

    app.browser()
        .sign_in("acme", "bob@acme.test", "bobs long password")
        .await
        .assert_redirect("/t/acme/");

    let audit = app.audit_actions(&tenant).await;
    assert!(audit.contains(&(
        "user.created".into(),
        "bob@acme.test".into(),
        "role Agent".into()
    )));
    assert!(
        audit
            .iter()
            .all(|(_, target, detail)| !target.contains("bobs long")
                && !detail.contains("bobs long"))
    );
}

async fn bad_user_input_is_explained_beside_each_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    admin
        .submit(
            "/t/acme/users/new",
            "/t/acme/users",
            &[
                ("display_name", "  "),
                ("email", "bob@"),
                ("role", "owner"),
                ("password", "tiny-secret"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("Enter the person&#39;s name.")
        .assert_contains("value=\"bob@\"")
        .assert_contains("Choose Admin or Agent.")
        .assert_contains("Use at least 12 characters.")
        .assert_lacks("tiny-secret");

    // The same email twice, whatever its case.
    admin
        .submit(
            "/t/acme/users/new",
            "/t/acme/users",
            &[
                ("display_name", "Again"),
                ("email", "ADMIN@acme.test"),
                ("role", "agent"),
                ("password", "long enough password"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("A user with this email already exists.");

    // Markup typed into a field comes back as text.
    admin
        .submit(
            "/t/acme/users/new",
            "/t/acme/users",
            &[
                ("display_name", "<script>alert(1)</script>"),
                ("email", "x"),
                ("role", "agent"),
                ("password", ""),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("&#60;script&#62;alert(1)&#60;/script&#62;")
        .assert_lacks("<script>alert(1)");
    assert_eq!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .filter(|(a, _, _)| a == "user.created")
            .count(),
        0
    );
}

async fn agents_are_refused_on_admin_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    let admin_id = app
        .create_user(&tenant, "admin@acme.test", Role::Admin)
        .await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let agent = app.browser();
    agent
        .sign_in("acme", "agent@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");

    let dashboard = agent.get("/t/acme/").await;
    dashboard
        .assert_status(200)
        .assert_lacks("/t/acme/users")
        .assert_lacks("/t/acme/audit");
    for page in ["/t/acme/users", "/t/acme/users/new", "/t/acme/audit"] {
        agent
            .get(page)
            .await
            .assert_status(403)
            .assert_contains("Not allowed");
    }
    agent
        .get(&format!("/t/acme/users/{}", admin_id.as_str()))
        .await
        .assert_status(403);
    // Posting with the agent's own valid form token is refused as well.
    let promoted = agent
        .submit(
            "/t/acme/profile",
            &format!("/t/acme/users/{}/role", admin_id.as_str()),
            &[("role", "agent")],
        )
        .await;
    promoted.assert_status(403);
    let created = agent
        .submit(
            "/t/acme/profile",
            "/t/acme/users",
            &[
                ("display_name", "Sneaky"),
                ("email", "sneaky@acme.test"),
                ("role", "admin"),
                ("password", "long enough password"),
            ],
        )
        .await;
    created.assert_status(403);
    assert!(
        !app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(_, target, _)| target == "sneaky@acme.test")
    );
    agent
        .get("/t/acme/profile")
        .await
        .assert_status(200)
        .assert_contains("agent@acme.test");
}

async fn role_status_and_password_changes_take_effect_and_are_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let bob = app.create_user(&tenant, "bob@acme.test", Role::Agent).await;
    let bob_page = format!("/t/acme/users/{}", bob.as_str());
    let bob_browser = app.browser();
    bob_browser
        .sign_in("acme", "bob@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");

    admin
        .submit(&bob_page, &format!("{bob_page}/role"), &[("role", "admin")])
        .await
        .assert_redirect(&format!("{bob_page}?done=role"));
    admin
        .get(&format!("{bob_page}?done=role"))
        .await
        .assert_contains("Role changed.");
    bob_browser.get("/t/acme/users").await.assert_status(200);

    admin
        .submit(
            &bob_page,
            &format!("{bob_page}/password"),
            &[("password", "a brand new password")],
        )
        .await
        .assert_redirect(&format!("{bob_page}?done=password"));
    app.browser()
        .sign_in("acme", "bob@acme.test", PASSWORD)
        .await
        .assert_status(400);
    app.browser()
        .sign_in("acme", "bob@acme.test", "a brand new password")
        .await
        .assert_redirect("/t/acme/");

    // Disabling signs Bob out of the session he already has.
    admin
        .submit(
            &bob_page,
            &format!("{bob_page}/status"),
            &[("status", "disabled")],
        )
        .await
        .assert_redirect(&format!("{bob_page}?done=status"));
    bob_browser
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");

    let audit = app.audit_actions(&tenant).await;
    let bob_events: Vec<&str> = audit
        .iter()
        .filter(|(_, target, _)| target == "bob@acme.test")
        .map(|(action, _, _)| action.as_str())
        .collect();
    for expected in ["user.role_changed", "user.password_reset", "user.disabled"] {
        assert!(
            bob_events.contains(&expected),
            "{expected} missing from {bob_events:?}"
        );
    }
    assert!(
        audit
            .iter()
            .all(|(_, _, detail)| !detail.contains("brand new"))
    );
}

async fn the_last_active_admin_cannot_be_demoted_or_disabled(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let own_id = app.user_id(&tenant, "admin@acme.test").await;
    let own_path = format!("/t/acme/users/{own_id}");
    admin
        .submit(&own_path, &format!("{own_path}/role"), &[("role", "agent")])
        .await
        .assert_status(400)
        .assert_contains("This is the last active admin");
    admin
        .submit(
            &own_path,
            &format!("{own_path}/status"),
            &[("status", "disabled")],
        )
        .await
        .assert_status(400)
        .assert_contains("This is the last active admin");
    admin.get("/t/acme/users").await.assert_status(200);
    assert!(
        !app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(a, _, _)| a == "user.role_changed" || a == "user.disabled")
    );
}

async fn users_change_their_own_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.create_tenant("acme", "Acme Corp").await;
    app.create_user(&tenant, "agent@acme.test", Role::Agent)
        .await;
    let agent = app.browser();
    agent.sign_in("acme", "agent@acme.test", PASSWORD).await;
    agent
        .submit(
            "/t/acme/profile",
            "/t/acme/profile/password",
            &[
                ("current_password", "not my password"),
                ("new_password", "my new long password"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("This is not your current password.")
        .assert_lacks("my new long password");
    agent
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
    app.browser()
        .sign_in("acme", "agent@acme.test", "my new long password")
        .await
        .assert_redirect("/t/acme/");
}
