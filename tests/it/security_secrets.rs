//! Secrets never leak: with a canary value for every kind of secret (client secrets,
//! mailbox and user passwords, Microsoft's codes and access, refresh and ID tokens, session
//! ids, one-time links, the secret key), every flow runs, error paths included, and no
//! canary appears in plaintext in any answer (body or header), log line, audit entry, or
//! database table or file.

use base64::Engine as _;
use portico::crypto::SecretKey;
use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, FakeUser, MailboxAccess, Signing};
use crate::support::{
    Backend, Browser, Page, TestApp, TestDatabase, captured_logs, spawn_app_with,
};

on_both_backends!(no_secret_shows_in_any_answer_log_line_audit_entry_or_database_row);

const CONTOSO: Uuid = uuid!("c0c0c0c0-1111-4111-8111-111111111111");
const GRAPH_APP: Uuid = uuid!("c0c0c0c0-2222-4222-8222-222222222222");
const SIGN_IN_APP: Uuid = uuid!("c0c0c0c0-3333-4333-8333-333333333333");
const OAUTH_APP: Uuid = uuid!("c0c0c0c0-4444-4444-8444-444444444444");

/// A value that cannot turn up anywhere by chance.
fn canary(kind: &str) -> String {
    format!("Canary-{kind}-{}", Uuid::new_v4().simple())
}

fn in_days(days: i64) -> String {
    (OffsetDateTime::now_utc() + Duration::days(days))
        .date()
        .to_string()
}

fn location(page: &Page) -> String {
    page.location
        .clone()
        .unwrap_or_else(|| panic!("no redirect: {} {}", page.status, page.body))
}

