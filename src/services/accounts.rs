//! Signing people in: by password with throttling, or by a verified Microsoft identity,
//! and the audit trail both leave.

use std::net::IpAddr;

use secrecy::SecretString;
use time::{Duration, OffsetDateTime};
use tower_sessions::session::Id as SessionId;

use crate::app::App;
use crate::crypto::HashError;
use crate::domain::{
    AuditAction, CONSUMERS_DIRECTORY, DisplayName, EmailAddress, FieldErrors, NewPassword, Role,
    Slug, TenantName, UserStatus,
};
use crate::metrics::{SignInMethod, SignInResult};
use crate::microsoft::sign_in::VerifiedIdentity;
use crate::services::throttle::{self, Place};
use crate::store::Db;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::identities::{self, LinkError, Redeemed};
use crate::store::microsoft_sign_in::SignInSettings;
use crate::store::sessions;
use crate::store::tenants::{self, CreateTenantError, Tenant};
use crate::store::users::{self, ChangeUserError, CreateUserError, NewUser, User, UserId};

#[derive(Debug, PartialEq, Eq)]
pub enum SignInOutcome {
    SignedIn(UserId),
    /// Wrong password, unknown email or disabled account: the user is told only that the
    /// email or password is incorrect.
    Refused,
    /// Too many recent failures for this account or address.
    Throttled,
}

/// Why a password check could not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// `HashError::Busy` when the hashing queue is full: nothing was checked or counted.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// Saving the new password failed.
    #[error(transparent)]
    Change(ChangeUserError),
}

/// Creates a tenant, with its first admin when one is given, in one transaction: the
/// setup page and `portico tenant create`. With `only_if_first`, refuses when any tenant
/// exists.
pub async fn create_tenant(
    db: &Db,
    slug: &Slug,
    name: &TenantName,
    first_admin: Option<&NewUser>,
    only_if_first: bool,
) -> Result<(Tenant, Option<UserId>), CreateTenantError> {
    let now = db.unix_now();
    let mut tx = db.begin().await?;
    let tenant = tenants::insert(&mut tx, slug, name, only_if_first, now).await?;
    let admin_id = match first_admin {
        Some(admin) => Some(users::insert(&mut tx, &tenant.id, admin, now).await?),
        None => None,
    };
    tx.commit().await?;
    Ok((tenant, admin_id))
}

pub async fn sign_in_with_password(
    app: &App,
    tenant: &Tenant,
    email: &str,
    password: SecretString,
    ip: IpAddr,
) -> Result<SignInOutcome, CheckError> {
    let outcome = check_password_sign_in(app, tenant, email, password, ip).await?;
    let result = match outcome {
        SignInOutcome::SignedIn(_) => SignInResult::Success,
        SignInOutcome::Refused => SignInResult::Refused,
        SignInOutcome::Throttled => SignInResult::Throttled,
    };
    app.metrics.sign_in(SignInMethod::Password, result);
    Ok(outcome)
}

async fn check_password_sign_in(
    app: &App,
    tenant: &Tenant,
    email: &str,
    password: SecretString,
    ip: IpAddr,
) -> Result<SignInOutcome, CheckError> {
    // What the log keeps of a typed email is bounded, whatever was typed.
    let typed_email = audit::cut_name(&email.trim().to_lowercase()).to_owned();
    let candidate = match EmailAddress::parse(email) {
        Ok(email) => users::find_for_sign_in(&app.db, &tenant.id, &email).await?,
        Err(_) => None,
    };
    let detail = match &candidate {
        Some(user) if user.password_hash.is_some() => "wrong password",
        Some(_) => "account has no password",
        None => "unknown email",
    };
    let failure = NewAuditEvent {
        action: AuditAction::SignInFailed,
        actor_user_id: candidate.as_ref().map(|user| user.id.as_str()),
        actor: &typed_email,
        target: &typed_email,
        detail,
        ip: Some(ip),
    };
    let refusal = NewAuditEvent {
        action: AuditAction::SignInThrottled,
        actor_user_id: None,
        detail: "too many failed sign-ins",
        ..failure
    };
    let place = throttle::reserve(
        &app.db,
        &tenant.id,
        Some(&typed_email),
        ip,
        failure,
        refusal,
    )
    .await?;
    let Place::Taken(entry) = place else {
        return Ok(SignInOutcome::Throttled);
    };

    // Verified even when there is no such user, so both cost the same time.
    let stored_hash = candidate.as_ref().and_then(|c| c.password_hash.clone());
    let password_ok = match app.passwords.verify(password, stored_hash).await {
        Ok(ok) => ok,
        Err(err) => {
            // Not checked (the hashing queue is full): not a failure either.
            audit::withdraw(&app.db, &tenant.id, &entry).await?;
            return Err(err.into());
        }
    };
    Ok(match candidate {
        Some(user) if password_ok && user.status == UserStatus::Active => {
            audit::settle(&app.db, &tenant.id, &entry, AuditAction::SignIn, "password").await?;
            SignInOutcome::SignedIn(user.id)
        }
        Some(_) if password_ok => {
            let detail = "account is disabled";
            audit::settle(
                &app.db,
                &tenant.id,
                &entry,
                AuditAction::SignInFailed,
                detail,
            )
            .await?;
            SignInOutcome::Refused
        }
        // The failure recorded when the check took its place stands.
        _ => SignInOutcome::Refused,
    })
}

