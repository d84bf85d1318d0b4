//! App-only mail: IMAP, POP3 and SMTP mailboxes whose Authentication is "Microsoft 365 app
//! (from External APIs)" sign in with an Exchange Online token of a Graph credential's app,
//! XOAUTH2 as the mailbox address. TLS responders play Exchange Online: each accepts only an
//! XOAUTH2 string naming the mailbox and carrying a token the fake Microsoft issued to the
//! app for Exchange, with the protocol's permission.

use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use super::oauth::{Kind, Responder};
use super::servers::{USER, mail_servers};
use crate::on_both_backends;
use crate::support::fake_microsoft::{EXCHANGE_RESOURCE, FakeApp, FakeMicrosoft};
use crate::support::{Backend, Browser, TestApp, TestDatabase, spawn_app_with};

const CONTOSO: Uuid = uuid!("44444444-4444-4444-8444-444444444444");
const MAIL_APP: Uuid = uuid!("55555555-5555-4555-8555-555555555555");
const SECRET: &str = "Exchange~App-Secret.0123456789";
const INBOX: &str = "support@contoso.test";
const SENDER: &str = "noreply@contoso.test";

on_both_backends!(
    imap_and_smtp_mailboxes_sign_in_app_only_with_secret_and_certificate_credentials,
    app_only_sign_in_is_refused_at_save_where_its_token_must_not_go,
    exchange_onlines_refusals_are_explained_with_the_next_step,
);

/// The mail app in Contoso: Graph's permissions, and Exchange Online's for IMAP and SMTP.
fn mail_app() -> FakeApp {
    FakeApp::new(MAIL_APP, CONTOSO)
        .named("Portico mail")
        .secret(SECRET, OffsetDateTime::now_utc() + Duration::days(180))
        .application_role("Mail.ReadWrite")
        .application_role("Mail.Send")
        .exchange_role("IMAP.AccessAsApp")
        .exchange_role("SMTP.SendAsApp")
}

/// Exchange Online's check of an XOAUTH2 string: the mailbox as `user=`, and an app-only
/// token the fake issued to the mail app for Exchange, alive, carrying `role`.
fn exchange_accepts(
    microsoft: FakeMicrosoft,
    mailbox: &'static str,
    role: &'static str,
) -> impl Fn(&str) -> bool + Send + Sync + 'static {
    move |sasl| {
        let token = sasl
            .strip_prefix(&format!("user={mailbox}\x01auth=Bearer "))
            .and_then(|rest| rest.strip_suffix("\x01\x01"));
        token
            .and_then(|token| microsoft.access_granted_by(token))
            .is_some_and(|grant| {
                grant.audience == EXCHANGE_RESOURCE
                    && grant.app_id == MAIL_APP
                    && grant.tenant_id == CONTOSO
                    && grant.app_only
                    && !grant.expired
                    && grant.roles.iter().any(|granted| granted == role)
            })
    }
}

async fn spawn(backend: Backend) -> (TestApp, Browser) {
    let servers = mail_servers();
    let database = TestDatabase::create(backend).await;
    let app = spawn_app_with(database, |config| {
        config.mail_ca_file = Some(servers.ca_file.clone())
    })
    .await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    (app, admin)
}

async fn segment(admin: &Browser) -> String {
    admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap()
}

async fn add_secret_credential(admin: &Browser) -> String {
    admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Mail app (secret)"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", "contoso.onmicrosoft.com"),
                ("auth_method", "client_secret"),
                ("client_secret", SECRET),
            ],
        )
        .await
}

/// A certificate credential whose certificate the admin uploaded to the app in Azure.
async fn add_certificate_credential(app: &TestApp, admin: &Browser) -> String {
    let credential = admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Mail app (certificate)"),
                ("client_id", &MAIL_APP.to_string()),
                ("directory", "contoso.onmicrosoft.com"),
                ("auth_method", "certificate"),
                ("valid_months", "12"),
            ],
        )
        .await;
    let pem = admin
        .get(&format!("{credential}/certificate/current.pem"))
        .await;
    pem.assert_status(200);
    app.microsoft.upload_certificate(MAIL_APP, &pem.body);
    credential
}

