//! Certificate credentials on External APIs: Portico generates the key pair, the admin
//! uploads the certificate to the (fake) Azure app, and Portico signs in with client
//! assertions; renewal overlaps, and nothing private ever shows.

use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::external_apis::in_days;
use crate::on_both_backends;
use crate::support::fake_microsoft::FakeApp;
use crate::support::{Backend, Browser, Page, captured_logs, spawn_app};

const CONTOSO: Uuid = uuid!("c0c0c0c0-1111-4222-8333-444444444444");
const MAIL_APP: Uuid = uuid!("a9a9a9a9-5555-4666-8777-888888888888");
const SECRET: &str = "Graph~Before-Certificates.0123456789";

on_both_backends!(
    a_certificate_credential_signs_in_once_its_certificate_is_uploaded,
    an_unregistered_or_wrong_certificate_and_a_wrong_clock_are_explained,
    renewal_overlaps_and_switches_only_once_microsoft_accepts_the_new_certificate,
    a_secret_credential_moves_to_a_certificate,
    no_private_key_in_any_page_log_audit_entry_or_database_row,
);

/// The mail app in Contoso with its permissions granted, and a secret for the test that
/// starts from one; no certificate yet.
fn mail_app() -> FakeApp {
    FakeApp::new(MAIL_APP, CONTOSO)
        .named("Portico mail")
        .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(180))
        .application_role("Mail.ReadWrite")
        .application_role("Mail.Send")
}

/// Adds a certificate credential through the form; returns its page path.
async fn add_with_certificate(admin: &Browser, name: &str, months: &str) -> String {
    admin
        .add_graph_credential(
            "acme",
            &[
                ("name", name),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", "contoso.onmicrosoft.com"),
                ("auth_method", "certificate"),
                ("valid_months", months),
                // Ignored: a certificate credential has no secret.
                ("client_secret", ""),
                ("secret_expires_on", ""),
            ],
        )
        .await
}

/// The certificate file the page offers, as the admin downloads it.
async fn download(admin: &Browser, credential: &str, file: &str) -> Page {
    let page = admin.get(&format!("{credential}/certificate/{file}")).await;
    page.assert_status(200);
    page
}

/// The thumbprint the page shows after `label`.
fn thumbprint_after(page: &Page, label: &str) -> String {
    let start = page
        .body
        .find(label)
        .unwrap_or_else(|| panic!("no {label}"));
    let rest = &page.body[start..];
    let code = rest.find("<code>").unwrap() + "<code>".len();
    rest[code..code + 40].to_owned()
}

async fn test_connection(admin: &Browser, credential: &str) -> Page {
    admin
        .submit(credential, &format!("{credential}/test"), &[])
        .await
}

async fn a_certificate_credential_signs_in_once_its_certificate_is_uploaded(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app());
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    admin
        .get("/t/acme/external-apis/new")
        .await
        .assert_contains("value=\"certificate\" checked")
        .assert_contains("Certificate (recommended)");

    let credential = add_with_certificate(&admin, "Support mail", "12").await;
    let page = admin.get(&credential).await;
    page.assert_status(200)
        .assert_contains("Authenticates with</dt><dd>Certificate")
        .assert_contains("Upload the certificate to Azure")
        .assert_contains("Upload certificate")
        .assert_contains("Download .cer")
        .assert_lacks("Replace secret");
    let thumbprint = thumbprint_after(&page, "Certificate thumbprint");
    assert!(
        thumbprint.chars().all(|c| c.is_ascii_hexdigit()),
        "{thumbprint}"
    );

    // Valid for 12 months (360 days) from now, as the page and the certificate itself say.
    let pem = download(&admin, &credential, "current.pem").await;
    assert_eq!(
        pem.headers["content-type"].to_str().unwrap(),
        "application/x-pem-file"
    );
    assert!(
        pem.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"support-mail-")
    );
    assert!(pem.body.starts_with("-----BEGIN CERTIFICATE-----"));
    let certificate = portico::crypto::certificates::CertificateInfo::read(&pem.body).unwrap();
    assert_eq!(certificate.thumbprint(), thumbprint);
    let valid_for = certificate.not_after - certificate.not_before;
    assert_eq!(valid_for, Duration::days(360));
    page.assert_contains(&format!(
        "to {}",
        portico::web::format_time(certificate.not_after)
    ));
    let cer = admin
        .client
        .get(app.url(&format!("{credential}/certificate/current.cer")))
        .send()
        .await
        .unwrap();
    assert_eq!(cer.headers()["content-type"], "application/pkix-cert");
    assert_eq!(cer.bytes().await.unwrap().as_ref(), certificate.der());

    // The admin uploads it in Azure; Test connection then works exactly as with a secret.
    app.microsoft.upload_certificate(MAIL_APP, &pem.body);
    test_connection(&admin, &credential)
        .await
        .assert_status(200)
        .assert_contains("Connected. No mailbox uses this credential yet")
        .assert_contains("<span class=\"badge ok\">Granted</span> <code>Mail.Send</code>");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Certificate<br>")
        .assert_contains(&thumbprint)
        .assert_contains("Granted: Mail.ReadWrite, Mail.Send");

    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.iter().any(
            |(action, target, detail)| action == "graph_credential.created"
                && target == "Support mail"
                && detail.contains(&format!("certificate {thumbprint} valid until"))
        ),
        "{audit:?}"
    );
}

