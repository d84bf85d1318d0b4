use std::net::IpAddr;

use sqlx::FromRow;
use time::OffsetDateTime;

use super::tenants::TenantId;
use super::{Db, Page, Paged, from_unix, new_id, unix_now};
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

#[derive(Debug, FromRow)]
pub struct AuditEventRow {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub ip: Option<String>,
    created_at: i64,
}

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
    sqlx::query(
        "INSERT INTO audit_events (id, tenant_id, actor_user_id, actor, action, target, detail, \
         ip, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(new_id())
    .bind(tenant.as_str())
    .bind(event.actor_user_id)
    .bind(event.actor)
    .bind(event.action.as_str())
    .bind(event.target)
    .bind(event.detail)
    .bind(event.ip.map(|ip| ip.to_string()))
    .bind(unix_now())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The tenant's log, newest first.
pub async fn list(
    db: &Db,
    tenant: &TenantId,
    page: Page,
) -> Result<Paged<AuditEventRow>, sqlx::Error> {
    let rows = sqlx::query_as(
        "SELECT actor, action, target, detail, ip, created_at FROM audit_events \
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
    let since = unix_now() - window_seconds;
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
                .bind(account)
                .bind(since);
            for action in actions {
                query = query.bind(action.as_str());
            }
            query.fetch_one(db.pool()).await?
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
    let from_address: i64 = query.fetch_one(db.pool()).await?;
    Ok((for_account, from_address))
}
