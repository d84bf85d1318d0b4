//! Delegated OAuth connections and their sealed tokens.

use sqlx::FromRow;
use time::{Date, OffsetDateTime};

use super::sealed::{Purpose, Sealed};
use super::tenants::TenantId;
use super::{
    Db, SaveError, date_from_text, date_text, found, from_unix, new_id, save_error,
    saved_at_version,
};
use crate::domain::{ClientId, Cloud, OAuthPurpose, OAuthStatus};

#[derive(Debug, Clone)]
pub struct OAuthConnection {
    pub id: String,
    pub tenant_id: TenantId,
    pub name: String,
    pub client_id: ClientId,
    pub directory: String,
    pub cloud: Cloud,
    pub client_secret_sealed: Option<SealedClientSecret>,
    pub secret_replaced_at: Option<OffsetDateTime>,
    /// The client secret's "Secret expires on"; `None` for a secret stored before Portico
    /// asked for it.
    pub secret_expires_on: Option<Date>,
    pub purpose: OAuthPurpose,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub scope: String,
    pub status: OAuthStatus,
    pub status_reason: Option<String>,
    pub authenticated_as: Option<String>,
    pub authenticated_at: Option<OffsetDateTime>,
    pub refresh_token_sealed: Option<SealedRefreshToken>,
    pub access_token_sealed: Option<SealedAccessToken>,
    pub access_token_expires_at: Option<OffsetDateTime>,
    pub renewed_at: Option<OffsetDateTime>,
    pub renewal_failures: i64,
    /// Grows with every settings change: the edit forms carry it, and an Authenticate
    /// started before a change must not complete after it.
    pub version: i64,
}

/// The settings an admin edits; tokens and status change only through the flows.
pub struct ConnectionFields {
    pub name: String,
    pub client_id: ClientId,
    pub directory: String,
    pub cloud: Cloud,
    pub purpose: OAuthPurpose,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub scope: String,
}

/// Tokens from a code exchange or a renewal, sealed by the caller.
pub struct SealedTokens<'a> {
    pub access_token: &'a SealedAccessToken,
    pub expires_at: i64,
    /// A rotated refresh token; `None` keeps the stored one.
    pub refresh_token: Option<&'a SealedRefreshToken>,
}

/// The sealed values of a connection, each bound to it (the row key is the connection's id).
pub struct ConnectionClientSecret;
pub struct RefreshToken;
pub struct AccessToken;

impl Purpose for ConnectionClientSecret {
    const NAME: &'static str = "oauth-connection/client-secret";
}

impl Purpose for RefreshToken {
    const NAME: &'static str = "oauth-connection/refresh-token";
}

impl Purpose for AccessToken {
    const NAME: &'static str = "oauth-connection/access-token";
}

pub type SealedClientSecret = Sealed<ConnectionClientSecret>;
pub type SealedRefreshToken = Sealed<RefreshToken>;
pub type SealedAccessToken = Sealed<AccessToken>;

pub fn new_connection_id() -> String {
    new_id()
}

#[derive(FromRow)]
struct Row {
    id: String,
    tenant_id: String,
    name: String,
    client_id: String,
    directory: String,
    cloud: String,
    client_secret_sealed: Option<String>,
    secret_replaced_at: Option<i64>,
    secret_expires_on: Option<String>,
    purpose: String,
    authorization_url: Option<String>,
    token_url: Option<String>,
    scope: String,
    status: String,
    status_reason: Option<String>,
    authenticated_as: Option<String>,
    authenticated_at: Option<i64>,
    refresh_token_sealed: Option<String>,
    access_token_sealed: Option<String>,
    access_token_expires_at: Option<i64>,
    renewed_at: Option<i64>,
    renewal_failures: i64,
    version: i64,
}