/// How a signed-in user's current password checked out, before they change it.
#[derive(Debug, PartialEq, Eq)]
pub enum CurrentPassword {
    Confirmed,
    /// They sign in with Microsoft only: there is nothing to confirm.
    NoneSet,
    Wrong,
    /// Too many recent wrong passwords for this account or address: a stolen session
    /// cannot be used to guess the password.
    Throttled,
}

/// Checks the password a signed-in user typed as their current one, counting a wrong one
/// like a failed sign-in (and taking its place in the throttle before hashing, as sign-in).
pub async fn check_current_password(
    app: &App,
    tenant: &Tenant,
    user: &User,
    typed: SecretString,
    ip: IpAddr,
) -> Result<CurrentPassword, CheckError> {
    let Some(stored) = users::password_hash(&app.db, &tenant.id, &user.id).await? else {
        return Ok(CurrentPassword::NoneSet);
    };
    let failure = NewAuditEvent {
        action: AuditAction::OwnPasswordRejected,
        actor_user_id: Some(user.id.as_str()),
        actor: &user.email,
        target: &user.email,
        detail: "wrong current password",
        ip: Some(ip),
    };
    let refusal = NewAuditEvent {
        action: AuditAction::SignInThrottled,
        detail: "too many wrong passwords when changing the password",
        ..failure
    };
    let place =
        throttle::reserve(&app.db, &tenant.id, Some(&user.email), ip, failure, refusal).await?;
    let Place::Taken(entry) = place else {
        return Ok(CurrentPassword::Throttled);
    };
    let verified = app.passwords.verify(typed, Some(stored)).await;
    if verified.as_ref().is_ok_and(|ok| !ok) {
        return Ok(CurrentPassword::Wrong);
    }
    // Right, or not checked: either way not a failure.
    audit::withdraw(&app.db, &tenant.id, &entry).await?;
    verified?;
    Ok(CurrentPassword::Confirmed)
}

/// How long after signing in with Microsoft a user without a password may set a first one.
/// A local password bypasses Entra's MFA and Conditional Access and outlives the account
/// being disabled there, so it must be set by whoever just proved the Microsoft account, not
/// by anyone holding an older session.
pub const FIRST_PASSWORD_WINDOW: Duration = Duration::minutes(10);

