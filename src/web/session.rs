//! The typed view of the browser session: who is signed in, and the form token.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use tower_sessions::Session;

use crate::crypto::random_token;
use crate::microsoft::delegated::PendingAuthorization;
use crate::microsoft::sign_in::PendingSignIn;
use crate::store::sessions::{SIGNED_IN_KEY, SIGNED_IN_USER_KEY};
use crate::store::tenants::TenantId;
use crate::store::users::{UserId, UserRow};

const CSRF_KEY: &str = "csrf";
const MICROSOFT_SIGN_IN_KEY: &str = "microsoft_sign_in";

/// A Microsoft sign-in is abandoned after this long.
pub const MICROSOFT_SIGN_IN_TIMEOUT: Duration = Duration::minutes(10);

/// Sessions end after this long without a request...
pub const IDLE_TIMEOUT: Duration = Duration::hours(2);
/// ...and this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::hours(12);

const ACTIVE_AT_KEY: &str = "active_at";
/// How long a session's stored idle deadline may lag behind its last request. Moving it on
/// every request would write the session row on every page view; this way a page view only
/// reads it, and the idle timeout enforced lies between `IDLE_TIMEOUT` less this and
/// `IDLE_TIMEOUT`, never beyond.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::minutes(1);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedIn {
    pub tenant_id: String,
    pub user_id: String,
    pub signed_in_at: i64,
    /// Signed in with Microsoft (not a password). Sessions from before this field read as
    /// false, which only withholds the first-password form.
    #[serde(default)]
    pub with_microsoft: bool,
}

impl SignedIn {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now.unix_timestamp() - self.signed_in_at > ABSOLUTE_TIMEOUT.whole_seconds()
    }

    /// When this session signed in with Microsoft, if it did.
    pub fn microsoft_signed_in_at(&self) -> Option<OffsetDateTime> {
        self.with_microsoft
            .then(|| OffsetDateTime::from_unix_timestamp(self.signed_in_at).ok())
            .flatten()
    }
}

/// How a session signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    Microsoft,
}

pub async fn signed_in(
    session: &Session,
) -> Result<Option<SignedIn>, tower_sessions::session::Error> {
    session.get(SIGNED_IN_KEY).await
}

/// The signed-in user as the session store read them with the session, in one statement:
/// their role and status as of this request. `None` when no user is signed in or the user
/// is gone.
pub async fn signed_in_user(
    session: &Session,
) -> Result<Option<UserRow>, tower_sessions::session::Error> {
    session.get(SIGNED_IN_USER_KEY).await
}

/// Signs the user in under a new session id, so an id planted before sign-in
/// (session fixation) is worthless afterwards, and issues a fresh form token.
pub async fn sign_in(
    session: &Session,
    tenant: &TenantId,
    user: &UserId,
    method: SignInMethod,
    now: OffsetDateTime,
) -> Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(CSRF_KEY, random_token()).await?;
    // Signing in is activity: the next pages need not move the idle deadline again.
    session.insert(ACTIVE_AT_KEY, now.unix_timestamp()).await?;
    session
        .insert(
            SIGNED_IN_KEY,
            SignedIn {
                tenant_id: tenant.as_str().to_owned(),
                user_id: user.as_str().to_owned(),
                signed_in_at: now.unix_timestamp(),
                with_microsoft: method == SignInMethod::Microsoft,
            },
        )
        .await
}

/// Ends the session: its record is deleted and the cookie cleared.
pub async fn sign_out(session: &Session) -> Result<(), tower_sessions::session::Error> {
    session.flush().await
}

/// A Microsoft sign-in this browser started, waiting for Microsoft to send it back.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingMicrosoftSignIn {
    pub tenant_id: String,
    pub started_at: i64,
    /// The SHA-256 of the one-time link that started it, when an admin sent one.
    pub link_token_hash: Option<String>,
    pub flow: PendingSignIn,
}

