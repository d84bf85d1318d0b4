//! The tenant's Microsoft Graph credentials (External APIs). The certificates of those that
//! authenticate with one are in `certificates`.

use sqlx::FromRow;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::certificates::{self, NewCertificate, Owner, Slot};
use super::sealed::{Purpose, Sealed};
use super::tenants::TenantId;
use super::{
    Db, SaveError, date_from_text, date_text, found, from_unix, new_id, save_error,
    saved_at_version,
};
use crate::domain::{AuthMethod, ClientId, Cloud, CredentialName};

#[derive(Debug, Clone)]
pub struct GraphCredential {
    pub id: String,
    pub name: String,
    pub client_id: ClientId,
    pub directory: String,
    pub directory_id: Uuid,
    pub cloud: Cloud,
    pub authentication: Authentication,
    pub last_test: Option<TestResult>,
    /// Grows with every save; edit forms carry it (see `saved_at_version`).
    pub version: i64,
}

/// How a credential proves itself to Microsoft, and until when it can.
#[derive(Debug, Clone)]
pub enum Authentication {
    ClientSecret {
        sealed: SealedGraphSecret,
        expires_on: Date,
        replaced_at: OffsetDateTime,
    },
    /// The current certificate: its thumbprint and end of validity.
    Certificate {
        thumbprint: String,
        not_after: OffsetDateTime,
    },
}

impl GraphCredential {
    pub fn auth_method(&self) -> AuthMethod {
        match self.authentication {
            Authentication::ClientSecret { .. } => AuthMethod::ClientSecret,
            Authentication::Certificate { .. } => AuthMethod::Certificate,
        }
    }

    /// The last day the credential works: its secret's expiry date, or the day its
    /// certificate ends (UTC).
    pub fn expires_on(&self) -> Date {
        match &self.authentication {
            Authentication::ClientSecret { expires_on, .. } => *expires_on,
            Authentication::Certificate { not_after, .. } => not_after.date(),
        }
    }
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

/// A credential's client secret, sealed to it (the row key is the credential's id).
pub struct GraphClientSecret;

impl Purpose for GraphClientSecret {
    const NAME: &'static str = "graph-credential/client-secret";
}

pub type SealedGraphSecret = Sealed<GraphClientSecret>;

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
    auth_method: String,
    client_secret_sealed: Option<String>,
    secret_expires_on: Option<String>,
    secret_replaced_at: Option<i64>,
    certificate_thumbprint: Option<String>,
    certificate_not_after: Option<i64>,
    last_test_at: Option<i64>,
    last_test_ok: Option<i64>,
    last_test_summary: Option<String>,
    version: i64,
}

impl TryFrom<Row> for GraphCredential {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        let corrupt = |m: String| sqlx::Error::Decode(m.into());
        let authentication = match AuthMethod::parse(&row.auth_method).map_err(corrupt)? {
            AuthMethod::ClientSecret => {
                let (Some(sealed), Some(expires_on), Some(replaced_at)) = (
                    row.client_secret_sealed,
                    row.secret_expires_on,
                    row.secret_replaced_at,
                ) else {
                    return Err(corrupt(
                        "a client-secret credential without a secret".into(),
                    ));
                };
                Authentication::ClientSecret {
                    sealed: Sealed::from_column(sealed),
                    expires_on: date_from_text(&expires_on)?,
                    replaced_at: from_unix(replaced_at),
                }
            }
            AuthMethod::Certificate => {
                let (Some(thumbprint), Some(not_after)) =
                    (row.certificate_thumbprint, row.certificate_not_after)
                else {
                    return Err(corrupt(
                        "a certificate credential without a certificate".into(),
                    ));
                };
                Authentication::Certificate {
                    thumbprint,
                    not_after: from_unix(not_after),
                }
            }
        };
        Ok(Self {
            client_id: ClientId::parse(&row.client_id).map_err(corrupt)?,
            directory_id: Uuid::try_parse(&row.directory_id).map_err(|e| corrupt(e.to_string()))?,
            cloud: Cloud::parse(&row.cloud).map_err(corrupt)?,
            authentication,
            last_test: row.last_test_at.map(|at| TestResult {
                at: from_unix(at),
                ok: row.last_test_ok == Some(1),
                summary: row.last_test_summary.unwrap_or_default(),
            }),
            id: row.id,
            name: row.name,
            directory: row.directory,
            version: row.version,
        })
    }
}

