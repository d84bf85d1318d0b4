//! The tenant's Microsoft Graph credentials (External APIs).

use sqlx::FromRow;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::tenants::TenantId;
use super::{Db, SaveError, found, from_unix, new_id, save_error, saved_at_version, unix_now};
use crate::domain::{ClientId, Cloud, CredentialName};

#[derive(Debug, Clone)]
pub struct GraphCredential {
    pub id: String,
    pub name: String,
    pub client_id: ClientId,
    pub directory: String,
    pub directory_id: Uuid,
    pub cloud: Cloud,
    pub client_secret_sealed: String,
    pub secret_expires_on: Date,
    pub secret_replaced_at: OffsetDateTime,
    pub last_test: Option<TestResult>,
    /// Grows with every save; edit forms carry it (see `saved_at_version`).
    pub version: i64,
}

/// The outcome of the last "Test connection".
#[derive(Debug, Clone)]
pub struct TestResult {
    pub at: OffsetDateTime,
    pub ok: bool,
    pub summary: String,
}

/// The values of a credential other than its secret.
pub struct CredentialFields {
    pub name: CredentialName,
    pub client_id: ClientId,
    pub directory: String,
    pub directory_id: Uuid,
    pub cloud: Cloud,
}

/// What the sealed secret of a credential is bound to.
pub fn secret_context(tenant: &TenantId, credential_id: &str) -> String {
    format!(
        "graph-credential/client-secret/{}/{credential_id}",
        tenant.as_str()
    )
}

/// A new credential's id, known before saving so its secret can be sealed to it.
pub fn new_credential_id() -> String {
    new_id()
}

#[derive(FromRow)]
struct Row {
    id: String,
    name: String,
    client_id: String,
    directory: String,
    directory_id: String,
    cloud: String,
    client_secret_sealed: String,
    secret_expires_on: String,
    secret_replaced_at: i64,
    last_test_at: Option<i64>,
    last_test_ok: Option<i64>,
    last_test_summary: Option<String>,
    version: i64,
}

impl TryFrom<Row> for GraphCredential {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        let corrupt = |m: String| sqlx::Error::Decode(m.into());
        Ok(Self {
            client_id: ClientId::parse(&row.client_id).map_err(corrupt)?,
            directory_id: Uuid::try_parse(&row.directory_id).map_err(|e| corrupt(e.to_string()))?,
            cloud: Cloud::parse(&row.cloud).map_err(corrupt)?,
            secret_expires_on: crate::domain::parse_expiry_date(&row.secret_expires_on)
                .map_err(corrupt)?,
            secret_replaced_at: from_unix(row.secret_replaced_at),
            last_test: row.last_test_at.map(|at| TestResult {
                at: from_unix(at),
                ok: row.last_test_ok == Some(1),
                summary: row.last_test_summary.unwrap_or_default(),
            }),
            id: row.id,
            name: row.name,
            directory: row.directory,
            client_secret_sealed: row.client_secret_sealed,
            version: row.version,
        })
    }
}

const COLUMNS: &str = "id, name, client_id, directory, directory_id, cloud, client_secret_sealed, \
     secret_expires_on, secret_replaced_at, last_test_at, last_test_ok, last_test_summary, version";

fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

pub async fn list(db: &Db, tenant: &TenantId) -> Result<Vec<GraphCredential>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM graph_credentials WHERE tenant_id = $1 ORDER BY LOWER(name)"
    ))
    .bind(tenant.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(GraphCredential::try_from).collect()
}

/// Credentials whose secret expires on or before `last_day`, soonest first.
pub async fn expiring(
    db: &Db,
    tenant: &TenantId,
    last_day: Date,
) -> Result<Vec<GraphCredential>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM graph_credentials WHERE tenant_id = $1 AND secret_expires_on <= $2 \
         ORDER BY secret_expires_on"
    ))
    .bind(tenant.as_str())
    .bind(date_text(last_day))
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(GraphCredential::try_from).collect()
}

/// How many client secrets, across all tenants, have expired and how many expire soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryCounts {
    /// Expired before `today`.
    pub expired: i64,
    /// Expiring from `today` through `last_day`.
    pub expiring: i64,
}

