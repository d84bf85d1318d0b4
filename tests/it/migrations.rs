//! Migrations run on databases that hold data. Migration 23 (tenant keys, one certificates
//! table) starts from a database at migration 22 with two tenants' credentials,
//! certificates, sign-in settings and mailboxes, made as the Portico of that time made them.

use futures_util::future::BoxFuture;
use portico::crypto::certificates::{self as generated, GeneratedCertificate};
use portico::crypto::{Keyring, SecretKey};
use portico::services::graph_credentials::{self as graph_services, OpenedProof};
use portico::store::certificates::{self, Owner, Slot};
use portico::store::tenants::{self, Tenant};
use portico::store::{SaveError, expiry_alerts, graph_credentials, mailboxes, segments};
use secrecy::{ExposeSecret, SecretString};
use sqlx::AnyPool;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, Migrator};
use time::{Duration, OffsetDateTime};
use uuid::{Uuid, uuid};

use crate::on_both_backends;
use crate::support::fake_microsoft::{FakeApp, FakeUser};
use crate::support::{Backend, TestApp, TestDatabase, spawn_app_with};

const CONTOSO: Uuid = uuid!("23232323-1111-4111-8111-111111111111");
const MAIL_APP: Uuid = uuid!("23232323-2222-4222-8222-222222222222");
const SIGN_IN_APP: Uuid = uuid!("23232323-3333-4333-8333-333333333333");
const TENANT_KEYS: i64 = 20261208000023;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

on_both_backends!(moved_certificates_open_and_no_row_points_into_another_tenant);

/// Some of Portico's migrations, to build a database as an earlier version left it.
#[derive(Debug)]
struct EarlierMigrations(Vec<Migration>);

impl MigrationSource<'static> for EarlierMigrations {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(std::future::ready(Ok(self.0)))
    }
}

/// Applies the migrations of `backend` before `version`, as the Portico of that time did.
async fn migrate_before(backend: Backend, version: i64, pool: &AnyPool) {
    let all = match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    };
    let earlier = all
        .iter()
        .filter(|m| m.version < version)
        .cloned()
        .collect();
    Migrator::new(EarlierMigrations(earlier))
        .await
        .unwrap()
        .run(pool)
        .await
        .unwrap();
}

/// Runs one statement with text binds.
async fn execute(pool: &AnyPool, sql: &str, binds: &[&str]) -> Result<(), sqlx::Error> {
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    query.execute(pool).await.map(drop)
}

fn assert_foreign_key_violation(result: Result<(), sqlx::Error>, what: &str) {
    let Err(error) = result else {
        panic!("{what} was stored");
    };
    assert!(
        error
            .as_database_error()
            .is_some_and(|e| e.is_foreign_key_violation()),
        "{what}: {error}"
    );
}

/// A certificate as migration 22's tables kept one, with its private key sealed to the
/// context of the time, spelled out here.
struct OldCertificate {
    id: &'static str,
    tenant: &'static str,
    generated: GeneratedCertificate,
}

impl OldCertificate {
    async fn new(id: &'static str, tenant: &'static str) -> Self {
        let generated = generated::generate_in_background(
            format!("Portico {id}"),
            OffsetDateTime::now_utc(),
            Duration::days(365),
        )
        .await
        .unwrap();
        Self {
            id,
            tenant,
            generated,
        }
    }

    fn private_key(&self) -> &str {
        self.generated.private_key.expose_secret()
    }

    fn pem(&self) -> &str {
        self.generated.certificate.pem()
    }

    fn thumbprint(&self) -> String {
        self.generated.certificate.thumbprint()
    }

