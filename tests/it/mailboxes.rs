//! Segments and their mailboxes: Graph mailboxes pick a shared credential, the others carry
//! their own server settings.

use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, MailboxAccess};
use crate::support::{Backend, Browser, TestApp, spawn_app};

const CONTOSO: Uuid = uuid!("66666666-6666-4666-8666-666666666666");
const MAIL_APP: Uuid = uuid!("77777777-7777-4777-8777-777777777777");
const SECRET: &str = "Mailbox~Graph-Secret.42";
const IMAP_PASSWORD: &str = "imap-canary-password-9f8e7d";

on_both_backends!(
    segments_are_created_renamed_and_deleted_only_when_empty,
    graph_mailboxes_pick_only_this_tenants_credentials,
    server_mailboxes_keep_their_password_sealed_and_graph_drops_it,
    mailbox_input_is_checked_beside_each_field,
    mailboxes_move_and_delete_within_their_tenant_only,
    segments_count_their_mailboxes_through_creates_moves_and_deletes,
    listing_ten_thousand_mailboxes_costs_the_same_queries_on_any_page,
    graph_mailbox_test_reports_what_exchange_allows,
);

/// A segment made through the Segments page; returns its path.
async fn add_segment(admin: &Browser, slug: &str, name: &str) -> String {
    let page = admin
        .submit(
            &format!("/t/{slug}/segments"),
            &format!("/t/{slug}/segments"),
            &[("name", name), ("description", "Customer mail")],
        )
        .await;
    page.location
        .clone()
        .unwrap_or_else(|| panic!("segment not created: {}", page.body))
}

/// A Graph credential on External APIs; returns its id.
async fn add_credential(app: &TestApp, admin: &Browser, slug: &str) -> String {
    app.register_azure_app(
        FakeApp::new(MAIL_APP, CONTOSO)
            .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(90))
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    let expires = (OffsetDateTime::now_utc() + Duration::days(90))
        .date()
        .to_string();
    let credential = admin
        .add_graph_credential(
            slug,
            &[
                ("name", "Contoso mail app"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("client_secret", SECRET),
                ("secret_expires_on", &expires),
            ],
        )
        .await;
    credential.rsplit('/').next().unwrap().to_owned()
}

fn imap_fields(password: &str) -> Vec<(&str, &str)> {
    vec![
        ("name", "Support IMAP"),
        ("email", "support@contoso.com"),
        ("protocol", "imap"),
        ("direction", "incoming"),
        ("host", "outlook.office365.com"),
        ("port", ""),
        ("security", "tls"),
        ("username", "support@contoso.com"),
        ("authentication", "password"),
        ("password", password),
        ("enabled", "on"),
    ]
}

async fn segments_are_created_renamed_and_deleted_only_when_empty(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let sales = add_segment(&admin, "acme", "Sales").await;
    admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "sales"), ("description", "")],
        )
        .await
        .assert_status(400)
        .assert_contains("A segment with this name exists.");
    admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", " "), ("description", "")],
        )
        .await
        .assert_status(400)
        .assert_contains("Enter a name, such as Sales or Support.");
    admin
        .submit(
            &sales,
            &sales,
            &[("name", "Sales EMEA"), ("description", "Europe")],
        )
        .await
        .assert_redirect(&format!("{sales}?done=saved"));
    admin
        .get("/t/acme/segments")
        .await
        .assert_contains("Sales EMEA")
        .assert_contains("Europe");

    admin
        .submit(
            &format!("{sales}/mailboxes/new"),
            &format!("{sales}/mailboxes"),
            &imap_fields(IMAP_PASSWORD),
        )
        .await;
    admin
        .submit(&sales, &format!("{sales}/delete"), &[])
        .await
        .assert_status(400)
        .assert_contains("still has mailboxes");
    let empty = add_segment(&admin, "acme", "Empty").await;
    admin
        .submit(&empty, &format!("{empty}/delete"), &[])
        .await
        .assert_redirect("/t/acme/segments");
    let actions: Vec<String> = app
        .audit_actions(&tenant)
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    for expected in [
        "segment.created",
        "segment.changed",
        "segment.deleted",
        "mailbox.created",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{expected} missing");
    }
}

