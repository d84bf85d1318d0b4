//! Sign in with Microsoft against the fake Entra ID: who gets in, who does not, and why.

use portico::domain::Role;
use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, FakeUser, Signing};
use crate::support::{
    Backend, Browser, PASSWORD, Page, TestApp, default_secret_expiry, spawn_app, with_secret_expiry,
};

pub(crate) const CONTOSO: Uuid = uuid!("11111111-1111-4111-8111-111111111111");
const FABRIKAM: Uuid = uuid!("22222222-2222-4222-8222-222222222222");
const APP_ID: Uuid = uuid!("33333333-3333-4333-8333-333333333333");
const SECRET: &str = "Fake~Secret.Value-123";

on_both_backends!(
    settings_are_validated_resolved_and_keep_the_secret_write_only,
    restricted_tenant_admits_its_directory_only,
    unrestricted_tenant_admits_only_linked_or_trusted_accounts,
    an_unverified_email_from_another_directory_takes_over_nobody,
    forged_id_tokens_are_refused,
    sign_in_state_is_single_use_bound_to_the_browser_and_expires,
    a_callback_started_for_one_tenant_cannot_sign_into_another,
    keys_are_fetched_once_and_rotation_is_picked_up,
    microsoft_errors_are_explained,
    admins_link_and_unlink_microsoft_accounts,
    slow_microsoft_gets_a_clear_page_in_time_and_local_sign_in_still_works,
);

/// Portico's `azure_app` registered in Contoso, and Fabrikam: another company's directory,
/// whose users try to get in.
fn register_beside_fabrikam(app: &TestApp, azure_app: FakeApp) {
    app.register_azure_app(azure_app);
    app.microsoft
        .add_directory(FABRIKAM, &["fabrikam.onmicrosoft.com"]);
}

/// Portico as a public client: redirect URI under "Mobile and desktop applications".
pub(crate) fn public_app(app: &TestApp) -> FakeApp {
    FakeApp::new(APP_ID, CONTOSO)
        .named("Portico")
        .public_client_redirect_uri(&app.url("/auth/microsoft/callback"))
}

/// Fills in the settings page as an admin would.
pub(crate) async fn configure(admin: &Browser, slug: &str, fields: &[(&str, &str)]) -> Page {
    let page = format!("/t/{slug}/settings/microsoft-sign-in");
    let client_id = APP_ID.to_string();
    let mut all = vec![
        ("client_id", client_id.as_str()),
        ("cloud", "global"),
        ("enabled", "on"),
    ];
    let expires_on = default_secret_expiry();
    all.extend(with_secret_expiry(fields, &expires_on));
    admin.submit(&page, &page, &all).await
}

/// Acme with an admin, signing in with Microsoft restricted to Contoso.
pub(crate) async fn restricted_tenant(app: &TestApp) -> Browser {
    register_beside_fabrikam(app, public_app(app).multi_tenant());
    let (_, admin) = app.tenant_with_admin("acme").await;
    configure(&admin, "acme", &[("directory", &CONTOSO.to_string())])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    admin
}

async fn unrestricted_tenant(app: &TestApp) -> Browser {
    register_beside_fabrikam(app, public_app(app).multi_tenant().with_personal_accounts());
    let (_, admin) = app.tenant_with_admin("acme").await;
    configure(&admin, "acme", &[("directory", "")])
        .await
        .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    admin
}

async fn assert_signed_in(browser: &Browser, name: &str) {
    browser
        .get("/t/acme/")
        .await
        .assert_status(200)
        .assert_contains(&format!("Welcome, {name}"));
}

async fn assert_signed_out(browser: &Browser) {
    browser
        .get("/t/acme/")
        .await
        .assert_redirect("/t/acme/login");
}

