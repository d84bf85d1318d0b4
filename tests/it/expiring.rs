//! Expiry everywhere: the dashboard banner and the Expiring page list client secrets,
//! certificates and OAuth connections by the day they stop working, as the (injected)
//! clock moves through 31, 30, 7, 1 and 0 days before it; and expiry alerts sent as a
//! tenant's Graph mailbox, through the fake Graph's sendMail. (Alerts through SMTP are in
//! mail_servers/alerts.rs, against a real SMTP server.)

use portico::services::alerts::{self, AlertRun};
use portico::store::tenants::Tenant;
use time::{Date, Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::oauth_connections::{authorize, connection, follow};
use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, MailboxAccess};
use crate::support::{
    Backend, Browser, PASSWORD, Page, TestApp, captured_logs, default_secret_expiry, spawn_app,
};

const CONTOSO: Uuid = uuid!("e1e1e1e1-1111-4222-8333-444444444444");
const MAIL_APP: Uuid = uuid!("e2e2e2e2-5555-4666-8777-888888888888");

const GRAPH_SECRET: &str = "Graph~Alert-Canary.Secret";

on_both_backends!(
    secrets_and_certificates_are_announced_from_thirty_days_before,
    oauth_connections_expire_ninety_days_after_their_last_renewal_and_failures_come_first,
    alerts_are_sent_once_as_a_graph_mailbox_and_audited,
    an_app_without_mail_send_fails_the_alert_in_plain_words_until_granted,
    an_alert_about_a_secret_replaced_meanwhile_is_withdrawn_not_sent,
    no_alert_goes_through_a_mailbox_disabled_since_it_was_chosen,
    an_alert_failing_for_seven_days_is_given_up_audited_and_shown,
);

/// Moves Portico's clock so that `ends_on` is `days` days away, and signs the admin in
/// again (a session ends 12 hours after sign-in, by the same clock).
pub(crate) async fn days_before(app: &TestApp, ends_on: Date, days: i64) -> Browser {
    let today = app.state.clock.now().date();
    app.state
        .clock
        .advance(Duration::days((ends_on - today).whole_days() - days));
    assert_eq!((ends_on - app.state.clock.now().date()).whole_days(), days);
    let admin = app.browser();
    admin
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    admin
}

/// The Expiring page's row of `name`.
fn row<'a>(page: &'a Page, name: &str) -> &'a str {
    let name_at = page
        .body
        .find(&format!(">{name}</a>"))
        .unwrap_or_else(|| panic!("{name} not listed:\n{}", page.body));
    let start = page.body[..name_at].rfind("<tr>").unwrap();
    let end = start + page.body[start..].find("</tr>").unwrap();
    &page.body[start..end]
}

async fn secrets_and_certificates_are_announced_from_thirty_days_before(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(FakeApp::new(MAIL_APP, CONTOSO));
    let (_, admin) = app.tenant_with_admin("acme").await;
    admin
        .get("/t/acme/expiring")
        .await
        .assert_status(200)
        .assert_contains("Nothing expires");

    // A certificate valid 6 months (180 days), and a secret ending the same day.
    let certified = admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Certified app"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("auth_method", "certificate"),
                ("valid_months", "6"),
            ],
        )
        .await;
    let ends_on = (OffsetDateTime::now_utc() + Duration::days(180)).date();
    admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Secret app"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("auth_method", "client_secret"),
                ("client_secret", "Expiring~Canary"),
                ("secret_expires_on", &ends_on.to_string()),
            ],
        )
        .await;

    let admin = days_before(&app, ends_on, 31).await;
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("<strong>Certified app</strong>")
        .assert_lacks("<strong>Secret app</strong>");
    let page = admin.get("/t/acme/expiring").await;
    for name in ["Certified app", "Secret app"] {
        let row = row(&page, name);
        assert!(row.contains(&ends_on.to_string()), "{row}");
        assert!(row.contains("badge ok\">Valid"), "{row}");
    }
    assert!(row(&page, "Certified app").contains("Certificate"));

    for (days, label) in [
        (30, "expires in 30 days"),
        (7, "expires in 7 days"),
        (1, "expires tomorrow"),
        (0, "expires today"),
    ] {
        let admin = days_before(&app, ends_on, days).await;
        admin
            .get("/t/acme/")
            .await
            .assert_contains(&format!(
                "The certificate of the Graph credential <strong>Certified app</strong> {label} ({ends_on})"
            ))
            .assert_contains(&format!(
                "The client secret of the Graph credential <strong>Secret app</strong> {label} ({ends_on})"
            ))
            .assert_contains(&format!("href=\"{certified}\">Renew the certificate"))
            .assert_contains("href=\"/t/acme/expiring\">Every expiry date");
        let page = admin.get("/t/acme/expiring").await;
        for name in ["Certified app", "Secret app"] {
            let row = row(&page, name);
            assert!(row.contains("badge warn"), "{days}: {row}");
        }
    }

    let admin = days_before(&app, ends_on, -1).await;
    admin
        .get("/t/acme/")
        .await
        .assert_contains(&format!(
            "<strong>Certified app</strong> expired on {ends_on}: its mailboxes cannot reach Microsoft 365"
        ));
    assert!(
        row(&admin.get("/t/acme/expiring").await, "Secret app").contains("badge danger\">Expired")
    );
}

