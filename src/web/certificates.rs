//! What External APIs and the Sign in with Microsoft settings share about the certificates
//! Portico generates: who asks for one, showing it, and the download. Their lifecycle is
//! `services::certificate_lifecycle`.

use std::net::IpAddr;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::error::AppError;
use super::extract::TenantCtx;
use super::format_time;
use crate::crypto::certificates::CertificateInfo;
use crate::domain::ExpiryStatus;
use crate::services::certificate_lifecycle::Admin;
use crate::store::certificates::{Slot, StoredCertificate};

/// The admin of `ctx` as the certificate lifecycle audits them.
pub(super) fn admin(ctx: &TenantCtx, ip: IpAddr) -> Admin<'_> {
    Admin {
        tenant: &ctx.tenant,
        user: &ctx.user,
        ip,
    }
}

/// A certificate as the page shows it, to compare with Azure's list.
pub struct CertificateView {
    pub thumbprint: String,
    pub not_before: String,
    pub not_after: String,
    pub expiry: ExpiryStatus,
}

impl CertificateView {
    pub(super) fn new(certificate: &StoredCertificate, now: OffsetDateTime) -> Self {
        Self {
            thumbprint: certificate.thumbprint.clone(),
            not_before: format_time(certificate.not_before()),
            not_after: format_time(certificate.not_after()),
            expiry: ExpiryStatus::of(certificate.not_after().date(), now),
        }
    }
}

/// A certificate file to download: `current.cer`, `current.pem`, `next.cer` or `next.pem`.
pub(super) struct CertificateFile {
    pub slot: Slot,
    der: bool,
}

impl CertificateFile {
    pub(super) fn parse(file: &str) -> Option<Self> {
        let (slot, der) = match file {
            "current.cer" => (Slot::Current, true),
            "current.pem" => (Slot::Current, false),
            "next.cer" => (Slot::Next, true),
            "next.pem" => (Slot::Next, false),
            _ => return None,
        };
        Some(Self { slot, der })
    }

    /// The file, named after `name` and the thumbprint. Only the certificate, which is
    /// public; its private key never leaves Portico.
    pub(super) fn download(
        &self,
        stored: &StoredCertificate,
        name: &str,
    ) -> Result<Response, AppError> {
        let certificate = CertificateInfo::read(&stored.certificate_pem)?;
        let extension = if self.der { "cer" } else { "pem" };
        let file_name = format!(
            "{}-{}.{extension}",
            file_name_part(name),
            &stored.thumbprint[..8]
        );
        let disposition = format!("attachment; filename=\"{file_name}\"");
        let (content_type, body) = if self.der {
            ("application/pkix-cert", certificate.der().to_vec())
        } else {
            (
                "application/x-pem-file",
                certificate.pem().as_bytes().to_vec(),
            )
        };
        Ok((
            [
                (header::CONTENT_TYPE, content_type.to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            body,
        )
            .into_response())
    }
}

/// A name as a safe file name: letters, digits and dashes.
fn file_name_part(name: &str) -> String {
    let part: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let part = part.trim_matches('-');
    if part.is_empty() {
        "portico".into()
    } else {
        part.to_owned()
    }
}

/// "Renew certificate" (and "Use a certificate instead"): how long the next one is valid.
#[derive(Deserialize)]
pub struct RenewForm {
    #[serde(default)]
    pub(super) valid_months: String,
    #[serde(default)]
    pub(super) version: i64,
}

/// "Switch to the new certificate": the version of the page it was pressed on.
#[derive(Deserialize)]
pub struct VersionForm {
    #[serde(default)]
    pub(super) version: i64,
}
