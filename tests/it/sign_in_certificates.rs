//! Sign in with Microsoft with a certificate: Portico generates the key pair, the admin
//! uploads the certificate to the (fake) Azure app, and the code exchange proves Portico
//! with a signed client assertion instead of a client secret.

use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::expiring::days_before;
use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, FakeUser};
use crate::support::{
    Backend, Browser, Page, TestApp, default_secret_expiry, spawn_app, with_secret_expiry,
};

const CONTOSO: Uuid = uuid!("5c5c5c5c-1111-4111-8111-111111111111");
const SIGN_IN_APP: Uuid = uuid!("5c5c5c5c-3333-4333-8333-333333333333");
const SECRET: &str = "Sign-In~Secret.Before-Certificates";
const SETTINGS: &str = "/t/acme/settings/microsoft-sign-in";

on_both_backends!(
    an_agent_signs_in_with_a_certificate_and_no_client_secret_is_sent,
    a_secret_in_use_signs_in_until_the_switch_to_a_certificate,
    an_unregistered_or_expired_certificate_is_explained_in_plain_words,
    renewal_switches_only_once_microsoft_accepts_the_new_certificate,
    the_sign_in_certificate_is_announced_from_thirty_days_before_it_ends,
    without_a_directory_the_certificate_signs_in_through_common,
);

/// Contoso, Portico's sign-in app registered under Web with a secret (no certificate yet),
/// and Ana, an agent of acme.
async fn acme_with_ana(app: &TestApp) -> (portico::store::tenants::Tenant, Browser) {
    app.register_azure_app(
        FakeApp::new(SIGN_IN_APP, CONTOSO)
            .named("Portico sign-in")
            .web_redirect_uri(&app.url("/auth/microsoft/callback"))
            .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(180)),
    );
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    app.microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana")
        .await;
    (tenant, admin)
}

/// Saves the settings with `auth_method` and the extra `fields`.
async fn configure(admin: &Browser, auth_method: &str, fields: &[(&str, &str)]) -> Page {
    let client_id = SIGN_IN_APP.to_string();
    let directory = CONTOSO.to_string();
    let mut all = vec![
        ("client_id", client_id.as_str()),
        ("directory", directory.as_str()),
        ("cloud", "global"),
        ("enabled", "on"),
        ("auth_method", auth_method),
    ];
    let expires_on = default_secret_expiry();
    all.extend(with_secret_expiry(fields, &expires_on));
    admin.submit(SETTINGS, SETTINGS, &all).await
}

async fn use_certificate(admin: &Browser) {
    configure(admin, "certificate", &[("valid_months", "12")])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
}