async fn oauth_connections_expire_ninety_days_after_their_last_renewal_and_failures_come_first(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;
    // Before Authenticate only its client secret expires (its own row, with its date).
    let listed = admin.get("/t/acme/expiring").await;
    listed
        .assert_contains("<td>Client secret</td>")
        .assert_contains(&default_secret_expiry())
        .assert_lacks("<td>OAuth connection</td>");
    let callback = authorize(&admin, &page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as");
    let ends_on = (app.state.clock.now() + Duration::days(90)).date();

    let admin = days_before(&app, ends_on, 31).await;
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("<strong>Support IMAP</strong>");
    assert!(
        row(&admin.get("/t/acme/expiring").await, "Support IMAP").contains(&ends_on.to_string())
    );
    for (days, label) in [
        (30, "expires in 30 days"),
        (7, "expires in 7 days"),
        (1, "expires tomorrow"),
        (0, "expires today"),
    ] {
        let admin = days_before(&app, ends_on, days).await;
        admin
            .get("/t/acme/")
            .await
            .assert_contains(&format!(
                "The OAuth connection <strong>Support IMAP</strong> {label} ({ends_on}) unless Portico renews it"
            ))
            .assert_contains(&format!("href=\"{page}\">Authenticate again"));
    }

    // A renewal that works moves the date 90 days on.
    let renewed = portico::services::oauth_connections::renew_due(&app.state)
        .await
        .unwrap();
    assert_eq!(renewed, 1);
    let admin = days_before(&app, ends_on, 0).await;
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("<strong>Support IMAP</strong>");
    let later = (app.state.clock.now() + Duration::days(90)).date();
    assert!(row(&admin.get("/t/acme/expiring").await, "Support IMAP").contains(&later.to_string()));

    // Microsoft refuses the refresh token: failing, listed before anything that merely expires.
    app.microsoft.revoke_refresh_tokens();
    app.state.clock.advance(Duration::hours(2));
    portico::services::oauth_connections::renew_due(&app.state)
        .await
        .unwrap();
    let admin = app.browser();
    admin
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    admin.get("/t/acme/").await.assert_contains(
        "The OAuth connection <strong>Support IMAP</strong> needs re-authentication",
    );
    let page = admin.get("/t/acme/expiring").await;
    let row = row(&page, "Support IMAP");
    assert!(
        row.contains("Stopped") && row.contains("badge danger\">Failing"),
        "{row}"
    );
    assert!(row.contains("Authenticate again"), "{row}");
}

/// A tenant "acme" whose Graph credential "Contoso mail" (an Azure app granted `roles`, its
/// secret ending 40 days from now) serves an outgoing Graph mailbox "Support" and an
/// incoming-only one; returns the tenant, its admin, the day the secret ends, and the id of
/// each mailbox as the sender list offers it (the incoming one is not offered).
/// The tenant, its admin, the day the Graph credential's secret ends, the outgoing and the
/// incoming mailbox's ids, and the credential's page.
async fn graph_sender(
    app: &TestApp,
    roles: &[&str],
) -> (Tenant, Browser, Date, String, String, String) {
    app.microsoft
        .add_directory(CONTOSO, &["contoso.onmicrosoft.com", "contoso.com"]);
    let mut azure_app = FakeApp::new(MAIL_APP, CONTOSO).secret(
        GRAPH_SECRET,
        OffsetDateTime::now_utc() + Duration::days(365),
    );
    for role in roles {
        azure_app = azure_app.application_role(role);
    }
    app.microsoft.add_app(azure_app);
    for mailbox in ["support@contoso.com", "inbox@contoso.com"] {
        app.microsoft
            .set_mailbox_access(MAIL_APP, mailbox, MailboxAccess::Granted);
    }
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let ends_on = (app.state.clock.now() + Duration::days(40)).date();
    let credential = admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Contoso mail"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("auth_method", "client_secret"),
                ("client_secret", GRAPH_SECRET),
                ("secret_expires_on", &ends_on.to_string()),
            ],
        )
        .await;
    let credential_page = credential.clone();
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
    let mut ids = Vec::new();
    for (name, email, direction) in [
        ("Support", "support@contoso.com", "outgoing"),
        ("Inbox", "inbox@contoso.com", "incoming"),
    ] {
        let made = admin
            .submit(
                &format!("{segment}/mailboxes/new"),
                &format!("{segment}/mailboxes"),
                &[
                    ("name", name),
                    ("email", email),
                    ("protocol", "graph"),
                    ("direction", direction),
                    ("graph_credential_id", &credential),
                    ("enabled", "on"),
                ],
            )
            .await;
        ids.push(
            made.location
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned(),
        );
    }
    let page = admin.get("/t/acme/expiring").await;
    page.assert_contains(&format!(
        "<option value=\"{}\">Support (support@contoso.com), Microsoft Graph</option>",
        ids[0]
    ))
    .assert_lacks(&ids[1])
    .assert_lacks("Alerts cannot be sent yet");
    let inbox = ids.pop().unwrap();
    let support = ids.pop().unwrap();
    (tenant, admin, ends_on, support, inbox, credential_page)
}