impl TryFrom<Row> for OAuthConnection {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Self, Self::Error> {
        let corrupt = |m: String| sqlx::Error::Decode(m.into());
        Ok(Self {
            id: row.id,
            tenant_id: TenantId(row.tenant_id),
            name: row.name,
            client_id: ClientId::parse(&row.client_id).map_err(corrupt)?,
            directory: row.directory,
            cloud: Cloud::parse(&row.cloud).map_err(corrupt)?,
            client_secret_sealed: row.client_secret_sealed.map(Sealed::from_column),
            secret_replaced_at: row.secret_replaced_at.map(from_unix),
            secret_expires_on: row
                .secret_expires_on
                .as_deref()
                .map(date_from_text)
                .transpose()?,
            purpose: OAuthPurpose::parse(&row.purpose).map_err(corrupt)?,
            authorization_url: row.authorization_url,
            token_url: row.token_url,
            scope: row.scope,
            status: OAuthStatus::parse(&row.status).map_err(corrupt)?,
            status_reason: row.status_reason,
            authenticated_as: row.authenticated_as,
            authenticated_at: row.authenticated_at.map(from_unix),
            refresh_token_sealed: row.refresh_token_sealed.map(Sealed::from_column),
            access_token_sealed: row.access_token_sealed.map(Sealed::from_column),
            access_token_expires_at: row.access_token_expires_at.map(from_unix),
            renewed_at: row.renewed_at.map(from_unix),
            renewal_failures: row.renewal_failures,
            version: row.version,
        })
    }
}

const COLUMNS: &str = "id, tenant_id, name, client_id, directory, cloud, client_secret_sealed, \
     secret_replaced_at, secret_expires_on, purpose, authorization_url, token_url, scope, status, status_reason, \
     authenticated_as, authenticated_at, refresh_token_sealed, access_token_sealed, \
     access_token_expires_at, renewed_at, renewal_failures, version";

pub async fn list(db: &Db, tenant: &TenantId) -> Result<Vec<OAuthConnection>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM oauth_connections WHERE tenant_id = $1 ORDER BY LOWER(name)"
    ))
    .bind(tenant.as_str())
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(OAuthConnection::try_from).collect()
}

pub async fn get(
    db: &Db,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<OAuthConnection>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM oauth_connections WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(OAuthConnection::try_from).transpose()
}

pub async fn create(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    fields: &ConnectionFields,
    client_secret: Option<(&SealedClientSecret, Date)>,
) -> Result<(), SaveError> {
    let now = db.unix_now();
    let client_secret_sealed = client_secret.map(|(sealed, _)| sealed);
    sqlx::query(
        "INSERT INTO oauth_connections (id, tenant_id, name, client_id, directory, cloud, \
         client_secret_sealed, secret_replaced_at, purpose, authorization_url, token_url, scope, \
         status, renewal_failures, created_at, updated_at, secret_expires_on) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'not_authenticated', 0, $13, \
         $13, $14)",
    )
    .bind(id)
    .bind(tenant.as_str())
    .bind(&fields.name)
    .bind(fields.client_id.to_string())
    .bind(&fields.directory)
    .bind(fields.cloud.as_str())
    .bind(client_secret_sealed.map(Sealed::as_str))
    .bind(client_secret_sealed.map(|_| now))
    .bind(fields.purpose.as_str())
    .bind(fields.authorization_url.as_deref())
    .bind(fields.token_url.as_deref())
    .bind(&fields.scope)
    .bind(now)
    .bind(client_secret.map(|(_, expires_on)| date_text(expires_on)))
    .execute(db.pool())
    .await
    .map_err(save_error)?;
    Ok(())
}

/// Saves the settings of the connection as loaded at `version` (`Stale` if it moved on
/// since), with a new sealed client secret when one was typed, and a new "Secret expires
/// on" when one was entered (`None` keeps both). A connection whose app or scope changed
/// must be authenticated again, so its tokens are dropped.
pub async fn update(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    fields: &ConnectionFields,
    new_client_secret_sealed: Option<&SealedClientSecret>,
    secret_expires_on: Option<Date>,
) -> Result<(), SaveError> {
    let updated = sqlx::query(
        "UPDATE oauth_connections SET name = $1, client_id = $2, directory = $3, cloud = $4, \
         purpose = $5, authorization_url = $6, token_url = $7, scope = $8, \
         status = 'not_authenticated', status_reason = NULL, authenticated_as = NULL, \
         authenticated_at = NULL, refresh_token_sealed = NULL, access_token_sealed = NULL, \
         access_token_expires_at = NULL, renewal_failures = 0, renewal_not_before = NULL, \
         renewal_lease = NULL, updated_at = $9, version = version + 1, \
         client_secret_sealed = COALESCE($13, client_secret_sealed), \
         secret_replaced_at = CASE WHEN $13 IS NULL THEN secret_replaced_at ELSE $9 END, \
         secret_expires_on = COALESCE($14, secret_expires_on) \
         WHERE tenant_id = $10 AND id = $11 AND version = $12",
    )
    .bind(&fields.name)
    .bind(fields.client_id.to_string())
    .bind(&fields.directory)
    .bind(fields.cloud.as_str())
    .bind(fields.purpose.as_str())
    .bind(fields.authorization_url.as_deref())
    .bind(fields.token_url.as_deref())
    .bind(&fields.scope)
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .bind(new_client_secret_sealed.map(Sealed::as_str))
    .bind(secret_expires_on.map(date_text))
    .execute(db.pool())
    .await
    .map_err(save_error)?;
    saved_at_version(
        db.pool(),
        "oauth_connections",
        tenant,
        id,
        updated.rows_affected(),
    )
    .await
}

