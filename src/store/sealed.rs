//! A sealed value typed by what it is for, so it is sealed and opened with its own context
//! and no other.

use std::marker::PhantomData;

use secrecy::SecretString;

use super::tenants::TenantId;
use crate::crypto::{Keyring, SealError};

/// What a sealed value is for. Its name starts the context the value is sealed with, then
/// its tenant and row, so a value sealed for one purpose, tenant or row never opens as
/// another's. The store module owning a sealed column declares its purpose; names are
/// unique (tested in `sealed_columns`).
pub trait Purpose {
    const NAME: &'static str;
}

/// A secret sealed with the deployment key for purpose `P`, bound to a tenant and a row.
/// The context is built here only, from `P`, so no caller can pass a wrong one.
pub struct Sealed<P> {
    text: String,
    purpose: PhantomData<fn() -> P>,
}

impl<P: Purpose> Sealed<P> {
    pub fn seal(keys: &Keyring, tenant: &TenantId, row: &str, secret: &SecretString) -> Self {
        Self::from_column(keys.seal(secret, &Self::context(tenant, row)))
    }

    pub fn open(
        &self,
        keys: &Keyring,
        tenant: &TenantId,
        row: &str,
    ) -> Result<SecretString, SealError> {
        keys.open(&self.text, &Self::context(tenant, row))
    }

    /// The sealed text as the column stores it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub(super) fn from_column(text: String) -> Self {
        Self {
            text,
            purpose: PhantomData,
        }
    }

    /// What a value of this purpose for `tenant` and `row` is bound to; `row` is empty for
    /// settings a tenant has one of.
    pub fn context(tenant: &TenantId, row: &str) -> String {
        if row.is_empty() {
            format!("{}/{}", P::NAME, tenant.as_str())
        } else {
            format!("{}/{}/{row}", P::NAME, tenant.as_str())
        }
    }
}

impl<P> Clone for Sealed<P> {
    fn clone(&self) -> Self {
        Self {
            text: self.text.clone(),
            purpose: PhantomData,
        }
    }
}

/// The sealed text, as stored: it reveals nothing without the key.
impl<P> std::ops::Deref for Sealed<P> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl<P> PartialEq for Sealed<P> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<P> std::fmt::Debug for Sealed<P> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Sealed(..)")
    }
}
