//! Expiry everywhere: the dashboard banner and the Expiring page list client secrets,
//! certificates and OAuth connections by the day they stop working, as the (injected)
//! clock moves through 31, 30, 7, 1 and 0 days before it.

use time::{Date, Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::oauth_connections::{authorize, connection, follow};
use crate::on_both_backends;
use crate::support::fake_microsoft::FakeApp;
use crate::support::{Backend, Browser, PASSWORD, Page, TestApp, spawn_app};

const CONTOSO: Uuid = uuid!("e1e1e1e1-1111-4222-8333-444444444444");
const MAIL_APP: Uuid = uuid!("e2e2e2e2-5555-4666-8777-888888888888");

on_both_backends!(
    secrets_and_certificates_are_announced_from_thirty_days_before,
    oauth_connections_expire_ninety_days_after_their_last_renewal_and_failures_come_first,
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
    app.microsoft
        .add_directory(CONTOSO, &["contoso.onmicrosoft.com"]);
    app.microsoft.add_app(FakeApp::new(MAIL_APP, CONTOSO));
    let (_, admin) = app.tenant_with_admin("acme").await;
    admin
        .get("/t/acme/expiring")
        .await
        .assert_status(200)
        .assert_contains("Nothing expires");

    // A certificate valid 6 months (180 days), and a secret ending the same day.
    let made = admin
        .submit(
            "/t/acme/external-apis/new",
            "/t/acme/external-apis",
            &[
                ("name", "Certified app"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("cloud", "global"),
                ("auth_method", "certificate"),
                ("valid_months", "6"),
            ],
        )
        .await;
    let certified = made.location.clone().unwrap();
    let ends_on = (OffsetDateTime::now_utc() + Duration::days(180)).date();
    admin
        .submit(
            "/t/acme/external-apis/new",
            "/t/acme/external-apis",
            &[
                ("name", "Secret app"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("cloud", "global"),
                ("auth_method", "client_secret"),
                ("client_secret", "Expiring~Canary"),
                ("secret_expires_on", &ends_on.to_string()),
            ],
        )
        .await
        .assert_status(303);

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
    admin
        .get("/t/acme/expiring")
        .await
        .assert_contains("Nothing expires");
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
    let renewed = portico::connections::renew_due(&app.state).await.unwrap();
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
    portico::connections::renew_due(&app.state).await.unwrap();
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