    /// Stores it as migration 22 did: as a certificate of the Graph credential `credential`,
    /// or of the tenant's sign-in settings.
    async fn insert(&self, pool: &AnyPool, keys: &Keyring, credential: Option<&str>, slot: &str) {
        let columns = "id, tenant_id, slot, private_key_sealed, certificate_pem, thumbprint, \
                       not_before, not_after, created_at";
        let (kind, sql) = match credential {
            Some(_) => (
                "graph-credential",
                format!(
                    "INSERT INTO graph_credential_certificates ({columns}, credential_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)"
                ),
            ),
            None => (
                "microsoft-sign-in",
                format!(
                    "INSERT INTO microsoft_sign_in_certificates ({columns}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)"
                ),
            ),
        };
        let context = format!("{kind}/private-key/{}/{}", self.tenant, self.id);
        let certificate = &self.generated.certificate;
        let mut query = sqlx::query(&sql)
            .bind(self.id)
            .bind(self.tenant)
            .bind(slot)
            .bind(keys.seal(&SecretString::from(self.private_key()), &context))
            .bind(self.pem())
            .bind(self.thumbprint())
            .bind(certificate.not_before.unix_timestamp())
            .bind(certificate.not_after.unix_timestamp());
        if let Some(credential) = credential {
            query = query.bind(credential);
        }
        query.execute(pool).await.unwrap();
    }

    /// Checks that it moved unchanged, and that its private key opens through the app's
    /// own context for `owner`.
    async fn assert_moved(&self, app: &TestApp, tenant: &Tenant, owner: Owner<'_>, slot: Slot) {
        let stored = certificates::get(&app.state.db, &tenant.id, owner, slot)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} did not move", self.id));
        assert_eq!(stored.id, self.id);
        assert_eq!(stored.thumbprint, self.thumbprint());
        assert_eq!(stored.certificate_pem, self.pem());
        let context = certificates::private_key_context(&tenant.id, owner.kind(), &stored.id);
        let opened = app
            .state
            .config
            .secret_key
            .open(&stored.private_key_sealed, &context)
            .unwrap();
        assert_eq!(opened.expose_secret(), self.private_key(), "{}", self.id);
    }
}

/// The certificates made under migration 22: acme's Graph credential's current and next,
/// and each tenant's sign-in certificate.
struct OldCertificates {
    graph_current: OldCertificate,
    graph_next: OldCertificate,
    acme_sign_in: OldCertificate,
    globex_sign_in: OldCertificate,
}

impl OldCertificates {
    async fn new() -> Self {
        Self {
            graph_current: OldCertificate::new("c-graph-current", "t-acme").await,
            graph_next: OldCertificate::new("c-graph-next", "t-acme").await,
            acme_sign_in: OldCertificate::new("c-sign-in-acme", "t-acme").await,
            globex_sign_in: OldCertificate::new("c-sign-in-globex", "t-globex").await,
        }
    }
}

