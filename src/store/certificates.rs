//! The certificates Portico generates, in one table whoever owns them: a Graph credential,
//! or the tenant's Sign in with Microsoft settings. Each row keeps the certificate (public),
//! its sealed private key, and which one it is of its owner's.

use secrecy::SecretString;
use sqlx::FromRow;
use time::OffsetDateTime;

use super::sealed::{Purpose, Sealed};
use super::tenants::TenantId;
use super::{Db, SaveError, found, from_unix, new_id};
use crate::crypto::{Keyring, SealError};

/// Which certificate: the one in use, or the one waiting to replace it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Next,
}

impl Slot {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Next => "next",
        }
    }
}

/// Whose certificate it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The Graph credential with this id.
    GraphCredential(&'a str),
    /// The tenant's Sign in with Microsoft settings.
    MicrosoftSignIn,
}

/// What kind of owner a certificate has: part of what its private key is sealed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    GraphCredential,
    MicrosoftSignIn,
}

impl<'a> Owner<'a> {
    pub fn kind(self) -> OwnerKind {
        match self {
            Self::GraphCredential(_) => OwnerKind::GraphCredential,
            Self::MicrosoftSignIn => OwnerKind::MicrosoftSignIn,
        }
    }

    /// The certificates' column naming this owner.
    fn column(self) -> &'static str {
        match self {
            Self::GraphCredential(_) => "graph_credential_id",
            Self::MicrosoftSignIn => "microsoft_sign_in_tenant_id",
        }
    }

    /// The owner's key: the credential's id, or the tenant's for its sign-in settings.
    fn key<'k>(self, tenant: &'k TenantId) -> &'k str
    where
        'a: 'k,
    {
        match self {
            Self::GraphCredential(id) => id,
            Self::MicrosoftSignIn => tenant.as_str(),
        }
    }

    /// The owner's own table and the column its key is in.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Self::GraphCredential(_) => ("graph_credentials", "id"),
            Self::MicrosoftSignIn => ("microsoft_sign_in", "tenant_id"),
        }
    }

    /// What switching to a certificate sets in the owner's row, besides its version: it
    /// signs with the certificate from now on and its client secret goes (and a Graph
    /// credential's last test, which was made with what it replaces).
    fn switched(self) -> &'static str {
        match self {
            Self::GraphCredential(_) => {
                "auth_method = 'certificate', client_secret_sealed = NULL, \
                 secret_expires_on = NULL, secret_replaced_at = NULL, last_test_at = NULL, \
                 last_test_ok = NULL, last_test_summary = NULL,"
            }
            Self::MicrosoftSignIn => {
                "auth_method = 'certificate', client_secret_sealed = NULL, \
                 secret_replaced_at = NULL, secret_expires_on = NULL,"
            }
        }
    }
}

/// The private key of a Graph credential's certificate (the row key is the certificate's id).
pub struct GraphCredentialKey;
/// The private key of a Sign in with Microsoft certificate.
pub struct SignInKey;

impl Purpose for GraphCredentialKey {
    const NAME: &'static str = "graph-credential/private-key";
}

impl Purpose for SignInKey {
    const NAME: &'static str = "microsoft-sign-in/private-key";
}

/// A certificate's private key, sealed for the kind of owner it has. The kind is part of the
/// context, worded as when each kind had a table of its own: sealed keys moved unchanged.
#[derive(Debug, Clone, PartialEq)]
pub enum SealedPrivateKey {
    GraphCredential(Sealed<GraphCredentialKey>),
    MicrosoftSignIn(Sealed<SignInKey>),
}

impl SealedPrivateKey {
    pub fn seal(
        keys: &Keyring,
        tenant: &TenantId,
        kind: OwnerKind,
        certificate_id: &str,
        private_key: &SecretString,
    ) -> Self {
        match kind {
            OwnerKind::GraphCredential => {
                Self::GraphCredential(Sealed::seal(keys, tenant, certificate_id, private_key))
            }
            OwnerKind::MicrosoftSignIn => {
                Self::MicrosoftSignIn(Sealed::seal(keys, tenant, certificate_id, private_key))
            }
        }
    }

