//! Mailboxes of a tenant's segments.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row as _};
use time::OffsetDateTime;

use super::sealed::{Purpose, Sealed};
use super::segments::Segment;
use super::tenants::TenantId;
use super::{
    Db, Page, Paged, SaveError, Transaction, from_unix, like_pattern, new_id, saved_at_version,
};
use crate::domain::{AlertSender, Direction, MailProtocol, Security};

#[derive(Debug, Clone)]
pub struct Mailbox {
    pub id: String,
    pub segment_id: String,
    pub name: String,
    pub email: String,
    pub direction: Direction,
    pub protocol: MailProtocol,
    pub graph_credential_id: Option<String>,
    /// The referenced credential's name, joined in for lists.
    pub graph_credential_name: Option<String>,
    pub server: Option<Server>,
    pub enabled: bool,
    pub last_test: Option<(OffsetDateTime, bool, String)>,
    /// Grows with every save or move; the edit forms carry it.
    pub version: i64,
}

/// The server settings of an IMAP, POP3 or SMTP mailbox.
#[derive(Debug, Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password_sealed: Option<SealedPassword>,
    /// Set when the mailbox signs in with a delegated OAuth connection (XOAUTH2).
    pub oauth_connection_id: Option<String>,
    /// Set when the mailbox signs in app-only with a Graph credential's Azure app (XOAUTH2
    /// with an Exchange Online token, as the mailbox address).
    pub app_credential_id: Option<String>,
    /// That credential's name, joined in for lists.
    pub app_credential_name: Option<String>,
}

/// How a server mailbox signs in.
pub enum ServerAuth {
    /// `None` keeps the stored password.
    Password {
        sealed: Option<SealedPassword>,
    },
    OAuth {
        connection_id: String,
    },
    /// App-only: the Graph credential's app, with an Exchange Online token.
    App {
        credential_id: String,
    },
}

/// How a mailbox reaches its mail, as saved.
pub enum Connection {
    Graph {
        credential_id: String,
    },
    Server {
        host: String,
        port: u16,
        security: Security,
        username: String,
        auth: ServerAuth,
    },
}

pub struct MailboxFields {
    pub name: String,
    pub email: String,
    pub direction: Direction,
    pub protocol: MailProtocol,
    pub connection: Connection,
    pub enabled: bool,
}

/// A server mailbox's password, sealed to its mailbox (the row key is the mailbox's id).
pub struct MailboxPassword;

impl Purpose for MailboxPassword {
    const NAME: &'static str = "mailbox/password";
}

pub type SealedPassword = Sealed<MailboxPassword>;

/// A new mailbox's id, known before saving so its password can be sealed to it.
pub fn new_mailbox_id() -> String {
    new_id()
}

#[derive(FromRow)]
struct Row {
    id: String,
    segment_id: String,
    name: String,
    email: String,
    direction: String,
    protocol: String,
    graph_credential_id: Option<String>,
    graph_credential_name: Option<String>,
    host: Option<String>,
    port: Option<i64>,
    security: Option<String>,
    username: Option<String>,
    password_sealed: Option<String>,
    oauth_connection_id: Option<String>,
    app_credential_id: Option<String>,
    app_credential_name: Option<String>,
    enabled: i64,
    last_test_at: Option<i64>,
    last_test_ok: Option<i64>,
    last_test_summary: Option<String>,
    version: i64,
}

impl TryFrom<Row> for Mailbox {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        let corrupt = |m: String| sqlx::Error::Decode(m.into());
        let server = match (row.host, row.port, row.security) {
            (Some(host), Some(port), Some(security)) => Some(Server {
                host,
                port: u16::try_from(port).map_err(|e| corrupt(e.to_string()))?,
                security: Security::parse(&security).map_err(corrupt)?,
                username: row.username.unwrap_or_default(),
                password_sealed: row.password_sealed.map(Sealed::from_column),
                oauth_connection_id: row.oauth_connection_id,
                app_credential_id: row.app_credential_id,
                app_credential_name: row.app_credential_name,
            }),
            _ => None,
        };
        Ok(Self {
            direction: Direction::parse(&row.direction).map_err(corrupt)?,
            protocol: MailProtocol::parse(&row.protocol).map_err(corrupt)?,
            last_test: row.last_test_at.map(|at| {
                (
                    from_unix(at),
                    row.last_test_ok == Some(1),
                    row.last_test_summary.unwrap_or_default(),
                )
            }),
            id: row.id,
            segment_id: row.segment_id,
            name: row.name,
            email: row.email,
            graph_credential_id: row.graph_credential_id,
            graph_credential_name: row.graph_credential_name,
            server,
            enabled: row.enabled != 0,
            version: row.version,
        })
    }
}