/// A certificate file of the settings page, as the admin downloads it.
async fn download(admin: &Browser, file: &str) -> Page {
    let page = admin.get(&format!("{SETTINGS}/certificate/{file}")).await;
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

/// The Expiring page's row of the sign-in certificate (the menu links the settings too).
fn sign_in_row(page: &Page) -> &str {
    let table = page.body.find("<tbody>").unwrap();
    let name_at = table
        + page.body[table..]
            .find(">Sign in with Microsoft</a>")
            .unwrap_or_else(|| panic!("not listed:\n{}", page.body));
    let start = page.body[..name_at].rfind("<tr>").unwrap();
    let end = start + page.body[start..].find("</tr>").unwrap();
    &page.body[start..end]
}

fn has_field(fields: &[String], name: &str) -> bool {
    fields.iter().any(|field| field == name)
}

async fn an_agent_signs_in_with_a_certificate_and_no_client_secret_is_sent(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = acme_with_ana(&app).await;
    configure(&admin, "client_secret", &[("client_secret", SECRET)])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    admin
        .get(SETTINGS)
        .await
        .assert_contains("value=\"client_secret\" checked")
        .assert_contains("Certificate: Portico generates it")
        .assert_contains("Use a certificate instead")
        .assert_lacks("Certificate thumbprint");

    // Choosing Certificate generates one as the next: the secret signs in until the switch.
    configure(&admin, "certificate", &[("valid_months", "12")])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1&done=renewed");
    let page = admin.get(&format!("{SETTINGS}?saved=1&done=renewed")).await;
    page.assert_status(200)
        .assert_contains("Sign-in keeps using the client secret until you upload the certificate")
        .assert_contains("value=\"client_secret\" checked")
        .assert_contains("A secret is set")
        .assert_contains("Upload certificate")
        .assert_contains(&format!("the app <code>{SIGN_IN_APP}</code>"))
        .assert_contains("Download .cer")
        .assert_contains("Download .pem")
        .assert_contains("Switch to the new certificate")
        .assert_lacks("Certificate thumbprint")
        .assert_lacks("PRIVATE KEY");
    let thumbprint = thumbprint_after(&page, "New certificate thumbprint");
    let pem = download(&admin, "next.pem").await;
    assert!(pem.body.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        pem.headers["content-type"].to_str().unwrap(),
        "application/x-pem-file"
    );
    let certificate = portico::crypto::certificates::CertificateInfo::read(&pem.body).unwrap();
    assert_eq!(certificate.thumbprint(), thumbprint);
    assert_eq!(
        certificate.not_after - certificate.not_before,
        Duration::days(360)
    );
    page.assert_contains(&format!(
        "to {}",
        portico::web::format_time(certificate.not_after)
    ));
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    let fields = app.microsoft.last_token_request_fields();
    assert!(has_field(&fields, "client_secret"), "{fields:?}");
    assert!(!has_field(&fields, "client_assertion"), "{fields:?}");

    // Uploaded and switched to, the page shows what Azure lists; the secret is gone.
    app.microsoft.upload_certificate(SIGN_IN_APP, &pem.body);
    admin
        .submit(SETTINGS, &format!("{SETTINGS}/certificate/switch"), &[])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=switched");
    let page = admin.get(SETTINGS).await;
    page.assert_status(200)
        .assert_contains("value=\"certificate\" checked")
        .assert_contains("Upload the certificate to Azure")
        .assert_contains("Sign-in uses the certificate below")
        .assert_lacks("A secret is set")
        .assert_lacks("New certificate thumbprint");
    assert_eq!(
        thumbprint_after(&page, "Certificate thumbprint"),
        thumbprint
    );
    let cer = download(&admin, "current.cer").await;
    assert_eq!(
        cer.headers["content-type"].to_str().unwrap(),
        "application/pkix-cert"
    );
    let stored = portico::store::microsoft_sign_in::get(&app.state.db, &tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.client_secret_sealed.is_none());

    // The certificate signs Ana in: the fake verified the assertion.
    let ana = app.browser();
    ana.microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    ana.get("/t/acme/")
        .await
        .assert_status(200)
        .assert_contains("Welcome, ana");
    let fields = app.microsoft.last_token_request_fields();
    assert!(has_field(&fields, "client_assertion"), "{fields:?}");
    assert!(has_field(&fields, "client_assertion_type"), "{fields:?}");
    assert!(has_field(&fields, "client_id"), "{fields:?}");
    assert!(has_field(&fields, "code_verifier"), "{fields:?}");
    assert!(!has_field(&fields, "client_secret"), "{fields:?}");

    // Choosing Client secret again drops the certificate and its key.
    configure(&admin, "client_secret", &[("client_secret", SECRET)])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    admin
        .get(SETTINGS)
        .await
        .assert_contains("A secret is set")
        .assert_lacks("Certificate thumbprint");
    admin
        .get(&format!("{SETTINGS}/certificate/current.pem"))
        .await
        .assert_status(404);
    assert!(
        portico::store::certificates::get(
            &app.state.db,
            &tenant.id,
            portico::store::certificates::Owner::MicrosoftSignIn,
            portico::store::certificates::Slot::Current
        )
        .await
        .unwrap()
        .is_none()
    );
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    let fields = app.microsoft.last_token_request_fields();
    assert!(has_field(&fields, "client_secret"), "{fields:?}");
    assert!(!has_field(&fields, "client_assertion"), "{fields:?}");

    // The audit log says what was chosen and generated, never the key.
    let audit = app.audit_actions(&tenant).await;
    let changes: Vec<&String> = audit
        .iter()
        .filter(|(action, _, _)| action == "settings.microsoft_sign_in_changed")
        .map(|(_, _, detail)| detail)
        .collect();
    assert!(
        changes.iter().any(|detail| detail
            .contains(&format!("generated certificate {thumbprint} valid until"))
            && detail.contains("keeps using the client secret until the switch")),
        "{changes:?}"
    );
    assert!(audit.iter().any(|(action, _, detail)| action
        == "settings.microsoft_sign_in_certificate_switched"
        && detail.contains(&format!("now signs in with certificate {thumbprint}"))
        && detail.contains("replacing the client secret")));
    assert!(
        changes
            .iter()
            .any(|detail| detail.contains("signs in with a client secret now: certificate removed")),
        "{changes:?}"
    );
    assert!(
        audit
            .iter()
            .all(|(_, _, detail)| !detail.contains("PRIVATE KEY") && !detail.contains(SECRET))
    );
}

async fn a_secret_in_use_signs_in_until_the_switch_to_a_certificate(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = acme_with_ana(&app).await;
    configure(&admin, "client_secret", &[("client_secret", SECRET)])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    let stored = || async {
        portico::store::microsoft_sign_in::get(&app.state.db, &tenant.id)
            .await
            .unwrap()
            .unwrap()
    };
    let signs_in_with = |field: &'static str| {
        let app = &app;
        async move {
            app.browser()
                .microsoft_sign_in("acme")
                .await
                .assert_redirect("/t/acme/");
            let fields = app.microsoft.last_token_request_fields();
            assert!(has_field(&fields, field), "{fields:?}");
            fields
        }
    };

    // "Use a certificate instead": the certificate waits, the secret keeps signing in.
    admin
        .get(SETTINGS)
        .await
        .assert_contains("Use a certificate instead")
        .assert_contains("Generate a certificate");
    admin
        .submit(
            SETTINGS,
            &format!("{SETTINGS}/certificate/renew"),
            &[("valid_months", "6")],
        )
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=renewed");
    let page = admin.get(&format!("{SETTINGS}?done=renewed")).await;
    page.assert_contains("Sign-in keeps using the client secret until you upload the certificate")
        .assert_contains("Until you switch, sign-in keeps using the client secret")
        .assert_contains("Download .cer")
        .assert_contains("Switch to the new certificate")
        .assert_contains("A secret is set")
        .assert_lacks("Certificate thumbprint");
    let next = thumbprint_after(&page, "New certificate thumbprint");
    let fields = signs_in_with("client_secret").await;
    assert!(!has_field(&fields, "client_assertion"), "{fields:?}");
    assert!(stored().await.client_secret_sealed.is_some());

    // Not uploaded yet: Microsoft refuses the certificate, and the secret stays.
    admin
        .submit(SETTINGS, &format!("{SETTINGS}/certificate/switch"), &[])
        .await
        .assert_status(400)
        .assert_contains("Not switched")
        .assert_contains("Sign-in still uses the client secret")
        .assert_contains("Certificate not accepted");
    signs_in_with("client_secret").await;
    assert!(stored().await.client_secret_sealed.is_some());

    // Uploaded, the switch goes through: the assertion signs in, the secret is gone.
    let next_pem = download(&admin, "next.pem").await;
    app.microsoft
        .upload_certificate(SIGN_IN_APP, &next_pem.body);
    admin
        .submit(SETTINGS, &format!("{SETTINGS}/certificate/switch"), &[])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=switched");
    let page = admin.get(SETTINGS).await;
    page.assert_contains("value=\"certificate\" checked")
        .assert_lacks("A secret is set")
        .assert_lacks("New certificate thumbprint");
    assert_eq!(thumbprint_after(&page, "Certificate thumbprint"), next);
    let fields = signs_in_with("client_assertion").await;
    assert!(!has_field(&fields, "client_secret"), "{fields:?}");
    let settings = stored().await;
    assert!(settings.client_secret_sealed.is_none());
    assert!(settings.secret_replaced_at.is_none());
    assert_eq!(
        settings.auth_method,
        portico::domain::AuthMethod::Certificate
    );

    let audit = app.audit_actions(&tenant).await;
    assert!(audit.iter().any(|(action, _, detail)| action
        == "settings.microsoft_sign_in_certificate_created"
        && detail.contains(&format!("new certificate {next} valid until"))
        && detail.contains("sign-in keeps using the client secret until the switch")));
    assert!(audit.iter().any(|(action, _, detail)| action
        == "settings.microsoft_sign_in_certificate_switched"
        && detail.contains(&format!("now signs in with certificate {next}"))
        && detail.contains("replacing the client secret")));
    assert!(
        audit
            .iter()
            .all(|(_, _, detail)| !detail.contains("PRIVATE KEY") && !detail.contains(SECRET))
    );
}

