use std::net::IpAddr;

use sha2::{Digest as _, Sha256};
use sqlx::{Any, AnyConnection, FromRow};
use time::OffsetDateTime;

use super::tenants::TenantId;
use super::{Backend, Db, Page, Paged, from_unix, new_id};
use crate::domain::AuditAction;

/// One line of the audit log as it is written. `detail` is prose for people and must
/// never hold a secret value: callers say *that* a secret changed, not what it is.
pub struct NewAuditEvent<'a> {
    pub action: AuditAction,
    pub actor_user_id: Option<&'a str>,
    /// Who acted, as people read it (an email, or "setup link", or "command line").
    pub actor: &'a str,
    /// What was acted on (usually an email address).
    pub target: &'a str,
    pub detail: &'a str,
    pub ip: Option<IpAddr>,
}

/// The longest actor or target stored: an email's longest form. Sign-in forms take up to
/// 64 KiB, and what the log keeps of a typed email must not grow with it (nor outgrow
/// PostgreSQL's index entries).
pub const MAX_NAME_CHARS: usize = 254;

/// `text` cut to at most `MAX_NAME_CHARS` characters.
pub fn cut_name(text: &str) -> &str {
    text.char_indices()
        .nth(MAX_NAME_CHARS)
        .map_or(text, |(end, _)| &text[..end])
}

#[derive(Debug, FromRow)]
pub struct AuditEventRow {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub ip: Option<String>,
    /// How many refused attempts the entry stands for (1 but for throttled bursts).
    pub attempts: i64,
    created_at: i64,
}

/// One audit entry's id, to settle a check recorded before its outcome was known.
#[derive(Debug, Clone)]
pub struct AuditEventId(String);

impl AuditEventRow {
    pub fn created_at(&self) -> OffsetDateTime {
        from_unix(self.created_at)
    }
}

pub async fn record(
    db: &Db,
    tenant: &TenantId,
    event: NewAuditEvent<'_>,
) -> Result<(), sqlx::Error> {
    insert(db.pool(), tenant, &event, db.unix_now())
        .await
        .map(drop)
}

async fn insert<'c>(
    executor: impl sqlx::Executor<'c, Database = Any>,
    tenant: &TenantId,
    event: &NewAuditEvent<'_>,
    now: i64,
) -> Result<AuditEventId, sqlx::Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, actor_user_id, actor, action, target, detail, \
         ip, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(tenant.as_str())
    .bind(event.actor_user_id)
    .bind(cut_name(event.actor))
    .bind(event.action.as_str())
    .bind(cut_name(event.target))
    .bind(event.detail)
    .bind(event.ip.map(|ip| ip.to_string()))
    .bind(now)
    .execute(executor)
    .await?;
    Ok(AuditEventId(id))
}

/// Rewrites the outcome of an entry recorded before it was known (see `ThrottleLock`).
pub async fn settle(
    db: &Db,
    tenant: &TenantId,
    id: &AuditEventId,
    action: AuditAction,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE audit_events SET action = $1, detail = $2 WHERE tenant_id = $3 AND id = $4",
    )
    .bind(action.as_str())
    .bind(detail)
    .bind(tenant.as_str())
    .bind(&id.0)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Removes an entry recorded for a check that then did not happen (hashing was too busy).
pub async fn withdraw(db: &Db, tenant: &TenantId, id: &AuditEventId) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM audit_events WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(&id.0)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Deletes entries older than `before` (unix seconds), of every tenant; returns how many.
pub async fn delete_older_than(db: &Db, before: i64) -> Result<u64, sqlx::Error> {
    let deleted = sqlx::query("DELETE FROM audit_events WHERE created_at < $1")
        .bind(before)
        .execute(db.pool())
        .await?;
    Ok(deleted.rows_affected())
}

/// A transaction in which the throttle counts the failures of one account and address and
/// records the next attempt, with no other such transaction for them in between, on any
/// instance. SQLite: `BEGIN IMMEDIATE` takes the database's write lock at once (one writer
/// at a time anyway). PostgreSQL: advisory locks on the account and the address, held to the
/// end of the transaction; the account's is always taken first, so two never deadlock.
pub struct ThrottleLock {
    tx: sqlx::Transaction<'static, Any>,
    /// The clock's time once the lock is held: what the lock counts back from and stamps.
    now: i64,
}

/// Which earlier refusal a refused attempt adds itself to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepeatOf {
    /// The account's (the entry's target).
    Account,
    /// The address's.
    Address,
}

impl ThrottleLock {
    pub async fn begin(db: &Db, account: Option<&str>, ip: IpAddr) -> Result<Self, sqlx::Error> {
        let tx = match db.backend() {
            Backend::Sqlite => db.pool().begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => {
                let mut tx = db.pool().begin().await?;
                let keys = account
                    .map(|account| format!("throttle account {account}"))
                    .into_iter()
                    .chain([format!("throttle address {ip}")]);
                for key in keys {
                    sqlx::query("SELECT CAST(pg_advisory_xact_lock($1) AS TEXT)")
                        .bind(lock_key(&key))
                        .execute(&mut *tx)
                        .await?;
                }
                tx
            }
        };
        Ok(Self {
            tx,
            now: db.unix_now(),
        })
    }