async fn graph_mailboxes_pick_only_this_tenants_credentials(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let support = add_segment(&admin, "acme", "Support").await;
    admin
        .get(&format!("{support}/mailboxes/new"))
        .await
        .assert_contains("The Graph API integration values must be entered before any of your Graph API mailboxes may be configured")
        .assert_contains("/t/acme/external-apis/new");

    let credential = add_credential(&app, &admin, "acme").await;
    admin
        .get(&format!("{support}/mailboxes/new"))
        .await
        .assert_contains(&format!("<option value=\"{credential}\""))
        .assert_contains(&format!("Contoso mail app · {MAIL_APP} · Valid"));

    // Another tenant's credential, posted by hand under this tenant, is refused.
    let (_, other_admin) = app.tenant_with_admin("beta").await;
    let foreign = add_credential(&app, &other_admin, "beta").await;
    let graph = |credential: &str| {
        vec![
            ("name", "Support".to_owned()),
            ("email", "support@contoso.com".to_owned()),
            ("protocol", "graph".to_owned()),
            ("direction", "both".to_owned()),
            ("graph_credential_id", credential.to_owned()),
            ("enabled", "on".to_owned()),
        ]
    };
    let as_refs =
        |fields: &[(&'static str, String)]| -> Vec<(&'static str, String)> { fields.to_vec() };
    let foreign_fields = as_refs(&graph(&foreign));
    let foreign_form: Vec<(&str, &str)> = foreign_fields
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    admin
        .submit(
            &format!("{support}/mailboxes/new"),
            &format!("{support}/mailboxes"),
            &foreign_form,
        )
        .await
        .assert_status(400)
        .assert_contains("Choose one of your Graph credentials");
    admin
        .get(&support)
        .await
        .assert_contains("No mailbox in this segment yet.");

    let own_fields = graph(&credential);
    let own_form: Vec<(&str, &str)> = own_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created = admin
        .submit(
            &format!("{support}/mailboxes/new"),
            &format!("{support}/mailboxes"),
            &own_form,
        )
        .await;
    let mailbox = created.location.clone().unwrap();
    admin
        .get(&support)
        .await
        .assert_contains("support@contoso.com")
        .assert_contains("Microsoft Graph")
        .assert_contains("Contoso mail app");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("<td>1</td>");

    // The credential cannot go while the mailbox uses it.
    let credential_page = format!("/t/acme/external-apis/{credential}");
    admin
        .submit(&credential_page, &format!("{credential_page}/delete"), &[])
        .await
        .assert_status(400)
        .assert_contains("cannot be deleted while these mailboxes use it")
        .assert_contains("Support (support@contoso.com)");
    admin.get(&mailbox).await.assert_status(200);
}

async fn server_mailboxes_keep_their_password_sealed_and_graph_drops_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let support = add_segment(&admin, "acme", "Support").await;
    let created = admin
        .submit(
            &format!("{support}/mailboxes/new"),
            &format!("{support}/mailboxes"),
            &imap_fields(IMAP_PASSWORD),
        )
        .await;
    let mailbox = created
        .location
        .clone()
        .unwrap_or_else(|| panic!("{}", created.body));
    admin
        .get(&mailbox)
        .await
        .assert_contains("outlook.office365.com:993")
        .assert_contains("A password is stored; leave empty to keep it.")
        .assert_lacks(IMAP_PASSWORD);
    assert!(
        app.database_text()
            .await
            .iter()
            .all(|row| !row.contains(IMAP_PASSWORD))
    );
    let stored = |app: &TestApp| {
        let url = app.database_url();
        async move {
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let row: (Option<String>, Option<String>) =
                sqlx::query_as("SELECT password_sealed, host FROM mailboxes")
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            row
        }
    };
    let (sealed, _) = stored(&app).await;
    assert!(sealed.unwrap().starts_with("v1."));

    // Saving without typing the password keeps it.
    admin
        .submit(&mailbox, &mailbox, &imap_fields(""))
        .await
        .assert_redirect(&format!("{mailbox}?done=saved"));
    assert!(stored(&app).await.0.is_some());

    // Moving to Graph leaves no server settings and no password behind.
    let credential = add_credential(&app, &admin, "acme").await;
    admin
        .submit(
            &mailbox,
            &mailbox,
            &[
                ("name", "Support"),
                ("email", "support@contoso.com"),
                ("protocol", "graph"),
                ("direction", "both"),
                ("graph_credential_id", &credential),
                ("host", "outlook.office365.com"),
                ("username", "support@contoso.com"),
                ("enabled", "on"),
            ],
        )
        .await
        .assert_redirect(&format!("{mailbox}?done=saved"));
    assert_eq!(stored(&app).await, (None, None));
}

