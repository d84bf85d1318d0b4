//! Signing people in: by password with throttling, or by a verified Microsoft identity,
//! and the audit trail both leave.

use std::net::IpAddr;

use secrecy::SecretString;

use crate::app::App;
use crate::domain::{AuditAction, DisplayName, EmailAddress, Role, UserStatus};
use crate::microsoft::sign_in::VerifiedIdentity;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::identities::{self, LinkError};
use crate::store::microsoft_sign_in::SignInSettings;
use crate::store::tenants::Tenant;
use crate::store::users::{self, CreateUserError, NewUser, UserId};

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
        let detail = "too many failed sign-ins";
        record(
            app,
            tenant,
            &typed_email,
            None,
            AuditAction::SignInThrottled,
            detail,
            ip,
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
            record(
                app,
                tenant,
                &typed_email,
                Some(&user.id),
                AuditAction::SignIn,
                "password",
                ip,
            )
            .await?;
            Ok(SignInOutcome::SignedIn(user.id))
        }
        Some(user) if password_ok => {
            let detail = "account is disabled";
            record(
                app,
                tenant,
                &typed_email,
                Some(&user.id),
                AuditAction::SignInFailed,
                detail,
                ip,
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
            record(
                app,
                tenant,
                &typed_email,
                Some(&user.id),
                AuditAction::SignInFailed,
                detail,
                ip,
            )
            .await?;
            Ok(SignInOutcome::Refused)
        }
        None => {
            record(
                app,
                tenant,
                &typed_email,
                None,
                AuditAction::SignInFailed,
                "unknown email",
                ip,
            )
            .await?;
            Ok(SignInOutcome::Refused)
        }
    }
}

/// How a Microsoft sign-in ended for Portico.
#[derive(Debug, PartialEq, Eq)]
pub enum MicrosoftSignInOutcome {
    SignedIn(UserId),
    /// No Portico user of this tenant is linked to the identity, nor may be matched to it.
    NoAccount,
    /// The linked or matched user is disabled.
    Disabled,
    /// A one-time link was used, but the Microsoft account is linked to another user.
    LinkedToAnotherUser,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewLink {
    Invited,
    MatchedByEmail,
}

/// Decides which Portico user a verified Microsoft identity signs in, linking it when the
/// rules allow. Identities are (tid, oid); an email links a first sign-in only when it can
/// be trusted (nOAuth): the tenant admits one directory, the directory verified the email's
/// domain (`xms_edov`), or it is a personal Microsoft account.
pub async fn sign_in_with_microsoft(
    app: &App,
    tenant: &Tenant,
    settings: &SignInSettings,
    identity: &VerifiedIdentity,
    invited_user: Option<UserId>,
    ip: IpAddr,
) -> Result<MicrosoftSignInOutcome, sqlx::Error> {
    let account = identity
        .username
        .clone()
        .or_else(|| identity.email.clone())
        .unwrap_or_else(|| identity.oid.to_string());
    let linked = identities::linked_user(&app.db, &tenant.id, identity.tid, identity.oid).await?;

    let (user_id, new_link) = match (linked, invited_user) {
        (Some(linked), Some(invited)) if linked != invited => {
            return refuse(
                app,
                tenant,
                &account,
                identity,
                "account is linked to another user",
                ip,
                MicrosoftSignInOutcome::LinkedToAnotherUser,
            )
            .await;
        }
        (Some(linked), _) => (linked, None),
        (None, Some(invited)) => (invited, Some(NewLink::Invited)),
        (None, None) => match matching_user(app, tenant, settings, identity).await? {
            Some(user) => (user, Some(NewLink::MatchedByEmail)),
            None => {
                return refuse(
                    app,
                    tenant,
                    &account,
                    identity,
                    "no linked Portico user",
                    ip,
                    MicrosoftSignInOutcome::NoAccount,
                )
                .await;
            }
        },
    };

    let Some(user) = users::get(&app.db, &tenant.id, user_id.as_str()).await? else {
        return refuse(
            app,
            tenant,
            &account,
            identity,
            "no linked Portico user",
            ip,
            MicrosoftSignInOutcome::NoAccount,
        )
        .await;
    };
    if user.status != UserStatus::Active {
        return refuse(
            app,
            tenant,
            &account,
            identity,
            "account is disabled",
            ip,
            MicrosoftSignInOutcome::Disabled,
        )
        .await;
    }
    if let Some(new_link) = new_link {
        if new_link == NewLink::Invited {
            // The admin's link replaces whatever account the user had linked before.
            identities::unlink(&app.db, &tenant.id, &user.id).await?;
        }
        match identities::link(
            &app.db,
            &tenant.id,
            &user.id,
            identity.tid,
            identity.oid,
            &account,
        )
        .await
        {
            Ok(()) => {}
            Err(LinkError::AlreadyLinked) => {
                return refuse(
                    app,
                    tenant,
                    &account,
                    identity,
                    "user is linked to another Microsoft account",
                    ip,
                    MicrosoftSignInOutcome::LinkedToAnotherUser,
                )
                .await;
            }
            Err(LinkError::Database(err)) => return Err(err),
        }
        let how = match new_link {
            NewLink::Invited => "with a one-time link",
            NewLink::MatchedByEmail => "by its email",
        };
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
    let restricted = settings.directory_id.is_some();
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
        "Microsoft: {reason} (directory {}, object {})",
        identity.tid, identity.oid
    );
    record(
        app,
        tenant,
        account,
        None,
        AuditAction::SignInFailed,
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
