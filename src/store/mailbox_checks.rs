//! Background checks of mailboxes: when each enabled mailbox is next due, claims that make
//! several instances check it once per interval, and what its checks found (the state
//! `domain::CheckRecord` works out).

use sqlx::FromRow;
use time::OffsetDateTime;

use super::tenants::TenantId;
use super::{Db, from_unix};
use crate::domain::{CheckRecord, CheckState, FAILING_AFTER};

/// Rows made per statement by `add_missing`: 3 parameters each, far below either
/// backend's limit.
const INSERT_CHUNK: usize = 300;

/// Gives every enabled mailbox without a row one, due at a random time within the next
/// `interval` seconds so that checks spread over the interval; at most `limit` per call.
/// Returns how many it added.
pub async fn add_missing(db: &Db, now: i64, interval: i64, limit: i64) -> Result<u64, sqlx::Error> {
    let missing: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.tenant_id, m.id FROM mailboxes m WHERE m.enabled = 1 AND NOT EXISTS \
         (SELECT 1 FROM mailbox_checks c WHERE c.tenant_id = m.tenant_id AND c.mailbox_id = m.id) \
         LIMIT $1",
    )
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut added = 0;
    for chunk in missing.chunks(INSERT_CHUNK) {
        let values: Vec<String> = (0..chunk.len())
            .map(|row| format!("(${}, ${}, ${})", 3 * row + 1, 3 * row + 2, 3 * row + 3))
            .collect();
        let sql = format!(
            "INSERT INTO mailbox_checks (tenant_id, mailbox_id, next_check_at) VALUES {} \
             ON CONFLICT (tenant_id, mailbox_id) DO NOTHING",
            values.join(", ")
        );
        let mut insert = sqlx::query(&sql);
        for (tenant_id, mailbox_id) in chunk {
            insert = insert
                .bind(tenant_id)
                .bind(mailbox_id)
                .bind(now.saturating_add(random_offset(interval)));
        }
        added += insert.execute(db.pool()).await?.rows_affected();
    }
    Ok(added)
}

/// A uniform offset in `0..interval`, from a fresh random UUID's bits.
fn random_offset(interval: i64) -> i64 {
    let Ok(interval) = u128::try_from(interval) else {
        return 0;
    };
    if interval == 0 {
        return 0;
    }
    i64::try_from(uuid::Uuid::new_v4().as_u128() % interval).unwrap_or(0)
}

/// A check that is due: the mailbox, and the time it was due at (its claim's compare value).
#[derive(Debug, Clone, FromRow)]
pub struct DueCheck {
    pub tenant_id: String,
    pub mailbox_id: String,
    pub next_check_at: i64,
}

impl DueCheck {
    pub fn tenant(&self) -> TenantId {
        TenantId(self.tenant_id.clone())
    }
}

/// Enabled mailboxes whose check is due at `now`, taken in turns across tenants (every
/// tenant's first, then every tenant's second…), so a tenant with many mailboxes does not
/// fill the batch.
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<DueCheck>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tenant_id, mailbox_id, next_check_at FROM (SELECT c.tenant_id, c.mailbox_id, \
         c.next_check_at, ROW_NUMBER() OVER (PARTITION BY c.tenant_id \
         ORDER BY c.next_check_at, c.mailbox_id) AS turn FROM mailbox_checks c \
         JOIN mailboxes m ON m.tenant_id = c.tenant_id AND m.id = c.mailbox_id \
         WHERE m.enabled = 1 AND c.next_check_at <= $1) AS due \
         ORDER BY turn, next_check_at, mailbox_id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Takes the check that was due at `due.next_check_at` for this instance, moving the next
