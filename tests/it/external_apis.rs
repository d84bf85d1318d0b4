//! External APIs: Graph credentials stored sealed, tested against the fake Entra ID.

use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, MailboxAccess};
use crate::support::{Backend, Browser, PASSWORD, Page, captured_logs, spawn_app};

const CONTOSO: Uuid = uuid!("44444444-4444-4444-8444-444444444444");
pub(crate) const MAIL_APP: Uuid = uuid!("55555555-5555-4555-8555-555555555555");
pub(crate) const SECRET: &str = "Graph~Canary-Secret.0123456789";

on_both_backends!(
    admin_adds_a_credential_and_sees_the_granted_permissions,
    bad_input_is_explained_beside_each_field_without_echoing_the_secret,
    an_unused_credential_lists_what_each_direction_needs,
    graph_permissions_are_judged_by_the_directions_of_the_mailboxes_using_them,
    wrong_expired_and_unknown_credentials_are_explained,
    mailbox_access_is_granted_denied_or_not_found,
    concurrent_tests_share_one_token_request_until_the_secret_changes,
    a_slow_microsoft_gets_a_clear_answer_in_time,
    expiring_secrets_raise_a_dashboard_banner,
    the_secret_appears_in_no_page_log_audit_entry_or_database_row,
    deleting_and_other_tenants_ids,
);

pub(crate) fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + Duration::days(days))
        .date()
        .to_string()
}

/// The mail app in Contoso, with these application permissions granted.
pub(crate) fn mail_app(roles: &[&str]) -> FakeApp {
    let mut azure_app = FakeApp::new(MAIL_APP, CONTOSO)
        .named("Portico mail")
        .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(180))
        .secret(
            "old-expired-secret",
            OffsetDateTime::now_utc() - Duration::days(1),
        );
    for role in roles {
        azure_app = azure_app.application_role(role);
    }
    azure_app
}

/// Adds a credential through the form; returns its page path.
pub(crate) async fn add(admin: &Browser, secret: &str, expires_on: &str) -> String {
    admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Support mail"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", "contoso.onmicrosoft.com"),
                ("client_secret", secret),
                ("secret_expires_on", expires_on),
            ],
        )
        .await
}

async fn test_connection(admin: &Browser, credential: &str) -> Page {
    admin
        .submit(credential, &format!("{credential}/test"), &[])
        .await
}

async fn admin_adds_a_credential_and_sees_the_granted_permissions(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("The Graph API integration values must be entered here before any of your Graph API mailboxes may be configured");

    let credential = add(&admin, SECRET, &in_days(180)).await;
    admin
        .get(&credential)
        .await
        .assert_status(200)
        .assert_contains(&MAIL_APP.to_string())
        .assert_contains(&CONTOSO.to_string())
        .assert_contains("Set, last replaced")
        .assert_lacks(SECRET);
    test_connection(&admin, &credential)
        .await
        .assert_status(200)
        .assert_contains("Connected. No mailbox uses this credential yet")
        .assert_contains("<span class=\"badge ok\">Granted</span> <code>Mail.ReadWrite</code>")
        .assert_contains("<span class=\"badge ok\">Granted</span> <code>Mail.Send</code>");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Support mail")
        .assert_contains("Passed")
        .assert_contains("Granted: Mail.ReadWrite, Mail.Send")
        .assert_contains("Valid");
    let audit = app.audit_actions(&tenant).await;
    assert!(audit.iter().any(
        |(action, target, detail)| action == "graph_credential.created"
            && target == "Support mail"
            && detail.contains(&MAIL_APP.to_string())
    ));
}