const SELECT: &str = "SELECT m.id, m.segment_id, m.name, m.email, m.direction, m.protocol, \
     m.graph_credential_id, c.name AS graph_credential_name, m.host, m.port, m.security, \
     m.username, m.password_sealed, m.oauth_connection_id, m.app_credential_id, \
     a.name AS app_credential_name, m.enabled, m.last_test_at, m.last_test_ok, \
     m.last_test_summary, m.version FROM mailboxes m \
     LEFT JOIN graph_credentials c ON c.tenant_id = m.tenant_id AND c.id = m.graph_credential_id \
     LEFT JOIN graph_credentials a ON a.tenant_id = m.tenant_id AND a.id = m.app_credential_id";

/// A segment and one page of its mailboxes, by name, optionally matching `search`, in one
/// statement whatever the number of rows, so the segment page costs PostgreSQL one round
/// trip and SQLite one hand-off to its connection's thread. The segment's row comes with
/// every mailbox row (once, with NULL mailbox columns, when the page is empty); no row at
/// all means no such segment in this tenant.
pub async fn segment_page(
    db: &Db,
    tenant: &TenantId,
    segment_id: &str,
    search: Option<&str>,
    page: Page,
) -> Result<Option<(Segment, Paged<Mailbox>)>, sqlx::Error> {
    let rows: Vec<AnyRow> = sqlx::query(&format!(
        "SELECT s.name AS segment_name, s.description AS segment_description, \
         s.mailbox_count AS segment_mailbox_count, s.version AS segment_version, m.* \
         FROM segments s LEFT JOIN ({SELECT} WHERE m.tenant_id = $1 AND m.segment_id = $2 \
         AND ($3 = '' OR LOWER(m.name) LIKE $3 ESCAPE '\\' OR m.email LIKE $3 ESCAPE '\\') \
         ORDER BY LOWER(m.name), m.id LIMIT $4 OFFSET $5) m ON TRUE \
         WHERE s.tenant_id = $1 AND s.id = $2 ORDER BY LOWER(m.name), m.id"
    ))
    .bind(tenant.as_str())
    .bind(segment_id)
    .bind(search.map(like_pattern).unwrap_or_default())
    .bind(page.limit() + 1)
    .bind(page.offset())
    .fetch_all(db.pool())
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let segment = Segment {
        id: segment_id.to_owned(),
        name: first.try_get("segment_name")?,
        description: first.try_get("segment_description")?,
        mailbox_count: first.try_get("segment_mailbox_count")?,
        version: first.try_get("segment_version")?,
    };
    let mut mailboxes = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<Option<String>, _>("id")?.is_some() {
            mailboxes.push(Mailbox::try_from(Row::from_row(row)?)?);
        }
    }
    Ok(Some((segment, Paged::from_rows(mailboxes, page))))
}

pub async fn get(db: &Db, tenant: &TenantId, id: &str) -> Result<Option<Mailbox>, sqlx::Error> {
    let row: Option<Row> =
        sqlx::query_as(&format!("{SELECT} WHERE m.tenant_id = $1 AND m.id = $2"))
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    row.map(Mailbox::try_from).transpose()
}

/// The connection columns of a save, NULL where the protocol has no use for them.
#[derive(Default)]
struct ConnectionColumns<'a> {
    graph_credential_id: Option<&'a str>,
    host: Option<&'a str>,
    port: Option<i64>,
    security: Option<&'static str>,
    username: Option<&'a str>,
    /// `None` keeps the stored password of a server mailbox that uses one.
    password_sealed: Option<&'a str>,
    oauth_connection_id: Option<&'a str>,
    app_credential_id: Option<&'a str>,
}