/// Alerts go to it@acme.test, sent as the mailbox `sender`.
async fn tell_it_through(admin: &Browser, sender: &str) {
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[
                ("recipients", "it@acme.test"),
                ("sender_mailbox_id", sender),
            ],
        )
        .await
        .assert_redirect("/t/acme/expiring?saved=1");
}

/// Neither the Graph secret nor any token Microsoft issued reaches a page or a log line.
fn assert_no_secret_shown(app: &TestApp, admin: &Browser) {
    let tokens = app.microsoft.issued_tokens();
    assert!(!tokens.is_empty());
    let logs = captured_logs();
    for page in admin.history() {
        page.assert_lacks(GRAPH_SECRET);
        for token in &tokens {
            page.assert_lacks(token);
        }
    }
    assert!(!logs.contains(GRAPH_SECRET));
    assert!(tokens.iter().all(|token| !logs.contains(token.as_str())));
}

async fn alerts_are_sent_once_as_a_graph_mailbox_and_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin, ends_on, support, inbox, _) =
        graph_sender(&app, &["Mail.ReadWrite", "Mail.Send"]).await;
    let recipients = ["it@acme.test", "ops@acme.test"];

    // Only the tenant's outgoing mailboxes may send.
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[
                ("recipients", &recipients.join("\n")),
                ("sender_mailbox_id", &inbox),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains(
            "Choose one of the organization&#39;s outgoing SMTP or Microsoft Graph mailboxes.",
        )
        .assert_contains("it@acme.test\nops@acme.test</textarea>");
    admin
        .submit(
            "/t/acme/expiring",
            "/t/acme/expiring/alerts",
            &[
                ("recipients", &recipients.join("\n")),
                ("sender_mailbox_id", &support),
            ],
        )
        .await
        .assert_redirect("/t/acme/expiring?saved=1");
    admin
        .get("/t/acme/expiring?saved=1")
        .await
        .assert_contains(&format!(
            "<option value=\"{support}\" selected>Support (support@contoso.com), Microsoft Graph"
        ));

    // 31 days before: nothing is due; 7 days before: one alert, sent once.
    days_before(&app, ends_on, 31).await;
    assert_eq!(alerts::run(&app.state).await.unwrap(), AlertRun::default());
    let admin = days_before(&app, ends_on, 7).await;
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (1, 1, 0));
    assert_eq!(alerts::run(&app.state).await.unwrap(), AlertRun::default());

    let sent = app.microsoft.sent_mail();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let mail = &sent[0];
    assert_eq!(mail.app_id, MAIL_APP);
    assert_eq!(mail.mailbox, "support@contoso.com");
    assert_eq!(mail.to, recipients);
    assert_eq!(
        mail.subject,
        format!(
            "Portico: The client secret of the Graph credential Contoso mail expires within 7 days, on {ends_on}"
        )
    );
    assert_eq!(mail.content_type, "Text");
    assert!(!mail.save_to_sent_items);
    assert!(
        mail.body.contains("/t/acme/external-apis/"),
        "{}",
        mail.body
    );
    assert!(mail.body.contains("Every expiry date: "), "{}", mail.body);
    assert!(!mail.body.contains(GRAPH_SECRET));

    let audit = app.audit_actions(&tenant).await;
    let route = "the mailbox Support (support@contoso.com) with Microsoft Graph";
    assert!(
        audit.iter().any(
            |(action, _, detail)| action == "settings.expiry_alerts_changed"
                && *detail == format!("tell it@acme.test, ops@acme.test through {route}")
        ),
        "{audit:?}"
    );
    let sent_events: Vec<_> = audit
        .iter()
        .filter(|(action, _, _)| action == "expiry_alert.sent")
        .collect();
    assert_eq!(sent_events.len(), 1, "{audit:?}");
    assert_eq!(sent_events[0].1, "Contoso mail");
    assert!(
        sent_events[0]
            .2
            .contains(&format!("told it@acme.test, ops@acme.test through {route}")),
        "{audit:?}"
    );
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("badge ok\">Sent</span>")
        .assert_contains(
            "The client secret of the Graph credential Contoso mail expires within 7 days",
        );
    admin.get("/t/acme/audit").await.assert_contains(route);
    assert_no_secret_shown(&app, &admin);
}

