//! Microsoft identities linked to Portico users, and the one-time links that bind them.

use std::collections::HashMap;

use uuid::Uuid;

use super::tenants::TenantId;
use super::users::UserId;
use super::{Db, is_unique_violation, new_id};
use crate::crypto::sha256_hex;

/// A linked identity as the Users page shows it.
#[derive(Debug, Clone)]
pub struct LinkedIdentity {
    pub username: String,
    pub tid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("this Microsoft account, or this user, is already linked")]
    AlreadyLinked,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The user this identity is linked to in the tenant, if any.
pub async fn linked_user(
    db: &Db,
    tenant: &TenantId,
    tid: Uuid,
    oid: Uuid,
) -> Result<Option<UserId>, sqlx::Error> {
    let user: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM microsoft_identities WHERE tenant_id = $1 AND tid = $2 AND oid = $3",
    )
    .bind(tenant.as_str())
    .bind(tid.hyphenated().to_string())
    .bind(oid.hyphenated().to_string())
    .fetch_optional(db.pool())
    .await?;
    Ok(user.map(UserId))
}

pub async fn link(
    db: &Db,
    tenant: &TenantId,
    user: &UserId,
    tid: Uuid,
    oid: Uuid,
    username: &str,
) -> Result<(), LinkError> {
    sqlx::query(
        "INSERT INTO microsoft_identities (id, tenant_id, user_id, tid, oid, username, linked_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(tid.hyphenated().to_string())
    .bind(oid.hyphenated().to_string())
    .bind(username)
    .bind(db.unix_now())
    .execute(db.pool())
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            LinkError::AlreadyLinked
        } else {
            err.into()
        }
    })?;
    Ok(())
}

/// Removes the user's link; true when there was one.
pub async fn unlink(db: &Db, tenant: &TenantId, user: &UserId) -> Result<bool, sqlx::Error> {
    let deleted =
        sqlx::query("DELETE FROM microsoft_identities WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .execute(db.pool())
            .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Linked identities of these users, by user id.
pub async fn for_users(
    db: &Db,
    tenant: &TenantId,
    users: &[&str],
) -> Result<HashMap<String, LinkedIdentity>, sqlx::Error> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let placeholders: Vec<String> = (0..users.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT user_id, username, tid FROM microsoft_identities \
         WHERE tenant_id = $1 AND user_id IN ({})",
        placeholders.join(", ")
    );
    let mut query = sqlx::query_as::<_, (String, String, String)>(&sql).bind(tenant.as_str());
    for user in users {
        query = query.bind(*user);
    }
    let rows = query.fetch_all(db.pool()).await?;
    Ok(rows
        .into_iter()
        .map(|(user_id, username, tid)| (user_id, LinkedIdentity { username, tid }))
        .collect())
}

/// Stores a one-time link token (by its hash) for the user, replacing any earlier one.
pub async fn create_invite(
    db: &Db,
    tenant: &TenantId,
    user: &UserId,
    token: &str,
    expires_at: i64,
) -> Result<(), sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM identity_link_invites WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO identity_link_invites (token_hash, tenant_id, user_id, expires_at) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(sha256_hex(token))
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The user a link token (by its hash) was made for, if it is valid at `now`.
pub async fn invited_user(
    db: &Db,
    tenant: &TenantId,
    token_hash: &str,
    now: i64,
) -> Result<Option<UserId>, sqlx::Error> {
    let user: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM identity_link_invites \
         WHERE tenant_id = $1 AND token_hash = $2 AND expires_at > $3",
    )
    .bind(tenant.as_str())
    .bind(token_hash)
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    Ok(user.map(UserId))
}

/// How using a one-time link ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Redeemed {
    /// The identity is now (or already was) the invited user's.
    Linked(UserId),
    /// No such link, or it expired: it is gone either way.
    InvalidInvite,
    /// The identity belongs to another user; the link stays usable for the right account.
    IdentityTaken,
}

/// Uses a one-time link: in one transaction the invite is deleted (so two browsers cannot
/// both use it), the invited user's earlier link is replaced, and the identity linked.
pub async fn redeem_invite(
    db: &Db,
    tenant: &TenantId,
    token_hash: &str,
    identity: (Uuid, Uuid),
    username: &str,
    now: i64,
) -> Result<Redeemed, sqlx::Error> {
    let (tid, oid) = (
        identity.0.hyphenated().to_string(),
        identity.1.hyphenated().to_string(),
    );
    let mut tx = db.pool().begin().await?;
    let invite: Option<(String, i64)> = sqlx::query_as(
        "DELETE FROM identity_link_invites WHERE tenant_id = $1 AND token_hash = $2 \
         RETURNING user_id, expires_at",
    )
    .bind(tenant.as_str())
    .bind(token_hash)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((user_id, _)) = invite.filter(|(_, expires_at)| *expires_at > now) else {
        tx.commit().await?;
        return Ok(Redeemed::InvalidInvite);
    };
    let linked: Option<String> = sqlx::query_scalar(
        "SELECT user_id FROM microsoft_identities WHERE tenant_id = $1 AND tid = $2 AND oid = $3",
    )
    .bind(tenant.as_str())
    .bind(&tid)
    .bind(&oid)
    .fetch_optional(&mut *tx)
    .await?;
    match linked {
        Some(owner) if owner != user_id => return Ok(Redeemed::IdentityTaken),
        Some(_) => {}
        None => {
            sqlx::query("DELETE FROM microsoft_identities WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant.as_str())
                .bind(&user_id)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query(
                "INSERT INTO microsoft_identities (id, tenant_id, user_id, tid, oid, username, linked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(new_id())
            .bind(tenant.as_str())
            .bind(&user_id)
            .bind(&tid)
            .bind(&oid)
            .bind(username)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match inserted {
                // Linked to someone else a moment ago: roll back, keeping the invite.
                Err(err) if is_unique_violation(&err) => return Ok(Redeemed::IdentityTaken),
                other => other?,
            };
        }
    }
    tx.commit().await?;
    Ok(Redeemed::Linked(UserId(user_id)))
}
