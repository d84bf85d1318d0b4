//! Every client secret has an expiry: Sign in with Microsoft's and an OAuth connection's
//! secrets are entered with "Secret expires on" (required, not past, at most 24 months
//! ahead), show on the Expiring page and the dashboard as the (injected) clock moves through
//! 31, 30, 7, 1 and 0 days before it, and are alerted once per threshold, sent as a Graph
//! mailbox through the fake Graph. A secret stored before Portico asked for its date is
//! listed as unknown, and its date is entered without typing the secret again.

use portico::services::alerts::{self, AlertRun};
use portico::services::oauth_connections as oauth_services;
use portico::store::{microsoft_sign_in, oauth_connections};
use secrecy::ExposeSecret;
use time::{Date, Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::expiring::days_before;
use crate::oauth_connections::{authorize, connection, follow};
use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, MailboxAccess};
use crate::support::{Backend, Browser, Page, TestApp, spawn_app};

const CONTOSO: Uuid = uuid!("e3e3e3e3-1111-4222-8333-444444444444");
const MAIL_APP: Uuid = uuid!("e4e4e4e4-5555-4666-8777-888888888888");
const SIGN_IN_APP: Uuid = uuid!("e5e5e5e5-5555-4666-8777-888888888888");
const OAUTH_APP: Uuid = uuid!("e6e6e6e6-5555-4666-8777-888888888888");

const GRAPH_SECRET: &str = "Graph~Sender-Canary.Secret";
const SIGN_IN_SECRET: &str = "Sign-In~Expiry-Canary.Secret";
const OAUTH_SECRET: &str = "OAuth~Expiry-Canary.Secret";
const SETTINGS: &str = "/t/acme/settings/microsoft-sign-in";
const SECRET_AGAIN: &str = "Paste the client secret again: Portico never sends a secret back to \
                            the page.";

on_both_backends!(
    sign_in_and_oauth_secrets_are_announced_from_thirty_days_before_and_alerted_once_each,
    a_secret_stored_without_a_date_is_unknown_until_its_date_is_entered_alone,
    a_new_secret_without_a_good_date_is_refused_beside_the_field_keeping_all_but_the_secret,
);

/// `days` from the app's today, as a form field holds a date.
fn day(app: &TestApp, days: i64) -> Date {
    (app.state.clock.now() + Duration::days(days)).date()
}

/// The Expiring page's row of `what` (its first column) named `name`.
fn row<'a>(page: &'a Page, what: &str, name: &str) -> &'a str {
    page.body
        .split("<tr>")
        .find(|row| {
            row.contains(&format!("<td>{what}</td>")) && row.contains(&format!(">{name}</a>"))
        })
        .map(|row| &row[..row.find("</tr>").unwrap_or(row.len())])
        .unwrap_or_else(|| panic!("no {what} row of {name}:\n{}", page.body))
}

/// Sign in with Microsoft with a client secret ending `expires_on`.
async fn sign_in_with_secret(admin: &Browser, expires_on: &str) -> Page {
    admin
        .submit(
            SETTINGS,
            SETTINGS,
            &[
                ("client_id", &SIGN_IN_APP.to_string()),
                ("cloud", "global"),
                ("enabled", "on"),
                ("client_secret", SIGN_IN_SECRET),
                ("secret_expires_on", expires_on),
            ],
        )
        .await
}

/// The OAuth connection form's fields, with this secret and date (the cloud aside, which
/// `add_oauth_connection` adds).
fn connection_fields<'a>(
    client_id: &'a str,
    secret: &'a str,
    expires_on: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", "Support IMAP"),
        ("client_id", client_id),
        ("directory", "contoso.onmicrosoft.com"),
        ("purpose", "imap"),
        ("client_secret", secret),
        ("secret_expires_on", expires_on),
    ]
}

