//! The benchmark's data, written through Portico's own store functions (the same ones the
//! pages and the CLI use), so it is exactly what Portico would have written itself.

use std::error::Error;
use std::time::{Duration, Instant};

use portico::crypto::{Keyring, PasswordHasher};
use portico::domain::{
    ClientId, Cloud, CredentialName, Direction, DisplayName, EmailAddress, MailProtocol,
    OAuthPurpose, Role, Security, Slug, TenantName,
};
use portico::services::accounts;
use portico::store::graph_credentials::{self, CredentialFields, SealedGraphSecret};
use portico::store::mailboxes::{self, Connection, MailboxFields, ServerAuth};
use portico::store::microsoft_sign_in::{
    self, CredentialChange, SealedSignInSecret, SecretChange, SettingsUpdate,
};
use portico::store::oauth_connections::{
    self, ConnectionFields, SealedAccessToken, SealedRefreshToken, SealedTokens,
};
use portico::store::tenants::TenantId;
use portico::store::users::{self, NewUser};
use portico::store::{Db, identities, segments};
use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::{Uuid, uuid};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// The tenant every page scenario signs in to.
pub const SLUG: &str = "acme";
pub const ADMIN_EMAIL: &str = "admin@acme.test";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
/// Agents of Acme who sign in during the storm (scenario 3), with the admin's password.
pub const STORM_AGENTS: usize = 32;

/// The email of storm agent `n`.
pub fn agent_email(n: usize) -> String {
    format!("agent{n}@acme.test")
}
/// Mailboxes of the measured segment (and of every other tenant's, at scale).
pub const MAILBOXES_PER_SEGMENT: usize = 1_000;

/// The fake Microsoft's world (examples/fake-microsoft-seed.json): the Contoso directory,
/// its multi-tenant "Portico" app with its secret, and Alice.
pub const CONTOSO: Uuid = uuid!("3c7f9e2a-51d4-4b8e-9a06-c2d1e4f5a6b7");
pub const SIGN_IN_APP: Uuid = uuid!("2f5e8b1c-6a3d-4f7e-9b2a-1c4d7e0f3a6b");
pub const SIGN_IN_SECRET: &str = "portico-dev-secret";
pub const MAIL_APP: Uuid = uuid!("7d4a1e8b-2c5f-4e9a-b3d6-0f8c1a4e7b2d");
pub const ALICE_UPN: &str = "alice@contoso.com";
const ALICE_OID: Uuid = uuid!("a1d2e3f4-0b1c-4d2e-8f30-415263748596");

/// What the scenarios need to know about the seeded tenant.
pub struct Seeded {
    /// `/t/acme/segments/{id}`: the measured mailbox page.
    pub segment_path: String,
}

fn parsed<T>(value: std::result::Result<T, String>) -> Result<T> {
    value.map_err(Into::into)
}

/// Acme: an admin, Alice (linked to her Microsoft account, for the callback scenario),
/// Sign in with Microsoft, three Graph credentials (one expiring soon, one expired: the
/// dashboard's banners), an OAuth connection that needs re-authentication (another banner)
/// and a segment of 1,000 mailboxes, Graph and IMAP mixed.
pub async fn tenant(db: &Db, keys: &Keyring) -> Result<Seeded> {
    let hasher = PasswordHasher::new()?;
    let hash = hasher.hash(SecretString::from(ADMIN_PASSWORD)).await?;
    let admin = NewUser {
        email: parsed(EmailAddress::parse(ADMIN_EMAIL))?,
        display_name: parsed(DisplayName::parse("Ada Admin"))?,
        role: Role::Admin,
        password_hash: Some(hash),
    };
    let (tenant, _) = accounts::create_tenant(
        db,
        &parsed(Slug::parse(SLUG))?,
        &parsed(TenantName::parse("Acme Corp"))?,
        Some(&admin),
        false,
    )
    .await?;
    let tenant = tenant.id;
    for n in 0..STORM_AGENTS {
        let agent = NewUser {
            email: parsed(EmailAddress::parse(&agent_email(n)))?,
            display_name: parsed(DisplayName::parse(&format!("Agent {n}")))?,
            role: Role::Agent,
            password_hash: admin.password_hash.clone(),
        };
        users::create(db, &tenant, &agent).await?;
    }

    let alice = users::create(
        db,
        &tenant,
        &NewUser {
            email: parsed(EmailAddress::parse(ALICE_UPN))?,
            display_name: parsed(DisplayName::parse("Alice Admin"))?,
            role: Role::Admin,
            password_hash: None,
        },
    )
    .await?;
    identities::link(db, &tenant, &alice, CONTOSO, ALICE_OID, ALICE_UPN).await?;
    let secret = SecretString::from(SIGN_IN_SECRET);
    let today = OffsetDateTime::now_utc().date();
    microsoft_sign_in::save(
        db,
        &tenant,
        0,
        &SettingsUpdate {
            client_id: parsed(ClientId::parse(&SIGN_IN_APP.to_string()))?,
            directory: Some(CONTOSO.to_string()),
            directory_id: Some(CONTOSO),
            cloud: Cloud::Global,
            enabled: true,
            auto_create_agents: false,
            secret: SecretChange::Replace {
                sealed: SealedSignInSecret::seal(keys, &tenant, "", &secret),
                expires_on: today + time::Duration::days(300),
            },
            credential: CredentialChange::Keep,
        },
    )
    .await?;

    let mut credential_ids = Vec::new();
    for (name, expires_on) in [
        ("Mail app", today + time::Duration::days(400)),
        ("Sales mail", today + time::Duration::days(10)),
        ("Old mail", today - time::Duration::days(3)),
    ] {
        let id = graph_credentials::new_credential_id();
        let secret = SecretString::from("mail-dev-secret");
        let sealed = SealedGraphSecret::seal(keys, &tenant, &id, &secret);
        let fields = CredentialFields {
            name: parsed(CredentialName::parse(name))?,
            client_id: parsed(ClientId::parse(&MAIL_APP.to_string()))?,
            directory: CONTOSO.to_string(),
            directory_id: CONTOSO,
            cloud: Cloud::Global,
        };
        graph_credentials::create(db, &tenant, &id, &fields, &sealed, expires_on).await?;
        credential_ids.push(id);
    }
    needs_reauthentication(db, keys, &tenant).await?;

    let segment = segments::create(db, &tenant, "Support", "Customer mail").await?;
    let rows = mailbox_rows(SLUG, &credential_ids[0]);
    mailboxes::create_many(db, &tenant, &segment, &rows).await?;
    Ok(Seeded {
        segment_path: format!("/t/{SLUG}/segments/{segment}"),
    })
}