/// Two tenants as migration 22 left them: acme with a certificate Graph credential (a
/// current and a next certificate) used by a Graph mailbox, an OAuth connection used by an
/// SMTP mailbox that sends its expiry alerts, certificate sign-in settings and two users
/// (one linked to Microsoft, one invited to link); globex with a client-secret credential,
/// an OAuth connection, a segment and certificate sign-in settings of its own.
async fn seed(pool: &AnyPool, keys: &Keyring, old: &OldCertificates) {
    let contoso = CONTOSO.to_string();
    let (mail_app, sign_in_app) = (MAIL_APP.to_string(), SIGN_IN_APP.to_string());
    for (id, slug) in [("t-acme", "acme"), ("t-globex", "globex")] {
        execute(
            pool,
            "INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $2, 0)",
            &[id, slug],
        )
        .await
        .unwrap();
        execute(
            pool,
            "INSERT INTO segments (id, tenant_id, name, description, created_at, updated_at) \
             VALUES ($1, $2, 'Support', '', 0, 0)",
            &[&format!("s-{slug}"), id],
        )
        .await
        .unwrap();
        execute(
            pool,
            "INSERT INTO oauth_connections (id, tenant_id, name, client_id, directory, cloud, \
             purpose, scope, status, renewal_failures, created_at, updated_at) \
             VALUES ($1, $2, 'Sales', $3, 'organizations', 'global', 'smtp', 'SMTP.Send', \
             'not_authenticated', 0, 0, 0)",
            &[&format!("o-{slug}"), id, &mail_app],
        )
        .await
        .unwrap();
        execute(
            pool,
            "INSERT INTO microsoft_sign_in (tenant_id, client_id, directory, directory_id, cloud, \
             enabled, auto_create_agents, updated_at, auth_method) \
             VALUES ($1, $2, $3, $3, 'global', 1, 0, 0, 'certificate')",
            &[id, &sign_in_app, &contoso],
        )
        .await
        .unwrap();
    }
    for (id, email) in [("u-ana", "ana@contoso.com"), ("u-bob", "bob@contoso.com")] {
        execute(
            pool,
            "INSERT INTO users (id, tenant_id, email, display_name, role, status, created_at, \
             updated_at) VALUES ($1, 't-acme', $2, $2, 'agent', 'active', 0, 0)",
            &[id, email],
        )
        .await
        .unwrap();
    }
    execute(
        pool,
        "INSERT INTO microsoft_identities (id, tenant_id, user_id, tid, oid, username, \
         linked_at) VALUES ('i-bob', 't-acme', 'u-bob', $1, $2, 'bob@contoso.com', 0)",
        &[&contoso, &Uuid::new_v4().to_string()],
    )
    .await
    .unwrap();
    execute(
        pool,
        "INSERT INTO identity_link_invites (token_hash, tenant_id, user_id, expires_at) \
         VALUES ('invite-hash', 't-acme', 'u-bob', 4102444800)",
        &[],
    )
    .await
    .unwrap();
    execute(
        pool,
        "INSERT INTO graph_credentials (id, tenant_id, name, client_id, directory, directory_id, \
         cloud, auth_method, created_at, updated_at) \
         VALUES ('g-acme', 't-acme', 'Mail', $1, $2, $2, 'global', 'certificate', 0, 0)",
        &[&mail_app, &contoso],
    )
    .await
    .unwrap();
    let secret = keys.seal(
        &SecretString::from("Globex~Secret"),
        "graph-credential/client-secret/t-globex/g-globex",
    );
    execute(
        pool,
        "INSERT INTO graph_credentials (id, tenant_id, name, client_id, directory, directory_id, \
         cloud, auth_method, client_secret_sealed, secret_expires_on, secret_replaced_at, \
         created_at, updated_at) VALUES ('g-globex', 't-globex', 'Mail', $1, $2, $2, 'global', \
         'client_secret', $3, '2030-01-31', 0, 0, 0)",
        &[&mail_app, &contoso, &secret],
    )
    .await
    .unwrap();
    let acme_graph = Some("g-acme");
    old.graph_current
        .insert(pool, keys, acme_graph, "current")
        .await;
    old.graph_next.insert(pool, keys, acme_graph, "next").await;
    old.acme_sign_in.insert(pool, keys, None, "current").await;
    old.globex_sign_in.insert(pool, keys, None, "current").await;
    for statement in [
        "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, protocol, \
         graph_credential_id, enabled, created_at, updated_at) VALUES ('m-graph', 't-acme', \
         's-acme', 'Support', 'support@contoso.com', 'incoming', 'graph', 'g-acme', 1, 0, 0)",
        "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, protocol, \
         host, port, security, username, oauth_connection_id, enabled, created_at, \
         updated_at) VALUES ('m-smtp', 't-acme', 's-acme', 'Alerts', 'alerts@contoso.com', \
         'outgoing', 'smtp', 'smtp.office365.com', 587, 'starttls', 'alerts@contoso.com', \
         'o-acme', 1, 0, 0)",
        "INSERT INTO expiry_alert_settings (tenant_id, recipients, sender_mailbox_id, \
         updated_at) VALUES ('t-acme', 'it@contoso.com', 'm-smtp', 0)",
    ] {
        execute(pool, statement, &[]).await.unwrap();
    }
}

