//! What Graph credentials and Sign in with Microsoft store of a certificate Portico
//! generated: the certificate (public), its sealed private key, and which one it is.

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{from_unix, new_id};

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

/// A certificate as stored: public, but for its sealed private key.
#[derive(Debug, Clone, FromRow)]
pub struct StoredCertificate {
    pub id: String,
    pub private_key_sealed: String,
    pub certificate_pem: String,
    pub thumbprint: String,
    not_before: i64,
    not_after: i64,
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
    pub private_key_sealed: &'a str,
    pub certificate_pem: &'a str,
    pub thumbprint: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A new certificate's id, known before saving so its private key can be sealed to it.
pub fn new_certificate_id() -> String {
    new_id()
}