fn id_of(path: &str) -> String {
    path.rsplit('/').next().unwrap().to_owned()
}

/// The mailbox form of a server mailbox signing in with the app of `credential_id`.
fn app_mailbox<'a>(
    email: &'a str,
    protocol: &'a str,
    direction: &'a str,
    host: &'a str,
    port: &'a str,
    security: &'a str,
    credential_id: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", email),
        ("email", email),
        ("protocol", protocol),
        ("direction", direction),
        ("host", host),
        ("port", port),
        ("security", security),
        // Not who signs in: the app signs in as the mailbox address.
        ("username", "someone.else@contoso.test"),
        ("authentication", "app"),
        ("app_credential_id", credential_id),
        ("enabled", "on"),
    ]
}

async fn imap_and_smtp_mailboxes_sign_in_app_only_with_secret_and_certificate_credentials(
    backend: Backend,
) {
    let (app, admin) = spawn(backend).await;
    let azure_app = mail_app();
    let object_id = azure_app.service_principal_id;
    app.register_azure_app(azure_app);
    let with_secret = add_secret_credential(&admin).await;
    let with_certificate = add_certificate_credential(&app, &admin).await;
    let segment = segment(&admin).await;
    let mut imap = Responder::over_tls(
        Kind::Imap { sasl_ir: true },
        exchange_accepts(app.microsoft.clone(), INBOX, "IMAP.AccessAsApp"),
    )
    .await;
    let mut smtp = Responder::over_tls(
        Kind::Smtp,
        exchange_accepts(app.microsoft.clone(), SENDER, "SMTP.SendAsApp"),
    )
    .await;
    let (imap_port, smtp_port) = (imap.port.to_string(), smtp.port.to_string());

    let mut mailboxes = Vec::new();
    for (email, protocol, direction, port, responder) in [
        (INBOX, "imap", "incoming", &imap_port, &mut imap),
        (SENDER, "smtp", "outgoing", &smtp_port, &mut smtp),
    ] {
        let mut mailbox = None;
        for credential in [&with_certificate, &with_secret] {
            let credential_id = id_of(credential);
            let form = app_mailbox(
                email,
                protocol,
                direction,
                "127.0.0.1",
                port,
                "tls",
                &credential_id,
            );
            let saved = match &mailbox {
                None => {
                    let saved = admin
                        .submit(
                            &format!("{segment}/mailboxes/new"),
                            &format!("{segment}/mailboxes"),
                            &form,
                        )
                        .await;
                    mailbox = saved.location.clone();
                    saved
                }
                Some(path) => admin.submit(path, path, &form).await,
            };
            let path = saved.location.as_deref().unwrap_or_else(|| {
                panic!("{email} not saved: {}", saved.body);
            });
            let path = path.trim_end_matches("?done=saved").to_owned();

            let tested = admin.submit(&path, &format!("{path}/test"), &[]).await;

            tested
                .assert_status(200)
                .assert_contains("alert success result")
                .assert_contains("Connected and signed in");
            let heard = responder.heard();
            assert_eq!(heard.len(), 1, "{email}: {heard:?}");
            assert!(
                heard[0]
                    .sasl
                    .starts_with(&format!("user={email}\x01auth=Bearer ")),
                "{email} signed in as another user: {:?}",
                heard[0].sasl
            );
        }
        mailboxes.push(mailbox.unwrap());
    }

    // The segment lists both as reached through the app, and their tests as passed.
    admin
        .get(&segment)
        .await
        .assert_contains("Microsoft 365 app Mail app (secret)")
        .assert_contains("Passed")
        .assert_lacks("Failed");

    // The credential's page: Exchange Online's permissions from the token, and the
    // PowerShell for both mailboxes with the enterprise application's Object ID.
    let page = admin
        .submit(&with_secret, &format!("{with_secret}/test"), &[])
        .await;
    page.assert_status(200)
        .assert_contains("<span class=\"badge ok\">Granted</span> <code>IMAP.AccessAsApp</code>")
        .assert_contains("<span class=\"badge ok\">Granted</span> <code>SMTP.SendAsApp</code>")
        .assert_contains(
            "<span class=\"badge muted\">Not granted</span> <code>POP.AccessAsApp</code>",
        )
        .assert_contains(&format!(
            "New-ServicePrincipal -AppId {MAIL_APP} -ObjectId {object_id} -DisplayName"
        ))
        .assert_contains(&format!(
            "Add-MailboxPermission -Identity {INBOX} -User {object_id} -AccessRights FullAccess"
        ))
        .assert_contains(&format!(
            "Add-RecipientPermission -Identity {SENDER} -Trustee {object_id} -AccessRights SendAs"
        ))
        .assert_contains("Enterprise applications")
        // Only app-only mailboxes use it: Graph's mail permissions are more than they need.
        .assert_contains(
            "The app also holds Mail.ReadWrite, Mail.Send, which no mailbox using this \
             credential needs",
        )
        .assert_lacks("in Exchange Online, which no mailbox")
        .assert_lacks(SECRET);
    admin
        .get("/t/acme/external-apis")
        .await
        .assert_contains("Exchange Online: IMAP.AccessAsApp, SMTP.SendAsApp");

    // Without Exchange's IMAP permission the token no longer signs in, and the credential's
    // test names the mailbox that needs it.
    app.microsoft.add_app(FakeApp {
        exchange_roles: vec!["SMTP.SendAsApp".into()],
        service_principal_id: object_id,
        ..mail_app()
    });
    app.state.microsoft.forget_tokens(&id_of(&with_secret));
    app.state.microsoft.forget_tokens(&id_of(&with_certificate));
    admin
        .submit(&with_secret, &format!("{with_secret}/test"), &[])
        .await
        .assert_contains(&format!("it lacks IMAP.AccessAsApp ({INBOX})"));
    admin
        .submit(&mailboxes[0], &format!("{}/test", mailboxes[0]), &[])
        .await
        .assert_contains("alert error result")
        .assert_contains("Sign-in failed");

    // A credential a mailbox signs in with cannot be deleted.
    admin
        .submit(&with_secret, &format!("{with_secret}/delete"), &[])
        .await
        .assert_status(400)
        .assert_contains(&format!("{SENDER} ({SENDER})"));
}

