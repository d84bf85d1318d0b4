//! Limits on guessing. Every check of a password or one-time token counts its failures:
//! in the audit log where a tenant is known (so every instance on a shared database sees the
//! same counts), and in memory for the setup link, which exists before any tenant and lives
//! in one process.

use std::net::IpAddr;

use crate::domain::AuditAction;
use crate::domain::throttle::{MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS, WINDOW};
use crate::store::Db;
use crate::store::audit::{self, AuditEventId, NewAuditEvent, RepeatOf, ThrottleLock};
use crate::store::tenants::TenantId;

/// What counts as a failed check: a wrong password at sign-in or when changing one's own,
/// and a one-time Microsoft link that is unknown, used or expired. (A Microsoft sign-in's
/// `state` is single use per browser session, so it cannot be guessed at repeatedly.)
const FAILED_CHECKS: [AuditAction; 3] = [
    AuditAction::SignInFailed,
    AuditAction::OwnPasswordRejected,
    AuditAction::MicrosoftLinkRejected,
];

/// Whether checks must pause: for `account` (an email, when the check names one) after
/// too many failures for it, or for everyone at `ip` after too many from there.
pub async fn is_throttled(
    db: &Db,
    tenant: &TenantId,
    account: Option<&str>,
    ip: IpAddr,
) -> Result<bool, sqlx::Error> {
    let (for_account, from_address) = audit::recent_failures(
        db,
        tenant,
        account,
        ip,
        WINDOW.whole_seconds(),
        &FAILED_CHECKS,
    )
    .await?;
    Ok(for_account >= MAX_FAILURES_PER_ACCOUNT || from_address >= MAX_FAILURES_PER_ADDRESS)
}

/// A check's place in the throttle, taken before the work it costs.
#[derive(Debug)]
pub enum Place {
    /// The check may run; its failure is recorded already (`failure` of `reserve`), and
    /// must be settled (`audit::settle`) or withdrawn (`audit::withdraw`) if it succeeds.
    Taken(AuditEventId),
    /// Too many recent failures: the check must not run.
    Refused,
}

/// Takes a check's place in the throttle before it runs: records `failure` (what the log
/// says if the check fails) unless the account or address has reached its limit, and then
/// records `refusal` instead, once per account or address and window, counting attempts.
/// Both under a `ThrottleLock`, so parallel attempts on every instance are counted one after
/// another: a burst of guesses for one account costs at most `MAX_FAILURES_PER_ACCOUNT`
/// argon2 hashes, however many arrive at once. (Counting after the hash let a parallel burst
/// be hashed in full before its first failure was recorded.)
pub async fn reserve(
    db: &Db,
    tenant: &TenantId,
    account: Option<&str>,
    ip: IpAddr,
    failure: NewAuditEvent<'_>,
    refusal: NewAuditEvent<'_>,
) -> Result<Place, sqlx::Error> {
    let mut lock = ThrottleLock::begin(db, account, ip).await?;
    let counts = lock
        .recent_failures(tenant, account, ip, WINDOW.whole_seconds(), &FAILED_CHECKS)
        .await?;
    let place = match over_limit(counts) {
        Some(of) => {
            lock.record_repeated(tenant, &refusal, of, WINDOW.whole_seconds())
                .await?;
            Place::Refused
        }
        None => Place::Taken(lock.record(tenant, &failure).await?),
    };
    lock.commit().await?;
    Ok(place)
}

/// Records a check refused because `is_throttled` said so, as `reserve` records refusals.
pub async fn record_refusal(
    db: &Db,
    tenant: &TenantId,
    account: Option<&str>,
    ip: IpAddr,
    refusal: NewAuditEvent<'_>,
) -> Result<(), sqlx::Error> {
    let mut lock = ThrottleLock::begin(db, account, ip).await?;
    let counts = lock
        .recent_failures(tenant, account, ip, WINDOW.whole_seconds(), &FAILED_CHECKS)
        .await?;
    let of = over_limit(counts).unwrap_or(RepeatOf::Address);
    lock.record_repeated(tenant, &refusal, of, WINDOW.whole_seconds())
        .await?;
    lock.commit().await
}

/// Which limit (failures for the account, from the address) the counts reach, if any. The
/// address's first: a spray over many accounts then adds to one entry, not one per account.
fn over_limit((for_account, from_address): (i64, i64)) -> Option<RepeatOf> {
    if from_address >= MAX_FAILURES_PER_ADDRESS {
        Some(RepeatOf::Address)
    } else if for_account >= MAX_FAILURES_PER_ACCOUNT {
        Some(RepeatOf::Account)
    } else {
        None
    }
}