    pub fn open(
        &self,
        keys: &Keyring,
        tenant: &TenantId,
        certificate_id: &str,
    ) -> Result<SecretString, SealError> {
        match self {
            Self::GraphCredential(sealed) => sealed.open(keys, tenant, certificate_id),
            Self::MicrosoftSignIn(sealed) => sealed.open(keys, tenant, certificate_id),
        }
    }

    fn from_column(kind: OwnerKind, text: String) -> Self {
        match kind {
            OwnerKind::GraphCredential => Self::GraphCredential(Sealed::from_column(text)),
            OwnerKind::MicrosoftSignIn => Self::MicrosoftSignIn(Sealed::from_column(text)),
        }
    }
}

/// The sealed text, as stored.
impl std::ops::Deref for SealedPrivateKey {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Self::GraphCredential(sealed) => sealed,
            Self::MicrosoftSignIn(sealed) => sealed,
        }
    }
}

/// What the sealed private key of a certificate of an owner of `kind` is bound to.
pub fn private_key_context(tenant: &TenantId, kind: OwnerKind, certificate_id: &str) -> String {
    match kind {
        OwnerKind::GraphCredential => Sealed::<GraphCredentialKey>::context(tenant, certificate_id),
        OwnerKind::MicrosoftSignIn => Sealed::<SignInKey>::context(tenant, certificate_id),
    }
}

/// A certificate as stored: public, but for its sealed private key.
#[derive(Debug, Clone)]
pub struct StoredCertificate {
    pub id: String,
    pub private_key_sealed: SealedPrivateKey,
    pub certificate_pem: String,
    pub thumbprint: String,
    not_before: i64,
    not_after: i64,
}

#[derive(FromRow)]
struct CertificateRow {
    id: String,
    private_key_sealed: String,
    certificate_pem: String,
    thumbprint: String,
    not_before: i64,
    not_after: i64,
}

impl CertificateRow {
    fn of(self, kind: OwnerKind) -> StoredCertificate {
        StoredCertificate {
            id: self.id,
            private_key_sealed: SealedPrivateKey::from_column(kind, self.private_key_sealed),
            certificate_pem: self.certificate_pem,
            thumbprint: self.thumbprint,
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }
}

impl StoredCertificate {
    pub fn not_before(&self) -> OffsetDateTime {
        from_unix(self.not_before)
    }

    pub fn not_after(&self) -> OffsetDateTime {
        from_unix(self.not_after)
    }
}

/// A certificate to store: Portico generated it, and sealed its private key to `id`.
pub struct NewCertificate<'a> {
    pub id: &'a str,
    pub private_key_sealed: &'a SealedPrivateKey,
    pub certificate_pem: &'a str,
    pub thumbprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A new certificate's id, known before saving so its private key can be sealed to it.
pub fn new_certificate_id() -> String {
    new_id()
}

/// One certificate of an owner of the tenant.
pub async fn get(
    db: &Db,
    tenant: &TenantId,
    owner: Owner<'_>,
    slot: Slot,
) -> Result<Option<StoredCertificate>, sqlx::Error> {
    let row: Option<CertificateRow> = sqlx::query_as(&format!(
        "SELECT id, private_key_sealed, certificate_pem, thumbprint, not_before, not_after \
         FROM certificates WHERE tenant_id = $1 AND {} = $2 AND slot = $3",
        owner.column()
    ))
    .bind(tenant.as_str())
    .bind(owner.key(tenant))
    .bind(slot.as_str())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|row| row.of(owner.kind())))
}

