//! `portico secrets rotate-key`, run as an operator runs it: every sealed secret ends up
//! under the new key, opens without the old one, and an interrupted or incomplete run can
//! simply be run again.

use std::process::Output;

use portico::crypto::{Keyring, SealError, SecretKey};
use portico::store::certificates;
use portico::store::microsoft_sign_in::SignInClientSecret;
use portico::store::sealed::Sealed;
use portico::store::{Page, graph_credentials, mailboxes, microsoft_sign_in, oauth_connections};
use portico::store::{sealed_columns, segments};
use secrecy::{ExposeSecret, SecretString};
use uuid::{Uuid, uuid};

use crate::external_apis::in_days;
use crate::oauth_connections::{authorize, connection, follow};
use crate::on_both_backends;
use crate::support::{Backend, Browser, TestApp, TestDatabase, spawn_app_with};

const CONTOSO: Uuid = uuid!("abababab-abab-4bab-8bab-abababababab");
const SIGN_IN_APP: Uuid = uuid!("cdcdcdcd-cdcd-4dcd-8dcd-cdcdcdcdcdcd");
const GRAPH_APP: Uuid = uuid!("efefefef-efef-4fef-8fef-efefefefefef");

on_both_backends!(
    rotation_reseals_every_secret_so_the_old_key_can_go,
    a_rotation_missing_an_old_key_stops_and_resumes_where_it_stopped,
);

/// A server sealing with `key`.
async fn app_with_key(backend: Backend, key: &SecretKey) -> TestApp {
    let database = TestDatabase::create(backend).await;
    let key = key.clone();
    spawn_app_with(database, move |config| config.secret_key = key.into()).await
}