/// one to `next_check_at`: true for exactly one of several instances asking at once.
pub async fn claim(db: &Db, due: &DueCheck, next_check_at: i64) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "UPDATE mailbox_checks SET next_check_at = $1 \
         WHERE tenant_id = $2 AND mailbox_id = $3 AND next_check_at = $4",
    )
    .bind(next_check_at)
    .bind(&due.tenant_id)
    .bind(&due.mailbox_id)
    .bind(due.next_check_at)
    .execute(db.pool())
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Makes the mailbox's check due at `now`, so the next run looks at it (its settings were
/// just changed). A mailbox not yet seen by any run is left to the next one anyway.
pub async fn check_soon(
    db: &Db,
    tenant: &TenantId,
    mailbox_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mailbox_checks SET next_check_at = $1 \
         WHERE tenant_id = $2 AND mailbox_id = $3 AND next_check_at > $1",
    )
    .bind(now)
    .bind(tenant.as_str())
    .bind(mailbox_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct RecordRow {
    last_checked_at: Option<i64>,
    last_success_at: Option<i64>,
    last_failure_at: Option<i64>,
    last_failure: Option<String>,
    consecutive_failures: i64,
    failures_since: Option<i64>,
    recovered_at: Option<i64>,
    recovered_from: Option<i64>,
}

impl From<RecordRow> for CheckRecord {
    fn from(row: RecordRow) -> Self {
        Self {
            last_checked_at: row.last_checked_at.map(from_unix),
            last_success_at: row.last_success_at.map(from_unix),
            last_failure_at: row.last_failure_at.map(from_unix),
            last_failure: row.last_failure,
            consecutive_failures: row.consecutive_failures,
            failures_since: row.failures_since.map(from_unix),
            recovered: row
                .recovered_at
                .zip(row.recovered_from)
                .map(|(at, from)| (from_unix(at), from_unix(from))),
        }
    }
}

const RECORD_COLUMNS: &str = "c.last_checked_at, c.last_success_at, c.last_failure_at, \
     c.last_failure, c.consecutive_failures, c.failures_since, c.recovered_at, c.recovered_from";

/// What the mailbox's checks found; `None` before its first run has seen it.
pub async fn get(
    db: &Db,
    tenant: &TenantId,
    mailbox_id: &str,
) -> Result<Option<CheckRecord>, sqlx::Error> {
    let row: Option<RecordRow> = sqlx::query_as(&format!(
        "SELECT {RECORD_COLUMNS} FROM mailbox_checks c WHERE c.tenant_id = $1 AND c.mailbox_id = $2"
    ))
    .bind(tenant.as_str())
    .bind(mailbox_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(CheckRecord::from))
}

fn unix(at: Option<OffsetDateTime>) -> Option<i64> {
    at.map(OffsetDateTime::unix_timestamp)
}

/// Saves what the checks found, as the holder of this interval's claim worked it out.
pub async fn record(
    db: &Db,
    tenant: &TenantId,
    mailbox_id: &str,
    record: &CheckRecord,
) -> Result<(), sqlx::Error> {
    let (recovered_at, recovered_from) = record.recovered.unzip();
    sqlx::query(
        "UPDATE mailbox_checks SET last_checked_at = $1, last_success_at = $2, \
         last_failure_at = $3, last_failure = $4, consecutive_failures = $5, \
         failures_since = $6, recovered_at = $7, recovered_from = $8 \
         WHERE tenant_id = $9 AND mailbox_id = $10",
    )
    .bind(unix(record.last_checked_at))
    .bind(unix(record.last_success_at))
    .bind(unix(record.last_failure_at))
    .bind(record.last_failure.as_deref())
    .bind(record.consecutive_failures)
    .bind(unix(record.failures_since))
    .bind(unix(recovered_at))
    .bind(unix(recovered_from))
    .bind(tenant.as_str())
    .bind(mailbox_id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// An enabled mailbox whose checks fail, or recently recovered, as the pages list it.
#[derive(Debug, Clone)]
pub struct WatchedMailbox {
    pub mailbox_id: String,
    pub name: String,
    pub email: String,
    pub segment_id: String,
    pub record: CheckRecord,
}

#[derive(FromRow)]
struct WatchedRow {
    mailbox_id: String,
    name: String,
    email: String,
    segment_id: String,
    #[sqlx(flatten)]
    record: RecordRow,
}

impl From<WatchedRow> for WatchedMailbox {
    fn from(row: WatchedRow) -> Self {
        Self {
            mailbox_id: row.mailbox_id,
            name: row.name,
            email: row.email,
            segment_id: row.segment_id,
            record: row.record.into(),
        }
    }
}

/// The tenant's enabled mailboxes that are Failing, or recovered at or after
/// `recovered_after`, in one segment or all; longest failing first, then by name.
pub async fn watched(
    db: &Db,
    tenant: &TenantId,
    segment_id: Option<&str>,
    recovered_after: i64,
) -> Result<Vec<WatchedMailbox>, sqlx::Error> {
    let rows: Vec<WatchedRow> = sqlx::query_as(&format!(
        "SELECT c.mailbox_id, m.name, m.email, m.segment_id, {RECORD_COLUMNS} \
         FROM mailbox_checks c JOIN mailboxes m ON m.tenant_id = c.tenant_id AND m.id = c.mailbox_id \
         WHERE c.tenant_id = $1 AND m.enabled = 1 AND ($2 = '' OR m.segment_id = $2) \
         AND ((c.failures_since IS NOT NULL AND c.consecutive_failures >= $3) \
         OR c.recovered_at >= $4) \
         ORDER BY c.failures_since IS NULL, c.failures_since, LOWER(m.name), m.id"
    ))
    .bind(tenant.as_str())
    .bind(segment_id.unwrap_or_default())
    .bind(FAILING_AFTER)
    .bind(recovered_after)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(WatchedMailbox::from).collect())
}

/// Enabled mailboxes of every tenant by the state of their checks, every state listed.
pub async fn count_by_state(db: &Db) -> Result<Vec<(CheckState, i64)>, sqlx::Error> {
    let (unchecked, passing, failed_once, failing): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT \
         COALESCE(SUM(CASE WHEN c.last_checked_at IS NULL THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN c.last_checked_at IS NOT NULL AND c.consecutive_failures = 0 \
         THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN c.consecutive_failures > 0 AND c.consecutive_failures < $1 \
         THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN c.consecutive_failures >= $1 THEN 1 ELSE 0 END), 0) \
         FROM mailboxes m LEFT JOIN mailbox_checks c \
         ON c.tenant_id = m.tenant_id AND c.mailbox_id = m.id WHERE m.enabled = 1",
    )
    .bind(FAILING_AFTER)
    .fetch_one(db.pool())
    .await?;
    Ok(vec![
        (CheckState::Unchecked, unchecked),
        (CheckState::Passing, passing),
        (CheckState::FailedOnce, failed_once),
        (CheckState::Failing, failing),
    ])
}

/// Whether the alert of `kind` about the mailbox's failing spell `instance` was sent: its
/// recovery is told only to people who heard of the failure.
pub async fn failing_alert_sent(
    db: &Db,
    tenant: &TenantId,
    kind: &str,
    mailbox_id: &str,
    instance: &str,
) -> Result<bool, sqlx::Error> {
    let sent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM expiry_alerts WHERE tenant_id = $1 AND kind = $2 \
         AND subject_id = $3 AND instance = $4 AND status = 'sent'",
    )
    .bind(tenant.as_str())
    .bind(kind)
    .bind(mailbox_id)
    .bind(instance)
    .fetch_one(db.pool())
    .await?;
    Ok(sent > 0)
}
