use std::collections::HashMap;
use std::sync::RwLock;

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{Db, Transaction, from_unix, is_unique_violation, new_id};
use crate::domain::{Slug, TenantName};

/// A tenant's primary key. Only the store makes one, from a row it read, so a tenant id
/// typed into a form can never stand in for the signed-in user's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantId(pub(super) String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub created_at: OffsetDateTime,
}

#[derive(FromRow)]
struct TenantRow {
    id: String,
    slug: String,
    name: String,
    created_at: i64,
}

impl From<TenantRow> for Tenant {
    fn from(row: TenantRow) -> Self {
        Self {
            id: TenantId(row.id),
            slug: row.slug,
            name: row.name,
            created_at: from_unix(row.created_at),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CreateTenantError {
    #[error("a tenant with this slug exists")]
    SlugTaken,
    #[error("setup is already complete")]
    SetupComplete,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

pub async fn count(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
        .fetch_one(db.pool())
        .await
}

pub async fn find_by_slug(db: &Db, slug: &str) -> Result<Option<Tenant>, sqlx::Error> {
    let row: Option<TenantRow> =
        sqlx::query_as("SELECT id, slug, name, created_at FROM tenants WHERE slug = $1")
            .bind(slug)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(Tenant::from))
}

/// Tenants by slug, as found. Once created a tenant never changes and never goes (nothing
/// renames or deletes one), so a tenant found once is as good as the database's answer, and
/// every page saves a query. Misses are not kept: a tenant created by another instance is
/// found at once. Should tenants ever become editable, this cache must go.
#[derive(Debug, Default)]
pub struct TenantCache(RwLock<HashMap<String, Tenant>>);

impl TenantCache {
    pub async fn find_by_slug(&self, db: &Db, slug: &str) -> Result<Option<Tenant>, sqlx::Error> {
        let cached = self
            .0
            .read()
            .ok()
            .and_then(|tenants| tenants.get(slug).cloned());
        if cached.is_some() {
            return Ok(cached);
        }
        let found = find_by_slug(db, slug).await?;
        if let (Some(tenant), Ok(mut tenants)) = (&found, self.0.write()) {
            tenants.insert(slug.to_owned(), tenant.clone());
        }
        Ok(found)
    }
}

/// The tenant a server-side record (a pending sign-in, say) points at.
pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<Tenant>, sqlx::Error> {
    let row: Option<TenantRow> =
        sqlx::query_as("SELECT id, slug, name, created_at FROM tenants WHERE id = $1")
            .bind(id)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.map(Tenant::from))
}

/// Inserts a tenant within `tx`, where its first admin may be inserted too. With
/// `only_if_first`, refuses when any tenant exists (the browser setup page).
pub async fn insert(
    tx: &mut Transaction,
    slug: &Slug,
    name: &TenantName,
    only_if_first: bool,
    now: i64,
) -> Result<Tenant, CreateTenantError> {
    if only_if_first {
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
            .fetch_one(&mut **tx)
            .await?;
        if existing > 0 {
            return Err(CreateTenantError::SetupComplete);
        }
    }
    let tenant = Tenant {
        id: TenantId(new_id()),
        slug: slug.as_str().to_owned(),
        name: name.as_str().to_owned(),
        created_at: from_unix(now),
    };
    sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
        .bind(tenant.id.as_str())
        .bind(&tenant.slug)
        .bind(&tenant.name)
        .bind(tenant.created_at.unix_timestamp())
        .execute(&mut **tx)
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                CreateTenantError::SlugTaken
            } else {
                err.into()
            }
        })?;
    Ok(tenant)
}