    /// As `recent_failures`, inside the lock.
    pub async fn recent_failures(
        &mut self,
        tenant: &TenantId,
        account: Option<&str>,
        ip: IpAddr,
        window_seconds: i64,
        actions: &[AuditAction],
    ) -> Result<(i64, i64), sqlx::Error> {
        let since = self.now - window_seconds;
        count_failures(&mut self.tx, tenant, account, ip, since, actions).await
    }

    pub async fn record(
        &mut self,
        tenant: &TenantId,
        event: &NewAuditEvent<'_>,
    ) -> Result<AuditEventId, sqlx::Error> {
        insert(&mut *self.tx, tenant, event, self.now).await
    }

    /// Records `event` as one more attempt of the same refusal of the account or address
    /// within the last `window_seconds`, or as a new entry when there is none.
    pub async fn record_repeated(
        &mut self,
        tenant: &TenantId,
        event: &NewAuditEvent<'_>,
        of: RepeatOf,
        window_seconds: i64,
    ) -> Result<(), sqlx::Error> {
        let (column, value) = match of {
            RepeatOf::Account => ("target", cut_name(event.target).to_owned()),
            RepeatOf::Address => ("ip", event.ip.map(|ip| ip.to_string()).unwrap_or_default()),
        };
        let sql = format!(
            "UPDATE audit_events SET attempts = attempts + 1 WHERE id = (SELECT id FROM \
             audit_events WHERE tenant_id = $1 AND action = $2 AND {column} = $3 \
             AND created_at > $4 ORDER BY created_at DESC, id DESC LIMIT 1)"
        );
        let added = sqlx::query(&sql)
            .bind(tenant.as_str())
            .bind(event.action.as_str())
            .bind(value)
            .bind(self.now - window_seconds)
            .execute(&mut *self.tx)
            .await?;
        if added.rows_affected() == 0 {
            insert(&mut *self.tx, tenant, event, self.now).await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// A PostgreSQL advisory lock key: the first 8 bytes of the SHA-256 of `name`.
fn lock_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The tenant's log, newest first.
pub async fn list(
    db: &Db,
    tenant: &TenantId,
    page: Page,
) -> Result<Paged<AuditEventRow>, sqlx::Error> {
    let rows = sqlx::query_as(
        "SELECT actor, action, target, detail, ip, attempts, created_at FROM audit_events \
         WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
    )
    .bind(tenant.as_str())
    .bind(page.limit() + 1)
    .bind(page.offset())
    .fetch_all(db.pool())
    .await?;
    Ok(Paged::from_rows(rows, page))
}

/// Failures of `actions` within the last `window_seconds`: for this account of the tenant
/// (when one is named), and from this address across all tenants. The audit log is the
/// throttle's memory, so every instance on a shared database sees the same counts.
pub async fn recent_failures(
    db: &Db,
    tenant: &TenantId,
    account: Option<&str>,
    ip: IpAddr,
    window_seconds: i64,
    actions: &[AuditAction],
) -> Result<(i64, i64), sqlx::Error> {
    let since = db.unix_now() - window_seconds;
    let mut connection = db.pool().acquire().await?;
    count_failures(&mut connection, tenant, account, ip, since, actions).await
}

/// Failures of `actions` after `since` (unix seconds), as `recent_failures` counts them.
async fn count_failures(
    connection: &mut AnyConnection,
    tenant: &TenantId,
    account: Option<&str>,
    ip: IpAddr,
    since: i64,
    actions: &[AuditAction],
) -> Result<(i64, i64), sqlx::Error> {
    // `$first, $first+1, ...`: the actions, after the leading parameters of a query.
    let actions_sql = |first: usize| {
        (first..first + actions.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let for_account = match account {
        None => 0,
        Some(account) => {
            let sql = format!(
                "SELECT COUNT(*) FROM audit_events WHERE tenant_id = $1 AND target = $2 \
                 AND created_at > $3 AND action IN ({})",
                actions_sql(4)
            );
            let mut query = sqlx::query_scalar(&sql)
                .bind(tenant.as_str())
                .bind(cut_name(account))
                .bind(since);
            for action in actions {
                query = query.bind(action.as_str());
            }
            query.fetch_one(&mut *connection).await?
        }
    };
    let sql = format!(
        "SELECT COUNT(*) FROM audit_events WHERE ip = $1 AND created_at > $2 AND action IN ({})",
        actions_sql(3)
    );
    let mut query = sqlx::query_scalar(&sql).bind(ip.to_string()).bind(since);
    for action in actions {
        query = query.bind(action.as_str());
    }
    let from_address: i64 = query.fetch_one(&mut *connection).await?;
    Ok((for_account, from_address))
}