async fn bad_input_is_explained_beside_each_field_without_echoing_the_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (_, admin) = app.tenant_with_admin("acme").await;
    admin
        .submit(
            "/t/acme/external-apis/new",
            "/t/acme/external-apis",
            &[
                ("name", " "),
                ("client_id", "Secret ID pasted here"),
                ("directory", ""),
                ("cloud", "global"),
                ("client_secret", SECRET),
                ("secret_expires_on", "next year"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("Enter a name")
        .assert_contains("value=\"Secret ID pasted here\"")
        .assert_contains("Paste the Application (client) ID")
        .assert_contains("app-only access needs it")
        .assert_contains("as YYYY-MM-DD")
        .assert_lacks(SECRET);
    admin
        .submit(
            "/t/acme/external-apis/new",
            "/t/acme/external-apis",
            &[
                ("name", "Support mail"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", "nobody.onmicrosoft.com"),
                ("cloud", "global"),
                ("client_secret", ""),
                ("secret_expires_on", &in_days(30)),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("Microsoft knows no directory by this name")
        .assert_contains("Paste the client secret&#39;s Value");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("No credential yet");
}

async fn an_unused_credential_lists_what_each_direction_needs(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.Send", "User.Read.All"]));
    let (_, admin) = app.tenant_with_admin("acme").await;
    let credential = add(&admin, SECRET, &in_days(180)).await;
    test_connection(&admin, &credential)
        .await
        .assert_contains(
            "Connected. No mailbox uses this credential yet. A Graph mailbox needs \
             <code>Mail.ReadWrite</code> to receive mail and <code>Mail.Send</code> to send it",
        )
        .assert_contains(
            "<span class=\"badge muted\">Not granted</span> <code>Mail.ReadWrite</code> \
             <span class=\"muted\">to receive mail</span>",
        )
        .assert_contains(
            "<span class=\"badge ok\">Granted</span> <code>Mail.Send</code> \
             <span class=\"muted\">to send mail</span>",
        )
        .assert_lacks("badge danger")
        // Mail.Send may be what its first mailbox needs; User.Read.All no mailbox ever does.
        .assert_contains(
            "The app also holds User.Read.All, which no mailbox using this credential needs",
        )
        .assert_contains("least privilege");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Passed")
        .assert_contains("Granted: Mail.Send, User.Read.All; no mailbox uses it yet");
}

/// A segment of `acme`; returns its path.
async fn add_segment(admin: &Browser) -> String {
    let page = admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "Customer mail")],
        )
        .await;
    page.location
        .clone()
        .unwrap_or_else(|| panic!("segment not created: {}", page.body))
}

/// A Graph mailbox `email` of `segment` that uses `credential` in `direction`.
async fn add_graph_mailbox(
    admin: &Browser,
    segment: &str,
    credential: &str,
    email: &str,
    direction: &str,
) {
    let credential_id = credential.rsplit('/').next().unwrap();
    admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &[
                ("name", email),
                ("email", email),
                ("protocol", "graph"),
                ("direction", direction),
                ("graph_credential_id", credential_id),
                ("enabled", "on"),
            ],
        )
        .await
        .assert_status(303);
}

async fn graph_permissions_are_judged_by_the_directions_of_the_mailboxes_using_them(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.register_azure_app(
        mail_app(&["Mail.ReadWrite", "Mail.Send"]).exchange_role("IMAP.AccessAsApp"),
    );
    let (_, admin) = app.tenant_with_admin("acme").await;
    let credential = add(&admin, SECRET, &in_days(180)).await;
    let credential_id = credential.rsplit('/').next().unwrap();
    let segment = add_segment(&admin).await;
    add_graph_mailbox(
        &admin,
        &segment,
        &credential,
        "support@contoso.com",
        "incoming",
    )
    .await;

    // Receiving needs no Mail.Send: holding it is only a least-privilege warning.
    test_connection(&admin, &credential)
        .await
        .assert_contains("Connected. The app holds every permission its mailboxes need.")
        .assert_contains(
            "<code>Mail.ReadWrite</code> <span class=\"muted\">needed by support@contoso.com</span>",
        )
        .assert_contains("<code>Mail.Send</code> <span class=\"muted\">needed by no mailbox</span>")
        .assert_contains("The app also holds Mail.Send, which no mailbox using this credential needs")
        .assert_contains("least privilege")
        // No mailbox signs in app-only over IMAP either.
        .assert_contains(
            "The app also holds IMAP.AccessAsApp in Exchange Online, which no mailbox using \
             this credential signs in with",
        )
        .assert_lacks("badge danger")
        .assert_lacks("the app lacks");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Passed");

    // The admin removes Mail.Send in Azure: the incoming mailbox still has all it needs.
    app.register_azure_app(mail_app(&["Mail.ReadWrite"]));
    app.state.microsoft.forget_tokens(credential_id);
    test_connection(&admin, &credential)
        .await
        .assert_contains("Connected. The app holds every permission its mailboxes need.")
        .assert_contains("<span class=\"badge muted\">Not granted</span> <code>Mail.Send</code>")
        .assert_lacks("The app also holds")
        .assert_lacks("badge danger");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Passed")
        .assert_contains("Granted: Mail.ReadWrite");

    // An outgoing mailbox on the same credential needs Mail.Send: the test fails, naming it.
    add_graph_mailbox(
        &admin,
        &segment,
        &credential,
        "sales@contoso.com",
        "outgoing",
    )
    .await;
    test_connection(&admin, &credential)
        .await
        .assert_contains(
            "Connected, but mailboxes using this credential need permissions the app lacks: \
             Mail.Send (sales@contoso.com)",
        )
        .assert_contains(
            "<span class=\"badge danger\">Missing</span> <code>Mail.Send</code> \
             <span class=\"muted\">needed by sales@contoso.com</span>",
        )
        .assert_lacks("The app also holds");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Failed")
        .assert_contains("Missing: Mail.Send (sales@contoso.com)");
}

async fn wrong_expired_and_unknown_credentials_are_explained(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (_, admin) = app.tenant_with_admin("acme").await;

    let wrong = add(&admin, "the-secret-id-not-the-value", &in_days(180)).await;
    test_connection(&admin, &wrong)
        .await
        .assert_contains("AADSTS7000215")
        .assert_contains("Value, not its Secret ID")
        .assert_contains("Trace ID")
        .assert_lacks("the-secret-id-not-the-value");

    // A secret whose date has passed is refused at once; entered as ending today, it is
    // stored, and Microsoft's refusal explained.
    let replace = |expires_on: String| {
        let (admin, wrong) = (&admin, &wrong);
        async move {
            let form = [
                ("client_secret", "old-expired-secret"),
                ("secret_expires_on", expires_on.as_str()),
            ];
            admin.submit(wrong, &format!("{wrong}/secret"), &form).await
        }
    };
    replace(in_days(-1))
        .await
        .assert_status(400)
        .assert_contains("This date has passed")
        .assert_contains("Paste the client secret again")
        .assert_lacks("old-expired-secret");
    replace(in_days(0))
        .await
        .assert_redirect(&format!("{wrong}?done=secret"));
    test_connection(&admin, &wrong)
        .await
        .assert_contains("AADSTS7000222")
        .assert_contains("Client secret has expired");

    // A secret is never sent for another app: the unknown app is a credential of its own.
    let unknown_app = Uuid::new_v4().to_string();
    let unknown = admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Unknown app"),
                ("client_id", &unknown_app),
                ("directory", &CONTOSO.to_string()),
                ("client_secret", SECRET),
                ("secret_expires_on", &in_days(180)),
            ],
        )
        .await;
    test_connection(&admin, &unknown)
        .await
        .assert_contains("AADSTS700016")
        .assert_contains("Application not found in the directory");
}