/// An outgoing Graph mailbox whose credential's secret lasts 700 days (beyond every date the
/// test reaches), chosen to send the tenant's alerts to it@acme.test.
async fn alerts_sent_as_a_graph_mailbox(app: &TestApp, admin: &Browser) {
    app.microsoft
        .add_directory(CONTOSO, &["contoso.onmicrosoft.com", "contoso.com"]);
    app.microsoft.add_app(
        FakeApp::new(MAIL_APP, CONTOSO)
            .secret(
                GRAPH_SECRET,
                OffsetDateTime::now_utc() + Duration::days(730),
            )
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    app.microsoft
        .set_mailbox_access(MAIL_APP, "support@contoso.com", MailboxAccess::Granted);
    let credential = admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Contoso mail"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("auth_method", "client_secret"),
                ("client_secret", GRAPH_SECRET),
                ("secret_expires_on", &day(app, 700).to_string()),
            ],
        )
        .await;
    let credential = credential.rsplit('/').next().unwrap().to_owned();
    let segment = admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap();
    let mailbox = admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &[
                ("name", "Support"),
                ("email", "support@contoso.com"),
                ("protocol", "graph"),
                ("direction", "outgoing"),
                ("graph_credential_id", &credential),
                ("enabled", "on"),
            ],
        )
        .await
        .location
        .unwrap();
    let mailbox = mailbox.rsplit('/').next().unwrap();
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[
                ("recipients", "it@acme.test"),
                ("sender_mailbox_id", mailbox),
            ],
        )
        .await
        .assert_redirect("/t/acme/expiring?saved=1");
}

async fn sign_in_and_oauth_secrets_are_announced_from_thirty_days_before_and_alerted_once_each(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    alerts_sent_as_a_graph_mailbox(&app, &admin).await;
    let ends_on = day(&app, 180);
    sign_in_with_secret(&admin, &ends_on.to_string())
        .await
        .assert_redirect(&format!("{SETTINGS}?saved=1"));
    let oauth_app = OAUTH_APP.to_string();
    let connection = admin
        .add_oauth_connection(
            "acme",
            &connection_fields(&oauth_app, OAUTH_SECRET, &ends_on.to_string()),
        )
        .await;
    admin.get(&connection).await.assert_contains(&format!(
        "<dt>Secret expires on</dt><dd>{ends_on} <span class=\"badge ok\">Valid</span>"
    ));
    admin
        .get(SETTINGS)
        .await
        .assert_contains(&format!("The stored secret expires on {ends_on} (valid)."));
    let sign_in_link = format!("href=\"{SETTINGS}\"");
    let connection_link = format!("href=\"{connection}\"");

    let admin = days_before(&app, ends_on, 31).await;
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("<strong>Sign in with Microsoft</strong>")
        .assert_lacks("<strong>Support IMAP</strong>");
    let page = admin.get("/t/acme/expiring").await;
    for (name, link) in [
        ("Sign in with Microsoft", &sign_in_link),
        ("Support IMAP", &connection_link),
    ] {
        let row = row(&page, "Client secret", name);
        assert!(row.contains(&ends_on.to_string()), "{row}");
        assert!(row.contains("badge ok\">Valid"), "{row}");
        assert!(row.contains(link.as_str()), "{row}");
    }
    assert_eq!(alerts::run(&app.state).await.unwrap(), AlertRun::default());

    for (days, label, within) in [
        (30, "expires in 30 days", "expires within 30 days"),
        (7, "expires in 7 days", "expires within 7 days"),
        (1, "expires tomorrow", "expires by tomorrow"),
        (0, "expires today", ""),
    ] {
        let admin = days_before(&app, ends_on, days).await;
        admin
            .get("/t/acme/")
            .await
            .assert_contains(&format!(
                "The client secret of <strong>Sign in with Microsoft</strong> {label} ({ends_on})"
            ))
            .assert_contains(&format!(
                "The client secret of the OAuth connection <strong>Support IMAP</strong> {label} ({ends_on})"
            ))
            .assert_contains(&format!("{sign_in_link}>Replace the secret"))
            .assert_contains(&format!("{connection_link}>Update the client secret"));
        let page = admin.get("/t/acme/expiring").await;
        for name in ["Sign in with Microsoft", "Support IMAP"] {
            let row = row(&page, "Client secret", name);
            assert!(row.contains("badge warn"), "{days}: {row}");
        }

        // One alert for each secret per threshold: the 1-day alert covers the last day too.
        let sent_before = app.microsoft.sent_mail().len();
        let run = alerts::run(&app.state).await.unwrap();
        let due = if within.is_empty() { 0 } else { 2 };
        assert_eq!(
            (run.planned, run.sent, run.failed),
            (due, due, 0),
            "{days} days"
        );
        assert_eq!(alerts::run(&app.state).await.unwrap(), AlertRun::default());
        let sent = app.microsoft.sent_mail();
        let new: Vec<_> = sent[sent_before..]
            .iter()
            .map(|mail| mail.subject.clone())
            .collect();
        if due > 0 {
            for subject in [
                format!(
                    "Portico: The client secret of Sign in with Microsoft {within}, on {ends_on}"
                ),
                format!(
                    "Portico: The client secret of the OAuth connection Support IMAP {within}, on {ends_on}"
                ),
            ] {
                assert!(new.contains(&subject), "{days}: {new:#?}");
            }
        } else {
            assert!(new.is_empty(), "{new:#?}");
        }
    }
    let sent = app.microsoft.sent_mail();
    let about_sign_in = sent
        .iter()
        .find(|mail| mail.subject.contains("Sign in with Microsoft"))
        .unwrap();
    assert_eq!(about_sign_in.to, ["it@acme.test"]);
    assert!(
        about_sign_in.body.contains(SETTINGS),
        "{}",
        about_sign_in.body
    );
    assert!(
        about_sign_in
            .body
            .contains("nobody can sign in with Microsoft")
    );
    let about_connection = sent
        .iter()
        .find(|mail| mail.subject.contains("OAuth connection Support IMAP"))
        .unwrap();
    assert!(
        about_connection.body.contains(&connection),
        "{}",
        about_connection.body
    );

    let admin = days_before(&app, ends_on, -1).await;
    admin
        .get("/t/acme/")
        .await
        .assert_contains(&format!(
            "The client secret of <strong>Sign in with Microsoft</strong> expired on {ends_on}: nobody can sign in with Microsoft"
        ))
        .assert_contains(&format!(
            "The client secret of the OAuth connection <strong>Support IMAP</strong> expired on {ends_on}: the connection cannot renew its token"
        ));
    let page = admin.get("/t/acme/expiring").await;
    for name in ["Sign in with Microsoft", "Support IMAP"] {
        assert!(row(&page, "Client secret", name).contains("badge danger\">Expired"));
    }
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent), (2, 2));
    assert_eq!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .filter(|(action, _, _)| action == "expiry_alert.sent")
            .count(),
        8
    );
    for page in admin.history() {
        page.assert_lacks(SIGN_IN_SECRET).assert_lacks(OAUTH_SECRET);
    }
    assert!(
        sent.iter()
            .all(|mail| !mail.body.contains(SIGN_IN_SECRET) && !mail.body.contains(OAUTH_SECRET))
    );
}

