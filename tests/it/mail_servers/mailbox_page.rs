//! A mailbox's "Test connection" button, through Portico's pages, against the real servers.

use super::servers::{PASSWORD, USER, mail_servers};
use crate::on_both_backends;
use crate::support::{Backend, TestDatabase, spawn_app_with};

on_both_backends!(
    imap_and_smtp_mailboxes_test_their_real_servers,
    imap_mailboxes_sign_in_with_an_oauth_connection_token,
);

async fn imap_and_smtp_mailboxes_test_their_real_servers(backend: Backend) {
    let servers = mail_servers();
    let database = TestDatabase::create(backend).await;
    let app = spawn_app_with(database, |config| {
        config.mail_ca_file = Some(servers.ca_file.clone())
    })
    .await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let segment = admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap();

    let imaps = servers.imaps.to_string();
    let smtp = servers.smtp_starttls.to_string();
    let cases = [
        (
            "IMAP",
            "imap",
            "incoming",
            imaps.as_str(),
            "tls",
            PASSWORD,
            true,
            "Connected and signed in",
        ),
        (
            "IMAP wrong",
            "imap",
            "incoming",
            imaps.as_str(),
            "tls",
            "not the password",
            false,
            "Sign-in failed",
        ),
        (
            "SMTP",
            "smtp",
            "outgoing",
            smtp.as_str(),
            "starttls",
            PASSWORD,
            true,
            "Connected and signed in",
        ),
    ];
    for (name, protocol, direction, port, security, password, ok, expected) in cases {
        let mailbox = admin
            .submit(
                &format!("{segment}/mailboxes/new"),
                &format!("{segment}/mailboxes"),
                &[
                    ("name", name),
                    ("email", USER),
                    ("protocol", protocol),
                    ("direction", direction),
                    ("host", "127.0.0.1"),
                    ("port", port),
                    ("security", security),
                    ("username", USER),
                    ("authentication", "password"),
                    ("password", password),
                    ("enabled", "on"),
                ],
            )
            .await
            .location
            .unwrap_or_else(|| panic!("{name} not saved"));
        let page = admin
            .submit(&mailbox, &format!("{mailbox}/test"), &[])
            .await;
        page.assert_status(200)
            .assert_contains(expected)
            .assert_lacks(PASSWORD);
        let class = if ok {
            "alert success result"
        } else {
            "alert error result"
        };
        page.assert_contains(class);
    }
    admin
        .get(&segment)
        .await
        .assert_contains("Passed")
        .assert_contains("Failed");
}

