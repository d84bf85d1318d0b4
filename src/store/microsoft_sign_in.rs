//! The tenant's Sign in with Microsoft settings.

use sqlx::FromRow;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::certificates::{self, NewCertificate, Owner, Slot};
use super::sealed::{Purpose, Sealed};
use super::tenants::TenantId;
use super::{Db, SaveError, date_from_text, date_text, from_unix};
use crate::domain::{AuthMethod, ClientId, Cloud};

#[derive(Debug, Clone)]
pub struct SignInSettings {
    pub client_id: ClientId,
    /// As the admin entered it: a GUID or a verified domain.
    pub directory: Option<String>,
    pub directory_id: Option<Uuid>,
    pub cloud: Cloud,
    /// A client secret (or none: a public client), or a certificate Portico generated.
    pub auth_method: AuthMethod,
    /// Client secrets only.
    pub client_secret_sealed: Option<SealedSignInSecret>,
    pub secret_replaced_at: Option<OffsetDateTime>,
    /// "Secret expires on"; `None` for a secret stored before Portico asked for it.
    pub secret_expires_on: Option<Date>,
    pub enabled: bool,
    pub auto_create_agents: bool,
    /// Grows with every save; the settings form carries it (0 before the first save).
    pub version: i64,
}

/// What saving does with the stored client secret.
pub enum SecretChange {
    Keep,
    Replace {
        sealed: SealedSignInSecret,
        expires_on: Date,
    },
    /// Keeps the stored secret, with the expiry date an admin entered for it.
    SetExpiry(Date),
    Remove,
}

/// The settings to save; the secret separately, sealed by the caller.
pub struct SettingsUpdate<'a> {
    pub client_id: ClientId,
    pub directory: Option<String>,
    pub directory_id: Option<Uuid>,
    pub cloud: Cloud,
    pub enabled: bool,
    pub auto_create_agents: bool,
    pub secret: SecretChange,
    pub credential: CredentialChange<'a>,
}

/// What saving does with the sign-in's certificate.
pub enum CredentialChange<'a> {
    /// Keeps what is stored: the client secret's way, or the certificate in use.
    Keep,
    /// Signs with a client secret (or none) from now on: the certificates go.
    UseClientSecret,
    /// Signs with this new certificate from now on: the client secret goes.
    UseCertificate(NewCertificate<'a>),
    /// Stores this certificate as the next one, replacing one not switched to yet: sign-in
    /// keeps its client secret until [`certificates::switch_to_next`].
    AddNextCertificate(NewCertificate<'a>),
}

/// The client secret of a tenant's Sign in with Microsoft settings, which a tenant has one
/// of: sealed with an empty row key, it opens for this tenant's settings only.
pub struct SignInClientSecret;

impl Purpose for SignInClientSecret {
    const NAME: &'static str = "microsoft-sign-in/client-secret";
}

pub type SealedSignInSecret = Sealed<SignInClientSecret>;

#[derive(FromRow)]
struct Row {
    client_id: String,
    directory: Option<String>,
    directory_id: Option<String>,
    cloud: String,
    auth_method: String,
    client_secret_sealed: Option<String>,
    secret_replaced_at: Option<i64>,
    secret_expires_on: Option<String>,
    enabled: i64,
    auto_create_agents: i64,
    version: i64,
}

pub async fn get(db: &Db, tenant: &TenantId) -> Result<Option<SignInSettings>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT client_id, directory, directory_id, cloud, auth_method, client_secret_sealed, \
         secret_replaced_at, secret_expires_on, enabled, auto_create_agents, version \
         FROM microsoft_sign_in WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_optional(db.pool())
    .await?;
    row.map(|row| {
        let corrupt = |m: String| sqlx::Error::Decode(m.into());
        Ok(SignInSettings {
            client_id: ClientId::parse(&row.client_id).map_err(corrupt)?,
            directory: row.directory,
            directory_id: row
                .directory_id
                .map(|id| Uuid::try_parse(&id).map_err(|e| corrupt(e.to_string())))
                .transpose()?,
            cloud: Cloud::parse(&row.cloud).map_err(corrupt)?,
            auth_method: AuthMethod::parse(&row.auth_method).map_err(corrupt)?,
            client_secret_sealed: row.client_secret_sealed.map(Sealed::from_column),
            secret_replaced_at: row.secret_replaced_at.map(from_unix),
            secret_expires_on: row
                .secret_expires_on
                .as_deref()
                .map(date_from_text)
                .transpose()?,
            enabled: row.enabled != 0,
            auto_create_agents: row.auto_create_agents != 0,
            version: row.version,
        })
    })
    .transpose()
}

