use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use time::OffsetDateTime;

use super::tenants::TenantId;
use super::{Db, Page, Paged, Transaction, from_unix, is_unique_violation, like_pattern, new_id};
use crate::domain::{DisplayName, EmailAddress, Role, UserStatus};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(pub(super) String);

impl UserId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub status: UserStatus,
    pub has_password: bool,
    pub created_at: OffsetDateTime,
    /// Grows with every change; the admin forms of the user's page carry it.
    pub version: i64,
}

pub struct NewUser {
    pub email: EmailAddress,
    pub display_name: DisplayName,
    pub role: Role,
    /// An argon2 PHC string; `None` for people who only sign in with Microsoft.
    pub password_hash: Option<String>,
}

/// What local sign-in needs to decide, and nothing more.
pub struct SignInCandidate {
    pub id: UserId,
    pub status: UserStatus,
    pub password_hash: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("a user with this email exists in the tenant")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeUserError {
    #[error("user not found")]
    NotFound,
    #[error("the tenant would have no active admin left")]
    LastActiveAdmin,
    #[error("someone else changed the user since it was loaded")]
    Stale,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A user as read, before its text columns are parsed. The session store reads it in the
/// statement that loads a signed-in session and hands it over inside the record
/// (`sessions::SIGNED_IN_USER_KEY`), hence serde.
#[derive(FromRow, Serialize, Deserialize)]
pub struct UserRow {
    id: String,
    email: String,
    display_name: String,
    role: String,
    status: String,
    has_password: i64,
    created_at: i64,
    version: i64,
}

impl TryFrom<UserRow> for User {
    type Error = sqlx::Error;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        let corrupt = |message: String| sqlx::Error::Decode(message.into());
        Ok(Self {
            id: UserId(row.id),
            email: row.email,
            display_name: row.display_name,
            role: Role::parse(&row.role).map_err(corrupt)?,
            status: UserStatus::parse(&row.status).map_err(corrupt)?,
            has_password: row.has_password != 0,
            created_at: from_unix(row.created_at),
            version: row.version,
        })
    }
}

/// The columns of `UserRow`, of `users u`.
pub(super) const USER_COLUMNS: &str = "u.id, u.email, u.display_name, u.role, u.status, \
     CASE WHEN u.password_hash IS NULL THEN 0 ELSE 1 END AS has_password, u.created_at, \
     u.version";

pub async fn find_for_sign_in(
    db: &Db,
    tenant: &TenantId,
    email: &EmailAddress,
) -> Result<Option<SignInCandidate>, sqlx::Error> {
    let row: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT id, status, password_hash FROM users WHERE tenant_id = $1 AND email = $2",
    )
    .bind(tenant.as_str())
    .bind(email.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.map(|(id, status, password_hash)| {
        Ok(SignInCandidate {
            id: UserId(id),
            status: UserStatus::parse(&status).map_err(|m| sqlx::Error::Decode(m.into()))?,
            password_hash,
        })
    })
    .transpose()
}

pub async fn password_hash(
    db: &Db,
    tenant: &TenantId,
    id: &UserId,
) -> Result<Option<String>, sqlx::Error> {
    let hash: Option<Option<String>> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_optional(db.pool())
            .await?;
    Ok(hash.flatten())
}

pub async fn get(db: &Db, tenant: &TenantId, id: &str) -> Result<Option<User>, sqlx::Error> {
    let row: Option<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users u WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.map(User::try_from).transpose()
}

/// Users of the tenant, by name, optionally those whose name or email contains `search`.
pub async fn list(
    db: &Db,
    tenant: &TenantId,
    search: Option<&str>,
    page: Page,
) -> Result<Paged<User>, sqlx::Error> {
    let rows: Vec<UserRow> = sqlx::query_as(&format!(
        "SELECT {USER_COLUMNS} FROM users u WHERE tenant_id = $1 \
         AND ($2 = '' OR email LIKE $2 ESCAPE '\\' OR LOWER(display_name) LIKE $2 ESCAPE '\\') \
         ORDER BY LOWER(display_name), email LIMIT $3 OFFSET $4"
    ))
    .bind(tenant.as_str())
    .bind(search.map(like_pattern).unwrap_or_default())
    .bind(page.limit() + 1)
    .bind(page.offset())
    .fetch_all(db.pool())
    .await?;
    let users = rows
        .into_iter()
        .map(User::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Paged::from_rows(users, page))
}

/// How many users the tenant has, per role, counting active ones only.
pub async fn count_active_by_role(
    db: &Db,
    tenant: &TenantId,
) -> Result<Vec<(Role, i64)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT role, COUNT(*) FROM users WHERE tenant_id = $1 AND status = 'active' GROUP BY role",
    )
    .bind(tenant.as_str())
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(role, count)| Role::parse(&role).ok().map(|role| (role, count)))
        .collect())
}