async fn an_unregistered_or_expired_certificate_is_explained_in_plain_words(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = acme_with_ana(&app).await;
    use_certificate(&admin).await;

    // Not uploaded to Azure yet: Microsoft refuses, and the page says what to do.
    let ana = app.browser();
    ana.microsoft_sign_in("acme")
        .await
        .assert_status(400)
        .assert_contains("Certificate not accepted")
        .assert_contains("the certificate was not uploaded to this app in Azure")
        .assert_contains("AADSTS700027")
        .assert_contains("Sign in with Microsoft settings")
        .assert_contains(&app.url(SETTINGS))
        .assert_contains("Upload certificate");
    ana.get("/t/acme/").await.assert_redirect("/t/acme/login");
    let fields = app.microsoft.last_token_request_fields();
    assert!(!has_field(&fields, "client_secret"), "{fields:?}");
    assert!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(action, _, detail)| action == "sign_in.microsoft_failed"
                && detail.contains("AADSTS700027"))
    );

    // Another certificate of the app does not help: only the one Portico signs with.
    let other = portico::crypto::certificates::generate(
        "Someone else",
        OffsetDateTime::now_utc(),
        Duration::days(30),
    )
    .unwrap();
    app.microsoft
        .upload_certificate(SIGN_IN_APP, other.certificate.pem());
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_contains("Certificate not accepted");

    // Uploaded, it works; once Azure sees it expired, it is refused again with advice.
    let pem = download(&admin, "current.pem").await;
    app.microsoft.upload_certificate(SIGN_IN_APP, &pem.body);
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    app.microsoft
        .advance_clock(std::time::Duration::from_secs(400 * 24 * 3600));
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_contains("AADSTS700027")
        .assert_contains("Certificate not accepted")
        .assert_contains("has expired there");
}