async fn an_unregistered_or_wrong_certificate_and_a_wrong_clock_are_explained(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app());
    let (_, admin) = app.tenant_with_admin("acme").await;
    let credential = add_with_certificate(&admin, "Support mail", "6").await;

    // Not uploaded yet.
    test_connection(&admin, &credential)
        .await
        .assert_contains("AADSTS700027")
        .assert_contains("Certificate not accepted")
        .assert_contains("Upload certificate")
        .assert_contains("Trace ID");

    // Another credential's certificate uploaded instead of this one.
    let other = add_with_certificate(&admin, "Other app", "6").await;
    let other_pem = download(&admin, &other, "current.pem").await.body;
    app.microsoft.upload_certificate(MAIL_APP, &other_pem);
    test_connection(&admin, &credential)
        .await
        .assert_contains("AADSTS700027");
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("AADSTS700027 (invalid_client): Certificate not accepted");

    // The right one, but Portico's clock an hour behind Microsoft's: the assertion is stale.
    let pem = download(&admin, &credential, "current.pem").await.body;
    app.microsoft.upload_certificate(MAIL_APP, &pem);
    app.microsoft
        .advance_clock(std::time::Duration::from_secs(3600));
    test_connection(&admin, &credential)
        .await
        .assert_contains("AADSTS700024")
        .assert_contains("clock of the server Portico runs on is off");
}

async fn renewal_overlaps_and_switches_only_once_microsoft_accepts_the_new_certificate(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app());
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let credential = add_with_certificate(&admin, "Support mail", "12").await;
    let old_pem = download(&admin, &credential, "current.pem").await.body;
    app.microsoft.upload_certificate(MAIL_APP, &old_pem);
    let old = thumbprint_after(&admin.get(&credential).await, "Certificate thumbprint");

    let renewed = admin
        .submit(
            &credential,
            &format!("{credential}/certificate/renew"),
            &[("valid_months", "24")],
        )
        .await;
    renewed.assert_redirect(&format!("{credential}?done=renewed"));
    let page = admin.get(&format!("{credential}?done=renewed")).await;
    page.assert_contains("A new certificate is ready")
        .assert_contains("Until you switch, Portico keeps signing in with the current certificate")
        .assert_contains("Switch to the new certificate");
    let new = thumbprint_after(&page, "New certificate thumbprint");
    assert_ne!(old, new);
    assert_eq!(thumbprint_after(&page, "Certificate thumbprint"), old);
    let new_pem = download(&admin, &credential, "next.pem").await.body;
    assert_ne!(new_pem, old_pem);

    // The old certificate keeps working meanwhile.
    test_connection(&admin, &credential)
        .await
        .assert_contains("Connected.");

    // Switching before the new certificate is in Azure is refused, and changes nothing.
    admin
        .submit(
            &credential,
            &format!("{credential}/certificate/switch"),
            &[],
        )
        .await
        .assert_status(400)
        .assert_contains("Not switched: Microsoft did not accept the new certificate yet")
        .assert_contains("AADSTS700027");
    assert_eq!(
        thumbprint_after(&admin.get(&credential).await, "Certificate thumbprint"),
        old
    );

    // Uploaded: the switch goes through, and Portico signs with the new one alone.
    app.microsoft.upload_certificate(MAIL_APP, &new_pem);
    admin
        .submit(
            &credential,
            &format!("{credential}/certificate/switch"),
            &[],
        )
        .await
        .assert_redirect(&format!("{credential}?done=switched"));
    let page = admin.get(&format!("{credential}?done=switched")).await;
    page.assert_contains("Portico now signs with the new certificate")
        .assert_lacks("New certificate thumbprint");
    assert_eq!(thumbprint_after(&page, "Certificate thumbprint"), new);
    app.microsoft.remove_certificate(MAIL_APP, &old_pem);
    test_connection(&admin, &credential)
        .await
        .assert_contains("Connected.");
    admin
        .get(&format!("{credential}/certificate/next.pem"))
        .await
        .assert_status(404);

    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit.iter().any(
            |(action, _, detail)| action == "graph_credential.certificate_created"
                && detail.starts_with(&format!("new certificate {new} valid until"))
        ),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(
            |(action, _, detail)| action == "graph_credential.certificate_switched"
                && detail.contains(&format!("now signs with certificate {new}"))
                && detail.contains(&format!("replacing certificate {old}"))
        ),
        "{audit:?}"
    );

    // A renewal form opened before someone else's change saves nothing.
    let stale = admin.get(&credential).await;
    admin
        .submit(
            &credential,
            &format!("{credential}/certificate/renew"),
            &[("valid_months", "6")],
        )
        .await
        .assert_redirect(&format!("{credential}?done=renewed"));
    admin
        .post_raw(
            &format!("{credential}/certificate/switch"),
            &[
                ("csrf_token", &stale.csrf_token()),
                ("version", &stale.version().unwrap()),
            ],
        )
        .await
        .assert_status(409)
        .assert_contains("Someone else changed this credential");
}