/// Replaces the client secret of the connection as loaded at `version`, with its expiry
/// date; `Stale` if it moved on since.
pub async fn replace_secret(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    client_secret_sealed: &SealedClientSecret,
    secret_expires_on: Date,
) -> Result<(), SaveError> {
    let now = db.unix_now();
    let updated = sqlx::query(
        "UPDATE oauth_connections SET client_secret_sealed = $1, secret_replaced_at = $2, \
         secret_expires_on = $6, updated_at = $2, version = version + 1 \
         WHERE tenant_id = $3 AND id = $4 AND version = $5",
    )
    .bind(client_secret_sealed.as_str())
    .bind(now)
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .bind(date_text(secret_expires_on))
    .execute(db.pool())
    .await?;
    saved_at_version(
        db.pool(),
        "oauth_connections",
        tenant,
        id,
        updated.rows_affected(),
    )
    .await
}

/// Sets the "Secret expires on" of the stored client secret of the connection as loaded at
/// `version`, without touching the secret or the consent; `Stale` if it moved on since.
pub async fn set_secret_expiry(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    secret_expires_on: Date,
) -> Result<(), SaveError> {
    let updated = sqlx::query(
        "UPDATE oauth_connections SET secret_expires_on = $1, updated_at = $2, \
         version = version + 1 WHERE tenant_id = $3 AND id = $4 AND version = $5 \
         AND client_secret_sealed IS NOT NULL",
    )
    .bind(date_text(secret_expires_on))
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .execute(db.pool())
    .await?;
    saved_at_version(
        db.pool(),
        "oauth_connections",
        tenant,
        id,
        updated.rows_affected(),
    )
    .await
}

/// Records a successful authentication: tokens, who, and the status, in one statement, and
/// only if the connection is still at `version`, the settings the consent was given for (a
/// save during the code exchange wins, and these tokens are not stored). Returns whether
/// they were stored.
pub async fn store_authentication(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    version: i64,
    authenticated_as: &str,
    tokens: &SealedTokens<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE oauth_connections SET status = 'authenticated', status_reason = NULL, \
         authenticated_as = $1, authenticated_at = $2, refresh_token_sealed = $3, \
         access_token_sealed = $4, access_token_expires_at = $5, renewed_at = $2, \
         renewal_failures = 0, renewal_not_before = NULL, renewal_lease = NULL \
         WHERE tenant_id = $6 AND id = $7 AND version = $8",
    )
    .bind(authenticated_as)
    .bind(now)
    .bind(tokens.refresh_token.map(Sealed::as_str))
    .bind(tokens.access_token.as_str())
    .bind(tokens.expires_at)
    .bind(tenant.as_str())
    .bind(id)
    .bind(version)
    .execute(db.pool())
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Stores renewed tokens. The rotated refresh token and the new access token are written in
/// one statement, so a crash never leaves a used refresh token as the only one stored; and
/// only under the renewer's own lease, so a renewal overtaken by a new Authenticate or a
/// settings change writes nothing.
pub async fn store_renewal(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    lease: &str,
    tokens: &SealedTokens<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let stored = sqlx::query(
        "UPDATE oauth_connections SET access_token_sealed = $1, access_token_expires_at = $2, \
         refresh_token_sealed = COALESCE($3, refresh_token_sealed), renewed_at = $4, \
         renewal_failures = 0, renewal_not_before = NULL, renewal_lease = NULL \
         WHERE tenant_id = $5 AND id = $6 AND renewal_lease = $7 AND status = 'authenticated'",
    )
    .bind(tokens.access_token.as_str())
    .bind(tokens.expires_at)
    .bind(tokens.refresh_token.map(Sealed::as_str))
    .bind(now)
    .bind(tenant.as_str())
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(stored.rows_affected() == 1)
}

