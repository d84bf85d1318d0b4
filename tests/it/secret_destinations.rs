//! A stored secret goes only to the destination it was entered for: a mailbox's password to
//! its server, an OAuth connection's client secret to its app and URLs, a Graph
//! credential's secret to its app; and tokens are stored only for the settings that were
//! consented to.

use std::sync::atomic::Ordering;

use portico::services;
use secrecy::ExposeSecret as _;

use crate::egress::{loopback_service, segment, server_mailbox};
use crate::external_apis;
use crate::oauth_connections::{OAUTH_APP, authorize, connection, follow, status_of};
use crate::on_both_backends;
use crate::support::fake_microsoft::{Endpoint, Fault};
use crate::support::{Backend, default_secret_expiry, eventually, spawn_app, with_secret_expiry};

on_both_backends!(
    a_mailbox_moved_to_another_server_never_sends_it_the_old_password,
    an_oauth_connection_with_other_urls_needs_its_client_secret_again,
    a_save_during_the_code_exchange_stores_no_tokens,
    a_graph_credential_secret_stays_with_its_app,
);

async fn a_mailbox_moved_to_another_server_never_sends_it_the_old_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let (old_port, _) = loopback_service().await;
    let (new_port, new_server) = loopback_service().await;
    let segment = segment(&admin).await;
    let old_port = old_port.to_string();
    let new_port = new_port.to_string();
    let mailbox = admin
        .submit(
            &format!("{segment}/mailboxes/new"),
            &format!("{segment}/mailboxes"),
            &server_mailbox(
                "pop3",
                "127.0.0.1",
                &old_port,
                "support",
                "Old-Server-Password-1",
            ),
        )
        .await
        .location
        .unwrap();

    // Another port, server or username with the password left empty: refused, and said why.
    for (host, port, username, changed) in [
        (
            "127.0.0.1",
            new_port.as_str(),
            "support",
            "You changed the Port",
        ),
        (
            "localhost",
            old_port.as_str(),
            "support",
            "You changed the Server",
        ),
        (
            "127.0.0.1",
            old_port.as_str(),
            "someone-else",
            "You changed the Username",
        ),
    ] {
        admin
            .submit(
                &mailbox,
                &mailbox,
                &server_mailbox("pop3", host, port, username, ""),
            )
            .await
            .assert_status(400)
            .assert_contains(changed)
            .assert_contains("never sent anywhere else")
            .assert_contains("Enter the mailbox");
    }
    // The refused change left the mailbox where it was: its test goes to the old server.
    admin
        .submit(&mailbox, &format!("{mailbox}/test"), &[])
        .await
        .assert_status(200);
    assert_eq!(new_server.load(Ordering::SeqCst), 0);

    // Typed again, the move is saved; unchanged settings keep the stored password.
    admin
        .submit(
            &mailbox,
            &mailbox,
            &server_mailbox(
                "pop3",
                "127.0.0.1",
                &new_port,
                "support",
                "New-Server-Password-2",
            ),
        )
        .await
        .assert_redirect(&format!("{mailbox}?done=saved"));
    admin
        .submit(
            &mailbox,
            &mailbox,
            &server_mailbox("pop3", "127.0.0.1", &new_port, "support", ""),
        )
        .await
        .assert_redirect(&format!("{mailbox}?done=saved"));
}

