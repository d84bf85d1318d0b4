//! Client assertions (`private_key_jwt`, RFC 7523): a JWT an app signs with the private key
//! of a certificate uploaded to its registration. Checked as Entra checks them: the
//! certificate named by its thumbprint, the signature, the audience, the issuer, the time
//! and, unlike a mock, that no assertion is used twice.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPublicKey;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use serde_json::Value;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use super::directory::FakeApp;
use super::errors::{self, AadError};

/// The only `client_assertion_type` Entra takes.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far apart Entra's clock and the app's may be.
const CLOCK_SKEW_SECONDS: i64 = 300;

/// An uploaded certificate, read.
struct Uploaded {
    sha1: Vec<u8>,
    sha256: Vec<u8>,
    public_key: RsaPublicKey,
    not_after: i64,
}

fn read(pem: &str) -> Option<Uploaded> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let certificate = block.parse_x509().ok()?;
    Some(Uploaded {
        sha1: Sha1::digest(&block.contents).to_vec(),
        sha256: Sha256::digest(&block.contents).to_vec(),
        public_key: RsaPublicKey::from_public_key_der(certificate.public_key().raw).ok()?,
        not_after: certificate.validity().not_after.timestamp(),
    })
}

fn part(encoded: Option<&str>) -> Result<Vec<u8>, AadError> {
    encoded
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .ok_or_else(|| errors::assertion_invalid("The client assertion is not a signed JWT."))
}

fn json(bytes: &[u8]) -> Result<Value, AadError> {
    serde_json::from_slice(bytes)
        .map_err(|_| errors::assertion_invalid("The client assertion is not a signed JWT."))
}

/// Checks `assertion` by `app` against the token endpoint URLs in `audiences`; remembers
/// its `jti` in `used` (with its expiry) so it cannot be presented again.
pub(crate) fn verify(
    assertion: &str,
    app: &FakeApp,
    audiences: &[String],
    now: OffsetDateTime,
    used: &mut HashMap<String, i64>,
) -> Result<(), AadError> {
    let client_id = app.client_id.to_string();
    let mut parts = assertion.split('.');
    let (header_part, claims_part) = (parts.next(), parts.next());
    let header = json(&part(header_part)?)?;
    let claims = json(&part(claims_part)?)?;
    let signature = part(parts.next())?;

    // The certificate is named by its SHA-256 thumbprint, or the older SHA-1 one.
    let named = |member: &str| {
        header[member]
            .as_str()
            .and_then(|value| URL_SAFE_NO_PAD.decode(value).ok())
    };
    let (sha256, sha1) = (named("x5t#S256"), named("x5t"));
    let shown = sha256
        .as_ref()
        .or(sha1.as_ref())
        .map_or_else(String::new, |bytes| {
            bytes.iter().map(|b| format!("{b:02X}")).collect()
        });
    let certificate = app
        .certificates
        .iter()
        .filter_map(|pem| read(pem))
        .find(|uploaded| {
            sha256.as_ref().is_some_and(|t| *t == uploaded.sha256)
                || (sha256.is_none() && sha1.as_ref().is_some_and(|t| *t == uploaded.sha1))
        })
        .ok_or_else(|| errors::certificate_not_registered(&shown, &client_id))?;
    if certificate.not_after <= now.unix_timestamp() {
        return Err(errors::certificate_expired(&shown, &client_id));
    }

    let signed = assertion
        .rsplit_once('.')
        .map(|(signed, _)| signed)
        .unwrap_or_default()
        .as_bytes();
    let key = certificate.public_key;
    let verified = match header["alg"].as_str() {
        Some("RS256") => rsa::pkcs1v15::Signature::try_from(signature.as_slice())
            .ok()
            .is_some_and(|signature| {
                rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key)
                    .verify(signed, &signature)
                    .is_ok()
            }),
        Some("PS256") => rsa::pss::Signature::try_from(signature.as_slice())
            .ok()
            .is_some_and(|signature| {
                rsa::pss::VerifyingKey::<Sha256>::new(key)
                    .verify(signed, &signature)
                    .is_ok()
            }),
        _ => false,
    };
    if !verified {
        return Err(errors::assertion_signature_invalid());
    }

    let audience = claims["aud"].as_str().unwrap_or_default();
    if !audiences.iter().any(|expected| expected == audience) {
        return Err(errors::assertion_audience(audience));
    }
    if claims["iss"].as_str() != Some(client_id.as_str())
        || claims["sub"].as_str() != Some(client_id.as_str())
    {
        return Err(errors::assertion_invalid(
            "The client assertion's iss and sub must both be the application's client ID.",
        ));
    }
    let now = now.unix_timestamp();
    let expires = claims["exp"].as_i64().unwrap_or(0);
    let not_before = claims["nbf"].as_i64().unwrap_or(expires);
    if expires + CLOCK_SKEW_SECONDS <= now || not_before - CLOCK_SKEW_SECONDS > now {
        return Err(errors::assertion_time(now, not_before, expires));
    }
    let jti = claims["jti"]
        .as_str()
        .filter(|jti| !jti.is_empty())
        .ok_or_else(|| errors::assertion_invalid("The client assertion has no jti."))?;
    used.retain(|_, expires| *expires + CLOCK_SKEW_SECONDS > now);
    if used.insert(jti.to_owned(), expires).is_some() {
        return Err(errors::assertion_invalid(
            "The client assertion was already presented (its jti was used before).",
        ));
    }
    Ok(())
}