async fn imap_mailboxes_sign_in_with_an_oauth_connection_token(backend: Backend) {
    use crate::oauth_connections::{authorize, connection, follow};

    let servers = mail_servers();
    let database = TestDatabase::create(backend).await;
    let app = spawn_app_with(database, |config| {
        config.mail_ca_file = Some(servers.ca_file.clone())
    })
    .await;
    let (admin, connection_page) = connection(&app).await;
    let connection_id = connection_page.rsplit('/').next().unwrap().to_owned();
    let segment = admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "")],
        )
        .await
        .location
        .unwrap();
    let imaps = servers.imaps.to_string();
    let server_fields = |authentication: &str, extra: (&'static str, String)| {
        vec![
            ("name", "Support".to_owned()),
            ("email", USER.to_owned()),
            ("protocol", "imap".to_owned()),
            ("direction", "incoming".to_owned()),
            ("host", "127.0.0.1".to_owned()),
            ("port", imaps.clone()),
            ("security", "tls".to_owned()),
            ("username", USER.to_owned()),
            ("authentication", authentication.to_owned()),
            extra,
            ("enabled", "on".to_owned()),
        ]
    };
    let as_form =
        |fields: &[(&'static str, String)]| -> Vec<(&'static str, String)> { fields.to_vec() };
    let with_password = as_form(&server_fields(
        "password",
        ("password", PASSWORD.to_owned()),
    ));
    let form: Vec<(&str, &str)> = with_password
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .collect();
    let mailbox = admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &form,
        )
        .await
        .location
        .unwrap();

    // Another tenant's (or a made-up) connection id is refused.
    let foreign = server_fields(
        "oauth",
        (
            "oauth_connection_id",
            "not-a-connection-of-this-tenant".to_owned(),
        ),
    );
    let form: Vec<(&str, &str)> = foreign.iter().map(|(k, v)| (*k, v.as_str())).collect();
    admin
        .submit(&mailbox, &mailbox, &form)
        .await
        .assert_status(400)
        .assert_contains("Choose one of your OAuth connections.");

    // A connection for another protocol does not fit: refused beside the field, naming the
    // purposes that would, and the mailbox keeps its password.
    let smtp_connection = admin
        .add_oauth_connection(
            "acme",
            &[
                ("name", "Outgoing SMTP"),
                (
                    "client_id",
                    &crate::oauth_connections::OAUTH_APP.to_string(),
                ),
                ("directory", "contoso.onmicrosoft.com"),
                ("purpose", "smtp"),
                ("client_secret", crate::oauth_connections::SECRET),
            ],
        )
        .await;
    let misfit = server_fields(
        "oauth",
        (
            "oauth_connection_id",
            smtp_connection.rsplit('/').next().unwrap().to_owned(),
        ),
    );
    let form: Vec<(&str, &str)> = misfit.iter().map(|(k, v)| (*k, v.as_str())).collect();
    admin
        .submit(&mailbox, &mailbox, &form)
        .await
        .assert_status(400)
        .assert_contains("id=\"oauth_connection_id-error\">This connection&#39;s token is for SMTP (send mail): IMAP mailboxes cannot sign in with it. Choose a connection for IMAP (read mail) or Custom scope (Advanced).");
    admin
        .get(&mailbox)
        .await
        .assert_contains("A password is stored; leave empty to keep it.");

    // Switching to OAuth drops the stored password; the connection lists the mailbox.
    let with_oauth = server_fields("oauth", ("oauth_connection_id", connection_id.clone()));
    let form: Vec<(&str, &str)> = with_oauth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    admin
        .submit(&mailbox, &mailbox, &form)
        .await
        .assert_redirect(&format!("{mailbox}?done=saved"));
    let pool = sqlx::AnyPool::connect(&app.database_url()).await.unwrap();
    let password: Option<String> = sqlx::query_scalar("SELECT password_sealed FROM mailboxes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(password.is_none(), "the password stayed behind");
    admin
        .get("/t/acme/oauth-connections")
        .await
        .assert_contains(USER);

    // The mailbox page authenticates its connection as the mailbox itself.
    let page = admin.get(&mailbox).await;
    page.assert_contains(&format!("Authenticate as {USER}"));
    let started = admin
        .post_raw(
            &format!("/t/acme/oauth-connections/{connection_id}/authenticate"),
            &[("csrf_token", &page.csrf_token()), ("login_hint", USER)],
        )
        .await;
    assert!(
        started
            .location
            .unwrap()
            .contains("login_hint=agent%40example.test")
    );

    // Not authenticated yet: the test says so.
    admin
        .submit(&mailbox, &format!("{mailbox}/test"), &[])
        .await
        .assert_contains("is not authenticated yet");

    // Authenticated: a fresh token reaches the server, which here offers no XOAUTH2.
    let callback = authorize(&admin, &connection_page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as");
    admin
        .submit(&mailbox, &format!("{mailbox}/test"), &[])
        .await
        .assert_contains("does not offer OAuth 2.0 sign-in (XOAUTH2)");

    // The connection cannot be deleted while the mailbox signs in with it.
    admin
        .submit(&connection_page, &format!("{connection_page}/delete"), &[])
        .await
        .assert_status(400)
        .assert_contains(&format!(
            "These mailboxes sign in with this connection: {USER}"
        ));
}