async fn app_only_sign_in_is_refused_at_save_where_its_token_must_not_go(backend: Backend) {
    let (app, admin) = spawn(backend).await;
    app.register_azure_app(mail_app());
    let credential_id = id_of(&add_secret_credential(&admin).await);
    let segment = segment(&admin).await;
    let new = format!("{segment}/mailboxes/new");
    let create = format!("{segment}/mailboxes");

    // Another server than Exchange Online's: its token would reach whoever runs it.
    admin
        .submit(
            &new,
            &create,
            &app_mailbox(
                INBOX,
                "imap",
                "incoming",
                "imap.attacker.example",
                "993",
                "tls",
                &credential_id,
            ),
        )
        .await
        .assert_status(400)
        .assert_contains("id=\"host-error\">A Microsoft 365 app signs in only to Exchange Online")
        .assert_contains("value=\"imap.attacker.example\"");
    // No encryption: a bearer token would cross the network readable.
    admin
        .submit(
            &new,
            &create,
            &app_mailbox(
                INBOX,
                "imap",
                "incoming",
                "127.0.0.1",
                "143",
                "none",
                &credential_id,
            ),
        )
        .await
        .assert_status(400)
        .assert_contains("An OAuth token is a bearer credential: choose TLS or STARTTLS");
    // Another tenant's (or a made-up) credential.
    admin
        .submit(
            &new,
            &create,
            &app_mailbox(INBOX, "imap", "incoming", "127.0.0.1", "993", "tls", "not-a-credential-of-acme"),
        )
        .await
        .assert_status(400)
        .assert_contains("id=\"app_credential_id-error\">Choose one of your Graph credentials from External APIs.");
    let pool = sqlx::AnyPool::connect(&app.database_url()).await.unwrap();
    let saved: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM mailboxes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(saved, 0, "a refused mailbox was saved");
}