async fn an_app_without_mail_send_fails_the_alert_in_plain_words_until_granted(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin, ends_on, support, _, _) = graph_sender(&app, &["Mail.ReadWrite"]).await;
    tell_it_through(&admin, &support).await;

    let admin = days_before(&app, ends_on, 7).await;
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (1, 0, 1));
    assert!(app.microsoft.sent_mail().is_empty());
    let explanation = "through Support: Microsoft 365 refused to send as support@contoso.com \
                       (ErrorAccessDenied): the app has not been granted the Mail.Send \
                       application permission. In Azure, open App registrations → the app → \
                       API permissions, add Microsoft Graph → Application permissions → \
                       Mail.Send, and grant admin consent";
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains(&format!("Not sent yet (1 tries): {explanation}"));
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit
            .iter()
            .any(|(action, _, detail)| action == "expiry_alert.failed"
                && detail.contains(explanation)),
        "{audit:?}"
    );

    // An admin grants Mail.Send in Azure. The token Portico holds was issued without it, so
    // the retry after the backoff fails again; the next token, an hour on, carries it.
    app.microsoft.add_app(
        FakeApp::new(MAIL_APP, CONTOSO)
            .secret(
                GRAPH_SECRET,
                OffsetDateTime::now_utc() + Duration::days(365),
            )
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    app.state.clock.advance(Duration::minutes(2));
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (0, 0, 1));
    app.state.clock.advance(Duration::hours(1));
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (0, 1, 0));
    let sent = app.microsoft.sent_mail();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].to, ["it@acme.test"]);

    let audit = app.audit_actions(&tenant).await;
    let count = |wanted: &str| {
        audit
            .iter()
            .filter(|(action, _, _)| action == wanted)
            .count()
    };
    // The first failure is audited, the retry only logged.
    assert_eq!(
        (count("expiry_alert.failed"), count("expiry_alert.sent")),
        (1, 1),
        "{audit:?}"
    );
    let admin = app.browser();
    admin
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("badge ok\">Sent</span>");
    assert_no_secret_shown(&app, &admin);
}

async fn an_alert_about_a_secret_replaced_meanwhile_is_withdrawn_not_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin, ends_on, support, _, credential) =
        graph_sender(&app, &["Mail.ReadWrite"]).await;
    tell_it_through(&admin, &support).await;
    let admin = days_before(&app, ends_on, 7).await;
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (1, 0, 1));
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("Not sent yet (1 tries)");

    // Before the retry, an admin replaces the secret (valid another year) and Mail.Send is
    // granted: the alert about the old secret would now go out, but it no longer applies.
    let next_year = (app.state.clock.now() + Duration::days(365))
        .date()
        .to_string();
    admin
        .submit(
            &credential,
            &format!("{credential}/secret"),
            &[
                ("client_secret", "Graph~Replaced-Secret"),
                ("secret_expires_on", &next_year),
            ],
        )
        .await
        .assert_redirect(&format!("{credential}?done=secret"));
    app.microsoft.add_app(
        FakeApp::new(MAIL_APP, CONTOSO)
            .secret(
                "Graph~Replaced-Secret",
                OffsetDateTime::now_utc() + Duration::days(365),
            )
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    app.state.clock.advance(Duration::hours(2));
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (0, 0, 0));
    assert!(app.microsoft.sent_mail().is_empty());
    let page = admin.get("/t/acme/expiring").await;
    page.assert_lacks("Not sent yet");
    // Nothing left to retry: later runs send nothing either.
    app.state.clock.advance(Duration::days(1));
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (0, 0, 0));
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit
            .iter()
            .all(|(action, _, _)| action != "expiry_alert.sent"),
        "{audit:?}"
    );
}