async fn a_secret_credential_moves_to_a_certificate(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app());
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let credential = admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Support mail"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("auth_method", "client_secret"),
                ("client_secret", SECRET),
                ("secret_expires_on", &in_days(300)),
            ],
        )
        .await;
    admin
        .get(&credential)
        .await
        .assert_contains("Use a certificate instead")
        .assert_contains("Replace secret");
    admin
        .submit(
            &credential,
            &format!("{credential}/certificate/renew"),
            &[("valid_months", "12")],
        )
        .await
        .assert_redirect(&format!("{credential}?done=renewed"));
    admin
        .get(&credential)
        .await
        .assert_contains("Portico keeps signing in with the client secret");
    let pem = download(&admin, &credential, "next.pem").await.body;
    app.microsoft.upload_certificate(MAIL_APP, &pem);
    admin
        .submit(
            &credential,
            &format!("{credential}/certificate/switch"),
            &[],
        )
        .await
        .assert_redirect(&format!("{credential}?done=switched"));
    admin
        .get(&credential)
        .await
        .assert_contains("Authenticates with</dt><dd>Certificate")
        .assert_lacks("Replace secret");
    test_connection(&admin, &credential)
        .await
        .assert_contains("Connected.");
    assert!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .any(
                |(action, _, detail)| action == "graph_credential.certificate_switched"
                    && detail.ends_with("replacing the client secret")
            )
    );
    // The secret is gone from the database, not just from the page.
    let pool = sqlx::AnyPool::connect(&app.database_url()).await.unwrap();
    let secrets: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM graph_credentials WHERE client_secret_sealed IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(secrets, 0);
}

async fn no_private_key_in_any_page_log_audit_entry_or_database_row(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(mail_app());
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let credential = add_with_certificate(&admin, "Support mail", "12").await;
    let mut pages = vec![admin.get(&credential).await];
    let pem = download(&admin, &credential, "current.pem").await;
    app.microsoft.upload_certificate(MAIL_APP, &pem.body);
    pages.push(pem);
    pages.push(test_connection(&admin, &credential).await);
    pages.push(
        admin
            .submit(
                &credential,
                &format!("{credential}/certificate/renew"),
                &[("valid_months", "12")],
            )
            .await,
    );
    pages.push(admin.get(&credential).await);
    let next = download(&admin, &credential, "next.pem").await;
    app.microsoft.upload_certificate(MAIL_APP, &next.body);
    pages.push(next);
    pages.push(
        admin
            .submit(
                &credential,
                &format!("{credential}/certificate/switch"),
                &[],
            )
            .await,
    );
    pages.push(admin.get("/t/acme/external-apis").await);
    pages.push(admin.get("/t/acme/audit").await);
    for page in &pages {
        page.assert_lacks("PRIVATE KEY");
    }
    // The private key is in the database only sealed.
    let pool = sqlx::AnyPool::connect(&app.database_url()).await.unwrap();
    let sealed: Vec<String> = sqlx::query_scalar(
        "SELECT private_key_sealed FROM certificates WHERE graph_credential_id IS NOT NULL",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(sealed.len(), 1);
    assert!(sealed.iter().all(|key| key.starts_with("v1.")));
    for row in app.database_text().await {
        assert!(!row.contains("PRIVATE KEY"), "stored in plaintext: {row}");
    }
    assert!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .all(|(_, _, detail)| !detail.contains("PRIVATE KEY"))
    );
    assert!(
        !captured_logs().contains("PRIVATE KEY"),
        "a log line carries a private key"
    );
    assert!(
        !captured_logs().contains("client_assertion="),
        "a log line carries a client assertion"
    );
}
