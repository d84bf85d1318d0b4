//! tower-sessions' store on Portico's own pool, so every instance sees every session.
//! (The sqlx store crate wants a backend-specific pool; this one serves both.)

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{FromRow as _, Row as _};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, SessionStore};

use super::tenants::TenantId;
use super::users::{USER_COLUMNS, UserId, UserRow};
use super::{Db, from_unix};
use crate::crypto::sha256_hex;

/// The record key under which the web layer keeps who signed the session in (an object with
/// `tenant_id` and `user_id`). The store copies both into their own columns, so that a
/// user's sessions can be found and ended without reading every record.
pub const SIGNED_IN_KEY: &str = "signed_in";

/// The record key under which `load` hands over the signed-in user's row (`UserRow`), read in
/// the same statement as the session, so a signed-in page reads both in one query. Only in
/// loaded records: it is never stored, so the user is always as of this request.
pub const SIGNED_IN_USER_KEY: &str = "signed_in_user";

#[derive(Debug, Clone)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Removes sessions past their expiry; run now and then by a background task.
    pub async fn delete_expired(&self) -> Result<u64, sqlx::Error> {
        let deleted = sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(system_unix_now())
            .execute(self.db.pool())
            .await?;
        Ok(deleted.rows_affected())
    }
}

/// Ends every session of the user, except `keep` (the session making the change, when the
/// user changes their own password): a session stolen before a password reset, an unlink
/// or a password change stops working on its next request. Returns how many ended.
pub async fn end_user_sessions(
    db: &Db,
    tenant: &TenantId,
    user: &UserId,
    keep: Option<&Id>,
) -> Result<u64, sqlx::Error> {
    // No id hashes to the empty string: without `keep`, every session goes.
    let keep_hash = keep.map_or_else(String::new, |id| sha256_hex(&id.to_string()));
    let ended =
        sqlx::query("DELETE FROM sessions WHERE tenant_id = $1 AND user_id = $2 AND id_hash <> $3")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .bind(keep_hash)
            .execute(db.pool())
            .await?;
    Ok(ended.rows_affected())
}

/// The system clock's now, not the app's: tower-sessions dates a record's expiry by the
/// system clock (`Expiry::OnInactivity`), so expiry is compared with the same clock. (A test
/// that moves the app's clock days ahead must not find every session gone; Portico's own
/// idle and absolute timeouts, kept in the session's data, follow the app's clock.)
fn system_unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The tenant and user a record is signed in as, if it is.
fn owner(record: &Record) -> (Option<&str>, Option<&str>) {
    let signed_in = record.data.get(SIGNED_IN_KEY);
    let field = |name| signed_in.and_then(|value| value.get(name)?.as_str());
    (field("tenant_id"), field("user_id"))
}

fn backend(err: sqlx::Error) -> session_store::Error {
    session_store::Error::Backend(err.to_string())
}

fn decode(err: serde_json::Error) -> session_store::Error {
    session_store::Error::Decode(err.to_string())
}

/// Only the data is stored, without the user `load` added: the id itself never reaches the
/// database.
fn encode(record: &Record) -> session_store::Result<String> {
    let stored: HashMap<&String, &serde_json::Value> = record
        .data
        .iter()
        .filter(|(key, _)| *key != SIGNED_IN_USER_KEY)
        .collect();
    serde_json::to_string(&stored).map_err(|e| session_store::Error::Encode(e.to_string()))
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        loop {
            let (tenant_id, user_id) = owner(record);
            let inserted = sqlx::query(
                "INSERT INTO sessions (id_hash, record, expires_at, tenant_id, user_id) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id_hash) DO NOTHING",
            )
            .bind(sha256_hex(&record.id.to_string()))
            .bind(encode(record)?)
            .bind(record.expiry_date.unix_timestamp())
            .bind(tenant_id)
            .bind(user_id)
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
            if inserted.rows_affected() == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    /// Only updates: tower-sessions saves sessions it loaded (new ones go to `create`), and a
    /// request that loaded the session before a sign-out deleted it must not bring it back.
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let (tenant_id, user_id) = owner(record);
        sqlx::query(
            "UPDATE sessions SET record = $2, expires_at = $3, tenant_id = $4, user_id = $5 \
             WHERE id_hash = $1",
        )
        .bind(sha256_hex(&record.id.to_string()))
        .bind(encode(record)?)
        .bind(record.expiry_date.unix_timestamp())
        .bind(tenant_id)
        .bind(user_id)
        .execute(self.db.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Reads the session and, when it is signed in, its user (scoped by the session's tenant)
    /// in one statement; the user goes into the record under `SIGNED_IN_USER_KEY`.
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let stored: Option<AnyRow> = sqlx::query(&format!(
            "SELECT s.record, s.expires_at, {USER_COLUMNS} FROM sessions s \
             LEFT JOIN users u ON u.tenant_id = s.tenant_id AND u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2"
        ))
        .bind(sha256_hex(&id.to_string()))
        .bind(system_unix_now())
        .fetch_optional(self.db.pool())
        .await
        .map_err(backend)?;
        let Some(row) = stored else {
            return Ok(None);
        };
        let json: String = row.try_get("record").map_err(backend)?;
        let expires_at: i64 = row.try_get("expires_at").map_err(backend)?;
        let mut data: HashMap<String, serde_json::Value> =
            serde_json::from_str(&json).map_err(decode)?;
        let user_id: Option<String> = row.try_get("id").map_err(backend)?;
        if user_id.is_some() {
            let user = UserRow::from_row(&row).map_err(backend)?;
            let user = serde_json::to_value(user).map_err(decode)?;
            data.insert(SIGNED_IN_USER_KEY.to_owned(), user);
        }
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date: from_unix(expires_at),
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(sha256_hex(&id.to_string()))
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_save_does_not_bring_back_a_deleted_session() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}/p.db?mode=rwc", dir.path().display()))
            .await
            .unwrap();
        db.migrate().await.unwrap();
        let store = DbSessionStore::new(db);
        let mut record = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        record
            .data
            .insert("signed_in".into(), serde_json::json!(true));
        store.save(&record).await.unwrap();
        assert_eq!(
            store.load(&record.id).await.unwrap().unwrap().data,
            record.data
        );

        // Signed out by one request while another, which loaded it before, still saves it.
        store.delete(&record.id).await.unwrap();
        store.save(&record).await.unwrap();
        assert!(store.load(&record.id).await.unwrap().is_none());
    }
}
