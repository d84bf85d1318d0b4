//! A tenant's Graph credentials, opened for one use: the client secret, or the current
//! certificate's private key, unsealed only while a token request needs them. Pages ("Test
//! connection", "Check mailbox access") and the expiry alerts open them the same way, so a
//! token cached for one is found by the others.

use secrecy::SecretString;

use crate::app::App;
use crate::crypto::SealError;
use crate::crypto::certificates::{CertificateError, CertificateInfo};
use crate::microsoft::graph::{AppCredentials, ClientProof};
use crate::store::certificates::{self, Owner, Slot, StoredCertificate};
use crate::store::graph_credentials::{Authentication, GraphCredential};
use crate::store::tenants::TenantId;

/// What proves a credential to Microsoft, opened from storage for one use.
pub enum OpenedProof {
    Secret {
        secret: SecretString,
        cache_key: String,
    },
    Certificate {
        private_key: SecretString,
        certificate: CertificateInfo,
        cache_key: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("its secret cannot be read: {0}")]
    Seal(#[from] SealError),
    #[error("its certificate cannot be read: {0}")]
    Certificate(#[from] CertificateError),
    #[error("it has no current certificate")]
    NoCertificate,
}

impl OpenedProof {
    /// Opens `stored`, a certificate of the credential `credential_id` (current or next).
    pub fn certificate(
        app: &App,
        tenant: &TenantId,
        credential_id: &str,
        stored: &StoredCertificate,
    ) -> Result<Self, OpenError> {
        let private_key =
            stored
                .private_key_sealed
                .open(&app.config.secret_key, tenant, &stored.id)?;
        Ok(Self::Certificate {
            private_key,
            certificate: CertificateInfo::read(&stored.certificate_pem)?,
            // A token obtained with another certificate is never reused.
            cache_key: format!("{credential_id}/{}", stored.thumbprint),
        })
    }

    pub fn credentials(&self, credential: &GraphCredential) -> AppCredentials<'_> {
        let (cache_key, proof) = match self {
            Self::Secret { secret, cache_key } => (cache_key, ClientProof::Secret(secret)),
            Self::Certificate {
                private_key,
                certificate,
                cache_key,
            } => (
                cache_key,
                ClientProof::Certificate {
                    private_key,
                    certificate,
                },
            ),
        };
        AppCredentials {
            cache_key: cache_key.clone(),
            client_id: credential.client_id,
            directory_id: credential.directory_id,
            cloud: credential.cloud,
            proof,
        }
    }
}

/// Opens what the credential proves itself with now: its secret or current certificate.
pub async fn open(
    app: &App,
    tenant: &TenantId,
    credential: &GraphCredential,
) -> Result<OpenedProof, OpenError> {
    match &credential.authentication {
        Authentication::ClientSecret {
            sealed,
            replaced_at,
            ..
        } => Ok(OpenedProof::Secret {
            secret: sealed.open(&app.config.secret_key, tenant, &credential.id)?,
            // The replacement time changes with the secret, so an old token is never reused.
            cache_key: format!("{}/{}", credential.id, replaced_at.unix_timestamp()),
        }),
        Authentication::Certificate { .. } => {
            let owner = Owner::GraphCredential(&credential.id);
            let stored = certificates::get(&app.db, tenant, owner, Slot::Current)
                .await?
                .ok_or(OpenError::NoCertificate)?;
            OpenedProof::certificate(app, tenant, &credential.id, &stored)
        }
    }
}