async fn mailbox_access_is_granted_denied_or_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    app.microsoft
        .set_mailbox_access(MAIL_APP, "support@contoso.com", MailboxAccess::Granted);
    app.microsoft
        .set_mailbox_access(MAIL_APP, "ceo@contoso.com", MailboxAccess::Denied);
    let (_, admin) = app.tenant_with_admin("acme").await;
    let credential = add(&admin, SECRET, &in_days(180)).await;
    let check = format!("{credential}/check-mailbox");
    for (mailbox, expected) in [
        ("support@contoso.com", "Granted:"),
        ("ceo@contoso.com", "Denied:"),
        ("nobody@contoso.com", "Not found:"),
    ] {
        admin
            .submit(&credential, &check, &[("mailbox", mailbox)])
            .await
            .assert_status(200)
            .assert_contains(expected)
            .assert_contains(mailbox);
    }
    admin
        .submit(&credential, &check, &[("mailbox", "not an address")])
        .await
        .assert_status(400)
        .assert_contains("Enter an email address");
    admin
        .get(&credential)
        .await
        .assert_contains(&format!("New-ApplicationAccessPolicy -AppId {MAIL_APP}"))
        .assert_contains("Test-ServicePrincipalAuthorization");
}

async fn concurrent_tests_share_one_token_request_until_the_secret_changes(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (_, admin) = app.tenant_with_admin("acme").await;
    let credential = add(&admin, SECRET, &in_days(180)).await;
    let token = admin.get(&credential).await.csrf_token();
    let before = app.microsoft.token_requests();

    let test_path = format!("{credential}/test");
    let fields = [("csrf_token", token.as_str())];
    let tests = (0..8).map(|_| admin.post_raw(&test_path, &fields));
    for page in futures_util::future::join_all(tests).await {
        page.assert_status(200).assert_contains("Connected.");
    }
    // One token for Graph and one for Exchange Online (its IMAP, POP and SMTP permissions),
    // shared by all eight tests.
    assert_eq!(app.microsoft.token_requests() - before, 2);

    // A new secret never reuses a token obtained with the old one.
    admin
        .submit(
            &credential,
            &format!("{credential}/secret"),
            &[
                ("client_secret", SECRET),
                ("secret_expires_on", &in_days(200)),
            ],
        )
        .await
        .assert_redirect(&format!("{credential}?done=secret"));
    test_connection(&admin, &credential)
        .await
        .assert_contains("Connected.");
    assert_eq!(app.microsoft.token_requests() - before, 4);
}