impl<'a> From<&'a Connection> for ConnectionColumns<'a> {
    fn from(connection: &'a Connection) -> Self {
        match connection {
            Connection::Graph { credential_id } => Self {
                graph_credential_id: Some(credential_id),
                ..Self::default()
            },
            Connection::Server {
                host,
                port,
                security,
                username,
                auth,
            } => {
                let (password_sealed, oauth_connection_id, app_credential_id) = match auth {
                    ServerAuth::Password { sealed } => {
                        (sealed.as_ref().map(Sealed::as_str), None, None)
                    }
                    ServerAuth::OAuth { connection_id } => {
                        (None, Some(connection_id.as_str()), None)
                    }
                    ServerAuth::App { credential_id } => (None, None, Some(credential_id.as_str())),
                };
                Self {
                    graph_credential_id: None,
                    host: Some(host),
                    port: Some(i64::from(*port)),
                    security: Some(security.as_str()),
                    username: Some(username),
                    password_sealed,
                    oauth_connection_id,
                    app_credential_id,
                }
            }
        }
    }
}

pub async fn create(
    db: &Db,
    tenant: &TenantId,
    segment_id: &str,
    id: &str,
    fields: &MailboxFields,
) -> Result<(), sqlx::Error> {
    let columns = ConnectionColumns::from(&fields.connection);
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, protocol, \
         graph_credential_id, host, port, security, username, password_sealed, enabled, \
         created_at, updated_at, oauth_connection_id, app_credential_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15, $16, $17)",
    )
    .bind(id)
    .bind(tenant.as_str())
    .bind(segment_id)
    .bind(&fields.name)
    .bind(&fields.email)
    .bind(fields.direction.as_str())
    .bind(fields.protocol.as_str())
    .bind(columns.graph_credential_id)
    .bind(columns.host)
    .bind(columns.port)
    .bind(columns.security)
    .bind(columns.username)
    .bind(columns.password_sealed)
    .bind(i64::from(fields.enabled))
    .bind(db.unix_now())
    .bind(columns.oauth_connection_id)
    .bind(columns.app_credential_id)
    .execute(&mut *tx)
    .await?;
    count_in(&mut tx, tenant, segment_id, 1).await?;
    tx.commit().await
}