pub(super) async fn insert(
    connection: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    owner: Owner<'_>,
    slot: Slot,
    certificate: &NewCertificate<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO certificates (id, tenant_id, {}, slot, private_key_sealed, \
         certificate_pem, thumbprint, not_before, not_after, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        owner.column()
    ))
    .bind(certificate.id)
    .bind(tenant.as_str())
    .bind(owner.key(tenant))
    .bind(slot.as_str())
    .bind(&**certificate.private_key_sealed)
    .bind(certificate.certificate_pem)
    .bind(&certificate.thumbprint)
    .bind(certificate.not_before.unix_timestamp())
    .bind(certificate.not_after.unix_timestamp())
    .bind(now)
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Deletes the owner's certificate in `slot`, or all of them.
pub(super) async fn delete(
    connection: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    owner: Owner<'_>,
    slot: Option<Slot>,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "DELETE FROM certificates WHERE tenant_id = $1 AND {} = $2 AND ($3 IS NULL OR slot = $3)",
        owner.column()
    ))
    .bind(tenant.as_str())
    .bind(owner.key(tenant))
    .bind(slot.map(Slot::as_str))
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Moves the owner's row from `version` to the next one inside `tx`, setting `also` (SQL
/// assignments ending in a comma) too: `Stale` if someone saved it since the admin's page
/// was loaded.
async fn bump_owner_version(
    tx: &mut sqlx::AnyConnection,
    tenant: &TenantId,
    owner: Owner<'_>,
    version: i64,
    also: &str,
    now: i64,
) -> Result<(), SaveError> {
    let (table, key_column) = owner.table();
    let updated = sqlx::query(&format!(
        "UPDATE {table} SET {also} updated_at = $1, version = version + 1 \
         WHERE tenant_id = $2 AND {key_column} = $3 AND version = $4"
    ))
    .bind(now)
    .bind(tenant.as_str())
    .bind(owner.key(tenant))
    .bind(version)
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 1 {
        return Ok(());
    }
    let still_there: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE tenant_id = $1 AND {key_column} = $2"
    ))
    .bind(tenant.as_str())
    .bind(owner.key(tenant))
    .fetch_one(&mut *tx)
    .await?;
    Err(if still_there > 0 {
        SaveError::Stale
    } else {
        SaveError::NotFound
    })
}

/// Stores the certificate that is to replace the owner's current one (or its client
/// secret), replacing a previous one not switched to yet, for the owner as loaded at
/// `version`. The owner keeps working as before until [`switch_to_next`].
pub async fn add_next(
    db: &Db,
    tenant: &TenantId,
    owner: Owner<'_>,
    version: i64,
    certificate: &NewCertificate<'_>,
) -> Result<(), SaveError> {
    let now = db.unix_now();
    let mut tx = db.pool().begin().await?;
    bump_owner_version(&mut tx, tenant, owner, version, "", now).await?;
    delete(&mut tx, tenant, owner, Some(Slot::Next)).await?;
    insert(&mut tx, tenant, owner, Slot::Next, certificate, now).await?;
    tx.commit().await?;
    Ok(())
}

/// Makes the next certificate the one the owner signs with, and drops the certificate or
/// the client secret it replaces: all at once, or nothing.
pub async fn switch_to_next(
    db: &Db,
    tenant: &TenantId,
    owner: Owner<'_>,
    version: i64,
) -> Result<(), SaveError> {
    let now = db.unix_now();
    let mut tx = db.pool().begin().await?;
    bump_owner_version(&mut tx, tenant, owner, version, owner.switched(), now).await?;
    delete(&mut tx, tenant, owner, Some(Slot::Current)).await?;
    let switched = sqlx::query(&format!(
        "UPDATE certificates SET slot = 'current' \
         WHERE tenant_id = $1 AND {} = $2 AND slot = 'next'",
        owner.column()
    ))
    .bind(tenant.as_str())
    .bind(owner.key(tenant))
    .execute(&mut *tx)
    .await?;
    // Without a next certificate there is nothing to switch to: roll everything back.
    found(switched.rows_affected())?;
    tx.commit().await?;
    Ok(())
}