async fn settings_are_validated_resolved_and_keep_the_secret_write_only(backend: Backend) {
    let app = spawn_app(backend).await;
    register_beside_fabrikam(&app, public_app(&app));
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    let settings = "/t/acme/settings/microsoft-sign-in";

    let page = admin.get(settings).await;
    page.assert_status(200)
        .assert_contains("Application (client) ID")
        .assert_contains("Directory (tenant) ID")
        .assert_contains("Mobile and desktop applications")
        .assert_contains(&app.url("/auth/microsoft/callback"));

    admin
        .submit(
            settings,
            settings,
            &[
                ("client_id", "not-a-guid"),
                ("directory", "nowhere"),
                ("cloud", "global"),
                ("client_secret", SECRET),
                ("auto_create_agents", "on"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("value=\"not-a-guid\"")
        .assert_contains("Paste the Application (client) ID")
        .assert_contains("Enter the Directory (tenant) ID")
        .assert_lacks(SECRET);
    admin
        .submit(
            settings,
            settings,
            &[
                ("client_id", &APP_ID.to_string()),
                ("directory", ""),
                ("cloud", "global"),
                ("auto_create_agents", "on"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("Only with a Directory (tenant) ID");
    // The personal accounts' directory is open to all: it cannot restrict anything.
    let personal = "9188040d-6c67-4c5b-b112-36a304b66dad";
    configure(
        &admin,
        "acme",
        &[("directory", personal), ("auto_create_agents", "on")],
    )
    .await
    .assert_status(400)
    .assert_contains("directory of personal Microsoft accounts");
    configure(&admin, "acme", &[("directory", "unknown.onmicrosoft.com")])
        .await
        .assert_status(400)
        .assert_contains("Microsoft knows no directory by this name")
        .assert_contains("value=\"unknown.onmicrosoft.com\"");

    // A verified domain resolves to its directory; the secret is kept, sealed, never shown.
    configure(
        &admin,
        "acme",
        &[
            ("directory", "Contoso.onmicrosoft.com"),
            ("client_secret", SECRET),
        ],
    )
    .await
    .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    admin
        .get(&format!("{settings}?saved=1"))
        .await
        .assert_contains("Settings saved.")
        .assert_contains(&CONTOSO.to_string())
        .assert_contains("A secret is set")
        .assert_lacks(SECRET);
    let stored = portico::store::microsoft_sign_in::get(&app.state.db, &tenant.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.directory_id, Some(CONTOSO));
    let sealed = stored.client_secret_sealed.unwrap();
    assert!(!sealed.contains(SECRET));
    assert!(sealed.starts_with(&format!("v1.{}.", app.state.config.secret_key.key_id())));

    // Saving again with the field empty keeps the secret; the audit log never has it.
    configure(&admin, "acme", &[("directory", "contoso.onmicrosoft.com")]).await;
    let audit = app.audit_actions(&tenant).await;
    let changes: Vec<&String> = audit
        .iter()
        .filter(|(action, _, _)| action == "settings.microsoft_sign_in_changed")
        .map(|(_, _, detail)| detail)
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes
            .iter()
            .any(|detail| detail.contains("client secret replaced"))
    );
    assert!(
        audit
            .iter()
            .all(|(_, target, detail)| !target.contains(SECRET) && !detail.contains(SECRET))
    );
    assert!(
        portico::store::microsoft_sign_in::get(&app.state.db, &tenant.id)
            .await
            .unwrap()
            .unwrap()
            .client_secret_sealed
            .is_some()
    );

    // The sign-in page offers the button now.
    app.browser()
        .get("/t/acme/login")
        .await
        .assert_contains("Sign in with Microsoft");
}

async fn restricted_tenant_admits_its_directory_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let _admin = restricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    app.microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana Contoso")
        .await;
    app.microsoft.add_user(
        FakeUser::new(FABRIKAM, "eve@fabrikam.com", "Eve Fabrikam").email("ana@contoso.com"),
    );
    app.microsoft
        .add_user(FakeUser::personal("ana@outlook.com", "Ana Personal"));

    let ana = app.browser();
    let before = ana.session_cookie();
    ana.microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    assert_ne!(
        before,
        ana.session_cookie(),
        "the session id must change at sign-in"
    );
    assert_signed_in(&ana, "ana").await;

    for other in ["eve@fabrikam.com", "ana@outlook.com"] {
        app.microsoft.sign_in_as(other);
        let browser = app.browser();
        browser
            .microsoft_sign_in("acme")
            .await
            .assert_status(400)
            .assert_contains("Account from another directory")
            .assert_contains("AADSTS50020")
            .assert_contains("Trace ID");
        assert_signed_out(&browser).await;
    }
    let audit = app.audit_actions(&tenant).await;
    assert!(
        audit
            .iter()
            .any(|(action, _, detail)| action == "user.microsoft_linked"
                && detail.contains("by its email"))
    );
    assert!(
        audit
            .iter()
            .any(|(action, _, detail)| action == "sign_in.microsoft_failed"
                && detail.contains("AADSTS50020"))
    );
}

async fn unrestricted_tenant_admits_only_linked_or_trusted_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    let _admin = unrestricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    app.create_user(&tenant, "bob@outlook.com", Role::Agent)
        .await;
    app.microsoft
        .add_user(FakeUser::personal("bob@outlook.com", "Bob Personal"));
    app.microsoft
        .add_user(FakeUser::personal("stranger@outlook.com", "Stranger"));

    // A personal account's email is Microsoft's to verify: it links to Bob.
    app.microsoft.sign_in_as("bob@outlook.com");
    let bob = app.browser();
    bob.microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    assert_signed_in(&bob, "bob").await;

    // Anyone else authenticates at Microsoft but finds no account here.
    app.microsoft.sign_in_as("stranger@outlook.com");
    let stranger = app.browser();
    stranger
        .microsoft_sign_in("acme")
        .await
        .assert_status(400)
        .assert_contains("No Portico account for this Microsoft account")
        .assert_contains("stranger@outlook.com")
        .assert_contains("personal Microsoft account");
    assert_signed_out(&stranger).await;
    let audit = app.audit_actions(&tenant).await;
    assert!(audit.iter().any(
        |(action, target, detail)| action == "sign_in.microsoft_failed"
            && target == "stranger@outlook.com"
            && detail.contains("no linked Portico user")
    ));

    // Refused Microsoft sign-ins never lock anyone out of password sign-in.
    for _ in 0..25 {
        app.browser()
            .microsoft_sign_in("acme")
            .await
            .assert_status(400);
    }
    app.browser()
        .sign_in("acme", "bob@outlook.com", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
}

async fn an_unverified_email_from_another_directory_takes_over_nobody(backend: Backend) {
    let app = spawn_app(backend).await;
    let _admin = unrestricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    app.create_user(&tenant, "victim@contoso.com", Role::Admin)
        .await;
    // nOAuth: the attacker's own directory lets them set any email claim.
    app.microsoft.add_user(
        FakeUser::new(FABRIKAM, "mallory@fabrikam.com", "Mallory").email("victim@contoso.com"),
    );
    app.microsoft.sign_in_as("mallory@fabrikam.com");
    let mallory = app.browser();
    mallory
        .microsoft_sign_in("acme")
        .await
        .assert_status(400)
        .assert_contains("No Portico account");
    assert_signed_out(&mallory).await;

    // The same claim with xms_edov (the directory owns the domain) is trusted.
    app.microsoft.add_user(
        FakeUser::new(CONTOSO, "victim@contoso.com", "Victim")
            .email("victim@contoso.com")
            .xms_edov(true),
    );
    app.microsoft.sign_in_as("victim@contoso.com");
    let victim = app.browser();
    victim
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    assert_signed_in(&victim, "victim").await;

    // Now linked by (tid, oid), Mallory's claim still opens nothing.
    app.microsoft.sign_in_as("mallory@fabrikam.com");
    let again = app.browser();
    again.microsoft_sign_in("acme").await.assert_status(400);
    assert_signed_out(&again).await;
}

async fn forged_id_tokens_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    // A confidential client, so an HS256 token "signed" with its secret can be tried.
    register_beside_fabrikam(
        &app,
        FakeApp::new(APP_ID, CONTOSO)
            .multi_tenant()
            .web_redirect_uri(&app.url("/auth/microsoft/callback"))
            .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(30)),
    );
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    configure(
        &admin,
        "acme",
        &[
            ("directory", &CONTOSO.to_string()),
            ("client_secret", SECRET),
        ],
    )
    .await
    .assert_redirect("/t/acme/settings/microsoft-sign-in?saved=1");
    app.microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana")
        .await;

    let login = app.microsoft.login_url();
    type Tamper = Box<dyn FnOnce(&mut serde_json::Value) -> Signing + Send>;
    let forgeries: Vec<(&str, Tamper)> = vec![
        ("unknown key", Box::new(|_| Signing::UnknownKey)),
        ("alg none", Box::new(|_| Signing::AlgNone)),
        (
            "HS256 keyed with the client secret",
            Box::new(|_| Signing::Hs256(SECRET.into())),
        ),
        (
            "wrong audience",
            Box::new(|claims| {
                claims["aud"] = json!(Uuid::new_v4().to_string());
                Signing::CurrentKey
            }),
        ),
        ("issuer of another directory than tid", {
            let login = login.clone();
            Box::new(move |claims| {
                claims["iss"] = json!(format!("{login}/{FABRIKAM}/v2.0"));
                Signing::CurrentKey
            })
        }),
        ("tid of another directory", {
            let login = login.clone();
            Box::new(move |claims| {
                claims["tid"] = json!(FABRIKAM.to_string());
                claims["iss"] = json!(format!("{login}/{FABRIKAM}/v2.0"));
                Signing::CurrentKey
            })
        }),
        (
            "expired",
            Box::new(|claims| {
                let past = OffsetDateTime::now_utc().unix_timestamp() - 3600;
                claims["iat"] = json!(past - 3600);
                claims["nbf"] = json!(past - 3600);
                claims["exp"] = json!(past);
                Signing::CurrentKey
            }),
        ),
        (
            "missing nonce",
            Box::new(|claims| {
                claims.as_object_mut().unwrap().remove("nonce");
                Signing::CurrentKey
            }),
        ),
        (
            "wrong nonce",
            Box::new(|claims| {
                claims["nonce"] = json!("someone-elses-nonce");
                Signing::CurrentKey
            }),
        ),
        (
            "v1.0 token",
            Box::new(|claims| {
                claims["ver"] = json!("1.0");
                Signing::CurrentKey
            }),
        ),
    ];
    for (forgery, tamper) in forgeries {
        app.microsoft.tamper_next_id_token(tamper);
        let browser = app.browser();
        let page = browser.microsoft_sign_in("acme").await;
        assert_eq!(page.status.as_u16(), 400, "{forgery}: {}", page.body);
        page.assert_contains("Sign-in refused");
        assert_signed_out(&browser).await;
    }

    // The untampered flow still works: the refusals above were the forgeries'.
    let ana = app.browser();
    ana.microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
}

async fn sign_in_state_is_single_use_bound_to_the_browser_and_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let _admin = restricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    app.microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana")
        .await;

    // Another browser cannot finish a sign-in this one started.
    let ana = app.browser();
    let callback = ana
        .microsoft_authorize("/t/acme/auth/microsoft")
        .await
        .unwrap();
    let thief = app.browser();
    thief
        .get_url(&callback)
        .await
        .assert_status(400)
        .assert_contains("Sign-in expired");
    assert_signed_out(&thief).await;

    // The browser that started it signs in once; replaying the callback does nothing.
    let callback = ana
        .microsoft_authorize("/t/acme/auth/microsoft")
        .await
        .unwrap();
    ana.get_url(&callback).await.assert_redirect("/t/acme/");
    let replay = app.browser();
    replay.get_url(&callback).await.assert_status(400);
    ana.get_url(&callback)
        .await
        .assert_status(400)
        .assert_contains("Sign-in expired");

    // After ten minutes the state is worthless.
    let late = app.browser();
    let callback = late
        .microsoft_authorize("/t/acme/auth/microsoft")
        .await
        .unwrap();
    app.state.clock.advance(Duration::minutes(11));
    late.get_url(&callback)
        .await
        .assert_status(400)
        .assert_contains("Sign-in expired");
    assert_signed_out(&late).await;
}

async fn a_callback_started_for_one_tenant_cannot_sign_into_another(backend: Backend) {
    let app = spawn_app(backend).await;
    register_beside_fabrikam(&app, public_app(&app).multi_tenant());
    for slug in ["acme", "beta"] {
        let (tenant, admin) = app.tenant_with_admin(slug).await;
        configure(&admin, slug, &[("directory", &CONTOSO.to_string())]).await;
        if slug == "acme" {
            app.create_user(&tenant, "ana@contoso.com", Role::Agent)
                .await;
        }
    }
    app.microsoft
        .add_user(FakeUser::new(CONTOSO, "ana@contoso.com", "Ana").email("ana@contoso.com"));
    app.microsoft.sign_in_as("ana@contoso.com");

    let browser = app.browser();
    let for_acme = browser
        .microsoft_authorize("/t/acme/auth/microsoft")
        .await
        .unwrap();
    let _for_beta = browser
        .microsoft_authorize("/t/beta/auth/microsoft")
        .await
        .unwrap();
    // The pending sign-in is now beta's: acme's state no longer matches anything.
    browser
        .get_url(&for_acme)
        .await
        .assert_status(400)
        .assert_contains("Sign-in expired");
    assert_signed_out(&browser).await;
    browser
        .get("/t/beta/")
        .await
        .assert_redirect("/t/beta/login");
}

async fn keys_are_fetched_once_and_rotation_is_picked_up(backend: Backend) {
    let app = spawn_app(backend).await;
    let _admin = restricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    app.microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana")
        .await;

    for _ in 0..10 {
        app.browser()
            .microsoft_sign_in("acme")
            .await
            .assert_redirect("/t/acme/");
    }
    assert_eq!(app.microsoft.keys_fetches(), 1);

    // Microsoft rotates its keys; a while later a token names the new key.
    app.microsoft.rotate_signing_key();
    app.state.clock.advance(Duration::minutes(6));
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    assert_eq!(app.microsoft.keys_fetches(), 2);

    // Unknown keys right after a fetch do not make Portico fetch again.
    app.microsoft.tamper_next_id_token(|_| Signing::UnknownKey);
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_status(400);
    assert_eq!(app.microsoft.keys_fetches(), 2);
}

async fn microsoft_errors_are_explained(backend: Backend) {
    let app = spawn_app(backend).await;
    // Registered under Web with a secret, while Portico first has none (AADSTS7000218).
    register_beside_fabrikam(
        &app,
        FakeApp::new(APP_ID, CONTOSO)
            .web_redirect_uri(&app.url("/auth/microsoft/callback"))
            .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(30)),
    );
    let (tenant, admin) = app.tenant_with_admin("acme").await;
    app.microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana")
        .await;
    let browser = app.browser();

    // A single-tenant app used without a Directory (tenant) ID.
    configure(&admin, "acme", &[("directory", "")]).await;
    browser
        .microsoft_sign_in("acme")
        .await
        .assert_contains("AADSTS50194")
        .assert_contains("Enter the Directory (tenant) ID");

    configure(&admin, "acme", &[("directory", &CONTOSO.to_string())]).await;
    browser
        .microsoft_sign_in("acme")
        .await
        .assert_contains("AADSTS7000218")
        .assert_contains("Mobile and desktop applications");

    configure(
        &admin,
        "acme",
        &[
            ("directory", &CONTOSO.to_string()),
            ("client_secret", "the-secret-id-not-its-value"),
        ],
    )
    .await;
    browser
        .microsoft_sign_in("acme")
        .await
        .assert_contains("AADSTS7000215")
        .assert_contains("Value, not its Secret ID")
        .assert_lacks("the-secret-id-not-its-value");

    app.microsoft.cancel_next_sign_in();
    configure(
        &admin,
        "acme",
        &[
            ("directory", &CONTOSO.to_string()),
            ("client_secret", SECRET),
        ],
    )
    .await;
    browser
        .microsoft_sign_in("acme")
        .await
        .assert_contains("Sign-in cancelled");

    // Errors Microsoft sends back on the redirect, each with its advice.
    let cases = [
        (
            "invalid_request",
            "AADSTS50011: The redirect URI does not match.",
            "Redirect URI not registered",
            app.url("/auth/microsoft/callback"),
        ),
        (
            "unauthorized_client",
            "AADSTS700016: Application not found.",
            "Application not found in the directory",
            "Application (client) ID".to_owned(),
        ),
        (
            "consent_required",
            "AADSTS65001: The user or administrator has not consented.",
            "Consent required",
            format!("adminconsent?client_id={APP_ID}"),
        ),
        (
            "invalid_request",
            "AADSTS90094: Admin consent is required.",
            "Consent required",
            "adminconsent".to_owned(),
        ),
        (
            "invalid_client",
            "AADSTS7000222: The provided client secret keys are expired.",
            "Client secret has expired",
            "add a new client secret".to_owned(),
        ),
        (
            "invalid_request",
            "AADSTS90002: Tenant not found.",
            "Directory not found",
            "Overview page".to_owned(),
        ),
        (
            "invalid_grant",
            "AADSTS54005: OAuth2 Authorization code was already redeemed.",
            "Sign-in already completed",
            "Start again".to_owned(),
        ),
        (
            "access_denied",
            "The user cancelled.",
            "Sign-in cancelled",
            "Try again".to_owned(),
        ),
        (
            "access_denied",
            "AADSTS53003: Access has been blocked by Conditional Access policies.",
            "Blocked by Conditional Access",
            "Sign-in logs".to_owned(),
        ),
        (
            "access_denied",
            "AADSTS53000: Device is not in required device state: compliant.",
            "Device not compliant",
            "managed device".to_owned(),
        ),
        (
            "access_denied",
            "AADSTS53001: Device is not in required device state: domain_joined.",
            "Device not joined to your organization",
            "company device".to_owned(),
        ),
        (
            "interaction_required",
            "AADSTS50076: You must use multi-factor authentication.",
            "Multi-factor authentication required",
            "aka.ms/mysecurityinfo".to_owned(),
        ),
        (
            "interaction_required",
            "AADSTS50079: The user is required to use multi-factor authentication.",
            "Multi-factor authentication required",
            "verification".to_owned(),
        ),
        (
            "access_denied",
            "AADSTS50105: The signed in user is not assigned to a role for the application.",
            "Not assigned to the app",
            "Users and groups".to_owned(),
        ),
        (
            "unauthorized_client",
            "AADSTS7000112: Application is disabled.",
            "App disabled",
            "Enabled for users to sign-in".to_owned(),
        ),
        (
            "access_denied",
            "AADSTS65004: User declined to consent to access the app.",
            "Sign-in cancelled",
            "Try again".to_owned(),
        ),
        (
            "invalid_grant",
            "AADSTS50053: The account is locked.",
            "Account locked",
            "Wait a few minutes".to_owned(),
        ),
        (
            "invalid_grant",
            "AADSTS50055: The password is expired.",
            "Password expired",
            "aka.ms/sspr".to_owned(),
        ),
        (
            "access_denied",
            "AADSTS50097: Device authentication is required.",
            "Device authentication required",
            "registered with your organization".to_owned(),
        ),
        (
            "access_denied",
            "AADSTS50158: External security challenge not satisfied.",
            "External security check not completed",
            "complete that check".to_owned(),
        ),
    ];
    for (error, description, title, advice) in cases {
        let callback = browser
            .microsoft_authorize("/t/acme/auth/microsoft")
            .await
            .unwrap();
        let state = url::Url::parse(&callback)
            .unwrap()
            .query_pairs()
            .find(|(name, _)| name == "state")
            .unwrap()
            .1
            .into_owned();
        let description = format!(
            "{description}\r\nTrace ID: trace-1\r\nCorrelation ID: corr-1\r\nTimestamp: 2026-11-25 10:00:00Z"
        );
        let query = serde_urlencoded::to_string([
            ("error", error),
            ("error_description", &description),
            ("state", &state),
        ])
        .unwrap();
        browser
            .get(&format!("/auth/microsoft/callback?{query}"))
            .await
            .assert_status(400)
            .assert_contains(title)
            .assert_contains(&advice)
            .assert_contains("trace-1")
            .assert_contains("corr-1");
    }
    assert_signed_out(&browser).await;
}