async fn a_slow_microsoft_gets_a_clear_answer_in_time(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (_, admin) = app.tenant_with_admin("acme").await;
    let credential = add(&admin, SECRET, &in_days(180)).await;
    app.microsoft
        .set_delay(Some(std::time::Duration::from_secs(30)));
    let started = std::time::Instant::now();
    test_connection(&admin, &credential)
        .await
        .assert_status(200)
        .assert_contains("Microsoft could not be reached");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Failed");
}

async fn expiring_secrets_raise_a_dashboard_banner(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (_, admin) = app.tenant_with_admin("acme").await;
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("Replace the secret");

    let credential = add(&admin, SECRET, &in_days(10)).await;
    admin
        .get("/t/acme/")
        .await
        .assert_contains("Support mail")
        .assert_contains("expires in 10 days")
        .assert_contains(&format!("href=\"{credential}\">Replace the secret"));
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("badge warn\">Expires in 10 days");

    // Twelve days on, it has expired (a date already past is refused when entered).
    app.state.clock.advance(Duration::days(12));
    let admin = app.browser();
    admin
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    admin
        .get("/t/acme/")
        .await
        .assert_contains(&format!("expired on {}", in_days(10)));

    admin
        .submit(
            &credential,
            &format!("{credential}/secret"),
            &[
                ("client_secret", SECRET),
                ("secret_expires_on", &in_days(365)),
            ],
        )
        .await;
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("Replace the secret");
}

async fn the_secret_appears_in_no_page_log_audit_entry_or_database_row(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let mut pages = Vec::new();
    let credential = add(&admin, SECRET, &in_days(10)).await;
    pages.push(admin.get(&credential).await);
    pages.push(test_connection(&admin, &credential).await);
    pages.push(
        admin
            .submit(
                &credential,
                &format!("{credential}/check-mailbox"),
                &[("mailbox", "x@contoso.com")],
            )
            .await,
    );
    // Error paths too: a bad date with the secret typed, then a bad new secret form.
    pages.push(
        admin
            .submit(
                &credential,
                &format!("{credential}/secret"),
                &[("client_secret", SECRET), ("secret_expires_on", "soon")],
            )
            .await,
    );
    pages.push(admin.get("/t/acme/external-apis").await);
    pages.push(admin.get("/t/acme/").await);
    pages.push(admin.get("/t/acme/audit").await);
    for page in &pages {
        page.assert_lacks(SECRET);
        for (name, value) in &page.headers {
            assert!(
                !value.to_str().unwrap_or_default().contains(SECRET),
                "header {name}"
            );
        }
    }
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit
            .iter()
            .all(|(_, target, detail)| !target.contains(SECRET) && !detail.contains(SECRET))
    );
    assert!(
        !captured_logs().contains(SECRET),
        "a log line carries the secret"
    );
    for row in app.database_text().await {
        assert!(!row.contains(SECRET), "stored in plaintext: {row}");
    }
}

async fn deleting_and_other_tenants_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app(&["Mail.ReadWrite", "Mail.Send"]));
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let credential = add(&admin, SECRET, &in_days(100)).await;
    let id = credential.rsplit('/').next().unwrap().to_owned();

    // Another tenant's admin, with the id under their own path: nothing.
    let (_, intruder) = app.tenant_with_admin("beta").await;
    let theirs = format!("/t/beta/external-apis/{id}");
    intruder
        .get(&theirs)
        .await
        .assert_status(404)
        .assert_lacks("Support mail");
    let token = intruder.get("/t/beta/").await.csrf_token();
    for action in ["", "/secret", "/test", "/check-mailbox", "/delete"] {
        intruder
            .post_raw(
                &format!("{theirs}{action}"),
                &[
                    ("csrf_token", &token),
                    ("name", "Stolen"),
                    ("client_id", &MAIL_APP.to_string()),
                    ("directory", &CONTOSO.to_string()),
                    ("cloud", "global"),
                    ("client_secret", "attacker"),
                    ("secret_expires_on", &in_days(5)),
                    ("mailbox", "x@contoso.com"),
                ],
            )
            .await
            .assert_status(404);
    }
    admin
        .get(&credential)
        .await
        .assert_status(200)
        .assert_contains("Support mail");

    admin
        .submit(&credential, &format!("{credential}/delete"), &[])
        .await
        .assert_redirect("/t/acme/external-apis");
    admin.get(&credential).await.assert_status(404);
    assert!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(action, target, _)| action == "graph_credential.deleted"
                && target == "Support mail")
    );
}