pub async fn create(db: &Db, tenant: &TenantId, user: &NewUser) -> Result<UserId, CreateUserError> {
    let mut tx = db.pool().begin().await?;
    let id = insert(&mut tx, tenant, user, db.unix_now())
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                CreateUserError::EmailTaken
            } else {
                err.into()
            }
        })?;
    tx.commit().await?;
    Ok(id)
}

pub async fn insert(
    tx: &mut Transaction,
    tenant: &TenantId,
    user: &NewUser,
    now: i64,
) -> Result<UserId, sqlx::Error> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO users (id, tenant_id, email, display_name, role, status, password_hash, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $7)",
    )
    .bind(&id)
    .bind(tenant.as_str())
    .bind(user.email.as_str())
    .bind(user.display_name.as_str())
    .bind(user.role.as_str())
    .bind(user.password_hash.as_deref())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(UserId(id))
}

/// Changes the role of the user as loaded at `version`.
pub async fn set_role(
    db: &Db,
    tenant: &TenantId,
    id: &UserId,
    version: i64,
    role: Role,
) -> Result<(), ChangeUserError> {
    update_keeping_an_admin(db, tenant, id, version, "role", role.as_str()).await
}

/// Enables or disables the user as loaded at `version`.
pub async fn set_status(
    db: &Db,
    tenant: &TenantId,
    id: &UserId,
    version: i64,
    status: UserStatus,
) -> Result<(), ChangeUserError> {
    update_keeping_an_admin(db, tenant, id, version, "status", status.as_str()).await
}

/// Changes a role or status, refusing any change that leaves the tenant without an
/// active admin (nobody could manage it any more), or that another admin overtook.
async fn update_keeping_an_admin(
    db: &Db,
    tenant: &TenantId,
    id: &UserId,
    version: i64,
    column: &'static str,
    value: &str,
) -> Result<(), ChangeUserError> {
    let mut tx = db.pool().begin().await?;
    // Touching the tenant row serializes concurrent user changes of one tenant in both
    // backends, so two admins demoting each other cannot both succeed.
    sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    let updated = sqlx::query(&format!(
        "UPDATE users SET {column} = $1, updated_at = $2, version = version + 1 \
         WHERE tenant_id = $3 AND id = $4 AND version = $5"
    ))
    .bind(value)
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(version)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(unchanged(&mut tx, tenant, id).await?);
    }
    let active_admins: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND role = 'admin' AND status = 'active'",
    )
    .bind(tenant.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if active_admins == 0 {
        return Err(ChangeUserError::LastActiveAdmin);
    }
    tx.commit().await?;
    Ok(())
}

/// Why an update at a version touched no user: someone changed them first, or they are gone.
async fn unchanged(
    tx: &mut Transaction,
    tenant: &TenantId,
    id: &UserId,
) -> Result<ChangeUserError, sqlx::Error> {
    let still_there: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .fetch_one(&mut **tx)
            .await?;
    Ok(if still_there > 0 {
        ChangeUserError::Stale
    } else {
        ChangeUserError::NotFound
    })
}

/// An admin's reset of the password of the user as loaded at `version`.
pub async fn reset_password_hash(
    db: &Db,
    tenant: &TenantId,
    id: &UserId,
    version: i64,
    password_hash: &str,
) -> Result<(), ChangeUserError> {
    let mut tx = db.pool().begin().await?;
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2, version = version + 1 \
         WHERE tenant_id = $3 AND id = $4 AND version = $5",
    )
    .bind(password_hash)
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id.as_str())
    .bind(version)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(unchanged(&mut tx, tenant, id).await?);
    }
    tx.commit().await?;
    Ok(())
}

/// The user's own change of password (they proved the current one). It moves the version
/// on, so an admin's reset opened before it does not silently undo it.
pub async fn set_own_password_hash(
    db: &Db,
    tenant: &TenantId,
    id: &UserId,
    password_hash: &str,
) -> Result<(), ChangeUserError> {
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2, version = version + 1 \
         WHERE tenant_id = $3 AND id = $4",
    )
    .bind(password_hash)
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id.as_str())
    .execute(db.pool())
    .await?;
    if updated.rows_affected() == 0 {
        return Err(ChangeUserError::NotFound);
    }
    Ok(())
}

/// A first password for a user who has none (they sign in with Microsoft). Only while they
/// still have none: `Stale` when one was set meanwhile (by an admin, or in another tab), so
/// it is never replaced without the current one.
pub async fn set_first_password_hash(
    db: &Db,
    tenant: &TenantId,
    id: &UserId,
    password_hash: &str,
) -> Result<(), ChangeUserError> {
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2, version = version + 1 \
         WHERE tenant_id = $3 AND id = $4 AND password_hash IS NULL",
    )
    .bind(password_hash)
    .bind(db.unix_now())
    .bind(tenant.as_str())
    .bind(id.as_str())
    .execute(db.pool())
    .await?;
    if updated.rows_affected() == 0 {
        return Err(ChangeUserError::Stale);
    }
    Ok(())
}