impl PendingMicrosoftSignIn {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now.unix_timestamp() - self.started_at > MICROSOFT_SIGN_IN_TIMEOUT.whole_seconds()
    }
}

/// Remembers the sign-in; a newer one replaces it, so only the latest can complete.
pub async fn start_microsoft_sign_in(
    session: &Session,
    pending: PendingMicrosoftSignIn,
) -> Result<(), tower_sessions::session::Error> {
    session.insert(MICROSOFT_SIGN_IN_KEY, pending).await
}

/// Takes the pending sign-in out of the session: whatever happens next, it is used up.
pub async fn take_microsoft_sign_in(
    session: &Session,
) -> Result<Option<PendingMicrosoftSignIn>, tower_sessions::session::Error> {
    session.remove(MICROSOFT_SIGN_IN_KEY).await
}

const OAUTH_CONNECTION_KEY: &str = "oauth_connection";
const OAUTH_FLASH_KEY: &str = "oauth_flash";

/// An Authenticate an admin started for a delegated OAuth connection.
#[derive(Clone, Serialize, Deserialize)]
pub struct PendingOAuthConnection {
    pub tenant_id: String,
    pub connection_id: String,
    /// The connection's settings as they were: a change in between voids the flow.
    pub settings_version: i64,
    /// The admin who started it: only they can finish it.
    pub user_id: String,
    pub started_at: i64,
    pub flow: PendingAuthorization,
}

impl PendingOAuthConnection {
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now.unix_timestamp() - self.started_at > MICROSOFT_SIGN_IN_TIMEOUT.whole_seconds()
    }
}

pub async fn start_oauth_connection(
    session: &Session,
    pending: PendingOAuthConnection,
) -> Result<(), tower_sessions::session::Error> {
    session.insert(OAUTH_CONNECTION_KEY, pending).await
}

/// Takes the pending Authenticate out of the session: it can complete once at most.
pub async fn take_oauth_connection(
    session: &Session,
) -> Result<Option<PendingOAuthConnection>, tower_sessions::session::Error> {
    session.remove(OAUTH_CONNECTION_KEY).await
}

/// The outcome of `/oauth/callback`, shown once on the connection's page.
#[derive(Clone, Serialize, Deserialize)]
pub struct OAuthFlash {
    pub connection_id: String,
    pub ok: bool,
    pub message: String,
}

pub async fn set_oauth_flash(
    session: &Session,
    flash: OAuthFlash,
) -> Result<(), tower_sessions::session::Error> {
    session.insert(OAUTH_FLASH_KEY, flash).await
}

/// The flash for this connection, removed once read.
pub async fn take_oauth_flash(
    session: &Session,
    connection_id: &str,
) -> Result<Option<OAuthFlash>, tower_sessions::session::Error> {
    let flash: Option<OAuthFlash> = session.get(OAUTH_FLASH_KEY).await?;
    match flash {
        Some(flash) if flash.connection_id == connection_id => {
            session.remove::<OAuthFlash>(OAUTH_FLASH_KEY).await?;
            Ok(Some(flash))
        }
        _ => Ok(None),
    }
}

/// Moves the session's idle deadline forward when it was last moved `KEEP_ALIVE_INTERVAL`
/// or longer ago: the change makes the session layer save the record, with a new expiry
/// and cookie.
pub async fn keep_alive(
    session: &Session,
    now: OffsetDateTime,
) -> Result<(), tower_sessions::session::Error> {
    let now = now.unix_timestamp();
    let active_at: Option<i64> = session.get(ACTIVE_AT_KEY).await?;
    if active_at.is_none_or(|at| now - at >= KEEP_ALIVE_INTERVAL.whole_seconds()) {
        session.insert(ACTIVE_AT_KEY, now).await?;
    }
    Ok(())
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
            with_microsoft: false,
        };
        assert!(!session.is_expired(signed_in_at + Duration::hours(11)));
        assert!(session.is_expired(signed_in_at + Duration::hours(12) + Duration::seconds(1)));
    }
}