async fn moved_certificates_open_and_no_row_points_into_another_tenant(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let key = SecretKey::generate();
    let keys = Keyring::from(key.clone());
    let old = OldCertificates::new().await;
    {
        sqlx::any::install_default_drivers();
        let pool = AnyPool::connect(&database.url).await.unwrap();
        migrate_before(backend, TENANT_KEYS, &pool).await;
        seed(&pool, &keys, &old).await;
        pool.close().await;
    }

    // Starting Portico applies the rest.
    let app = spawn_app_with(database, move |config| config.secret_key = key.into()).await;
    let db = &app.state.db;
    let acme = tenants::find_by_slug(db, "acme").await.unwrap().unwrap();
    let globex = tenants::find_by_slug(db, "globex").await.unwrap().unwrap();

    // Same ids, same certificates, the same private keys under their old contexts.
    let graph = Owner::GraphCredential("g-acme");
    old.graph_current
        .assert_moved(&app, &acme, graph, Slot::Current)
        .await;
    old.graph_next
        .assert_moved(&app, &acme, graph, Slot::Next)
        .await;
    old.acme_sign_in
        .assert_moved(&app, &acme, Owner::MicrosoftSignIn, Slot::Current)
        .await;
    old.globex_sign_in
        .assert_moved(&app, &globex, Owner::MicrosoftSignIn, Slot::Current)
        .await;
    assert!(
        certificates::get(db, &globex.id, Owner::MicrosoftSignIn, Slot::Next)
            .await
            .unwrap()
            .is_none()
    );

    // And they still prove Portico to Microsoft: a Graph token, then a Microsoft sign-in.
    app.microsoft
        .add_directory(CONTOSO, &["contoso.onmicrosoft.com"]);
    app.microsoft.add_app(
        FakeApp::new(MAIL_APP, CONTOSO)
            .application_role("Mail.ReadWrite")
            .certificate(old.graph_current.pem()),
    );
    let credential = graph_credentials::get(db, &acme.id, "g-acme")
        .await
        .unwrap()
        .unwrap();
    let proof = graph_services::open(&app.state, &acme.id, &credential)
        .await
        .unwrap();
    assert!(matches!(proof, OpenedProof::Certificate { .. }));
    app.state
        .microsoft
        .app_token(&proof.credentials(&credential), app.state.clock.now())
        .await
        .unwrap();
    app.microsoft.add_app(
        FakeApp::new(SIGN_IN_APP, CONTOSO)
            .web_redirect_uri(&app.url("/auth/microsoft/callback"))
            .certificate(old.acme_sign_in.pem()),
    );
    app.microsoft
        .add_user(FakeUser::new(CONTOSO, "ana@contoso.com", "Ana").email("ana@contoso.com"));
    app.microsoft.sign_in_as("ana@contoso.com");
    app.browser()
        .microsoft_sign_in("acme")
        .await
        .assert_redirect("/t/acme/");
    assert!(
        app.microsoft
            .last_token_request_fields()
            .iter()
            .any(|field| field == "client_assertion")
    );
    // The rows that referenced others still do.
    let pool = AnyPool::connect(&app.database_url()).await.unwrap();
    assert_eq!(
        mailboxes::using_credential(db, &acme.id, "g-acme")
            .await
            .unwrap(),
        [("Support".to_owned(), "support@contoso.com".to_owned())]
    );
    assert_eq!(
        expiry_alerts::settings(db, &acme.id)
            .await
            .unwrap()
            .sender_mailbox_id
            .as_deref(),
        Some("m-smtp")
    );
    let identities: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM microsoft_identities WHERE user_id = 'u-bob'), \
         (SELECT COUNT(*) FROM identity_link_invites WHERE user_id = 'u-bob')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(identities, (1, 1));

    // The database itself refuses a row of acme that points at globex's.
    let mailbox = "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, \
                   protocol, graph_credential_id, host, oauth_connection_id, enabled, \
                   created_at, updated_at) VALUES ($1, 't-acme', $2, 'X', 'x@contoso.com', \
                   'both', $3, $4, $5, $6, 1, 0, 0)";
    for (what, segment, protocol, credential, host, connection) in [
        (
            "globex's segment",
            "s-globex",
            "graph",
            Some("g-acme"),
            None,
            None,
        ),
        (
            "globex's credential",
            "s-acme",
            "graph",
            Some("g-globex"),
            None,
            None,
        ),
        (
            "globex's connection",
            "s-acme",
            "imap",
            None,
            Some("imap.contoso.com"),
            Some("o-globex"),
        ),
    ] {
        let result = sqlx::query(mailbox)
            .bind("m-cross")
            .bind(segment)
            .bind(protocol)
            .bind(credential)
            .bind(host)
            .bind(connection)
            .execute(&pool)
            .await
            .map(drop);
        assert_foreign_key_violation(result, what);
    }
    // SQLite keeps this one by trigger (migration 25), PostgreSQL by a composite key; acme's
    // own app is taken, so only the other tenant's is what is refused.
    let app_mailbox = "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, \
                       direction, protocol, host, port, security, username, app_credential_id, \
                       enabled, created_at, updated_at) VALUES ($1, 't-acme', 's-acme', 'X', \
                       'x@contoso.com', 'incoming', 'imap', 'outlook.office365.com', 993, 'tls', \
                       'x@contoso.com', $2, 1, 0, 0)";
    execute(&pool, app_mailbox, &["m-app-own", "g-acme"])
        .await
        .unwrap();
    let refused = execute(&pool, app_mailbox, &["m-app", "g-globex"]).await;
    assert!(
        refused.is_err(),
        "a mailbox of acme signing in with globex's app was stored"
    );
    execute(&pool, "DELETE FROM mailboxes WHERE id = 'm-app-own'", &[])
        .await
        .unwrap();
    assert_foreign_key_violation(
        execute(
            &pool,
            "INSERT INTO expiry_alert_settings (tenant_id, recipients, sender_mailbox_id, \
             updated_at) VALUES ('t-globex', 'it@globex.test', 'm-smtp', 0)",
            &[],
        )
        .await,
        "globex's alerts sent through acme's mailbox",
    );
    assert_foreign_key_violation(
        execute(
            &pool,
            "INSERT INTO certificates (id, tenant_id, graph_credential_id, slot, \
             private_key_sealed, certificate_pem, thumbprint, not_before, not_after, created_at) \
             VALUES ('c-cross', 't-acme', 'g-globex', 'next', 'v1.x', 'pem', 'AB', 0, 1, 0)",
            &[],
        )
        .await,
        "a certificate of acme for globex's credential",
    );
    let refused = execute(
        &pool,
        "INSERT INTO certificates (id, tenant_id, microsoft_sign_in_tenant_id, slot, \
         private_key_sealed, certificate_pem, thumbprint, not_before, not_after, created_at) \
         VALUES ('c-cross', 't-acme', 't-globex', 'next', 'v1.x', 'pem', 'AB', 0, 1, 0)",
        &[],
    )
    .await;
    assert!(
        refused.is_err(),
        "a certificate of acme for globex's sign-in settings was stored"
    );
    assert_foreign_key_violation(
        execute(
            &pool,
            "INSERT INTO identity_link_invites (token_hash, tenant_id, user_id, expires_at) \
             VALUES ('cross-hash', 't-globex', 'u-ana', 4102444800)",
            &[],
        )
        .await,
        "globex's link invite for acme's user",
    );

    // Migration 24 counted the segment's mailboxes, and deleting them counts down.
    let mailbox_count = async || {
        let segment = segments::get(db, &acme.id, "s-acme").await.unwrap();
        segment.unwrap().mailbox_count
    };
    assert_eq!(mailbox_count().await, 2);

    // Deleting keeps its rules: the alerts' sender is cleared (the settings stay acme's), a
    // credential in use is refused, and a credential's certificates go with it.
    assert!(mailboxes::delete(db, &acme.id, "m-smtp").await.unwrap());
    let alerts = expiry_alerts::settings(db, &acme.id).await.unwrap();
    assert_eq!(alerts.recipients, ["it@contoso.com"]);
    assert_eq!(alerts.sender_mailbox_id, None);
    assert!(matches!(
        graph_credentials::delete(db, &acme.id, "g-acme").await,
        Err(SaveError::InUse)
    ));
    assert!(mailboxes::delete(db, &acme.id, "m-graph").await.unwrap());
    assert_eq!(mailbox_count().await, 0);
    graph_credentials::delete(db, &acme.id, "g-acme")
        .await
        .unwrap();
    for slot in [Slot::Current, Slot::Next] {
        assert!(
            certificates::get(db, &acme.id, graph, slot)
                .await
                .unwrap()
                .is_none()
        );
    }
    old.acme_sign_in
        .assert_moved(&app, &acme, Owner::MicrosoftSignIn, Slot::Current)
        .await;
}