/// The credential's columns, with its current certificate's (`certificate` joined).
const COLUMNS: &str = "g.id, g.name, g.client_id, g.directory, g.directory_id, g.cloud, \
     g.auth_method, g.client_secret_sealed, g.secret_expires_on, g.secret_replaced_at, \
     c.thumbprint AS certificate_thumbprint, c.not_after AS certificate_not_after, \
     g.last_test_at, g.last_test_ok, g.last_test_summary, g.version";

const FROM: &str = "graph_credentials g LEFT JOIN certificates c \
     ON c.tenant_id = g.tenant_id AND c.graph_credential_id = g.id AND c.slot = 'current'";

pub async fn list(db: &Db, tenant: &TenantId) -> Result<Vec<GraphCredential>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE g.tenant_id = $1 ORDER BY LOWER(g.name)"
    ))
    .bind(tenant.as_str())
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

/// Counts for the operator's metrics: no tenant is named, only totals. A certificate counts
/// by the day (UTC) it ends, like a secret.
pub async fn count_by_expiry(
    db: &Db,
    today: Date,
    last_day: Date,
) -> Result<ExpiryCounts, sqlx::Error> {
    let start_of = |day: Date| day.midnight().assume_utc().unix_timestamp();
    let (expired, expiring): (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(expired), 0) AS BIGINT), \
                CAST(COALESCE(SUM(expiring), 0) AS BIGINT) FROM ( \
           SELECT CASE WHEN secret_expires_on < $1 THEN 1 ELSE 0 END AS expired, \
                  CASE WHEN secret_expires_on >= $1 AND secret_expires_on <= $2 \
                       THEN 1 ELSE 0 END AS expiring \
           FROM graph_credentials WHERE auth_method = 'client_secret' \
           UNION ALL \
           SELECT CASE WHEN not_after < $3 THEN 1 ELSE 0 END, \
                  CASE WHEN not_after >= $3 AND not_after < $4 THEN 1 ELSE 0 END \
           FROM certificates WHERE graph_credential_id IS NOT NULL AND slot = 'current' \
         ) counted",
    )
    .bind(date_text(today))
    .bind(date_text(last_day))
    .bind(start_of(today))
    .bind(start_of(last_day.next_day().unwrap_or(last_day)))
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
        "SELECT {COLUMNS} FROM {FROM} WHERE g.tenant_id = $1 AND g.id = $2"
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
    sealed_secret: &SealedGraphSecret,
    secret_expires_on: Date,
) -> Result<(), SaveError> {
    let now = db.unix_now();
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
    .bind(sealed_secret.as_str())
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
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .execute(db.pool())
    .await
    .map_err(save_error)?;
    saved_at_version(
        db.pool(),
        "graph_credentials",
        tenant,
        id,
        updated.rows_affected(),
    )
    .await
}

/// Replaces the secret of the client-secret credential as loaded at `version`; `Stale` if
/// it moved on since.
pub async fn replace_secret(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    sealed_secret: &SealedGraphSecret,
    secret_expires_on: Date,
) -> Result<(), SaveError> {
    let now = db.unix_now();
    let updated = sqlx::query(
        "UPDATE graph_credentials SET client_secret_sealed = $1, secret_expires_on = $2, \
         secret_replaced_at = $3, last_test_at = NULL, last_test_ok = NULL, \
         last_test_summary = NULL, updated_at = $3, version = version + 1 \
         WHERE tenant_id = $4 AND id = $5 AND version = $6 AND auth_method = 'client_secret'",
    )
    .bind(sealed_secret.as_str())
    .bind(date_text(secret_expires_on))
    .bind(now)
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .execute(db.pool())
    .await?;
    saved_at_version(
        db.pool(),
        "graph_credentials",
        tenant,
        id,
        updated.rows_affected(),
    )
    .await
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
    .bind(db.unix_now())
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

/// Creates a credential that authenticates with `certificate`, both or neither.
pub async fn create_with_certificate(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    fields: &CredentialFields,
    certificate: &NewCertificate<'_>,
) -> Result<(), SaveError> {
    let now = db.unix_now();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO graph_credentials (id, tenant_id, name, client_id, directory, directory_id, \
         cloud, auth_method, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'certificate', $8, $8)",
    )
    .bind(id)
    .bind(tenant.as_str())
    .bind(fields.name.as_str())
    .bind(fields.client_id.to_string())
    .bind(&fields.directory)
    .bind(fields.directory_id.hyphenated().to_string())
    .bind(fields.cloud.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(save_error)?;
    certificates::insert(
        &mut tx,
        tenant,
        Owner::GraphCredential(id),
        Slot::Current,
        certificate,
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