async fn mailbox_input_is_checked_beside_each_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let support = add_segment(&admin, "acme", "Support").await;
    admin
        .submit(
            &format!("{support}/mailboxes/new"),
            &format!("{support}/mailboxes"),
            &[
                ("name", "Outbox"),
                ("email", "not-an-address"),
                ("protocol", "smtp"),
                ("direction", "incoming"),
                ("host", "smtp office365"),
                ("port", "0"),
                ("security", "starttls"),
                ("username", ""),
                ("authentication", "password"),
                ("password", ""),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("value=\"not-an-address\"")
        .assert_contains("Enter an email address")
        .assert_contains("SMTP only sends mail")
        .assert_contains("Enter the server&#39;s host name")
        .assert_contains("Enter a port from 1 to 65535")
        .assert_contains("Enter the user name")
        .assert_contains("Enter the mailbox&#39;s password.");
    admin
        .submit(
            &format!("{support}/mailboxes/new"),
            &format!("{support}/mailboxes"),
            &[
                ("name", "Outbox"),
                ("email", "out@contoso.com"),
                ("protocol", "smtp"),
                ("direction", "outgoing"),
                ("host", "smtp.office365.com"),
                ("security", "starttls"),
                ("username", "out@contoso.com"),
                ("authentication", "oauth"),
                ("password", IMAP_PASSWORD),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("Choose one of your OAuth connections.")
        .assert_lacks(IMAP_PASSWORD);
    admin
        .get(&support)
        .await
        .assert_contains("No mailbox in this segment yet.");
}

async fn mailboxes_move_and_delete_within_their_tenant_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let support = add_segment(&admin, "acme", "Support").await;
    let sales = add_segment(&admin, "acme", "Sales").await;
    let mailbox = admin
        .submit(
            &format!("{support}/mailboxes/new"),
            &format!("{support}/mailboxes"),
            &imap_fields(IMAP_PASSWORD),
        )
        .await
        .location
        .unwrap();
    let mailbox_id = mailbox.rsplit('/').next().unwrap().to_owned();
    let sales_id = sales.rsplit('/').next().unwrap().to_owned();

    // Another tenant sees none of it, by path or by id.
    let (_, beta) = app.tenant_with_admin("beta").await;
    let beta_segment = add_segment(&beta, "beta", "Beta support").await;
    let beta_segment_id = beta_segment.rsplit('/').next().unwrap().to_owned();
    beta.get(&format!("/t/beta/mailboxes/{mailbox_id}"))
        .await
        .assert_status(404);
    let token = beta.get("/t/beta/").await.csrf_token();
    for action in ["", "/move", "/delete"] {
        beta.post_raw(
            &format!("/t/beta/mailboxes/{mailbox_id}{action}"),
            &[("csrf_token", &token), ("segment_id", &beta_segment_id)],
        )
        .await
        .assert_status(404);
    }
    beta.get(&format!("/t/beta/segments/{sales_id}"))
        .await
        .assert_status(404);
    // ...nor can Acme move a mailbox into Beta's segment.
    admin
        .submit(
            &mailbox,
            &format!("{mailbox}/move"),
            &[("segment_id", &beta_segment_id)],
        )
        .await
        .assert_status(400)
        .assert_contains("Choose one of your segments.");

    admin
        .submit(
            &mailbox,
            &format!("{mailbox}/move"),
            &[("segment_id", &sales_id)],
        )
        .await
        .assert_redirect(&format!("{mailbox}?done=moved"));
    admin
        .get(&sales)
        .await
        .assert_contains("support@contoso.com");
    admin
        .get(&support)
        .await
        .assert_lacks("support@contoso.com");
    admin
        .submit(&mailbox, &format!("{mailbox}/delete"), &[])
        .await
        .assert_redirect(&format!("{sales}?done=deleted"));
    admin.get(&mailbox).await.assert_status(404);
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit
            .iter()
            .any(|(a, _, d)| a == "mailbox.moved" && d == "to Sales")
    );
    assert!(
        audit
            .iter()
            .any(|(a, t, _)| a == "mailbox.deleted" && t == "support@contoso.com")
    );
    assert!(
        audit
            .iter()
            .all(|(_, t, d)| !t.contains(IMAP_PASSWORD) && !d.contains(IMAP_PASSWORD))
    );
}

/// The count a segment shows is a column kept by every create, move and delete; after
/// each it equals the segment's mailboxes, on the list and on the segment's own page.
async fn segments_count_their_mailboxes_through_creates_moves_and_deletes(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let support = add_segment(&admin, "acme", "Support").await;
    let sales = add_segment(&admin, "acme", "Sales").await;
    let sales_id = sales.rsplit('/').next().unwrap().to_owned();
    let pool = sqlx::AnyPool::connect(&app.database_url()).await.unwrap();
    let counts_are = async |expected: [(&str, &str, i64); 2]| {
        for (name, path, count) in expected {
            let id = path.rsplit('/').next().unwrap();
            let (kept, recounted): (i64, i64) = sqlx::query_as(
                "SELECT mailbox_count, \
                 (SELECT COUNT(*) FROM mailboxes m WHERE m.segment_id = s.id) \
                 FROM segments s WHERE s.id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!((kept, recounted), (count, count), "{name}");
            admin.get(path).await.assert_contains(&format!(
                "Mailboxes <span class=\"muted small\">({count})</span>"
            ));
            admin
                .get("/t/acme/segments")
                .await
                .assert_contains(&format!(
                    "{name}</a></td><td>Customer mail</td><td>{count}</td>"
                ));
        }
    };

    let mut mailboxes = Vec::new();
    for n in 0..3 {
        let (name, email) = (format!("Box {n}"), format!("box{n}@contoso.com"));
        let mut fields = imap_fields(IMAP_PASSWORD);
        fields.retain(|(field, _)| !matches!(*field, "name" | "email"));
        fields.extend([("name", name.as_str()), ("email", email.as_str())]);
        let created = admin
            .submit(
                &format!("{support}/mailboxes/new"),
                &format!("{support}/mailboxes"),
                &fields,
            )
            .await;
        mailboxes.push(created.location.clone().unwrap());
    }
    counts_are([("Support", &support, 3), ("Sales", &sales, 0)]).await;

    let moved = &mailboxes[0];
    let move_to = |segment| [("segment_id", segment)];
    admin
        .submit(moved, &format!("{moved}/move"), &move_to(sales_id.as_str()))
        .await
        .assert_redirect(&format!("{moved}?done=moved"));
    counts_are([("Support", &support, 2), ("Sales", &sales, 1)]).await;

    // A move from a page opened before is refused and counts nothing; a move into the
    // segment the mailbox is in already changes no count.
    let stale = [("segment_id", sales_id.as_str()), ("version", "1")];
    admin
        .submit(moved, &format!("{moved}/move"), &stale)
        .await
        .assert_status(409);
    let support_id = support.rsplit('/').next().unwrap();
    let stays = &mailboxes[1];
    admin
        .submit(stays, &format!("{stays}/move"), &move_to(support_id))
        .await
        .assert_redirect(&format!("{stays}?done=moved"));
    counts_are([("Support", &support, 2), ("Sales", &sales, 1)]).await;

    for (deleted, segment) in [(&mailboxes[2], &support), (moved, &sales)] {
        admin
            .submit(deleted, &format!("{deleted}/delete"), &[])
            .await
            .assert_redirect(&format!("{segment}?done=deleted"));
    }
    counts_are([("Support", &support, 1), ("Sales", &sales, 0)]).await;
}

async fn listing_ten_thousand_mailboxes_costs_the_same_queries_on_any_page(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let support = add_segment(&admin, "acme", "Support").await;
    let segment_id = support.rsplit('/').next().unwrap().to_owned();
    app.insert_mailboxes(&tenant, &segment_id, 10_000).await;

    let empty = add_segment(&admin, "acme", "Empty").await;
    admin
        .get(&empty)
        .await
        .assert_contains("No mailbox in this segment yet.");

    let mut costs = Vec::new();
    for page in ["", "?page=2", "?page=150", "?q=box-0999", "?q=nobody"] {
        let before = app.state.db.queries_started();
        let listed = admin.get(&format!("{support}{page}")).await;
        costs.push(app.state.db.queries_started() - before);
        listed
            .assert_status(200)
            .assert_contains("<h1>Support</h1>");
        if page == "?q=nobody" {
            listed.assert_contains("No mailbox matches “nobody”.");
        } else if page != "?q=box-0999" {
            assert_eq!(
                listed.body.matches("/t/acme/mailboxes/").count(),
                50,
                "page {page}"
            );
            listed.assert_contains("rel=\"next\"");
        } else {
            listed
                .assert_contains("box-09990@contoso.com")
                .assert_lacks("box-09980@contoso.com");
        }
    }
    assert!(
        costs.iter().all(|cost| *cost == costs[0]),
        "queries per page: {costs:?}"
    );
    // The session with its user, the segment with its page of mailboxes, and the segment's
    // mailboxes whose background checks fail.
    assert_eq!(costs[0], 3, "queries per page: {costs:?}");
    admin
        .get("/t/acme/segments")
        .await
        .assert_contains("<td>10000</td>");
}

async fn graph_mailbox_test_reports_what_exchange_allows(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let support = add_segment(&admin, "acme", "Support").await;
    let credential = add_credential(&app, &admin, "acme").await;
    app.microsoft
        .set_mailbox_access(MAIL_APP, "support@contoso.com", MailboxAccess::Granted);
    app.microsoft
        .set_mailbox_access(MAIL_APP, "ceo@contoso.com", MailboxAccess::Denied);
    let mut mailboxes = Vec::new();
    for (name, email) in [
        ("Support", "support@contoso.com"),
        ("CEO", "ceo@contoso.com"),
    ] {
        let created = admin
            .submit(
                &format!("{support}/mailboxes/new"),
                &format!("{support}/mailboxes"),
                &[
                    ("name", name),
                    ("email", email),
                    ("protocol", "graph"),
                    ("direction", "both"),
                    ("graph_credential_id", &credential),
                    ("enabled", "on"),
                ],
            )
            .await;
        mailboxes.push(created.location.unwrap());
    }
    admin
        .submit(&mailboxes[0], &format!("{}/test", mailboxes[0]), &[])
        .await
        .assert_status(200)
        .assert_contains("Granted: Contoso mail app can read support@contoso.com.");
    admin
        .submit(&mailboxes[1], &format!("{}/test", mailboxes[1]), &[])
        .await
        .assert_contains("Denied: Exchange refuses Contoso mail app access to ceo@contoso.com");
    admin
        .get(&support)
        .await
        .assert_contains("Passed")
        .assert_contains("Failed");
}