async fn a_secret_stored_without_a_date_is_unknown_until_its_date_is_entered_alone(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    // An authenticated OAuth connection and Sign in with Microsoft, both with secrets whose
    // date was never asked for: rows as Portico left them before migration 26.
    let (admin, connection_page) = connection(&app).await;
    let callback = authorize(&admin, &connection_page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as");
    sign_in_with_secret(&admin, &day(&app, 100).to_string())
        .await
        .assert_redirect(&format!("{SETTINGS}?saved=1"));
    app.execute("UPDATE microsoft_sign_in SET secret_expires_on = NULL")
        .await;
    app.execute("UPDATE oauth_connections SET secret_expires_on = NULL")
        .await;
    let tenant = app.tenant("acme").await;

    let page = admin.get("/t/acme/expiring").await;
    let sign_in_row = row(&page, "Client secret", "Sign in with Microsoft");
    assert!(
        sign_in_row.contains(&format!(
            "Expiry unknown: <a href=\"{SETTINGS}\">enter it</a>"
        )),
        "{sign_in_row}"
    );
    let connection_row = row(&page, "Client secret", "Support IMAP");
    assert!(
        connection_row.contains(&format!(
            "Expiry unknown: <a href=\"{connection_page}\">enter it</a>"
        )),
        "{connection_row}"
    );
    // The consent's own expiry is listed apart, with its date.
    assert!(row(&page, "OAuth connection", "Support IMAP").contains("badge ok\">Valid"));
    admin
        .get("/t/acme/")
        .await
        .assert_contains(
            "The client secret of <strong>Sign in with Microsoft</strong> has no expiry date in \
             Portico, and Azure ends every client secret within 24 months.",
        )
        .assert_contains(&format!("href=\"{SETTINGS}\">Enter its expiry date"))
        .assert_contains(&format!("href=\"{connection_page}\">Enter its expiry date"));
    admin
        .get(&connection_page)
        .await
        .assert_contains("<span class=\"badge warn\">Expiry unknown</span>");
    admin
        .get(SETTINGS)
        .await
        .assert_contains("The stored secret&#39;s expiry is unknown");
    // Without a date there is nothing to count from: no alert.
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[("recipients", "it@acme.test"), ("sender_mailbox_id", "")],
        )
        .await
        .assert_redirect("/t/acme/expiring?saved=1");
    assert_eq!(alerts::run(&app.state).await.unwrap().planned, 0);

    // Sign in with Microsoft: the date alone (a bad one first), the secret untouched.
    let sealed_before = microsoft_sign_in::get(&app.state.db, &tenant.id)
        .await
        .unwrap()
        .unwrap()
        .client_secret_sealed
        .unwrap()
        .as_str()
        .to_owned();
    let settings_fields = |expires_on: &str| {
        vec![
            ("client_id", SIGN_IN_APP.to_string()),
            ("cloud", "global".to_owned()),
            ("enabled", "on".to_owned()),
            ("secret_expires_on", expires_on.to_owned()),
        ]
    };
    let date_alone = |expires_on: String| {
        let (admin, fields) = (&admin, settings_fields(&expires_on));
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (*n, v.as_str())).collect();
            admin.submit(SETTINGS, SETTINGS, &fields).await
        }
    };
    let past = day(&app, -3).to_string();
    date_alone(past.clone())
        .await
        .assert_status(400)
        .assert_contains("This date has passed")
        .assert_contains(&format!("value=\"{past}\""))
        .assert_lacks(SECRET_AGAIN);
    let entered = day(&app, 60);
    date_alone(entered.to_string())
        .await
        .assert_redirect(&format!("{SETTINGS}?saved=1"));
    let stored = microsoft_sign_in::get(&app.state.db, &tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secret_expires_on, Some(entered));
    assert_eq!(stored.client_secret_sealed.unwrap().as_str(), sealed_before);
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.iter().any(
            |(action, _, detail)| action == "settings.microsoft_sign_in_changed"
                && detail == &format!("secret expires on {entered} (was unknown)")
        ),
        "{audit:?}"
    );

    // The OAuth connection: its date alone under Update client secret, the consent kept.
    let secret_path = format!("{connection_page}/secret");
    admin
        .submit(
            &connection_page,
            &secret_path,
            &[("client_secret", ""), ("secret_expires_on", "")],
        )
        .await
        .assert_status(400)
        .assert_contains("or enter the stored secret&#39;s expiry date alone");
    admin
        .submit(
            &connection_page,
            &secret_path,
            &[
                ("client_secret", ""),
                ("secret_expires_on", &entered.to_string()),
            ],
        )
        .await
        .assert_redirect(&connection_page);
    let id = connection_page.rsplit('/').next().unwrap();
    let stored = oauth_connections::get(&app.state.db, &tenant.id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secret_expires_on, Some(entered));
    let secret = oauth_services::client_secret(&app.state, &stored)
        .unwrap()
        .unwrap();
    assert_eq!(secret.expose_secret(), crate::oauth_connections::SECRET);
    admin
        .get(&connection_page)
        .await
        .assert_contains("Authenticated as")
        .assert_contains(&format!(
            "<dt>Secret expires on</dt><dd>{entered} <span class=\"badge ok\">Valid"
        ));
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.iter().any(|(action, target, detail)| action
            == "oauth_connection.secret_expiry_changed"
            && target == "Support IMAP"
            && detail == &format!("secret expires on {entered} (was unknown)")),
        "{audit:?}"
    );

    let page = admin.get("/t/acme/expiring").await;
    page.assert_lacks("Expiry unknown");
    for name in ["Sign in with Microsoft", "Support IMAP"] {
        assert!(row(&page, "Client secret", name).contains(&entered.to_string()));
    }
}

