//! The typed view of the browser session: who is signed in, and the form token.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tower_sessions::Session;

use crate::crypto::random_token;
use crate::store::tenants::TenantId;
use crate::store::users::UserId;

const SIGNED_IN_KEY: &str = "signed_in";
const CSRF_KEY: &str = "csrf";

/// Sessions end after this long without a request...
pub const IDLE_TIMEOUT: Duration = Duration::hours(2);
/// ...and this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::hours(12);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub tenant_id: String,
    pub user_id: String,
    pub signed_in_at: i64,
}

impl SignedIn {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now.unix_timestamp() - self.signed_in_at > ABSOLUTE_TIMEOUT.whole_seconds()
    }
}

pub async fn signed_in(
    session: &Session,
) -> Result<Option<SignedIn>, tower_sessions::session::Error> {
    session.get(SIGNED_IN_KEY).await
}

/// Signs the user in under a new session id, so an id planted before sign-in
/// (session fixation) is worthless afterwards, and issues a fresh form token.
pub async fn sign_in(
    session: &Session,
    tenant: &TenantId,
    user: &UserId,
    now: OffsetDateTime,
) -> Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(CSRF_KEY, random_token()).await?;
    session
        .insert(
            SIGNED_IN_KEY,
            SignedIn {
                tenant_id: tenant.as_str().to_owned(),
                user_id: user.as_str().to_owned(),
                signed_in_at: now.unix_timestamp(),
            },
        )
        .await
}

/// Ends the session: its record is deleted and the cookie cleared.
pub async fn sign_out(session: &Session) -> Result<(), tower_sessions::session::Error> {
    session.flush().await
}

/// The session's form token, made on first use.
pub async fn csrf_token(session: &Session) -> Result<String, tower_sessions::session::Error> {
    if let Some(token) = session.get::<String>(CSRF_KEY).await? {
        return Ok(token);
    }
    let token = random_token();
    session.insert(CSRF_KEY, &token).await?;
    Ok(token)
}

/// The session's form token if it has one; never makes one.
pub async fn existing_csrf_token(
    session: &Session,
) -> Result<Option<String>, tower_sessions::session::Error> {
    session.get(CSRF_KEY).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_timeout_counts_from_sign_in() {
        let signed_in_at = OffsetDateTime::UNIX_EPOCH + Duration::days(1000);
        let session = SignedIn {
            tenant_id: "t".into(),
            user_id: "u".into(),
            signed_in_at: signed_in_at.unix_timestamp(),
        };
        assert!(!session.is_expired(signed_in_at + Duration::hours(11)));
        assert!(session.is_expired(signed_in_at + Duration::hours(12) + Duration::seconds(1)));
    }
}