/// `portico secrets rotate-key` against the app's database, with these keys in the
/// environment, as an operator runs it.
async fn rotate_key(app: &TestApp, current: &SecretKey, old: &[&SecretKey]) -> (Output, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"));
    command
        .args(["secrets", "rotate-key"])
        .env("DATABASE_URL", app.database_url())
        .env("PORTICO_DATA_DIR", data_dir.path())
        .env("PORTICO_SECRET_KEY", current.to_base64().as_str())
        .env_remove("PORTICO_OLD_SECRET_KEYS");
    if !old.is_empty() {
        let old: Vec<String> = old.iter().map(|key| key.to_base64().to_string()).collect();
        command.env("PORTICO_OLD_SECRET_KEYS", old.join(","));
    }
    let output = command.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

/// Every secret stored for acme as (where, sealed value, what it opens to with `keys`),
/// read table by table.
async fn stored_secrets(app: &TestApp, keys: &Keyring) -> Vec<(String, String, String)> {
    let (db, tenant) = (&app.state.db, app.tenant("acme").await);
    let opened = |what: &str, sealed: &str, secret: Result<SecretString, SealError>| {
        let secret = secret.unwrap_or_else(|e| panic!("{what}: {e}"));
        let secret = secret.expose_secret().to_owned();
        (what.to_owned(), sealed.to_owned(), secret)
    };
    let tenant_id = &tenant.id;
    let mut found = Vec::new();
    if let Some(settings) = microsoft_sign_in::get(db, tenant_id).await.unwrap() {
        let sealed = settings.client_secret_sealed.unwrap();
        found.push(opened(
            "sign-in secret",
            &sealed,
            sealed.open(keys, tenant_id, ""),
        ));
    }
    for credential in graph_credentials::list(db, tenant_id).await.unwrap() {
        match credential.authentication {
            graph_credentials::Authentication::ClientSecret { sealed, .. } => {
                let secret = sealed.open(keys, tenant_id, &credential.id);
                found.push(opened("graph secret", &sealed, secret));
            }
            graph_credentials::Authentication::Certificate { .. } => {
                let owner = certificates::Owner::GraphCredential(&credential.id);
                let certificate =
                    certificates::get(db, tenant_id, owner, certificates::Slot::Current)
                        .await
                        .unwrap()
                        .unwrap();
                let sealed = &certificate.private_key_sealed;
                let key = sealed.open(keys, tenant_id, &certificate.id);
                found.push(opened("graph private key", sealed, key));
            }
        }
    }
    for segment in segments::list(db, tenant_id).await.unwrap() {
        let page = Page::new(None, 100);
        let (_, listed) = mailboxes::segment_page(db, tenant_id, &segment.id, None, page)
            .await
            .unwrap()
            .unwrap();
        for mailbox in listed.rows {
            let sealed = mailbox.server.unwrap().password_sealed.unwrap();
            let password = sealed.open(keys, tenant_id, &mailbox.id);
            found.push(opened("mailbox password", &sealed, password));
        }
    }
    for connection in oauth_connections::list(db, tenant_id).await.unwrap() {
        let id = &connection.id;
        let secret = connection.client_secret_sealed.unwrap();
        let refresh = connection.refresh_token_sealed.unwrap();
        let access = connection.access_token_sealed.unwrap();
        found.extend([
            opened("client-secret", &secret, secret.open(keys, tenant_id, id)),
            opened("refresh-token", &refresh, refresh.open(keys, tenant_id, id)),
            opened("access-token", &access, access.open(keys, tenant_id, id)),
        ]);
    }
    found
}

/// A segment with IMAP mailboxes, each with its own password.
async fn mailboxes_with_passwords(admin: &Browser, passwords: &[&str]) {
    let made = admin
        .submit(
            "/t/acme/segments",
            "/t/acme/segments",
            &[("name", "Support"), ("description", "")],
        )
        .await;
    let segment = made.location.clone().unwrap();
    for (n, password) in passwords.iter().enumerate() {
        let name = format!("Support {n}");
        admin
            .submit(
                &format!("{segment}/mailboxes/new"),
                &format!("{segment}/mailboxes"),
                &[
                    ("name", &name),
                    ("email", "support@contoso.com"),
                    ("protocol", "imap"),
                    ("direction", "incoming"),
                    ("host", "imap.contoso.com"),
                    ("security", "tls"),
                    ("username", "support@contoso.com"),
                    ("authentication", "password"),
                    ("password", password),
                    ("enabled", "on"),
                ],
            )
            .await
            .assert_status(303);
    }
}

async fn rotation_reseals_every_secret_so_the_old_key_can_go(backend: Backend) {
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let app = app_with_key(backend, &old).await;

    // One secret of every kind, sealed with the old key: an authenticated OAuth connection
    // (client secret, refresh and access token), Sign in with Microsoft, a Graph
    // credential with a secret and one with a certificate, and a mailbox password.
    let (admin, page) = connection(&app).await;
    let callback = authorize(&admin, &page).await;
    follow(&admin, &callback)
        .await
        .assert_contains("Authenticated as support@contoso.com.");
    let settings = "/t/acme/settings/microsoft-sign-in";
    admin
        .submit(
            settings,
            settings,
            &[
                ("client_id", &SIGN_IN_APP.to_string()),
                ("cloud", "global"),
                ("client_secret", "Sign-In~Rotation-Canary"),
                ("secret_expires_on", &in_days(300)),
            ],
        )
        .await
        .assert_status(303);
    app.microsoft
        .add_directory(CONTOSO, &["rotation.onmicrosoft.com"]);
    admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Mail app"),
                ("client_id", &GRAPH_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("client_secret", "Graph~Rotation-Canary"),
                ("secret_expires_on", &in_days(300)),
            ],
        )
        .await;
    admin
        .add_graph_credential(
            "acme",
            &[
                ("name", "Mail app with a certificate"),
                ("client_id", &GRAPH_APP.to_string()),
                ("directory", &CONTOSO.to_string()),
                ("auth_method", "certificate"),
                ("valid_months", "12"),
            ],
        )
        .await;
    mailboxes_with_passwords(&admin, &["imap-rotation-canary"]).await;
    // Another tenant's Sign in with Microsoft signs with a certificate.
    let (globex, globex_admin) = app.tenant_with_admin("globex").await;
    let globex_settings = "/t/globex/settings/microsoft-sign-in";
    globex_admin
        .submit(
            globex_settings,
            globex_settings,
            &[
                ("client_id", &SIGN_IN_APP.to_string()),
                ("cloud", "global"),
                ("auth_method", "certificate"),
                ("valid_months", "12"),
            ],
        )
        .await
        .assert_status(303);
    let sign_in_certificate = || async {
        let (owner, current) = (
            certificates::Owner::MicrosoftSignIn,
            certificates::Slot::Current,
        );
        certificates::get(&app.state.db, &globex.id, owner, current)
            .await
            .unwrap()
            .unwrap()
    };
    let sign_in_key_before = sign_in_certificate().await;
    let before = stored_secrets(&app, &Keyring::from(old.clone())).await;
    let opened_before_rotation = admin.get(settings).await;
    assert_eq!(before.len(), 7, "{before:?}");
    assert!(
        before
            .iter()
            .any(|(what, _, key)| what == "graph private key"
                && key.starts_with("-----BEGIN PRIVATE KEY-----"))
    );
    let old_prefix = Keyring::from(old.clone()).current_prefix();
    assert!(
        before
            .iter()
            .all(|(_, sealed, _)| sealed.starts_with(&old_prefix))
    );

    let (output, stdout) = rotate_key(&app, &new, &[&old]).await;
    assert!(output.status.success(), "{output:?}");
    let new_id = new.key_id();
    assert!(
        stdout.contains(&format!(
            "Sealing every secret under key {new_id}; old keys given: {}.",
            old.key_id()
        )),
        "{stdout}"
    );
    for column in &sealed_columns::SEALED_COLUMNS {
        let line = format!(
            "{}.{}: 1 re-encrypted, 1 under key {new_id}\n",
            column.table, column.column
        );
        assert!(stdout.contains(&line), "{line:?} missing from:\n{stdout}");
    }
    assert!(
        stdout.contains("No secret under an old key remains"),
        "{stdout}"
    );

    // Everything opens with the new key alone, to the same secrets; the old key is useless.
    let after = stored_secrets(&app, &Keyring::from(new.clone())).await;
    let new_prefix = Keyring::from(new.clone()).current_prefix();
    for ((what, sealed_before, secret_before), (_, sealed_after, secret_after)) in
        before.iter().zip(&after)
    {
        assert!(
            sealed_after.starts_with(&new_prefix),
            "{what}: {sealed_after}"
        );
        assert_ne!(sealed_before, sealed_after, "{what}");
        assert_eq!(secret_before, secret_after, "{what}");
    }
    let sign_in_key_after = sign_in_certificate().await;
    assert_ne!(
        sign_in_key_before.private_key_sealed,
        sign_in_key_after.private_key_sealed
    );
    let opened = Keyring::from(new.clone())
        .open(
            &sign_in_key_after.private_key_sealed,
            &certificates::private_key_context(
                &globex.id,
                certificates::OwnerKind::MicrosoftSignIn,
                &sign_in_key_after.id,
            ),
        )
        .unwrap();
    assert!(
        opened
            .expose_secret()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let (_, sign_in_sealed, _) = &after[0];
    let context = Sealed::<SignInClientSecret>::context(&app.tenant("acme").await.id, "");
    assert!(
        Keyring::from(old.clone())
            .open(sign_in_sealed, &context)
            .is_err()
    );

    // Running it again finds nothing left to do.
    let (output, stdout) = rotate_key(&app, &new, &[]).await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains(&format!(
            "mailboxes.password_sealed: 0 re-encrypted, 1 under key {new_id}\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("No secret under an old key remains"),
        "{stdout}"
    );
    // A form opened before the rotation still saves: rotating changed nothing admins see.
    admin
        .post_raw(
            settings,
            &[
                ("csrf_token", &opened_before_rotation.csrf_token()),
                ("version", &opened_before_rotation.version().unwrap()),
                ("client_id", &SIGN_IN_APP.to_string()),
                ("cloud", "global"),
            ],
        )
        .await
        .assert_redirect(&format!("{settings}?saved=1"));
    let (what, _, secret) = &stored_secrets(&app, &Keyring::from(new.clone())).await[0];
    assert_eq!(
        (what.as_str(), secret.as_str()),
        ("sign-in secret", "Sign-In~Rotation-Canary")
    );
}

async fn a_rotation_missing_an_old_key_stops_and_resumes_where_it_stopped(backend: Backend) {
    let (old, new) = (SecretKey::generate(), SecretKey::generate());
    let app = app_with_key(backend, &old).await;
    let (_, admin) = app.tenant_with_admin("acme").await;
    let passwords = [
        "first-canary-password",
        "second-canary-password",
        "third-canary",
    ];
    mailboxes_with_passwords(&admin, &passwords).await;

    // A run that stopped after re-sealing one password, as if interrupted.
    let both = Keyring::new(new.clone(), vec![old.clone()]).unwrap();
    let (_, first_sealed, first_password) = stored_secrets(&app, &both)
        .await
        .into_iter()
        .next()
        .unwrap();
    let tenant = app.tenant("acme").await;
    let pool = sqlx::AnyPool::connect(&app.database_url()).await.unwrap();
    let first_id: String =
        sqlx::query_scalar("SELECT id FROM mailboxes WHERE password_sealed = $1")
            .bind(&first_sealed)
            .fetch_one(&pool)
            .await
            .unwrap();
    let resealed = mailboxes::SealedPassword::seal(
        &both,
        &tenant.id,
        &first_id,
        &SecretString::from(first_password),
    )
    .as_str()
    .to_owned();
    sqlx::query("UPDATE mailboxes SET password_sealed = $1 WHERE id = $2")
        .bind(&resealed)
        .bind(&first_id)
        .execute(&pool)
        .await
        .unwrap();

    // Without the old key nothing more can be opened: it says so, fails, changes nothing.
    let (output, stdout) = rotate_key(&app, &new, &[]).await;
    assert!(!output.status.success());
    let new_id = new.key_id();
    assert!(
        stdout.contains(&format!(
            "mailboxes.password_sealed: 0 re-encrypted, 1 under key {new_id}, 2 still under \
             an old key\n"
        )),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "2 secrets are still under an old key (the value was sealed with key {}, which \
             this deployment does not have)",
            old.key_id()
        )),
        "{stderr}"
    );
    assert!(!stdout.contains("No secret under an old key remains"));

    // With it, the run finishes what is left and skips the value already done.
    let (output, stdout) = rotate_key(&app, &new, &[&old]).await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains(&format!(
            "mailboxes.password_sealed: 2 re-encrypted, 3 under key {new_id}\n"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("No secret under an old key remains"),
        "{stdout}"
    );
    let after = stored_secrets(&app, &Keyring::from(new.clone())).await;
    let mut opened: Vec<&str> = after.iter().map(|(_, _, secret)| secret.as_str()).collect();
    opened.sort_unstable();
    let mut expected = passwords.to_vec();
    expected.sort_unstable();
    assert_eq!(opened, expected);
    assert!(after.iter().any(|(_, sealed, _)| *sealed == resealed));
}