async fn an_oauth_connection_with_other_urls_needs_its_client_secret_again(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;
    let client_id = OAUTH_APP.to_string();
    let settings = |token_url: &'static str, secret: &'static str| {
        vec![
            ("name", "Support IMAP"),
            ("client_id", client_id.as_str()),
            ("directory", "contoso.onmicrosoft.com"),
            ("cloud", "global"),
            ("purpose", "imap"),
            ("authorization_url", "https://id.example.com/authorize"),
            ("token_url", token_url),
            ("client_secret", secret),
        ]
    };

    admin
        .submit(&page, &page, &settings("https://id.example.com/token", ""))
        .await
        .assert_status(400)
        .assert_contains("You changed the Authorization URL, Token URL")
        .assert_contains("Paste the client secret again");
    let stored = status_of(&app).await;
    assert_eq!(stored.token_url, None);

    let expires_on = default_secret_expiry();
    let with_secret = settings("https://id.example.com/token", "Other~Provider.Secret-9");
    admin
        .submit(&page, &page, &with_secret_expiry(&with_secret, &expires_on))
        .await
        .assert_redirect(&page);
    let stored = status_of(&app).await;
    assert_eq!(
        stored.token_url.as_deref(),
        Some("https://id.example.com/token")
    );
    let secret = services::oauth_connections::client_secret(&app.state, &stored)
        .unwrap()
        .unwrap();
    assert_eq!(secret.expose_secret(), "Other~Provider.Secret-9");
    let tenant = app.tenant("acme").await;
    assert!(
        app.audit_actions(&tenant)
            .await
            .iter()
            .any(|(action, _, detail)| action == "oauth_connection.changed"
                && detail.contains("client secret replaced")),
        "{:?}",
        app.audit_actions(&tenant).await
    );
}

/// The connection is saved while Microsoft redeems the code: the consent was for the old
/// settings, so its tokens are not stored (compare-and-set in the storing statement).
async fn a_save_during_the_code_exchange_stores_no_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let (admin, page) = connection(&app).await;
    let client_id = OAUTH_APP.to_string();
    let callback = authorize(&admin, &page).await;
    app.microsoft.set_fault(Endpoint::Token, Some(Fault::Hang));

    let save_meanwhile = async {
        let within = std::time::Duration::from_secs(30);
        eventually(within, "the code exchange reaching Microsoft", async || {
            app.microsoft.held_requests() > 0
        })
        .await;
        admin
            .submit(
                &page,
                &page,
                &[
                    ("name", "Support IMAP"),
                    ("client_id", client_id.as_str()),
                    ("directory", "contoso.onmicrosoft.com"),
                    ("cloud", "global"),
                    ("purpose", "smtp"),
                ],
            )
            .await
            .assert_redirect(&page);
        app.microsoft.set_fault(Endpoint::Token, None);
    };
    let (shown, ()) = tokio::join!(follow(&admin, &callback), save_meanwhile);

    shown.assert_contains("settings were changed while Microsoft answered");
    let stored = status_of(&app).await;
    assert!(stored.refresh_token_sealed.is_none());
    assert!(stored.access_token_sealed.is_none());
    assert_eq!(stored.authenticated_as, None);
}

async fn a_graph_credential_secret_stays_with_its_app(backend: Backend) {
    let app = spawn_app(backend).await;
    app.register_azure_app(external_apis::mail_app(&["Mail.Read"]));
    let (_, admin) = app.tenant_with_admin("acme").await;
    let credential =
        external_apis::add(&admin, external_apis::SECRET, &external_apis::in_days(90)).await;
    let other_app = "77777777-7777-4777-8777-777777777777";

    admin
        .submit(
            &credential,
            &credential,
            &[
                ("name", "Support mail"),
                ("client_id", other_app),
                ("directory", "contoso.onmicrosoft.com"),
                ("cloud", "global"),
            ],
        )
        .await
        .assert_status(400)
        .assert_contains("is never sent for another")
        .assert_contains(other_app);
    admin
        .get(&credential)
        .await
        .assert_contains(&external_apis::MAIL_APP.to_string())
        .assert_lacks(other_app);

    // The name alone may change.
    admin
        .submit(
            &credential,
            &credential,
            &[
                ("name", "Support mailboxes"),
                ("client_id", &external_apis::MAIL_APP.to_string()),
                ("directory", "contoso.onmicrosoft.com"),
                ("cloud", "global"),
            ],
        )
        .await
        .assert_status(303)
        .assert_redirect(&format!("{credential}?done=saved"));
}