/// Saves the settings as loaded at `version` (0: none were saved yet), with their
/// certificate change, all at once or nothing; `Stale` if they moved on since.
pub async fn save(
    db: &Db,
    tenant: &TenantId,
    version: i64,
    update: &SettingsUpdate<'_>,
) -> Result<(), SaveError> {
    let now = db.unix_now();
    let secret = match (&update.credential, &update.secret) {
        // A certificate replaces the client secret.
        (CredentialChange::UseCertificate(_), _) => &SecretChange::Remove,
        (_, secret) => secret,
    };
    let (secret_sql, sealed, expires_on) = match secret {
        SecretChange::Keep => (
            "client_secret_sealed = microsoft_sign_in.client_secret_sealed, \
             secret_replaced_at = microsoft_sign_in.secret_replaced_at, \
             secret_expires_on = microsoft_sign_in.secret_expires_on",
            None,
            None,
        ),
        SecretChange::Replace { sealed, expires_on } => (
            "client_secret_sealed = excluded.client_secret_sealed, \
             secret_replaced_at = excluded.secret_replaced_at, \
             secret_expires_on = excluded.secret_expires_on",
            Some(sealed.as_str()),
            Some(*expires_on),
        ),
        SecretChange::SetExpiry(expires_on) => (
            "client_secret_sealed = microsoft_sign_in.client_secret_sealed, \
             secret_replaced_at = microsoft_sign_in.secret_replaced_at, \
             secret_expires_on = excluded.secret_expires_on",
            None,
            Some(*expires_on),
        ),
        SecretChange::Remove => (
            "client_secret_sealed = NULL, secret_replaced_at = NULL, secret_expires_on = NULL",
            None,
            None,
        ),
    };
    let auth_method_sql = match update.credential {
        CredentialChange::Keep | CredentialChange::AddNextCertificate(_) => {
            "auth_method = microsoft_sign_in.auth_method"
        }
        CredentialChange::UseClientSecret | CredentialChange::UseCertificate(_) => {
            "auth_method = excluded.auth_method"
        }
    };
    let auth_method = match update.credential {
        CredentialChange::UseCertificate(_) => AuthMethod::Certificate,
        CredentialChange::Keep
        | CredentialChange::UseClientSecret
        | CredentialChange::AddNextCertificate(_) => AuthMethod::ClientSecret,
    };
    let mut tx = db.pool().begin().await?;
    // The first save inserts at version 1; later ones update only the version they saw.
    let saved = sqlx::query(&format!(
        "INSERT INTO microsoft_sign_in (tenant_id, client_id, directory, directory_id, cloud, \
         client_secret_sealed, secret_replaced_at, enabled, auto_create_agents, updated_at, \
         version, auth_method, secret_expires_on) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $12, $13) \
         ON CONFLICT (tenant_id) DO UPDATE SET client_id = excluded.client_id, \
         directory = excluded.directory, directory_id = excluded.directory_id, \
         cloud = excluded.cloud, enabled = excluded.enabled, \
         auto_create_agents = excluded.auto_create_agents, updated_at = excluded.updated_at, \
         version = microsoft_sign_in.version + 1, {secret_sql}, {auth_method_sql} \
         WHERE microsoft_sign_in.version = $11"
    ))
    .bind(tenant.as_str())
    .bind(update.client_id.to_string())
    .bind(update.directory.as_deref())
    .bind(update.directory_id.map(|id| id.hyphenated().to_string()))
    .bind(update.cloud.as_str())
    .bind(sealed)
    .bind(sealed.map(|_| now))
    .bind(i64::from(update.enabled))
    .bind(i64::from(update.auto_create_agents))
    .bind(now)
    .bind(version)
    .bind(auth_method.as_str())
    .bind(expires_on.map(date_text))
    .execute(&mut *tx)
    .await?;
    if saved.rows_affected() == 0 {
        return Err(SaveError::Stale);
    }
    let owner = Owner::MicrosoftSignIn;
    match &update.credential {
        CredentialChange::Keep => {}
        CredentialChange::UseClientSecret => {
            certificates::delete(&mut tx, tenant, owner, None).await?;
        }
        CredentialChange::UseCertificate(certificate) => {
            certificates::delete(&mut tx, tenant, owner, None).await?;
            certificates::insert(&mut tx, tenant, owner, Slot::Current, certificate, now).await?;
        }
        CredentialChange::AddNextCertificate(certificate) => {
            certificates::delete(&mut tx, tenant, owner, Some(Slot::Next)).await?;
            certificates::insert(&mut tx, tenant, owner, Slot::Next, certificate, now).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}