async fn a_new_secret_without_a_good_date_is_refused_beside_the_field_keeping_all_but_the_secret(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let oauth_app = OAUTH_APP.to_string();
    let cases = [
        (
            String::new(),
            "Enter the date Azure shows under Expires, as YYYY-MM-DD.",
        ),
        (day(&app, -1).to_string(), "This date has passed"),
        (
            day(&app, 24 * 31 + 5).to_string(),
            "Client secret lifetime is limited to two years (24 months) or less",
        ),
    ];
    for (expires_on, message) in &cases {
        // Sign in with Microsoft.
        let refused = sign_in_with_secret(&admin, expires_on).await;
        refused
            .assert_status(400)
            .assert_contains(&format!("value=\"{SIGN_IN_APP}\""))
            .assert_contains(&format!("value=\"{expires_on}\""))
            .assert_contains("id=\"secret_expires_on-error\"")
            .assert_contains(SECRET_AGAIN)
            .assert_lacks(SIGN_IN_SECRET);
        assert!(
            refused.body.contains(&format!(
                "<p class=\"field-error\" id=\"secret_expires_on-error\">{message}"
            )),
            "{message}: {}",
            refused.body
        );

        // A new OAuth connection.
        let mut fields = connection_fields(&oauth_app, OAUTH_SECRET, expires_on);
        fields.push(("cloud", "global"));
        let refused = admin
            .submit(
                "/t/acme/oauth-connections/new",
                "/t/acme/oauth-connections",
                &fields,
            )
            .await;
        refused
            .assert_status(400)
            .assert_contains("value=\"Support IMAP\"")
            .assert_contains(&format!("value=\"{oauth_app}\""))
            .assert_contains(&format!("value=\"{expires_on}\""))
            .assert_contains(SECRET_AGAIN)
            .assert_lacks(OAUTH_SECRET);
        assert!(
            refused.body.contains(&format!(
                "<p class=\"field-error\" id=\"secret_expires_on-error\">{message}"
            )),
            "{message}: {}",
            refused.body
        );
    }
    // Nothing was saved.
    admin
        .get(SETTINGS)
        .await
        .assert_contains("No secret is set");
    admin
        .get("/t/acme/oauth-connections")
        .await
        .assert_contains("No connection yet");
    // A date without any secret is not taken for one.
    admin
        .submit(
            SETTINGS,
            SETTINGS,
            &[
                ("client_id", &SIGN_IN_APP.to_string()),
                ("cloud", "global"),
                ("secret_expires_on", &day(&app, 90).to_string()),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("There is no client secret for this date");

    // A connection's new secret, on Update client secret and on Edit, needs its date too.
    let good = day(&app, 90).to_string();
    let connection = admin
        .add_oauth_connection("acme", &connection_fields(&oauth_app, OAUTH_SECRET, &good))
        .await;
    for (expires_on, message) in &cases {
        let refused = admin
            .submit(
                &connection,
                &format!("{connection}/secret"),
                &[
                    ("client_secret", "OAuth~Replacement.Secret"),
                    ("secret_expires_on", expires_on),
                ],
            )
            .await;
        refused
            .assert_status(400)
            .assert_contains(message)
            .assert_contains(&format!("id=\"secret_expires_on\" name=\"secret_expires_on\" type=\"date\" value=\"{expires_on}\""))
            .assert_contains(SECRET_AGAIN)
            .assert_lacks("OAuth~Replacement.Secret");
    }
    let mut fields = connection_fields(&oauth_app, "OAuth~Replacement.Secret", "");
    fields.push(("cloud", "global"));
    let refused = admin.submit(&connection, &connection, &fields).await;
    refused
        .assert_status(400)
        .assert_contains(
            "id=\"edit_secret_expires_on-error\">Enter the date Azure shows under Expires",
        )
        .assert_contains(SECRET_AGAIN)
        .assert_lacks("OAuth~Replacement.Secret");
    let stored = admin.get(&connection).await;
    stored.assert_contains(&format!("<dt>Secret expires on</dt><dd>{good} "));

    // With a good date the new secret and its date replace the old ones, audited.
    let replaced = day(&app, 300).to_string();
    admin
        .submit(
            &connection,
            &format!("{connection}/secret"),
            &[
                ("client_secret", "OAuth~Replacement.Secret"),
                ("secret_expires_on", &replaced),
            ],
        )
        .await
        .assert_redirect(&connection);
    admin
        .get(&connection)
        .await
        .assert_contains(&format!("<dt>Secret expires on</dt><dd>{replaced} "));
    let tenant = app.tenant("acme").await;
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.iter().any(
            |(action, _, detail)| action == "oauth_connection.secret_replaced"
                && detail == &format!("new secret expires on {replaced}")
        ),
        "{audit:?}"
    );
}