async fn renewal_switches_only_once_microsoft_accepts_the_new_certificate(backend: Backend) {
    let app = spawn_app(backend).await;
    let (tenant, admin) = acme_with_ana(&app).await;
    use_certificate(&admin).await;
    let current = download(&admin, "current.pem").await;
    app.microsoft.upload_certificate(SIGN_IN_APP, &current.body);
    let first = thumbprint_after(&admin.get(SETTINGS).await, "Certificate thumbprint");

    admin
        .submit(
            SETTINGS,
            &format!("{SETTINGS}/certificate/renew"),
            &[("valid_months", "7")],
        )
        .await
        .assert_status(400)
        .assert_contains("Choose how long the certificate is valid.");
    admin
        .submit(
            SETTINGS,
            &format!("{SETTINGS}/certificate/renew"),
            &[("valid_months", "6")],
        )
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=renewed");
    let page = admin.get(&format!("{SETTINGS}?done=renewed")).await;
    page.assert_contains("A new certificate is ready")
        .assert_contains("New certificate thumbprint")
        .assert_contains("Switch to the new certificate");
    let next = thumbprint_after(&page, "New certificate thumbprint");
    assert_ne!(first, next);
    // Sign-in keeps the current certificate meanwhile.
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");

    // Not uploaded yet: the switch is refused and nothing changes.
    admin
        .submit(SETTINGS, &format!("{SETTINGS}/certificate/switch"), &[])
        .await
        .assert_status(400)
        .assert_contains("Not switched")
        .assert_contains("Certificate not accepted");
    assert_eq!(
        thumbprint_after(&admin.get(SETTINGS).await, "Certificate thumbprint"),
        first
    );

    let next_pem = download(&admin, "next.pem").await;
    app.microsoft
        .upload_certificate(SIGN_IN_APP, &next_pem.body);
    admin
        .submit(SETTINGS, &format!("{SETTINGS}/certificate/switch"), &[])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=switched");
    let page = admin.get(SETTINGS).await;
    page.assert_lacks("New certificate thumbprint");
    assert_eq!(thumbprint_after(&page, "Certificate thumbprint"), next);
    // The old certificate can go from Azure: sign-in uses the new one.
    app.microsoft.remove_certificate(SIGN_IN_APP, &current.body);
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");

    let audit = app.audit_actions(&tenant).await;
    assert!(audit.iter().any(|(action, _, detail)| action
        == "settings.microsoft_sign_in_certificate_created"
        && detail.contains(&format!("new certificate {next} valid until"))));
    assert!(audit.iter().any(|(action, _, detail)| action
        == "settings.microsoft_sign_in_certificate_switched"
        && detail.contains(&format!("now signs in with certificate {next}"))
        && detail.contains(&format!("replacing certificate {first}"))));
}

