//! Expiry alerts: each tenant's recipients, and the alert rows the scheduler plans, claims
//! and marks sent. A row per (thing, instance, threshold) makes "once per threshold" a
//! unique constraint, and a claim is a conditional update, so several instances on one
//! PostgreSQL database send each alert once.

use sqlx::FromRow;
use time::OffsetDateTime;

use super::tenants::TenantId;
use super::{Db, SaveError, from_unix, new_id};

/// Who a tenant's expiry alerts go to, and through which mailbox.
#[derive(Debug, Clone, Default)]
pub struct AlertSettings {
    pub recipients: Vec<String>,
    /// `None`: the deployment's relay.
    pub sender_mailbox_id: Option<String>,
    /// 0 until first saved; edit forms carry it.
    pub version: i64,
}

pub async fn settings(db: &Db, tenant: &TenantId) -> Result<AlertSettings, sqlx::Error> {
    let row: Option<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT recipients, sender_mailbox_id, version FROM expiry_alert_settings \
         WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_optional(db.pool())
    .await?;
    Ok(
        row.map_or_else(AlertSettings::default, |(recipients, sender, version)| {
            AlertSettings {
                recipients: recipients.lines().map(str::to_owned).collect(),
                sender_mailbox_id: sender,
                version,
            }
        }),
    )
}

/// Saves the settings as loaded at `version` (0: never saved); `Stale` if they moved on.
pub async fn save_settings(
    db: &Db,
    tenant: &TenantId,
    version: i64,
    recipients: &[String],
    sender_mailbox_id: Option<&str>,
    now: i64,
) -> Result<(), SaveError> {
    let recipients = recipients.join("\n");
    let saved = if version == 0 {
        sqlx::query(
            "INSERT INTO expiry_alert_settings (tenant_id, recipients, sender_mailbox_id, \
             version, updated_at) VALUES ($1, $2, $3, 1, $4) ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(&recipients)
        .bind(sender_mailbox_id)
        .bind(now)
        .execute(db.pool())
        .await?
    } else {
        sqlx::query(
            "UPDATE expiry_alert_settings SET recipients = $1, sender_mailbox_id = $2, \
             updated_at = $3, version = version + 1 WHERE tenant_id = $4 AND version = $5",
        )
        .bind(&recipients)
        .bind(sender_mailbox_id)
        .bind(now)
        .bind(tenant.as_str())
        .bind(version)
        .execute(db.pool())
        .await?
    };
    if saved.rows_affected() == 1 {
        Ok(())
    } else {
        Err(SaveError::Stale)
    }
}

/// Tenants that have someone to tell.
pub async fn tenants_with_recipients(db: &Db) -> Result<Vec<TenantId>, sqlx::Error> {
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT tenant_id FROM expiry_alert_settings WHERE recipients <> ''")
            .fetch_all(db.pool())
            .await?;
    Ok(ids.into_iter().map(TenantId).collect())
}

/// An alert the scheduler found due.
pub struct PlannedAlert<'a> {
    pub kind: &'a str,
    pub subject_id: &'a str,
    pub instance: &'a str,
    pub threshold: &'a str,
    pub subject_name: &'a str,
    pub ends_on: Option<String>,
}

/// Records an alert unless one for the same thing, instance and threshold exists: true when
/// this call added it.
pub async fn plan(
    db: &Db,
    tenant: &TenantId,
    alert: &PlannedAlert<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO expiry_alerts (id, tenant_id, kind, subject_id, instance, threshold, \
         subject_name, ends_on, status, attempts, not_before, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9) \
         ON CONFLICT (tenant_id, kind, subject_id, instance, threshold) DO NOTHING",
    )
    .bind(new_id())
    .bind(tenant.as_str())
    .bind(alert.kind)
    .bind(alert.subject_id)
    .bind(alert.instance)
    .bind(alert.threshold)
    .bind(alert.subject_name)
    .bind(alert.ends_on.as_deref())
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[derive(Debug, Clone, FromRow)]
pub struct Alert {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub subject_id: String,
    /// Which secret, certificate or consent it is about.
    pub instance: String,
    pub threshold: String,
    pub subject_name: String,
    pub ends_on: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
    given_up_at: Option<i64>,
}

impl Alert {
    pub fn tenant(&self) -> TenantId {
        TenantId(self.tenant_id.clone())
    }

    pub fn created_at(&self) -> OffsetDateTime {
        from_unix(self.created_at)
    }