/// Adds `change` to the segment's `mailbox_count`, in the transaction that adds or removes
/// its mailboxes, so the count never differs from the rows.
async fn count_in(
    tx: &mut Transaction,
    tenant: &TenantId,
    segment_id: &str,
    change: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE segments SET mailbox_count = mailbox_count + $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(change)
    .bind(tenant.as_str())
    .bind(segment_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Creates many mailboxes of one segment in one transaction, a few rows per statement:
/// imports, and the benchmark's million rows (`bench/run`), take seconds, not the minutes
/// one commit per row would.
pub async fn create_many(
    db: &Db,
    tenant: &TenantId,
    segment_id: &str,
    mailboxes: &[(String, MailboxFields)],
) -> Result<(), sqlx::Error> {
    const COLUMNS: usize = 18;
    /// Not more: SQLite looks each `$n` up by name in a list, so binding one statement
    /// takes time in the square of its parameters.
    const ROWS_PER_STATEMENT: usize = 20;
    let now = db.unix_now();
    let mut tx = db.pool().begin().await?;
    for chunk in mailboxes.chunks(ROWS_PER_STATEMENT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| {
                let first = row * COLUMNS;
                let placeholders: Vec<String> =
                    (1..=COLUMNS).map(|n| format!("${}", first + n)).collect();
                format!("({})", placeholders.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, protocol, \
             graph_credential_id, host, port, security, username, password_sealed, enabled, \
             oauth_connection_id, app_credential_id, created_at, updated_at) VALUES {}",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql);
        for (id, fields) in chunk {
            let columns = ConnectionColumns::from(&fields.connection);
            insert = insert
                .bind(id)
                .bind(tenant.as_str())
                .bind(segment_id)
                .bind(&fields.name)
                .bind(&fields.email)
                .bind(fields.direction.as_str())
                .bind(fields.protocol.as_str())
                .bind(columns.graph_credential_id)
                .bind(columns.host)
                .bind(columns.port)
                .bind(columns.security)
                .bind(columns.username)
                .bind(columns.password_sealed)
                .bind(i64::from(fields.enabled))
                .bind(columns.oauth_connection_id)
                .bind(columns.app_credential_id)
                .bind(now)
                .bind(now);
        }
        insert.execute(&mut *tx).await?;
    }
    let added = i64::try_from(mailboxes.len()).map_err(|e| sqlx::Error::Encode(e.into()))?;
    count_in(&mut tx, tenant, segment_id, added).await?;
    tx.commit().await
}

/// Saves the settings of the mailbox as loaded at `version` (`Stale` if it moved on since).
/// Moving to Graph clears every server column, the stored password included, so no stale
/// secret stays behind.
pub async fn update(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    fields: &MailboxFields,
) -> Result<(), SaveError> {
    let columns = ConnectionColumns::from(&fields.connection);
    let keep_password = matches!(
        fields.connection,
        Connection::Server {
            auth: ServerAuth::Password { sealed: None },
            ..
        }
    );
    let updated = sqlx::query(
        "UPDATE mailboxes SET name = $1, email = $2, direction = $3, protocol = $4, \
         graph_credential_id = $5, host = $6, port = $7, security = $8, username = $9, \
         password_sealed = CASE WHEN $10 = 1 THEN password_sealed ELSE $11 END, enabled = $12, \
         last_test_at = NULL, last_test_ok = NULL, last_test_summary = NULL, updated_at = $13, \
         oauth_connection_id = $16, app_credential_id = $18, version = version + 1 \
         WHERE tenant_id = $14 AND id = $15 AND version = $17",
    )
    .bind(&fields.name)
    .bind(&fields.email)
    .bind(fields.direction.as_str())
    .bind(fields.protocol.as_str())
    .bind(columns.graph_credential_id)
    .bind(columns.host)
    .bind(columns.port)
    .bind(columns.security)
    .bind(columns.username)
    .bind(i64::from(keep_password))
    .bind(columns.password_sealed)
    .bind(i64::from(fields.enabled))
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id)
    .bind(columns.oauth_connection_id)
    .bind(version)
    .bind(columns.app_credential_id)
    .execute(db.pool())
    .await?;
    saved_at_version(db.pool(), "mailboxes", tenant, id, updated.rows_affected()).await
}

/// Moves the mailbox as loaded at `version`, in segment `from`, to segment `to` of the same
/// tenant (the caller found it); `Stale` if the mailbox moved on since. Both segments'
/// counts change in one statement, after the mailbox row: every writer locks the mailbox
/// before its segments, so two moves never wait on each other in a circle.
pub async fn move_to(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    from: &str,
    to: &str,
) -> Result<(), SaveError> {
    let mut tx = db.pool().begin().await?;
    let moved = sqlx::query(
        "UPDATE mailboxes SET segment_id = $1, updated_at = $2, version = version + 1 \
         WHERE tenant_id = $3 AND id = $4 AND version = $5 AND segment_id = $6 \
         AND EXISTS (SELECT 1 FROM segments s WHERE s.tenant_id = $3 AND s.id = $1)",
    )
    .bind(to)
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .bind(from)
    .execute(&mut *tx)
    .await?;
    if moved.rows_affected() == 1 {
        sqlx::query(
            "UPDATE segments SET mailbox_count = mailbox_count \
             + CASE WHEN id = $1 THEN 1 ELSE 0 END - CASE WHEN id = $2 THEN 1 ELSE 0 END \
             WHERE tenant_id = $3 AND id IN ($1, $2)",
        )
        .bind(to)
        .bind(from)
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    }
    saved_at_version(&mut *tx, "mailboxes", tenant, id, moved.rows_affected()).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn delete(db: &Db, tenant: &TenantId, id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let segment_id: Option<String> = sqlx::query_scalar(
        "DELETE FROM mailboxes WHERE tenant_id = $1 AND id = $2 RETURNING segment_id",
    )
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(segment_id) = segment_id else {
        return Ok(false);
    };
    count_in(&mut tx, tenant, &segment_id, -1).await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn record_test(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    ok: bool,
    summary: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mailboxes SET last_test_at = $1, last_test_ok = $2, last_test_summary = $3 \
         WHERE tenant_id = $4 AND id = $5",
    )
    .bind(db.unix_now())
    .bind(i64::from(ok))
    .bind(summary)
    .bind(tenant.as_str())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Mailboxes that use a Graph credential, as (name, email), for the refusal to delete it:
/// Graph mailboxes, and server mailboxes that sign in with its app.
pub async fn using_credential(
    db: &Db,
    tenant: &TenantId,
    credential_id: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, email FROM mailboxes WHERE tenant_id = $1 \
         AND (graph_credential_id = $2 OR app_credential_id = $2) ORDER BY LOWER(name)",
    )
    .bind(tenant.as_str())
    .bind(credential_id)
    .fetch_all(db.pool())
    .await
}

/// The IMAP, POP3 and SMTP mailboxes that sign in app-only with a Graph credential's app,
/// as (name, email, protocol), by email: for the Exchange Online steps on its page.
pub async fn signing_in_with_app(
    db: &Db,
    tenant: &TenantId,
    credential_id: &str,
) -> Result<Vec<(String, String, MailProtocol)>, sqlx::Error> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT name, email, protocol FROM mailboxes WHERE tenant_id = $1 \
         AND app_credential_id = $2 ORDER BY LOWER(email), id",
    )
    .bind(tenant.as_str())
    .bind(credential_id)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(name, email, protocol)| {
            let protocol =
                MailProtocol::parse(&protocol).map_err(|m| sqlx::Error::Decode(m.into()))?;
            Ok((name, email, protocol))
        })
        .collect()
}