/// Counts for the operator's metrics: no tenant is named, only totals.
pub async fn count_by_expiry(
    db: &Db,
    today: Date,
    last_day: Date,
) -> Result<ExpiryCounts, sqlx::Error> {
    let (expired, expiring): (i64, i64) = sqlx::query_as(
        "SELECT \
           CAST(COALESCE(SUM(CASE WHEN secret_expires_on < $1 THEN 1 ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN secret_expires_on >= $1 AND secret_expires_on <= $2 \
                THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM graph_credentials",
    )
    .bind(date_text(today))
    .bind(date_text(last_day))
    .fetch_one(db.pool())
    .await?;
    Ok(ExpiryCounts { expired, expiring })
}

pub async fn get(
    db: &Db,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<GraphCredential>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM graph_credentials WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(GraphCredential::try_from).transpose()
}

pub async fn create(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    fields: &CredentialFields,
    sealed_secret: &str,
    secret_expires_on: Date,
) -> Result<(), SaveError> {
    let now = unix_now();
    sqlx::query(
        "INSERT INTO graph_credentials (id, tenant_id, name, client_id, directory, directory_id, \
         cloud, client_secret_sealed, secret_expires_on, secret_replaced_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $10)",
    )
    .bind(id)
    .bind(tenant.as_str())
    .bind(fields.name.as_str())
    .bind(fields.client_id.to_string())
    .bind(&fields.directory)
    .bind(fields.directory_id.hyphenated().to_string())
    .bind(fields.cloud.as_str())
    .bind(sealed_secret)
    .bind(date_text(secret_expires_on))
    .bind(now)
    .execute(db.pool())
    .await
    .map_err(save_error)?;
    Ok(())
}

/// Saves the fields of the credential as loaded at `version`; `Stale` if it moved on since.
pub async fn update(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    fields: &CredentialFields,
) -> Result<(), SaveError> {
    let updated = sqlx::query(
        "UPDATE graph_credentials SET name = $1, client_id = $2, directory = $3, directory_id = $4, \
         cloud = $5, last_test_at = NULL, last_test_ok = NULL, last_test_summary = NULL, \
         updated_at = $6, version = version + 1 WHERE tenant_id = $7 AND id = $8 AND version = $9",
    )
    .bind(fields.name.as_str())
    .bind(fields.client_id.to_string())
    .bind(&fields.directory)
    .bind(fields.directory_id.hyphenated().to_string())
    .bind(fields.cloud.as_str())
    .bind(unix_now())
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .execute(db.pool())
    .await
    .map_err(save_error)?;
    saved_at_version(db, "graph_credentials", tenant, id, updated.rows_affected()).await
}

/// Replaces the secret of the credential as loaded at `version`; `Stale` if it moved on since.
pub async fn replace_secret(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    sealed_secret: &str,
    secret_expires_on: Date,
) -> Result<(), SaveError> {
    let now = unix_now();
    let updated = sqlx::query(
        "UPDATE graph_credentials SET client_secret_sealed = $1, secret_expires_on = $2, \
         secret_replaced_at = $3, last_test_at = NULL, last_test_ok = NULL, \
         last_test_summary = NULL, updated_at = $3, version = version + 1 \
         WHERE tenant_id = $4 AND id = $5 AND version = $6",
    )
    .bind(sealed_secret)
    .bind(date_text(secret_expires_on))
    .bind(now)
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .execute(db.pool())
    .await?;
    saved_at_version(db, "graph_credentials", tenant, id, updated.rows_affected()).await
}

pub async fn record_test(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    ok: bool,
    summary: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE graph_credentials SET last_test_at = $1, last_test_ok = $2, last_test_summary = $3 \
         WHERE tenant_id = $4 AND id = $5",
    )
    .bind(unix_now())
    .bind(i64::from(ok))
    .bind(summary)
    .bind(tenant.as_str())
    .bind(id)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Deletes a credential. While mailboxes use it, their foreign key refuses: the check and
/// the delete cannot race.
pub async fn delete(db: &Db, tenant: &TenantId, id: &str) -> Result<(), SaveError> {
    let deleted = sqlx::query("DELETE FROM graph_credentials WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(save_error)?;
    found(deleted.rows_affected())
}
