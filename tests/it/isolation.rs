//! Tenant isolation: a user of one tenant finds nothing of another, by path or by id.

use portico::domain::Role;
use portico::web::router::tenant_routes;

use crate::on_both_backends;
use crate::support::{Backend, PASSWORD, spawn_app};

on_both_backends!(
    every_tenant_page_of_another_tenant_answers_not_found,
    another_tenants_ids_under_ones_own_path_answer_not_found,
);

async fn every_tenant_page_of_another_tenant_answers_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin_a) = app.tenant_with_admin("alpha").await;
    let beta = app.create_tenant("beta", "Beta Secret Corp").await;
    let beta_user = app
        .create_user(&beta, "victim@beta.test", Role::Admin)
        .await;
    let token = admin_a.get("/t/alpha/").await.csrf_token();

    for (template, _) in tenant_routes() {
        let path = template
            .replace("{slug}", "beta")
            .replace("{id}", beta_user.as_str());
        let get = admin_a.get(&path).await;
        let post = admin_a
            .post_raw(
                &path,
                &[
                    ("csrf_token", &token),
                    ("role", "agent"),
                    ("status", "disabled"),
                    ("password", "long enough password"),
                    ("email", "intruder@beta.test"),
                    ("display_name", "Intruder"),
                ],
            )
            .await;
        for (method, page) in [("GET", get), ("POST", post)] {
            // 405 is fine for a method the page does not have; nothing else is.
            assert!(
                matches!(page.status.as_u16(), 404 | 405),
                "{method} {path} answered {} to another tenant's admin",
                page.status
            );
            page.assert_lacks("Beta Secret Corp")
                .assert_lacks("victim@beta.test");
        }
    }

    // Beta is untouched: its admin still signs in, and nobody was added.
    let beta_admin = app.browser();
    beta_admin
        .sign_in("beta", "victim@beta.test", PASSWORD)
        .await
        .assert_redirect("/t/beta/");
    beta_admin
        .get("/t/beta/users")
        .await
        .assert_contains("Admin")
        .assert_lacks("intruder@beta.test");
}

async fn another_tenants_ids_under_ones_own_path_answer_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin_a) = app.tenant_with_admin("alpha").await;
    let beta = app.create_tenant("beta", "Beta Corp").await;
    let victim = app
        .create_user(&beta, "victim@beta.test", Role::Admin)
        .await;
    let victim_page = format!("/t/alpha/users/{}", victim.as_str());

    admin_a
        .get(&victim_page)
        .await
        .assert_status(404)
        .assert_lacks("victim@beta.test");
    let token = admin_a.get("/t/alpha/").await.csrf_token();
    for (action, field, value) in [
        ("role", "role", "agent"),
        ("status", "status", "disabled"),
        ("password", "password", "attacker chosen password"),
    ] {
        admin_a
            .post_raw(
                &format!("{victim_page}/{action}"),
                &[("csrf_token", &token), (field, value)],
            )
            .await
            .assert_status(404);
    }

    let victim_browser = app.browser();
    victim_browser
        .sign_in("beta", "victim@beta.test", PASSWORD)
        .await
        .assert_redirect("/t/beta/");
    victim_browser.get("/t/beta/users").await.assert_status(200);
}