/// Azure as the flows need it: Contoso with a Graph app, a confidential sign-in app and a
/// delegated OAuth app, each with its canary secret, and two users.
fn contoso_with_canary_secrets(app: &TestApp, graph: &str, sign_in: &str, oauth: &str) {
    let expires = OffsetDateTime::now_utc() + Duration::days(90);
    app.register_azure_app(
        FakeApp::new(GRAPH_APP, CONTOSO)
            .secret(graph, expires)
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    app.register_azure_app(
        FakeApp::new(SIGN_IN_APP, CONTOSO)
            .web_redirect_uri(&app.url("/auth/microsoft/callback"))
            .secret(sign_in, expires),
    );
    app.register_azure_app(
        FakeApp::new(OAUTH_APP, CONTOSO)
            .web_redirect_uri(&app.url("/oauth/callback"))
            .secret(oauth, expires),
    );
    let microsoft = &app.microsoft;
    microsoft.add_user(FakeUser::new(CONTOSO, "ana@contoso.com", "Ana").email("ana@contoso.com"));
    microsoft.add_user(FakeUser::new(CONTOSO, "support@contoso.com", "Support"));
    microsoft.set_mailbox_access(GRAPH_APP, "support@contoso.com", MailboxAccess::Granted);
}

async fn no_secret_shows_in_any_answer_log_line_audit_entry_or_database_row(backend: Backend) {
    let key = SecretKey::generate();
    let key_base64 = key.to_base64().to_string();
    let database = TestDatabase::create(backend).await;
    let app = spawn_app_with(database, |config| config.secret_key = key.clone().into()).await;
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(&key_base64)
        .unwrap();
    let mut secrets: Vec<(&str, String)> = vec![
        ("secret key", key_base64.clone()),
        (
            "secret key",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key_bytes),
        ),
        (
            "secret key",
            key_bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ),
    ];
    let mut keep = |kind: &'static str| {
        let value = canary(kind);
        secrets.push((kind, value.clone()));
        value
    };
    let graph_secret = keep("graph-secret");
    let new_graph_secret = keep("graph-secret");
    let sign_in_secret = keep("sign-in-secret");
    let oauth_secret = keep("oauth-secret");
    let new_oauth_secret = keep("oauth-secret");
    let admin_password = keep("admin-password");
    let wrong_password = keep("wrong-password");
    let ana_password = keep("user-password");
    let reset_password = keep("user-password");
    let own_password = keep("user-password");
    let mailbox_password = keep("mailbox-password");
    let new_mailbox_password = keep("mailbox-password");
    let typed_then_refused = keep("refused-form-secret");
    // Too short to be accepted as a password: refused, and still never shown or stored.
    let short_password = format!("Cs{}", &Uuid::new_v4().simple().to_string()[..8]);
    secrets.push(("short password", short_password.clone()));
    contoso_with_canary_secrets(&app, &graph_secret, &sign_in_secret, &oauth_secret);

    // First run: the setup page creates the tenant and its admin, and signs them in.
    let admin = app.browser();
    let setup = app.setup_url().unwrap();
    let setup_path = setup
        .split_once("/setup")
        .map(|(_, q)| format!("/setup{q}"))
        .unwrap();
    let token = setup_path.split("token=").nth(1).unwrap().to_owned();
    admin
        .submit(
            &setup_path,
            "/setup",
            &[
                ("token", &token),
                ("tenant_name", "Acme"),
                ("slug", "acme"),
                ("display_name", "Admin"),
                ("email", "admin@acme.test"),
                ("password", &admin_password),
            ],
        )
        .await
        .assert_redirect("/t/acme/");

    // Local sign-in, refused and accepted.
    let intruder = app.browser();
    for email in ["admin@acme.test", "nobody@acme.test"] {
        intruder
            .sign_in("acme", email, &wrong_password)
            .await
            .assert_status(400);
    }
    app.browser()
        .sign_in("acme", "admin@acme.test", &admin_password)
        .await
        .assert_redirect("/t/acme/");

    // Users: added with a password (a refused try first), reset, then changed by the user.
    let user_form = |email: &'static str, password: &str| {
        vec![
            ("display_name", "Ana".to_owned()),
            ("email", email.to_owned()),
            ("role", "agent".to_owned()),
            ("password", password.to_owned()),
        ]
    };
    for (email, password, status) in [
        ("not an email", &typed_then_refused, 400),
        ("ana@contoso.com", &ana_password, 303),
    ] {
        let fields = user_form(email, password);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        admin
            .submit("/t/acme/users/new", "/t/acme/users", &fields)
            .await
            .assert_status(status);
    }
    let tenant = app.tenant("acme").await;
    let ana_page = format!(
        "/t/acme/users/{}",
        app.user_id(&tenant, "ana@contoso.com").await
    );
    let reset = format!("{ana_page}/password");
    admin
        .submit(&ana_page, &reset, &[("password", &short_password)])
        .await
        .assert_status(400);
    admin
        .submit(&ana_page, &reset, &[("password", &reset_password)])
        .await
        .assert_status(303);
    let ana = app.browser();
    ana.sign_in("acme", "ana@contoso.com", &reset_password)
        .await
        .assert_redirect("/t/acme/");
    for (current, new, status) in [
        (&typed_then_refused, &own_password, 400),
        (&reset_password, &own_password, 303),
    ] {
        ana.submit(
            "/t/acme/profile",
            "/t/acme/profile/password",
            &[("current_password", current), ("new_password", new)],
        )
        .await
        .assert_status(status);
    }

    // External APIs: a Graph credential, refused once, tested, checked, its secret replaced.
    let credential_form = |secret: &str, expires: &str| {
        vec![
            ("name", "Mail app".to_owned()),
            ("client_id", GRAPH_APP.to_string()),
            ("directory", "contoso.onmicrosoft.com".to_owned()),
            ("cloud", "global".to_owned()),
            ("client_secret", secret.to_owned()),
            ("secret_expires_on", expires.to_owned()),
        ]
    };
    let mut credential = String::new();
    for (secret, expires) in [(&typed_then_refused, "soon"), (&graph_secret, &in_days(90))] {
        let fields = credential_form(secret, expires);
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let page = admin
            .submit(
                "/t/acme/external-apis/new",
                "/t/acme/external-apis",
                &fields,
            )
            .await;
        if page.status == 303 {
            credential = location(&page);
        }
    }
    admin
        .submit(&credential, &format!("{credential}/test"), &[])
        .await
        .assert_contains("Connected.");
    admin
        .submit(
            &credential,
            &format!("{credential}/check-mailbox"),
            &[("mailbox", "support@contoso.com")],
        )
        .await
        .assert_contains("Granted:");
    for (secret, expires) in [
        (&typed_then_refused, "soon"),
        (&new_graph_secret, &in_days(80)),
    ] {
        admin
            .submit(
                &credential,
                &format!("{credential}/secret"),
                &[("client_secret", secret), ("secret_expires_on", expires)],
            )
            .await;
    }
    // The new secret is Azure's too, and works.
    app.microsoft.add_app(
        FakeApp::new(GRAPH_APP, CONTOSO)
            .secret(
                &new_graph_secret,
                OffsetDateTime::now_utc() + Duration::days(80),
            )
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    admin
        .submit(&credential, &format!("{credential}/test"), &[])
        .await
        .assert_contains("Connected.");

    // Sign in with Microsoft as a confidential client: refused settings, saved settings, a
    // sign-in, a forged ID token refused, and a one-time link.
    let settings = "/t/acme/settings/microsoft-sign-in";
    for client_id in ["not a guid".to_owned(), SIGN_IN_APP.to_string()] {
        let secret = if client_id.len() == 36 {
            &sign_in_secret
        } else {
            &typed_then_refused
        };
        admin
            .submit(
                settings,
                settings,
                &[
                    ("client_id", &client_id),
                    ("directory", &CONTOSO.to_string()),
                    ("cloud", "global"),
                    ("enabled", "on"),
                    ("client_secret", secret),
                    ("secret_expires_on", &in_days(90)),
                ],
            )
            .await;
    }
    app.microsoft.sign_in_as("ana@contoso.com");
    let ana_microsoft = app.browser();
    ana_microsoft
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    app.microsoft.tamper_next_id_token(|claims| {
        claims["aud"] = serde_json::json!(Uuid::new_v4());
        Signing::CurrentKey
    });
    let refused = app.browser().microsoft_sign_in("acme").await;
    assert!(!refused.status.is_redirection(), "{}", refused.body);
    let link_page = admin
        .submit(&ana_page, &format!("{ana_page}/microsoft-link"), &[])
        .await;
    let link_token = link_page
        .body
        .split("/auth/microsoft/link/")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_')
        .next()
        .unwrap()
        .to_owned();
    secrets.push(("one-time link", link_token.clone()));
    app.browser()
        .get(&format!("/t/acme/auth/microsoft/link/{link_token}"))
        .await
        .assert_status(200);

    // Sign in with Microsoft moves to a certificate Portico generates: its private key is
    // a secret like any other (opened from its sealed column below, to be looked for).
    // The secret signs in until the admin uploads the certificate and switches to it.
    admin
        .submit(
            settings,
            settings,
            &[
                ("client_id", &SIGN_IN_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("cloud", "global"),
                ("enabled", "on"),
                ("auth_method", "certificate"),
                ("valid_months", "12"),
            ],
        )
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1&done=renewed");
    let certificate = admin.get(&format!("{settings}/certificate/next.pem")).await;
    app.microsoft
        .upload_certificate(SIGN_IN_APP, &certificate.body);
    admin
        .submit(settings, &format!("{settings}/certificate/switch"), &[])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=switched");
    ana_microsoft
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    admin
        .submit(
            settings,
            &format!("{settings}/certificate/renew"),
            &[("valid_months", "6")],
        )
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=renewed");
    admin.get(settings).await.assert_status(200);
    admin
        .get(&format!("{settings}/certificate/next.cer"))
        .await
        .assert_status(200);
    const SIGN_IN_OWNER: portico::store::certificates::Owner =
        portico::store::certificates::Owner::MicrosoftSignIn;
    for slot in [
        portico::store::certificates::Slot::Current,
        portico::store::certificates::Slot::Next,
    ] {
        let stored =
            portico::store::certificates::get(&app.state.db, &tenant.id, SIGN_IN_OWNER, slot)
                .await
                .unwrap()
                .unwrap();
        let private_key = app
            .state
            .config
            .secret_key
            .open(
                &stored.private_key_sealed,
                &portico::store::certificates::private_key_context(
                    &tenant.id,
                    SIGN_IN_OWNER.kind(),
                    &stored.id,
                ),
            )
            .unwrap();
        let pem = secrecy::ExposeSecret::expose_secret(&private_key).to_owned();
        let body: Vec<&str> = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        secrets.push(("sign-in private key", body.concat()));
        secrets.push(("sign-in private key", body[1].to_owned()));
        secrets.push(("sign-in private key", pem));
    }

    // A delegated OAuth connection: refused once, authenticated, renewed, its secret
    // replaced, then revoked by Microsoft.
    let mut connection = String::new();
    for (client_id, secret) in [
        ("not a guid".to_owned(), &typed_then_refused),
        (OAUTH_APP.to_string(), &oauth_secret),
    ] {
        let page = admin
            .submit(
                "/t/acme/oauth-connections/new",
                "/t/acme/oauth-connections",
                &[
                    ("name", "Support IMAP"),
                    ("client_id", &client_id),
                    ("directory", "contoso.onmicrosoft.com"),
                    ("cloud", "global"),
                    ("purpose", "imap"),
                    ("client_secret", secret),
                    ("secret_expires_on", &in_days(90)),
                ],
            )
            .await;
        if page.status == 303 {
            connection = location(&page);
        }
    }
    app.microsoft.sign_in_as("support@contoso.com");
    let to_microsoft = admin
        .submit(
            &connection,
            &format!("{connection}/authenticate"),
            &[("login_hint", "support@contoso.com")],
        )
        .await;
    let callback = admin.get_url(&location(&to_microsoft)).await;
    let back = admin.get_url(&location(&callback)).await;
    admin
        .get(&location(&back))
        .await
        .assert_contains("Authenticated as");
    app.state.clock.advance(Duration::minutes(55));
    assert_eq!(
        portico::services::oauth_connections::renew_due(&app.state)
            .await
            .unwrap(),
        1
    );

    // Mailboxes: IMAP with a password (a refused try first), changed, tested; IMAP through
    // the OAuth connection, tested (both fail to connect, and say so).
    let segments = "/t/acme/segments";
    let segment = location(
        &admin
            .submit(
                segments,
                segments,
                &[("name", "Support"), ("description", "")],
            )
            .await,
    );
    let new_mailbox = format!("{segment}/mailboxes/new");
    let create_mailbox = format!("{segment}/mailboxes");
    let imap = |port: &'static str, authentication: &'static str, password: &str| {
        vec![
            ("name", format!("Inbox {authentication}")),
            ("email", format!("{authentication}@contoso.com")),
            ("protocol", "imap".to_owned()),
            ("direction", "incoming".to_owned()),
            ("host", "127.0.0.1".to_owned()),
            ("port", port.to_owned()),
            ("security", "tls".to_owned()),
            ("username", "support@contoso.com".to_owned()),
            ("authentication", authentication.to_owned()),
            (
                "oauth_connection_id",
                connection.rsplit('/').next().unwrap().to_owned(),
            ),
            ("password", password.to_owned()),
            ("enabled", "on".to_owned()),
        ]
    };
    let mut mailboxes = Vec::new();
    for fields in [
        imap("not a port", "password", &typed_then_refused),
        imap("1", "password", &mailbox_password),
        imap("1", "oauth", ""),
    ] {
        let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let page = admin.submit(&new_mailbox, &create_mailbox, &fields).await;
        if page.status == 303 {
            mailboxes.push(location(&page));
        }
    }
    assert_eq!(mailboxes.len(), 2);
    let fields = imap("1", "password", &new_mailbox_password);
    let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
    admin
        .submit(&mailboxes[0], &mailboxes[0], &fields)
        .await
        .assert_status(303);
    for mailbox in &mailboxes {
        admin
            .submit(mailbox, &format!("{mailbox}/test"), &[])
            .await
            .assert_contains("failed");
    }

    // The connection's secret replaced (a refused empty try first); then Microsoft revokes
    // its refresh tokens, and renewal asks for the user again.
    for (secret, expires) in [
        ("", String::new()),
        (new_oauth_secret.as_str(), in_days(80)),
    ] {
        admin
            .submit(
                &connection,
                &format!("{connection}/secret"),
                &[("client_secret", secret), ("secret_expires_on", &expires)],
            )
            .await;
    }
    app.microsoft.revoke_refresh_tokens();
    app.state.clock.advance(Duration::minutes(55));
    portico::services::oauth_connections::renew_due(&app.state)
        .await
        .unwrap();
    admin
        .get(&connection)
        .await
        .assert_contains("Needs re-authentication");

    // Everything people saw, then signing out.
    for page in [
        "/t/acme/",
        "/t/acme/audit",
        "/t/acme/users",
        "/t/acme/external-apis",
    ] {
        admin.get(page).await.assert_status(200);
    }
    ana.get("/t/acme/profile").await.assert_status(200);
    admin
        .submit("/t/acme/", "/t/acme/logout", &[])
        .await
        .assert_redirect("/t/acme/login");

    // The codes and tokens Microsoft issued, and every session id a browser was given.
    for token in app.microsoft.issued_tokens() {
        secrets.push(("Microsoft code or token", token));
    }
    let browsers = [&admin, &intruder, &ana, &ana_microsoft];
    for browser in browsers {
        for page in browser.history() {
            for cookie in page.headers.get_all("set-cookie") {
                let cookie = cookie.to_str().unwrap();
                if let Some(id) = cookie
                    .strip_prefix("portico_session=")
                    .and_then(|rest| rest.split(';').next())
                    .filter(|id| !id.is_empty())
                {
                    secrets.push(("session id", id.to_owned()));
                }
            }
        }
    }
    assert!(secrets.iter().any(|(kind, _)| *kind == "session id"));
    assert!(
        secrets
            .iter()
            .filter(|(kind, _)| *kind == "Microsoft code or token")
            .count()
            >= 6
    );

    assert_nowhere(&app, &browsers, &secrets, &tenant).await;
}

/// No secret in any answer any browser got (a session id only in the cookie that sets it,
/// a one-time link only on the page that makes it), log line, audit entry or database text.
async fn assert_nowhere(
    app: &TestApp,
    browsers: &[&Browser],
    secrets: &[(&str, String)],
    tenant: &portico::store::tenants::Tenant,
) {
    let mut pages = 0;
    for browser in browsers {
        for page in browser.history() {
            pages += 1;
            for (kind, secret) in secrets {
                let shown_once = *kind == "one-time link" && page.url.ends_with("/microsoft-link");
                assert!(
                    shown_once || !page.body.contains(secret.as_str()),
                    "a {kind} is in the answer to {}:\n{}",
                    page.url,
                    page.body
                );
                for (name, value) in &page.headers {
                    let value = String::from_utf8_lossy(value.as_bytes());
                    let sets_it = *kind == "session id" && name == "set-cookie";
                    assert!(
                        sets_it || !value.contains(secret.as_str()),
                        "a {kind} is in the {name} header of {}",
                        page.url
                    );
                }
            }
        }
    }
    assert!(pages > 60, "only {pages} answers were scanned");

    let logs = captured_logs();
    let audit = app.audit_actions(tenant).await;
    assert!(audit.len() > 20, "only {} audit entries", audit.len());
    let stored = app.database_text().await;
    for (kind, secret) in secrets {
        if let Some(line) = logs.lines().find(|line| line.contains(secret.as_str())) {
            panic!("a {kind} is in a log line: {line}");
        }
        for (action, target, detail) in &audit {
            assert!(
                !target.contains(secret.as_str()) && !detail.contains(secret.as_str()),
                "a {kind} is in the audit entry {action} {target} {detail}"
            );
        }
        for text in &stored {
            assert!(
                !text.contains(secret.as_str()),
                "a {kind} is stored in plaintext: {}",
                text.chars().take(300).collect::<String>()
            );
        }
    }
}