/// Whether a session that signed in with Microsoft at `microsoft_signed_in_at` (or not at
/// all) may set a first password now.
pub fn may_set_first_password(
    microsoft_signed_in_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> bool {
    microsoft_signed_in_at.is_some_and(|at| now - at <= FIRST_PASSWORD_WINDOW)
}

/// How a user's change of their own password ended.
pub enum OwnPasswordChange {
    /// Saved, their other sessions ended, and audited.
    Changed,
    /// Nothing saved: what to say beside which field.
    Refused(FieldErrors),
    /// Too many wrong current passwords lately: nothing was checked.
    Throttled(FieldErrors),
    /// A first password was set for them meanwhile (an admin's reset): nothing saved.
    SetMeanwhile(FieldErrors),
}

/// What a user typed to change their own password.
pub struct TypedPasswords {
    /// Empty when they have none yet.
    pub current: SecretString,
    pub new: SecretString,
}

/// Anyone may change their own password, proving they know the current one; a user without
/// one may set a first one within [`FIRST_PASSWORD_WINDOW`] of signing in with Microsoft
/// (`microsoft_signed_in_at`). Either way their sessions but `keep` end.
pub async fn change_own_password(
    app: &App,
    tenant: &Tenant,
    user: &User,
    microsoft_signed_in_at: Option<OffsetDateTime>,
    typed: TypedPasswords,
    keep: Option<&SessionId>,
    ip: IpAddr,
) -> Result<OwnPasswordChange, CheckError> {
    let mut errors = FieldErrors::new();
    let new_password = errors.check("new_password", NewPassword::parse(typed.new));
    let first = match check_current_password(app, tenant, user, typed.current, ip).await? {
        CurrentPassword::Confirmed => false,
        CurrentPassword::NoneSet => {
            if !may_set_first_password(microsoft_signed_in_at, app.clock.now()) {
                let message = "Not now: a first password can only be set within 10 minutes of \
                               signing in with Microsoft.";
                errors.add("new_password", message);
            }
            true
        }
        CurrentPassword::Wrong => {
            errors.add("current_password", "This is not your current password.");
            false
        }
        CurrentPassword::Throttled => {
            return Ok(OwnPasswordChange::Throttled(FieldErrors::single(
                "current_password",
                "Too many wrong passwords. Wait 15 minutes and try again.",
            )));
        }
    };
    let Some(new_password) = new_password.filter(|_| errors.is_empty()) else {
        return Ok(OwnPasswordChange::Refused(errors));
    };
    let hash = app.passwords.hash(new_password.into_secret()).await?;
    let action = if first {
        match users::set_first_password_hash(&app.db, &tenant.id, &user.id, &hash).await {
            Ok(()) => AuditAction::OwnPasswordSet,
            Err(ChangeUserError::Stale) => {
                return Ok(OwnPasswordChange::SetMeanwhile(FieldErrors::single(
                    "new_password",
                    "A password was set for you meanwhile. Reload this page and change it \
                     with that one as your current password.",
                )));
            }
            Err(other) => return Err(CheckError::Change(other)),
        }
    } else {
        users::set_own_password_hash(&app.db, &tenant.id, &user.id, &hash)
            .await
            .map_err(CheckError::Change)?;
        AuditAction::OwnPasswordChanged
    };
    let ended = end_sessions(app, tenant, &user.id, keep).await?;
    audit::record(
        &app.db,
        &tenant.id,
        NewAuditEvent {
            action,
            actor_user_id: Some(user.id.as_str()),
            actor: &user.email,
            target: &user.email,
            detail: &ended,
            ip: Some(ip),
        },
    )
    .await?;
    Ok(OwnPasswordChange::Changed)
}

/// Ends every session of `user` but `keep`, after a change that must lock out whoever
/// holds an older session: an admin's password reset, a Microsoft unlink, the user's own
/// password change (which keeps the session making it). Returns how the audit entry says it.
pub async fn end_sessions(
    app: &App,
    tenant: &Tenant,
    user: &UserId,
    keep: Option<&SessionId>,
) -> Result<String, sqlx::Error> {
    let ended = sessions::end_user_sessions(&app.db, &tenant.id, user, keep).await?;
    let other = if keep.is_some() { " other" } else { "" };
    Ok(match ended {
        0 => format!("no{other} session was open"),
        1 => format!("1{other} session ended"),
        n => format!("{n}{other} sessions ended"),
    })
}

/// How a Microsoft sign-in ended for Portico.
#[derive(Debug, PartialEq, Eq)]
pub enum MicrosoftSignInOutcome {
    SignedIn(UserId),
    /// No Portico user of this tenant is linked to the identity, nor may be matched to it.
    NoAccount,
    /// The linked or matched user is disabled.
    Disabled,
    /// The Microsoft account is linked to another user than the one it should sign in.
    LinkedToAnotherUser,
    /// The one-time link was used already, or expired.
    InvalidInvite,
}

/// Decides which Portico user a verified Microsoft identity signs in, linking it when the
/// rules allow. Identities are (tid, oid); an email links a first sign-in only when it can
/// be trusted (nOAuth): the tenant admits one directory, the directory verified the email's
/// domain (`xms_edov`), or it is a personal Microsoft account. With `invite_token_hash`,
/// the admin's one-time link decides the user instead.
pub async fn sign_in_with_microsoft(
    app: &App,
    tenant: &Tenant,
    settings: &SignInSettings,
    identity: &VerifiedIdentity,
    invite_token_hash: Option<&str>,
    ip: IpAddr,
) -> Result<MicrosoftSignInOutcome, sqlx::Error> {
    let outcome =
        match_microsoft_identity(app, tenant, settings, identity, invite_token_hash, ip).await?;
    let result = match outcome {
        MicrosoftSignInOutcome::SignedIn(_) => SignInResult::Success,
        _ => SignInResult::Refused,
    };
    app.metrics.sign_in(SignInMethod::Microsoft, result);
    Ok(outcome)
}

async fn match_microsoft_identity(
    app: &App,
    tenant: &Tenant,
    settings: &SignInSettings,
    identity: &VerifiedIdentity,
    invite_token_hash: Option<&str>,
    ip: IpAddr,
) -> Result<MicrosoftSignInOutcome, sqlx::Error> {
    let account = identity
        .username
        .clone()
        .or_else(|| identity.email.clone())
        .unwrap_or_else(|| identity.oid.to_string());
    let refuse = |reason, outcome| refuse(app, tenant, &account, identity, reason, ip, outcome);

    let (user_id, linked_how) = if let Some(token_hash) = invite_token_hash {
        let now = app.clock.now().unix_timestamp();
        let pair = (identity.tid, identity.oid);
        match identities::redeem_invite(&app.db, &tenant.id, token_hash, pair, &account, now)
            .await?
        {
            Redeemed::Linked(user) => (user, Some("with a one-time link")),
            Redeemed::InvalidInvite => {
                return refuse(
                    "one-time link used or expired",
                    MicrosoftSignInOutcome::InvalidInvite,
                )
                .await;
            }
            Redeemed::IdentityTaken => {
                return refuse(
                    "account is linked to another user",
                    MicrosoftSignInOutcome::LinkedToAnotherUser,
                )
                .await;
            }
        }
    } else if let Some(user) =
        identities::linked_user(&app.db, &tenant.id, identity.tid, identity.oid).await?
    {
        (user, None)
    } else {
        match matching_user(app, tenant, settings, identity).await? {
            Some(user) => {
                match identities::link(
                    &app.db,
                    &tenant.id,
                    &user,
                    identity.tid,
                    identity.oid,
                    &account,
                )
                .await
                {
                    Ok(()) => (user, Some("by its email")),
                    Err(LinkError::AlreadyLinked) => {
                        // The same account signing in twice at once (a double click, two
                        // tabs) linked itself to this user meanwhile: that is no conflict.
                        let linked = identities::linked_user(
                            &app.db,
                            &tenant.id,
                            identity.tid,
                            identity.oid,
                        )
                        .await?;
                        if linked.as_ref() != Some(&user) {
                            return refuse(
                                "user is linked to another Microsoft account",
                                MicrosoftSignInOutcome::LinkedToAnotherUser,
                            )
                            .await;
                        }
                        (user, None)
                    }
                    Err(LinkError::Database(err)) => return Err(err),
                }
            }
            None => {
                return refuse("no linked Portico user", MicrosoftSignInOutcome::NoAccount).await;
            }
        }
    };

    let Some(user) = users::get(&app.db, &tenant.id, user_id.as_str()).await? else {
        return refuse("no linked Portico user", MicrosoftSignInOutcome::NoAccount).await;
    };
    if let Some(how) = linked_how {
        let detail = format!("{account} (directory {}) linked {how}", identity.tid);
        record(
            app,
            tenant,
            &user.email,
            Some(&user.id),
            AuditAction::MicrosoftIdentityLinked,
            &detail,
            ip,
        )
        .await?;
    }
    if user.status != UserStatus::Active {
        return refuse("account is disabled", MicrosoftSignInOutcome::Disabled).await;
    }
    record(
        app,
        tenant,
        &user.email,
        Some(&user.id),
        AuditAction::SignIn,
        "Microsoft",
        ip,
    )
    .await?;
    Ok(MicrosoftSignInOutcome::SignedIn(user.id))
}

/// An existing user this first sign-in may claim, or a new agent when the tenant allows it.
async fn matching_user(
    app: &App,
    tenant: &Tenant,
    settings: &SignInSettings,
    identity: &VerifiedIdentity,
) -> Result<Option<UserId>, sqlx::Error> {
    // The personal accounts' directory is open to anyone: it never counts as a restriction.
    let restricted = settings
        .directory_id
        .is_some_and(|directory| directory != CONSUMERS_DIRECTORY);
    let email_trusted =
        restricted || identity.email_domain_verified || identity.is_personal_account();
    // In a directory of its own, the sign-in name is the directory's to give.
    let email = identity
        .email
        .clone()
        .or_else(|| identity.username.clone().filter(|_| restricted))
        .and_then(|email| EmailAddress::parse(&email).ok());
    let Some(email) = email.filter(|_| email_trusted) else {
        return Ok(None);
    };
    if let Some(user) = users::find_for_sign_in(&app.db, &tenant.id, &email).await? {
        return Ok(Some(user.id));
    }
    if !(restricted && settings.auto_create_agents) {
        return Ok(None);
    }
    let display_name = identity
        .name
        .as_deref()
        .and_then(|name| DisplayName::parse(name).ok())
        .or_else(|| DisplayName::parse(email.as_str()).ok());
    let Some(display_name) = display_name else {
        return Ok(None);
    };
    let new_user = NewUser {
        email: email.clone(),
        display_name,
        role: Role::Agent,
        password_hash: None,
    };
    match users::create(&app.db, &tenant.id, &new_user).await {
        Ok(id) => {
            audit::record(
                &app.db,
                &tenant.id,
                NewAuditEvent {
                    action: AuditAction::UserCreated,
                    actor_user_id: Some(id.as_str()),
                    actor: email.as_str(),
                    target: email.as_str(),
                    detail: "agent created at first sign-in with Microsoft",
                    ip: None,
                },
            )
            .await?;
            Ok(Some(id))
        }
        // Created by a sign-in running at the same moment: use it.
        Err(CreateUserError::EmailTaken) => {
            Ok(users::find_for_sign_in(&app.db, &tenant.id, &email)
                .await?
                .map(|user| user.id))
        }
        Err(CreateUserError::Database(err)) => Err(err),
    }
}

/// Audits a Microsoft sign-in that failed before anyone was identified (Microsoft's
/// error, a bad state, a refused token).
pub async fn record_microsoft_failure(
    app: &App,
    tenant: &Tenant,
    detail: &str,
    ip: IpAddr,
) -> Result<(), sqlx::Error> {
    app.metrics
        .sign_in(SignInMethod::Microsoft, SignInResult::Refused);
    let who = "Microsoft sign-in";
    record(
        app,
        tenant,
        who,
        None,
        AuditAction::MicrosoftSignInFailed,
        detail,
        ip,
    )
    .await
}

/// Audits a one-time link that is unknown, used or expired: it counts toward throttling.
pub async fn record_link_rejected(
    app: &App,
    tenant: &Tenant,
    ip: IpAddr,
) -> Result<(), sqlx::Error> {
    let action = AuditAction::MicrosoftLinkRejected;
    record(
        app,
        tenant,
        "one-time link",
        None,
        action,
        "unknown, used or expired",
        ip,
    )
    .await
}

/// Audits a check refused because of too many recent failures from the address: once per
/// quarter hour, counting the attempts.
pub async fn record_throttled(
    app: &App,
    tenant: &Tenant,
    who: &str,
    detail: &str,
    ip: IpAddr,
) -> Result<(), sqlx::Error> {
    let refusal = NewAuditEvent {
        action: AuditAction::SignInThrottled,
        actor_user_id: None,
        actor: who,
        target: who,
        detail,
        ip: Some(ip),
    };
    throttle::record_refusal(&app.db, &tenant.id, None, ip, refusal).await
}

async fn refuse(
    app: &App,
    tenant: &Tenant,
    account: &str,
    identity: &VerifiedIdentity,
    reason: &str,
    ip: IpAddr,
    outcome: MicrosoftSignInOutcome,
) -> Result<MicrosoftSignInOutcome, sqlx::Error> {
    let detail = format!(
        "{reason} (directory {}, object {})",
        identity.tid, identity.oid
    );
    record(
        app,
        tenant,
        account,
        None,
        AuditAction::MicrosoftSignInFailed,
        &detail,
        ip,
    )
    .await?;
    Ok(outcome)
}

async fn record(
    app: &App,
    tenant: &Tenant,
    who: &str,
    user: Option<&UserId>,
    action: AuditAction,
    detail: &str,
    ip: IpAddr,
) -> Result<(), sqlx::Error> {
    audit::record(
        &app.db,
        &tenant.id,
        NewAuditEvent {
            action,
            actor_user_id: user.map(UserId::as_str),
            actor: who,
            target: who,
            detail,
            ip: Some(ip),
        },
    )
    .await
}
