//! A mailbox's "Test connection" button, through Portico's pages, against the real servers.

use super::servers::{PASSWORD, USER, mail_servers};
use crate::on_both_backends;
use crate::support::{Backend, TestDatabase, spawn_app_with};

on_both_backends!(imap_and_smtp_mailboxes_test_their_real_servers);

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
