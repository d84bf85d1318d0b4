//! Certificate credentials for Microsoft's identity platform. Portico generates the key pair
//! and a self-signed certificate, the admin uploads the certificate (public) to the Azure
//! app, and Portico proves itself with client assertions signed by the private key
//! (`private_key_jwt`, RFC 7523). With crypto, the only module that holds a private key in
//! the clear: Portico keeps its PEM in zeroizing memory, but rcgen and jsonwebtoken hold
//! copies of the key while they generate or sign, which they do not zeroize.
//!
//! Microsoft Entra accepts only RSA keys for app certificates (ECDSA assertions are refused),
//! so every key is RSA 2048, the size Azure's own guides use.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::crypto::random_bytes;

const RSA_BITS: usize = 2048;

/// How long a client assertion may be used: Microsoft asks for 5 to 10 minutes.
const ASSERTION_LIFETIME: Duration = Duration::minutes(10);

#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("generating the key pair failed: {0}")]
    KeyGeneration(String),
    #[error("making the certificate failed: {0}")]
    Certificate(String),
    #[error("the certificate cannot be read: {0}")]
    Unreadable(String),
    #[error("signing the client assertion failed: {0}")]
    Signing(String),
}

/// A certificate, and what admins compare with what Azure shows.
#[derive(Debug, Clone)]
pub struct CertificateInfo {
    pem: String,
    der: Vec<u8>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl CertificateInfo {
    /// Reads a PEM certificate.
    pub fn read(pem: &str) -> Result<Self, CertificateError> {
        let unreadable = |e: String| CertificateError::Unreadable(e);
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| unreadable(e.to_string()))?;
        let certificate = block.parse_x509().map_err(|e| unreadable(e.to_string()))?;
        let validity = certificate.validity();
        let time = |seconds: i64| {
            OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| unreadable(e.to_string()))
        };
        Ok(Self {
            not_before: time(validity.not_before.timestamp())?,
            not_after: time(validity.not_after.timestamp())?,
            pem: pem.to_owned(),
            der: block.contents.clone(),
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The DER bytes: what a `.cer` file holds.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-1 of the certificate in hex capitals: the Thumbprint Azure lists under
    /// Certificates & secrets.
    pub fn thumbprint(&self) -> String {
        Sha1::digest(&self.der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect()
    }
}

/// A new key pair and its self-signed certificate.
pub struct GeneratedCertificate {
    /// PKCS #8 PEM.
    pub private_key: SecretString,
    pub certificate: CertificateInfo,
}

impl std::fmt::Debug for GeneratedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedCertificate")
            .field("private_key", &"[redacted]")
            .field("certificate", &self.certificate.thumbprint())
            .finish()
    }
}

/// Generates an RSA key pair and a certificate for it, valid from `now` for `valid_for`,
/// named `CN=<common_name>`. Takes a while: run it on the blocking pool
/// ([`generate_in_background`]).
pub fn generate(
    common_name: &str,
    now: OffsetDateTime,
    valid_for: Duration,
) -> Result<GeneratedCertificate, CertificateError> {
    let failed = |e: String| CertificateError::KeyGeneration(e);
    // ring, which signs, cannot generate RSA keys; the rsa crate only makes this one.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
        .map_err(|e| failed(e.to_string()))?;
    let der = key.to_pkcs8_der().map_err(|e| failed(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| failed(e.to_string()))?;
    let key_pair = rcgen::KeyPair::try_from(der.as_bytes()).map_err(|e| failed(e.to_string()))?;

    let certificate_error = |e: rcgen::Error| CertificateError::Certificate(e.to_string());
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(certificate_error)?;
    let mut name = rcgen::DistinguishedName::new();
    name.push(rcgen::DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.not_before = now;
    params.not_after = now + valid_for;
    // A positive 128-bit serial, as RFC 5280 asks.
    let mut serial = random_bytes::<16>();
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params.self_signed(&key_pair).map_err(certificate_error)?;
    Ok(GeneratedCertificate {
        private_key: SecretString::from(pem.as_str()),
        certificate: CertificateInfo::read(&certificate.pem())?,
    })
}

/// [`generate`] on the blocking pool, so page requests keep being served meanwhile.
pub async fn generate_in_background(
    common_name: String,
    now: OffsetDateTime,
    valid_for: Duration,
) -> Result<GeneratedCertificate, CertificateError> {
    tokio::task::spawn_blocking(move || generate(&common_name, now, valid_for))
        .await
        .map_err(|e| CertificateError::KeyGeneration(e.to_string()))?
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

/// A client assertion for Microsoft's token endpoint `token_url`: a JWT by `client_id`
/// about itself, unique (`jti`), valid for minutes, signed PS256 with the private key and
/// naming the certificate by its SHA-256 thumbprint (`x5t#S256`), as Microsoft's
/// certificate-credentials reference describes. The SHA-1 `x5t` goes along for endpoints
/// that still look only at it.
pub fn client_assertion(
    private_key: &SecretString,
    certificate: &CertificateInfo,
    client_id: &str,
    token_url: &str,
    now: OffsetDateTime,
) -> Result<SecretString, CertificateError> {
    let signing = |e: jsonwebtoken::errors::Error| CertificateError::Signing(e.to_string());
    let mut header = Header::new(Algorithm::PS256);
    header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.der())));
    header.x5t = Some(URL_SAFE_NO_PAD.encode(Sha1::digest(certificate.der())));
    let claims = AssertionClaims {
        aud: token_url,
        iss: client_id,
        sub: client_id,
        jti: uuid::Uuid::new_v4().to_string(),
        nbf: now.unix_timestamp(),
        iat: now.unix_timestamp(),
        exp: (now + ASSERTION_LIFETIME).unix_timestamp(),
    };
    let key = EncodingKey::from_rsa_pem(private_key.expose_secret().as_bytes()).map_err(signing)?;
    jsonwebtoken::encode(&header, &claims, &key)
        .map(SecretString::from)
        .map_err(signing)
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use jsonwebtoken::{DecodingKey, Validation};
    use serde_json::Value;

    use super::*;

    /// One key for every test here: generating RSA keys is slow.
    static GENERATED: LazyLock<GeneratedCertificate> = LazyLock::new(|| {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        generate("Portico test", now, Duration::days(365)).unwrap()
    });

    #[test]
    fn a_generated_certificate_reads_back_with_its_validity_and_thumbprint() {
        let generated = &*GENERATED;
        let certificate = CertificateInfo::read(generated.certificate.pem()).unwrap();
        assert_eq!(certificate.not_before.unix_timestamp(), 1_800_000_000);
        assert_eq!(
            certificate.not_after - certificate.not_before,
            Duration::days(365)
        );
        let thumbprint = certificate.thumbprint();
        assert_eq!(thumbprint.len(), 40);
        assert!(
            thumbprint
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
        );
        assert!(certificate.pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            generated
                .private_key
                .expose_secret()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(!format!("{generated:?}").contains("PRIVATE"));
        assert!(CertificateInfo::read("not a certificate").is_err());
    }

    #[test]
    fn the_assertion_verifies_with_the_certificate_and_names_it() {
        let generated = &*GENERATED;
        let now = OffsetDateTime::now_utc();
        let url = "https://login.example/dir/oauth2/v2.0/token";
        let client_id = "11111111-2222-4333-8444-555555555555";
        let assertion = client_assertion(
            &generated.private_key,
            &generated.certificate,
            client_id,
            url,
            now,
        )
        .unwrap();
        let again = client_assertion(
            &generated.private_key,
            &generated.certificate,
            client_id,
            url,
            now,
        )
        .unwrap();

        let (_, block) =
            x509_parser::pem::parse_x509_pem(generated.certificate.pem().as_bytes()).unwrap();
        let parsed = block.parse_x509().unwrap();
        let public_key = parsed.public_key().subject_public_key.data.to_vec();
        let mut validation = Validation::new(Algorithm::PS256);
        validation.set_audience(&[url]);
        validation.set_issuer(&[client_id]);
        let decoded = jsonwebtoken::decode::<Value>(
            assertion.expose_secret(),
            &DecodingKey::from_rsa_der(&public_key),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], client_id);
        assert_eq!(
            decoded.claims["exp"].as_i64().unwrap() - decoded.claims["nbf"].as_i64().unwrap(),
            600
        );
        assert_eq!(
            decoded.header.x5t_s256.unwrap(),
            URL_SAFE_NO_PAD.encode(Sha256::digest(generated.certificate.der()))
        );
        let jti = |token: &SecretString| {
            jsonwebtoken::decode::<Value>(
                token.expose_secret(),
                &DecodingKey::from_rsa_der(&public_key),
                &validation,
            )
            .unwrap()
            .claims["jti"]
                .clone()
        };
        assert_ne!(jti(&assertion), jti(&again), "every assertion is unique");
    }
}