    pub fn sent_at(&self) -> Option<OffsetDateTime> {
        self.sent_at.map(from_unix)
    }

    pub fn given_up_at(&self) -> Option<OffsetDateTime> {
        self.given_up_at.map(from_unix)
    }
}

const COLUMNS: &str = "id, tenant_id, kind, subject_id, instance, threshold, subject_name, ends_on, \
     status, attempts, last_error, created_at, sent_at, given_up_at";

/// Pending alerts no instance holds and whose retry time has come, taken in turns across
/// tenants: every tenant's first alert, then every tenant's second, and so on, so a tenant
/// with many alerts due does not fill the batch. A tenant's fresh alerts come before its
/// retries, and within a turn tenants with fresh alerts come first, so an alert that keeps
/// failing waits behind every other tenant's new ones.
pub async fn due(db: &Db, now: i64, limit: i64) -> Result<Vec<Alert>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM (SELECT {COLUMNS}, ROW_NUMBER() OVER (PARTITION BY tenant_id \
         ORDER BY attempts > 0, created_at, id) AS turn FROM expiry_alerts \
         WHERE status = 'pending' AND not_before <= $1) AS due \
         ORDER BY turn, attempts > 0, created_at, id LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await
}

/// Takes `alert` for this instance until `until`, if no other instance has it and no alert
/// of its tenant is being sent (by any instance): the lease to send it, or `None`. One
/// send per tenant at a time keeps a tenant whose mail server hangs to one place of each
/// instance's few; a lease left by an instance that died lapses at `until` like any other.
/// (On PostgreSQL two instances claiming alerts of one tenant in the same instant may both
/// win; the bound is then one per instance.)
pub async fn claim(
    db: &Db,
    alert: &Alert,
    now: i64,
    until: i64,
) -> Result<Option<String>, sqlx::Error> {
    let lease = new_id();
    let claimed = sqlx::query(
        "UPDATE expiry_alerts SET claimed_by = $1, not_before = $2, attempts = attempts + 1 \
         WHERE id = $3 AND status = 'pending' AND not_before <= $4 AND NOT EXISTS \
         (SELECT 1 FROM expiry_alerts AS sending WHERE sending.tenant_id = $5 \
         AND sending.status = 'pending' AND sending.claimed_by IS NOT NULL \
         AND sending.not_before > $4)",
    )
    .bind(&lease)
    .bind(until)
    .bind(&alert.id)
    .bind(now)
    .bind(&alert.tenant_id)
    .execute(db.pool())
    .await?;
    Ok((claimed.rows_affected() == 1).then_some(lease))
}

/// Records that the holder of `lease` sent the alert.
pub async fn mark_sent(db: &Db, id: &str, lease: &str, now: i64) -> Result<bool, sqlx::Error> {
    let marked = sqlx::query(
        "UPDATE expiry_alerts SET status = 'sent', sent_at = $1, last_error = NULL, \
         claimed_by = NULL WHERE id = $2 AND claimed_by = $3",
    )
    .bind(now)
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// Drops the alert its lease holder found no longer applies (what it is about was renewed,
/// replaced or deleted): it was never sent, and is never to be.
pub async fn withdraw(db: &Db, id: &str, lease: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM expiry_alerts WHERE id = $1 AND claimed_by = $2")
        .bind(id)
        .bind(lease)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Gives the alert back after a failed attempt, to be tried again at `retry_at`.
pub async fn release(
    db: &Db,
    id: &str,
    lease: &str,
    retry_at: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE expiry_alerts SET claimed_by = NULL, not_before = $1, last_error = $2 \
         WHERE id = $3 AND claimed_by = $4",
    )
    .bind(retry_at)
    .bind(error)
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Ends an alert that kept failing for too long: it stays listed, with why, and is never
/// tried again. Only the holder of `lease` may end it.
pub async fn give_up(
    db: &Db,
    id: &str,
    lease: &str,
    now: i64,
    error: &str,
) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE expiry_alerts SET status = 'given_up', given_up_at = $1, last_error = $2, \
         claimed_by = NULL WHERE id = $3 AND claimed_by = $4",
    )
    .bind(now)
    .bind(error)
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(ended.rows_affected() == 1)
}

/// The tenant's latest alerts, newest first.
pub async fn recent(db: &Db, tenant: &TenantId, limit: i64) -> Result<Vec<Alert>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM expiry_alerts WHERE tenant_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(tenant.as_str())
    .bind(limit)
    .fetch_all(db.pool())
    .await
}