/// The refresh token no longer works: the connection needs its user again. Only the
/// lease holder may say so, about the tokens it tried.
pub async fn mark_needs_reauthentication(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    lease: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let marked = sqlx::query(
        "UPDATE oauth_connections SET status = 'needs_reauthentication', status_reason = $1, \
         refresh_token_sealed = NULL, access_token_sealed = NULL, access_token_expires_at = NULL, \
         renewal_not_before = NULL, renewal_lease = NULL \
         WHERE tenant_id = $2 AND id = $3 AND renewal_lease = $4 AND status = 'authenticated'",
    )
    .bind(reason)
    .bind(tenant.as_str())
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// A transient renewal failure: try again after `retry_at`, the status unchanged.
pub async fn postpone_renewal(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    lease: &str,
    retry_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE oauth_connections SET renewal_failures = renewal_failures + 1, \
         renewal_not_before = $1, renewal_lease = NULL \
         WHERE tenant_id = $2 AND id = $3 AND renewal_lease = $4",
    )
    .bind(retry_at)
    .bind(tenant.as_str())
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Gives the lease back without counting a failure: another renewer got there first.
/// (Counted as a failure, it would put a healthy connection behind the ones that fail.)
pub async fn release_renewal(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    lease: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE oauth_connections SET renewal_not_before = NULL, renewal_lease = NULL \
         WHERE tenant_id = $1 AND id = $2 AND renewal_lease = $3",
    )
    .bind(tenant.as_str())
    .bind(id)
    .bind(lease)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Connections whose access token expires before `horizon` and that no renewer holds, at
/// most `limit`, taken in turns across tenants: every tenant's first connection, then every
/// tenant's second, and so on. A tenant's connections that renewed fine last time come
/// first, soonest to expire first, and its retries after; within a turn, tenants with such
/// fresh work come before tenants that have only retries.
pub async fn due_for_renewal(
    db: &Db,
    now: i64,
    horizon: i64,
    limit: i64,
) -> Result<Vec<OAuthConnection>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM (SELECT {COLUMNS}, ROW_NUMBER() OVER (PARTITION BY tenant_id \
         ORDER BY renewal_failures > 0, access_token_expires_at, id) AS turn \
         FROM oauth_connections WHERE status = 'authenticated' AND access_token_expires_at < $1 \
         AND (renewal_not_before IS NULL OR renewal_not_before <= $2)) AS due \
         ORDER BY turn, renewal_failures > 0, access_token_expires_at, id LIMIT $3"
    ))
    .bind(horizon)
    .bind(now)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(OAuthConnection::try_from).collect()
}

/// Takes the renewal lease of a connection until `until`: `Some(lease)` for exactly one of
/// several instances asking at once (a compare-and-set that works the same on both
/// backends); the lease then guards every write of that renewal.
pub async fn claim_renewal(
    db: &Db,
    tenant: &TenantId,
    id: &str,
    now: i64,
    until: i64,
) -> Result<Option<String>, sqlx::Error> {
    let lease = new_id();
    let claimed = sqlx::query(
        "UPDATE oauth_connections SET renewal_not_before = $1, renewal_lease = $5 \
         WHERE tenant_id = $2 AND id = $3 AND status = 'authenticated' \
         AND (renewal_not_before IS NULL OR renewal_not_before <= $4)",
    )
    .bind(until)
    .bind(tenant.as_str())
    .bind(id)
    .bind(now)
    .bind(&lease)
    .execute(db.pool())
    .await?;
    Ok((claimed.rows_affected() == 1).then_some(lease))
}

/// Deletes a connection; the foreign key of mailboxes refuses it while any signs in with it.
pub async fn delete(db: &Db, tenant: &TenantId, id: &str) -> Result<(), SaveError> {
    let deleted = sqlx::query("DELETE FROM oauth_connections WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id)
        .execute(db.pool())
        .await
        .map_err(save_error)?;
    found(deleted.rows_affected())
}