async fn exchange_onlines_refusals_are_explained_with_the_next_step(backend: Backend) {
    let (app, admin) = spawn(backend).await;
    app.register_azure_app(mail_app());
    let credential_id = id_of(&add_secret_credential(&admin).await);
    let segment = segment(&admin).await;
    let cases = [
        (
            "smtp-auth-off@contoso.test",
            Kind::Smtp,
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
            "SMTP AUTH (authenticated client submission) is turned off for the organization or for this mailbox. What to do: In Exchange Online PowerShell, turn it on for the mailbox: Set-CASMailbox -Identity smtp-auth-off@contoso.test -SmtpClientAuthenticationDisabled $false",
        ),
        (
            "no-send-as@contoso.test",
            Kind::Smtp,
            "535 5.7.3 Authentication unsuccessful",
            "would not sign it in as this mailbox: the app is not registered in Exchange as a service principal",
        ),
        (
            "no-full-access@contoso.test",
            Kind::Imap { sasl_ir: true },
            "AUTHENTICATE failed.",
            "Add-MailboxPermission -Identity no-full-access@contoso.test -AccessRights FullAccess (IMAP, POP3)",
        ),
        (
            "busy@contoso.test",
            Kind::Smtp,
            "421 4.7.500 Server busy. Please try again later from [127.0.0.1]",
            "Exchange Online is throttling this mailbox or app",
        ),
    ];
    for (email, kind, refusal, explanation) in cases {
        let responder = Responder::refusing_over_tls(kind, refusal).await;
        let port = responder.port.to_string();
        let (protocol, direction) = match kind {
            Kind::Smtp => ("smtp", "outgoing"),
            _ => ("imap", "incoming"),
        };
        let form = app_mailbox(
            email,
            protocol,
            direction,
            "127.0.0.1",
            &port,
            "tls",
            &credential_id,
        );
        let mailbox = admin
            .submit(
                &format!("{segment}/mailboxes/new"),
                &format!("{segment}/mailboxes"),
                &form,
            )
            .await
            .location
            .unwrap_or_else(|| panic!("{email} not saved"));

        let page = admin
            .submit(&mailbox, &format!("{mailbox}/test"), &[])
            .await;

        page.assert_status(200)
            .assert_contains("alert error result")
            .assert_contains(explanation);
        // The list keeps the explanation with the result, where admins look.
        admin.get(&segment).await.assert_contains(explanation);
    }

    // A password Microsoft 365 (here aiosmtpd, in its words: 535 5.7.8) refuses.
    let servers = mail_servers();
    let smtps = servers.smtps.to_string();
    let mailbox = admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &[
                ("name", "Password SMTP"),
                ("email", USER),
                ("protocol", "smtp"),
                ("direction", "outgoing"),
                ("host", "127.0.0.1"),
                ("port", &smtps),
                ("security", "tls"),
                ("username", USER),
                ("authentication", "password"),
                ("password", "not the password"),
                ("enabled", "on"),
            ],
        )
        .await
        .location
        .unwrap();
    admin
        .submit(&mailbox, &format!("{mailbox}/test"), &[])
        .await
        .assert_contains("535 5.7.8")
        .assert_contains("Microsoft 365 refused the user name and password. What to do: Check the Username and password.");
}