/// The Graph mailboxes that read or send with a Graph credential, as (email, direction), by
/// email: what its Test connection judges the app's Graph permissions against.
pub async fn reading_or_sending_with_graph(
    db: &Db,
    tenant: &TenantId,
    credential_id: &str,
) -> Result<Vec<(String, Direction)>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT email, direction FROM mailboxes WHERE tenant_id = $1 \
         AND graph_credential_id = $2 ORDER BY LOWER(email), id",
    )
    .bind(tenant.as_str())
    .bind(credential_id)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(email, direction)| {
            let direction =
                Direction::parse(&direction).map_err(|m| sqlx::Error::Decode(m.into()))?;
            Ok((email, direction))
        })
        .collect()
}

/// How many mailboxes use each of the tenant's Graph credentials, Graph or app-only.
pub async fn credential_usage(
    db: &Db,
    tenant: &TenantId,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT COALESCE(graph_credential_id, app_credential_id) AS credential_id, COUNT(*) \
         FROM mailboxes WHERE tenant_id = $1 \
         AND (graph_credential_id IS NOT NULL OR app_credential_id IS NOT NULL) \
         GROUP BY COALESCE(graph_credential_id, app_credential_id)",
    )
    .bind(tenant.as_str())
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().collect())
}

/// How many mailboxes sign in with each of the tenant's OAuth connections.
pub async fn oauth_connection_usage(
    db: &Db,
    tenant: &TenantId,
) -> Result<HashMap<String, Vec<String>>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT oauth_connection_id, email FROM mailboxes \
         WHERE tenant_id = $1 AND oauth_connection_id IS NOT NULL ORDER BY email",
    )
    .bind(tenant.as_str())
    .fetch_all(db.pool())
    .await?;
    let mut usage: HashMap<String, Vec<String>> = HashMap::new();
    for (connection, email) in rows {
        usage.entry(connection).or_default().push(email);
    }
    Ok(usage)
}

/// The tenant's mailboxes that send mail (outgoing, or both ways), enabled, by name: SMTP
/// ones and Graph ones, what expiry alerts may go out through.
pub async fn alert_senders(db: &Db, tenant: &TenantId) -> Result<Vec<AlertSender>, sqlx::Error> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, name, email, protocol FROM mailboxes WHERE tenant_id = $1 \
         AND (protocol = 'smtp' OR (protocol = 'graph' AND graph_credential_id IS NOT NULL)) \
         AND direction IN ('outgoing', 'both') AND enabled = 1 ORDER BY LOWER(name), id",
    )
    .bind(tenant.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(id, name, email, protocol)| {
            Ok(AlertSender {
                protocol: MailProtocol::parse(&protocol)
                    .map_err(|m| sqlx::Error::Decode(m.into()))?,
                id,
                name,
                email,
            })
        })
        .collect()
}
