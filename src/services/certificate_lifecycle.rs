//! The certificates Portico generates for a Graph credential or the tenant's Sign in with
//! Microsoft settings, from key pair to switch: generated on the blocking pool, sealed to
//! their owner, renewed beside the one in use, and switched to once Microsoft accepts them.
//! Each step that changes something is audited.

use std::net::IpAddr;

use time::Duration;
use uuid::Uuid;

use crate::app::App;
use crate::crypto::SealError;
use crate::crypto::certificates::{self, CertificateError, CertificateInfo};
use crate::domain::{
    AuditAction, ClientId, Cloud, CurrentProof, NextCertificateCheck, format_time, may_switch,
};
use crate::microsoft::CallError;
use crate::microsoft::graph::{AppCredentials, ClientProof};
use crate::store::SaveError;
use crate::store::audit::{self, NewAuditEvent};
use crate::store::certificates::{
    self as stored, NewCertificate, Owner, OwnerKind, SealedPrivateKey, Slot, StoredCertificate,
    new_certificate_id,
};
use crate::store::graph_credentials::GraphCredential;
use crate::store::microsoft_sign_in::SignInSettings;
use crate::store::tenants::{Tenant, TenantId};
use crate::store::users::User;

/// The admin who asks, for the audit log.
pub struct Admin<'a> {
    pub tenant: &'a Tenant,
    pub user: &'a User,
    pub ip: IpAddr,
}

impl Admin<'_> {
    async fn audit(
        &self,
        app: &App,
        action: AuditAction,
        target: &str,
        detail: &str,
    ) -> Result<(), sqlx::Error> {
        let event = NewAuditEvent {
            action,
            actor_user_id: Some(self.user.id.as_str()),
            actor: &self.user.email,
            target,
            detail,
            ip: Some(self.ip),
        };
        audit::record(&app.db, &self.tenant.id, event).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// `NotFound` without a next certificate to switch to; `Stale` when someone saved the
    /// owner since the admin's page was loaded.
    #[error(transparent)]
    Save(#[from] SaveError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    #[error("the next certificate's private key cannot be read: {0}")]
    Seal(#[from] SealError),
}

/// A certificate Portico generated, its private key sealed to its owner: ready to store.
pub struct SealedCertificate {
    id: String,
    private_key_sealed: SealedPrivateKey,
    certificate: CertificateInfo,
}

impl SealedCertificate {
    pub fn to_store(&self) -> NewCertificate<'_> {
        NewCertificate {
            id: &self.id,
            private_key_sealed: &self.private_key_sealed,
            certificate_pem: self.certificate.pem(),
            thumbprint: self.certificate.thumbprint(),
            not_before: self.certificate.not_before,
            not_after: self.certificate.not_after,
        }
    }

    /// What the audit log says about it: never its key, only what Azure shows.
    pub fn detail(&self) -> String {
        format!(
            "certificate {} valid until {}",
            self.certificate.thumbprint(),
            format_time(self.certificate.not_after)
        )
    }
}

/// The subject of a Graph credential's certificates: `CN=Portico <name>`.
pub fn graph_credential_common_name(name: &str) -> String {
    format!("Portico {name}")
}

/// The subject of the tenant's sign-in certificates.
pub fn sign_in_common_name(tenant: &Tenant) -> String {
    format!("Portico sign-in {}", tenant.slug)
}

/// A new key pair and certificate named `CN=<common_name>`, valid from now for `valid_for`,
/// made on the blocking pool, its private key sealed to the tenant, the kind of owner and
/// the certificate's id.
pub async fn generate(
    app: &App,
    tenant: &TenantId,
    kind: OwnerKind,
    common_name: String,
    valid_for: Duration,
) -> Result<SealedCertificate, CertificateError> {
    let generated =
        certificates::generate_in_background(common_name, app.clock.now(), valid_for).await?;
    let id = new_certificate_id();
    let private_key_sealed = SealedPrivateKey::seal(
        &app.config.secret_key,
        tenant,
        kind,
        &id,
        &generated.private_key,
    );
    Ok(SealedCertificate {
        id,
        private_key_sealed,
        certificate: generated.certificate,
    })
}

/// An owner of certificates, as loaded for the admin's page.
pub struct CertificateOwner<'a> {
    owner: Owner<'a>,
    /// Who it is in the audit log.
    name: &'a str,
    common_name: String,
    client_id: ClientId,
    directory_id: Option<Uuid>,
    cloud: Cloud,
    version: i64,
    current: CurrentProof,
}

impl<'a> CertificateOwner<'a> {
    pub fn graph_credential(credential: &'a GraphCredential) -> Self {
        Self {
            owner: Owner::GraphCredential(&credential.id),
            name: &credential.name,
            common_name: graph_credential_common_name(&credential.name),
            client_id: credential.client_id,
            directory_id: Some(credential.directory_id),
            cloud: credential.cloud,
            version: credential.version,
            current: CurrentProof::of(credential.auth_method(), true),
        }
    }

    pub fn microsoft_sign_in(tenant: &Tenant, settings: &'a SignInSettings) -> Self {
        Self {
            owner: Owner::MicrosoftSignIn,
            name: "Sign in with Microsoft",
            common_name: sign_in_common_name(tenant),
            client_id: settings.client_id,
            directory_id: settings.directory_id,
            cloud: settings.cloud,
            version: settings.version,
            current: CurrentProof::of(
                settings.auth_method,
                settings.client_secret_sealed.is_some(),
            ),
        }
    }