async fn no_alert_goes_through_a_mailbox_disabled_since_it_was_chosen(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin, ends_on, support, _, credential) =
        graph_sender(&app, &["Mail.ReadWrite", "Mail.Send"]).await;
    tell_it_through(&admin, &support).await;
    // The mailbox is then disabled (the "Enabled" box left unticked).
    let mailbox = format!("/t/acme/mailboxes/{support}");
    let credential_id = credential.rsplit('/').next().unwrap();
    admin
        .submit(
            &mailbox,
            &mailbox,
            &[
                ("name", "Support"),
                ("email", "support@contoso.com"),
                ("protocol", "graph"),
                ("direction", "outgoing"),
                ("graph_credential_id", credential_id),
            ],
        )
        .await
        .assert_status(303);

    let admin = days_before(&app, ends_on, 7).await;
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!((run.planned, run.sent, run.failed), (1, 0, 1));
    assert!(app.microsoft.sent_mail().is_empty());
    admin.get("/t/acme/expiring").await.assert_contains(
        "Support is disabled or receives only: choose another sender on the Expiring page",
    );
}

async fn an_alert_failing_for_seven_days_is_given_up_audited_and_shown(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin, ends_on, support, _, _) = graph_sender(&app, &["Mail.ReadWrite"]).await;
    tell_it_through(&admin, &support).await;
    let reason = "through Support: Microsoft 365 refused to send as support@contoso.com \
                  (ErrorAccessDenied): the app has not been granted the Mail.Send";

    // The 30-day alert fails (no Mail.Send), and keeps failing, backing off, for 7 days.
    days_before(&app, ends_on, 30).await;
    let failed_once = AlertRun {
        failed: 1,
        ..AlertRun::default()
    };
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!(
        run,
        AlertRun {
            planned: 1,
            ..failed_once
        }
    );
    app.state
        .clock
        .advance(Duration::days(7) - Duration::minutes(5));
    assert_eq!(alerts::run(&app.state).await.unwrap(), failed_once);
    let admin = signed_in_again(&app).await;
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("badge warn\">Not sent yet (2 tries)");

    // Its first try after 7 days fails too, and is its last.
    app.state.clock.advance(Duration::minutes(70));
    let run = alerts::run(&app.state).await.unwrap();
    assert_eq!(
        run,
        AlertRun {
            given_up: 1,
            ..AlertRun::default()
        }
    );
    let audit = app.audit_actions(&tenant).await;
    let given_up: Vec<_> = audit
        .iter()
        .filter(|(action, _, _)| action == "expiry_alert.given_up")
        .collect();
    assert_eq!(given_up.len(), 1, "{audit:?}");
    let (_, target, detail) = given_up[0];
    assert_eq!(target, "Contoso mail");
    assert!(
        detail.starts_with(&format!(
            "The client secret of the Graph credential Contoso mail expires within 30 days, on \
             {ends_on}: given up after 7 days and 3 tries: {reason}"
        )),
        "{detail}"
    );
    let admin = signed_in_again(&app).await;
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains(&format!(
            "badge danger\">Given up after 7 days (3 tries): {reason}"
        ))
        .assert_contains(
            "Nobody was told: fix what is named (the sender is chosen above), and check \
             Contoso mail yourself; Portico alerts again at its next date.",
        )
        .assert_lacks("Not sent yet");
    admin
        .get("/t/acme/audit")
        .await
        .assert_contains("given up after 7 days and 3 tries");

    // Mail.Send granted now changes nothing for it: it is never tried again.
    app.microsoft.add_app(
        FakeApp::new(MAIL_APP, CONTOSO)
            .secret(
                GRAPH_SECRET,
                OffsetDateTime::now_utc() + Duration::days(365),
            )
            .application_role("Mail.ReadWrite")
            .application_role("Mail.Send"),
    );
    app.state.clock.advance(Duration::hours(2));
    assert_eq!(alerts::run(&app.state).await.unwrap(), AlertRun::default());
    assert!(app.microsoft.sent_mail().is_empty());
    assert_no_secret_shown(&app, &admin);
}

/// The admin signed in anew: a session ends 12 hours after sign-in, by the moved clock.
async fn signed_in_again(app: &TestApp) -> Browser {
    let admin = app.browser();
    admin
        .sign_in("acme", "admin@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
    admin
}