async fn admins_link_and_unlink_microsoft_accounts(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = unrestricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    let carol = app
        .create_user(&tenant, "carol@acme.test", Role::Agent)
        .await;
    let carol_page = format!("/t/acme/users/{}", carol.as_str());
    // Carol's Microsoft account has another address: only a link can bind it.
    app.microsoft.add_user(
        FakeUser::new(FABRIKAM, "carol@fabrikam.com", "Carol F").email("carol@fabrikam.com"),
    );
    app.microsoft.sign_in_as("carol@fabrikam.com");
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_status(400);

    let page = admin
        .submit(&carol_page, &format!("{carol_page}/microsoft-link"), &[])
        .await;
    page.assert_status(200).assert_contains("one-time link");
    let marker = "id=\"link-url\">";
    let start = page.body.find(marker).unwrap() + marker.len();
    let link = page.body[start..].split('<').next().unwrap().to_owned();
    assert!(
        link.starts_with(&app.url("/t/acme/auth/microsoft/link/")),
        "{link}"
    );
    admin.get(&carol_page).await.assert_lacks(&link);

    // The link says whose account it links before anything happens.
    let carol_browser = app.browser();
    let start_path = link.trim_start_matches(&app.url(""));
    let confirm = carol_browser.get(start_path).await;
    confirm
        .assert_status(200)
        .assert_contains("Link your Microsoft account")
        .assert_contains("carol@acme.test");
    let to_microsoft = carol_browser
        .post_raw(start_path, &[("csrf_token", &confirm.csrf_token())])
        .await;
    let authorize = carol_browser
        .get_url(to_microsoft.location.as_deref().unwrap())
        .await;
    carol_browser
        .get_url(authorize.location.as_deref().unwrap())
        .await
        .assert_redirect("/t/acme/");
    assert_signed_in(&carol_browser, "carol").await;
    // Used up; and from now on Carol signs in directly.
    app.browser()
        .get(start_path)
        .await
        .assert_status(400)
        .assert_contains("Link expired or already used");
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");

    admin
        .get(&carol_page)
        .await
        .assert_contains("Linked to <strong>carol@fabrikam.com</strong>");
    admin
        .get("/t/acme/users")
        .await
        .assert_contains("Microsoft (carol@fabrikam.com)");
    admin
        .submit(&carol_page, &format!("{carol_page}/microsoft-unlink"), &[])
        .await
        .assert_redirect(&format!("{carol_page}?done=unlinked"));
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_status(400);

    let actions: Vec<String> = app
        .audit_actions(&tenant)
        .await
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    for expected in [
        "user.microsoft_link_created",
        "user.microsoft_linked",
        "user.microsoft_unlinked",
    ] {
        assert!(actions.iter().any(|a| a == expected), "{expected} missing");
    }
    // Local sign-in is untouched by all of it.
    app.browser()
        .sign_in("acme", "carol@acme.test", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
}

async fn slow_microsoft_gets_a_clear_page_in_time_and_local_sign_in_still_works(backend: Backend) {
    let app = spawn_app(backend).await;
    let _admin = restricted_tenant(&app).await;
    let tenant = app.tenant("acme").await;
    app.microsoft_user(&tenant, CONTOSO, "ana@contoso.com", "Ana")
        .await;
    let ana = app.browser();
    let callback = ana
        .microsoft_authorize("/t/acme/auth/microsoft")
        .await
        .unwrap();

    // Microsoft stops answering in time (the tests' Portico waits at most 2 seconds).
    app.microsoft
        .set_delay(Some(std::time::Duration::from_secs(30)));
    let started = std::time::Instant::now();
    ana.get_url(&callback)
        .await
        .assert_status(502)
        .assert_contains("Microsoft could not be reached")
        .assert_contains("email and password");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_signed_out(&ana).await;

    ana.sign_in("acme", "ana@contoso.com", PASSWORD)
        .await
        .assert_redirect("/t/acme/");
}
