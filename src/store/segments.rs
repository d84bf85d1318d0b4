//! Segments of a tenant.

use sqlx::FromRow;

use super::tenants::TenantId;
use super::{Db, SaveError, new_id, save_error, saved_at_version};

#[derive(Debug, Clone, FromRow)]
pub struct Segment {
    pub id: String,
    pub name: String,
    pub description: String,
    /// Kept by every mailbox create, move and delete (`mailboxes`), so no page counts rows.
    pub mailbox_count: i64,
    /// Grows with every save; the edit form carries it.
    pub version: i64,
}

const COLUMNS: &str = "s.id, s.name, s.description, s.version, s.mailbox_count";

pub async fn list(db: &Db, tenant: &TenantId) -> Result<Vec<Segment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM segments s WHERE s.tenant_id = $1 ORDER BY LOWER(s.name)"
    ))
    .bind(tenant.as_str())
    .fetch_all(db.pool())
    .await
}

pub async fn get(db: &Db, tenant: &TenantId, id: &str) -> Result<Option<Segment>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM segments s WHERE s.tenant_id = $1 AND s.id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(db.pool())
    .await
}

pub async fn create(
    db: &Db,
    tenant: &TenantId,
    name: &str,
    description: &str,
) -> Result<String, SaveError> {
    let id = new_id();
    let now = db.unix_now();
    sqlx::query(
        "INSERT INTO segments (id, tenant_id, name, description, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&id)
    .bind(tenant.as_str())
    .bind(name)
    .bind(description)
    .bind(now)
    .execute(db.pool())
    .await
    .map_err(save_error)?;
    Ok(id)
}

/// Renames the segment as loaded at `version`; `Stale` if it moved on since.
pub async fn update(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    name: &str,
    description: &str,
) -> Result<(), SaveError> {
    let updated = sqlx::query(
        "UPDATE segments SET name = $1, description = $2, updated_at = $3, version = version + 1 \
         WHERE tenant_id = $4 AND id = $5 AND version = $6",
    )
    .bind(name)
    .bind(description)
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .execute(db.pool())
    .await
    .map_err(save_error)?;
    saved_at_version(db.pool(), "segments", tenant, id, updated.rows_affected()).await
}

/// Deletes an empty segment; one that still has mailboxes is refused.
pub async fn delete(db: &Db, tenant: &TenantId, id: &str) -> Result<(), SaveError> {
    let deleted = sqlx::query(
        "DELETE FROM segments WHERE tenant_id = $1 AND id = $2 AND NOT EXISTS \
         (SELECT 1 FROM mailboxes m WHERE m.tenant_id = $1 AND m.segment_id = $2)",
    )
    .bind(tenant.as_str())
    .bind(id)
    .execute(db.pool())
    .await?;
    if deleted.rows_affected() == 1 {
        return Ok(());
    }
    match get(db, tenant, id).await? {
        Some(_) => Err(SaveError::InUse),
        None => Err(SaveError::NotFound),
    }
}
