//! Local accounts: password sign-in with throttling, and the audit trail it leaves.

use std::net::IpAddr;

use secrecy::SecretString;

use crate::app::App;
use crate::domain::{AuditAction, EmailAddress, UserStatus};
use crate::store::audit::{self, NewAuditEvent};
use crate::store::tenants::Tenant;
use crate::store::users::{self, UserId};

/// Failed sign-ins counted for throttling, within this many seconds.
const THROTTLE_WINDOW_SECONDS: i64 = 15 * 60;
/// Failures per account in the window before sign-in pauses for it.
const MAX_FAILURES_PER_ACCOUNT: i64 = 5;
/// Failures from one address in the window, across all accounts and tenants.
const MAX_FAILURES_PER_ADDRESS: i64 = 20;

#[derive(Debug, PartialEq, Eq)]
pub enum SignInOutcome {
    SignedIn(UserId),
    /// Wrong password, unknown email or disabled account: the user is told only that the
    /// email or password is incorrect.
    Refused,
    /// Too many recent failures for this account or address.
    Throttled,
}

pub async fn sign_in_with_password(
    app: &App,
    tenant: &Tenant,
    email: &str,
    password: SecretString,
    ip: IpAddr,
) -> Result<SignInOutcome, sqlx::Error> {
    let typed_email = email.trim().to_lowercase();
    let record = |action, user: Option<UserId>, detail| {
        record_attempt(app, tenant, &typed_email, action, user, detail, ip)
    };

    let (account_failures, address_failures) = audit::recent_sign_in_failures(
        &app.db,
        &tenant.id,
        &typed_email,
        ip,
        THROTTLE_WINDOW_SECONDS,
    )
    .await?;
    if account_failures >= MAX_FAILURES_PER_ACCOUNT || address_failures >= MAX_FAILURES_PER_ADDRESS
    {
        record(
            AuditAction::SignInThrottled,
            None,
            "too many failed sign-ins",
        )
        .await?;
        return Ok(SignInOutcome::Throttled);
    }

    let candidate = match EmailAddress::parse(email) {
        Ok(email) => users::find_for_sign_in(&app.db, &tenant.id, &email).await?,
        Err(_) => None,
    };
    let stored_hash = candidate.as_ref().and_then(|c| c.password_hash.clone());
    // Verified even when there is no such user, so both cost the same time.
    let password_ok = app.passwords.verify(password, stored_hash).await;

    match candidate {
        Some(user) if password_ok && user.status == UserStatus::Active => {
            record(AuditAction::SignIn, Some(user.id.clone()), "password").await?;
            Ok(SignInOutcome::SignedIn(user.id))
        }
        Some(user) if password_ok => {
            record(
                AuditAction::SignInFailed,
                Some(user.id.clone()),
                "account is disabled",
            )
            .await?;
            Ok(SignInOutcome::Refused)
        }
        Some(user) => {
            let detail = if user.password_hash.is_some() {
                "wrong password"
            } else {
                "account has no password"
            };
            record(AuditAction::SignInFailed, Some(user.id.clone()), detail).await?;
            Ok(SignInOutcome::Refused)
        }
        None => {
            record(AuditAction::SignInFailed, None, "unknown email").await?;
            Ok(SignInOutcome::Refused)
        }
    }
}

/// Audits one sign-in attempt under the email that was typed (never the password).
async fn record_attempt(
    app: &App,
    tenant: &Tenant,
    typed_email: &str,
    action: AuditAction,
    user: Option<UserId>,
    detail: &str,
    ip: IpAddr,
) -> Result<(), sqlx::Error> {
    audit::record(
        &app.db,
        &tenant.id,
        NewAuditEvent {
            action,
            actor_user_id: user.as_ref().map(UserId::as_str),
            actor: typed_email,
            target: typed_email,
            detail,
            ip: Some(ip),
        },
    )
    .await
}