/// An OAuth connection whose renewal was refused: the dashboard asks to sign in again.
async fn needs_reauthentication(db: &Db, keys: &Keyring, tenant: &TenantId) -> Result<()> {
    let id = oauth_connections::new_connection_id();
    let fields = ConnectionFields {
        name: "Support IMAP".into(),
        client_id: parsed(ClientId::parse(&MAIL_APP.to_string()))?,
        directory: CONTOSO.to_string(),
        cloud: Cloud::Global,
        purpose: OAuthPurpose::Imap,
        authorization_url: None,
        token_url: None,
        scope: "https://outlook.office.com/IMAP.AccessAsUser.All offline_access".into(),
    };
    oauth_connections::create(db, tenant, &id, &fields, None).await?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let access = SealedAccessToken::seal(keys, tenant, &id, &"access-token".into());
    let refresh = SealedRefreshToken::seal(keys, tenant, &id, &"refresh-token".into());
    let tokens = SealedTokens {
        access_token: &access,
        expires_at: now + 3600,
        refresh_token: Some(&refresh),
    };
    // A new connection is at version 1.
    let stored = oauth_connections::store_authentication(
        db,
        tenant,
        &id,
        1,
        "support@contoso.com",
        &tokens,
        now,
    )
    .await?;
    if !stored {
        return Err("the new connection's tokens were not stored".into());
    }
    let lease = oauth_connections::claim_renewal(db, tenant, &id, now, now + 60)
        .await?
        .ok_or("the new connection could not be leased")?;
    let reason = "Microsoft answered invalid_grant (AADSTS700082): the refresh token expired.";
    oauth_connections::mark_needs_reauthentication(db, tenant, &id, &lease, reason).await?;
    Ok(())
}

/// `box-00000`... mailboxes: every fourth one on Graph, the others on IMAP.
fn mailbox_rows(slug: &str, credential_id: &str) -> Vec<(String, MailboxFields)> {
    (0..MAILBOXES_PER_SEGMENT)
        .map(|n| {
            let connection = if n % 4 == 0 {
                Connection::Graph {
                    credential_id: credential_id.to_owned(),
                }
            } else {
                Connection::Server {
                    host: "imap.contoso.com".into(),
                    port: 993,
                    security: Security::Tls,
                    username: format!("box-{n:05}"),
                    auth: ServerAuth::Password { sealed: None },
                }
            };
            let fields = MailboxFields {
                name: format!("box-{n:05}"),
                email: format!("box-{n:05}@{slug}.example"),
                direction: Direction::Both,
                protocol: if n % 4 == 0 {
                    MailProtocol::Graph
                } else {
                    MailProtocol::Imap
                },
                connection,
                enabled: true,
            };
            (mailboxes::new_mailbox_id(), fields)
        })
        .collect()
}

/// Grows the database to `tenants` tenants in all, each with a segment of 1,000 mailboxes
/// (IMAP only: no credential to refer to). Returns how long it took.
pub async fn more_tenants(db: &Db, tenants: usize) -> Result<Duration> {
    let started = Instant::now();
    for n in 1..tenants {
        let slug = format!("t{n:04}");
        let (tenant, _) = accounts::create_tenant(
            db,
            &parsed(Slug::parse(&slug))?,
            &parsed(TenantName::parse(&format!("Tenant {n}")))?,
            None,
            false,
        )
        .await?;
        let segment = segments::create(db, &tenant.id, "Support", "").await?;
        let rows: Vec<_> = (0..MAILBOXES_PER_SEGMENT)
            .map(|n| {
                let fields = MailboxFields {
                    name: format!("box-{n:05}"),
                    email: format!("box-{n:05}@{slug}.example"),
                    direction: Direction::Incoming,
                    protocol: MailProtocol::Imap,
                    connection: Connection::Server {
                        host: "imap.contoso.com".into(),
                        port: 993,
                        security: Security::Tls,
                        username: format!("box-{n:05}"),
                        auth: ServerAuth::Password { sealed: None },
                    },
                    enabled: true,
                };
                (mailboxes::new_mailbox_id(), fields)
            })
            .collect();
        mailboxes::create_many(db, &tenant.id, &segment, &rows).await?;
    }
    Ok(started.elapsed())
}