async fn the_sign_in_certificate_is_announced_from_thirty_days_before_it_ends(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = acme_with_ana(&app).await;
    configure(&admin, "certificate", &[("valid_months", "6")])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    let pem = download(&admin, "current.pem").await;
    let ends_on = portico::crypto::certificates::CertificateInfo::read(&pem.body)
        .unwrap()
        .not_after
        .date();

    let admin = days_before(&app, ends_on, 31).await;
    admin
        .get("/t/acme/")
        .await
        .assert_lacks("<strong>Sign in with Microsoft</strong>");
    let page = admin.get("/t/acme/expiring").await;
    let listed = sign_in_row(&page);
    assert!(listed.contains("Certificate"), "{listed}");
    assert!(listed.contains(&ends_on.to_string()), "{listed}");
    assert!(listed.contains("badge ok\">Valid"), "{listed}");
    assert!(listed.contains(&format!("href=\"{SETTINGS}\"")), "{listed}");

    let admin = days_before(&app, ends_on, 7).await;
    admin
        .get("/t/acme/")
        .await
        .assert_contains(&format!(
            "The certificate of <strong>Sign in with Microsoft</strong> expires in 7 days ({ends_on})"
        ))
        .assert_contains(&format!("href=\"{SETTINGS}\">Renew the certificate"));
    admin
        .get(SETTINGS)
        .await
        .assert_contains("The certificate expires soon");
    let page = admin.get("/t/acme/expiring").await;
    assert!(sign_in_row(&page).contains("badge warn"));

    let admin = days_before(&app, ends_on, -1).await;
    admin.get("/t/acme/").await.assert_contains(&format!(
        "<strong>Sign in with Microsoft</strong> expired on {ends_on}: nobody can sign in with Microsoft"
    ));
}

async fn without_a_directory_the_certificate_signs_in_through_common(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = acme_with_ana(&app).await;
    app.microsoft.add_app(
        FakeApp::new(SIGN_IN_APP, CONTOSO)
            .multi_tenant()
            .web_redirect_uri(&app.url("/auth/microsoft/callback")),
    );
    // Without a directory, Ana is matched by an email her directory vouches for.
    app.microsoft.add_user(
        FakeUser::new(CONTOSO, "ana@contoso.com", "Ana")
            .email("ana@contoso.com")
            .xms_edov(true),
    );
    admin
        .submit(
            SETTINGS,
            SETTINGS,
            &[
                ("client_id", &SIGN_IN_APP.to_string()),
                ("directory", ""),
                ("cloud", "global"),
                ("enabled", "on"),
                ("auth_method", "certificate"),
                ("valid_months", "24"),
            ],
        )
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    let pem = download(&admin, "current.pem").await;
    app.microsoft.upload_certificate(SIGN_IN_APP, &pem.body);
    // The assertion is addressed to the `common` token endpoint the code is redeemed at.
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    assert!(!has_field(
        &app.microsoft.last_token_request_fields(),
        "client_secret"
    ));

    // Without a directory there is no app-only token to try: the switch trusts the admin.
    admin
        .submit(
            SETTINGS,
            &format!("{SETTINGS}/certificate/renew"),
            &[("valid_months", "12")],
        )
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=renewed");
    let next = download(&admin, "next.pem").await;
    app.microsoft.upload_certificate(SIGN_IN_APP, &next.body);
    admin
        .submit(SETTINGS, &format!("{SETTINGS}/certificate/switch"), &[])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?done=switched");
    app.microsoft.remove_certificate(SIGN_IN_APP, &pem.body);
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
}