    /// What the audit log records a renewal and a switch as.
    fn actions(&self) -> (AuditAction, AuditAction) {
        match self.owner {
            Owner::GraphCredential(_) => (
                AuditAction::GraphCredentialCertificateCreated,
                AuditAction::GraphCredentialCertificateSwitched,
            ),
            Owner::MicrosoftSignIn => (
                AuditAction::MicrosoftSignInCertificateCreated,
                AuditAction::MicrosoftSignInCertificateSwitched,
            ),
        }
    }
}

/// "Renew certificate" (or "Use a certificate instead" from a client secret): generates the
/// next certificate while what works now keeps working, so the admin can upload it to Azure
/// before the switch; for the owner as loaded at `version`.
pub async fn renew(
    app: &App,
    admin: &Admin<'_>,
    owner: &CertificateOwner<'_>,
    version: i64,
    valid_for: Duration,
) -> Result<(), LifecycleError> {
    let tenant = &admin.tenant.id;
    let kind = owner.owner.kind();
    let next = generate(app, tenant, kind, owner.common_name.clone(), valid_for).await?;
    stored::add_next(&app.db, tenant, owner.owner, version, &next.to_store()).await?;
    let keeps = match (owner.owner, owner.current) {
        (Owner::MicrosoftSignIn, CurrentProof::ClientSecret) => {
            " to replace the client secret; sign-in keeps using the client secret until the switch"
        }
        _ => "",
    };
    let detail = format!("new {}{keeps}", next.detail());
    admin
        .audit(app, owner.actions().0, owner.name, &detail)
        .await?;
    Ok(())
}

/// What a switch did.
pub enum Switch {
    Done,
    /// Microsoft refused the next certificate, or could not be asked: nothing changed.
    Refused(CallError),
}

/// "Switch to the new certificate" of the owner as loaded at `version`: first asks
/// Microsoft for a token with it, then makes it the one the owner signs with, dropping the
/// certificate or the client secret it replaces.
pub async fn switch(
    app: &App,
    admin: &Admin<'_>,
    owner: &CertificateOwner<'_>,
    version: i64,
) -> Result<Switch, LifecycleError> {
    let tenant = &admin.tenant.id;
    let next = stored::get(&app.db, tenant, owner.owner, Slot::Next)
        .await?
        .ok_or(SaveError::NotFound)?;
    if version != owner.version {
        return Err(SaveError::Stale.into());
    }
    let (check, refusal) = check_with_microsoft(app, tenant, owner, &next).await?;
    if let (false, Some(refusal)) = (may_switch(check), refusal) {
        return Ok(Switch::Refused(refusal));
    }
    let current = stored::get(&app.db, tenant, owner.owner, Slot::Current).await?;
    stored::switch_to_next(&app.db, tenant, owner.owner, version).await?;
    if let Owner::GraphCredential(id) = owner.owner {
        // Tokens of the replaced secret or certificate go; the next use fetches a fresh one.
        app.microsoft.forget_tokens(id);
    }
    let replaced = match (current, owner.current) {
        (Some(current), _) => format!(", replacing certificate {}", current.thumbprint),
        (None, CurrentProof::ClientSecret) => ", replacing the client secret".into(),
        (None, _) => String::new(),
    };
    let signs = match owner.owner {
        Owner::GraphCredential(_) => "signs",
        Owner::MicrosoftSignIn => "signs in",
    };
    let detail = format!(
        "now {signs} with certificate {} valid until {}{replaced}",
        next.thumbprint,
        format_time(next.not_after())
    );
    admin
        .audit(app, owner.actions().1, owner.name, &detail)
        .await?;
    Ok(Switch::Done)
}

/// Asks Microsoft for an app-only token signed with `next`, which needs no permission, so a
/// certificate not yet uploaded to Azure is found out before it replaces one that works;
/// with what Microsoft said when it refused or could not be reached.
async fn check_with_microsoft(
    app: &App,
    tenant: &TenantId,
    owner: &CertificateOwner<'_>,
    next: &StoredCertificate,
) -> Result<(NextCertificateCheck, Option<CallError>), LifecycleError> {
    let Some(directory_id) = owner.directory_id else {
        return Ok((NextCertificateCheck::NotPossible, None));
    };
    let private_key = next
        .private_key_sealed
        .open(&app.config.secret_key, tenant, &next.id)?;
    let certificate = CertificateInfo::read(&next.certificate_pem)?;
    let (cache_key, keep_token) = match owner.owner {
        // Named by the certificate: a token obtained with another is never reused.
        Owner::GraphCredential(id) => (format!("{id}/{}", next.thumbprint), true),
        // Sign-in has no use for an app-only token beyond this check.
        Owner::MicrosoftSignIn => (
            format!("microsoft-sign-in/{}/{}", tenant.as_str(), next.id),
            false,
        ),
    };
    let credentials = AppCredentials {
        cache_key: cache_key.clone(),
        client_id: owner.client_id,
        directory_id,
        cloud: owner.cloud,
        proof: ClientProof::Certificate {
            private_key: &private_key,
            certificate: &certificate,
        },
    };
    let tried = app.microsoft.app_token(&credentials, app.clock.now()).await;
    if !keep_token {
        app.microsoft.forget_tokens(&cache_key);
    }
    Ok(match tried {
        Ok(_) => (NextCertificateCheck::Accepted, None),
        Err(error @ CallError::Microsoft(_)) => (NextCertificateCheck::Refused, Some(error)),
        Err(error) => {
            tracing::warn!(error = %error, "checking the new certificate could not reach Microsoft");
            (NextCertificateCheck::Unreachable, Some(error))
        }
    })
}
