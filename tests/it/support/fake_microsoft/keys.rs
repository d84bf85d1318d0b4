//! Signing keys, the JWKS that publishes them, and JWT minting, honest or forged.
//!
//! The keys are test-only PEM files in `keys/` (see its README): generating 2048-bit RSA keys
//! takes seconds in a debug build, parsing them does not.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// How `FakeMicrosoft::mint_id_token` signs, for tests of forged tokens.
#[derive(Debug, Clone)]
pub enum Signing {
    /// The key the fake signs with now, as a real token would be.
    CurrentKey,
    /// A well-formed RS256 signature by a key the JWKS never publishes (its `kid` is unknown).
    UnknownKey,
    /// `alg: none` and an empty signature.
    AlgNone,
    /// HS256 with this secret, `kid` of the current key: the algorithm-confusion attack.
    Hs256(String),
}

/// One RSA key and what the JWKS says about it.
struct RsaKey {
    kid: String,
    signer: SigningKey<Sha256>,
    modulus: String,
    exponent: String,
}

impl RsaKey {
    fn from_pem(pem: &str) -> Result<Self, rsa::pkcs8::Error> {
        let private = RsaPrivateKey::from_pkcs8_pem(pem)?;
        let n = private.n().to_bytes_be();
        // Entra's kids are 27-character base64url thumbprints; this one has the same shape.
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&n)[..20]);
        Ok(Self {
            kid,
            modulus: URL_SAFE_NO_PAD.encode(&n),
            exponent: URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
            signer: SigningKey::new(private),
        })
    }

    fn jwk(&self, issuer: &str) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "n": self.modulus,
            "e": self.exponent,
            "cloud_instance_name": "microsoftonline.com",
            "issuer": issuer,
        })
    }

    fn sign(&self, header_and_claims: &str) -> Vec<u8> {
        self.signer.sign(header_and_claims.as_bytes()).to_vec()
    }
}

fn parse_all<const N: usize>(pems: [&str; N]) -> [RsaKey; N] {
    #[expect(
        clippy::expect_used,
        reason = "the keys are compiled in: a bad one is a bug in this folder, not a run-time condition"
    )]
    pems.map(|pem| RsaKey::from_pem(pem).expect("test-only PEM key in keys/ must parse"))
}

/// The keys the fake signs with, in rotation order.
static SIGNING_KEYS: LazyLock<[RsaKey; 3]> = LazyLock::new(|| {
    parse_all([
        include_str!("keys/signing-1.pem"),
        include_str!("keys/signing-2.pem"),
        include_str!("keys/signing-3.pem"),
    ])
});

/// A key the fake never publishes.
static FORGED_KEY: LazyLock<[RsaKey; 1]> =
    LazyLock::new(|| parse_all([include_str!("keys/forged.pem")]));

/// Which signing keys are in use. After a rotation the JWKS serves the new key and the one
/// before it, as Entra keeps publishing a key for a while after it stops signing with it. The
/// three keys are reused in turn, so after three rotations an old `kid` comes back.
#[derive(Debug, Default)]
pub(crate) struct KeyRing {
    rotations: usize,
}

impl KeyRing {
    pub fn rotate(&mut self) {
        self.rotations += 1;
    }

    fn current(&self) -> &'static RsaKey {
        &SIGNING_KEYS[self.rotations % SIGNING_KEYS.len()]
    }

    fn previous(&self) -> Option<&'static RsaKey> {
        let len = SIGNING_KEYS.len();
        (self.rotations > 0).then(|| &SIGNING_KEYS[(self.rotations - 1) % len])
    }

    /// The JWKS document; `issuer` is what Entra puts in each key's `issuer` member.
    pub fn jwks(&self, issuer: &str) -> Value {
        let keys: Vec<Value> = std::iter::once(self.current())
            .chain(self.previous())
            .map(|key| key.jwk(issuer))
            .collect();
        json!({ "keys": keys })
    }

    /// A JWT over `claims`, signed as `how` says.
    pub fn mint(&self, claims: &Value, how: &Signing) -> String {
        let current = self.current();
        match how {
            Signing::CurrentKey => sign_rs256(current, claims),
            Signing::UnknownKey => sign_rs256(&FORGED_KEY[0], claims),
            Signing::AlgNone => {
                let header = json!({ "typ": "JWT", "alg": "none", "kid": current.kid });
                format!("{}.", encode_parts(&header, claims))
            }
            Signing::Hs256(secret) => {
                let header = json!({ "typ": "JWT", "alg": "HS256", "kid": current.kid });
                let signed = encode_parts(&header, claims);
                // HMAC takes a key of any length; `new_from_slice` cannot fail here.
                let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
                    unreachable!("HMAC accepts keys of any length")
                };
                mac.update(signed.as_bytes());
                let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
                format!("{signed}.{signature}")
            }
        }
    }
}

fn sign_rs256(key: &RsaKey, claims: &Value) -> String {
    let header = json!({ "typ": "JWT", "alg": "RS256", "kid": key.kid });
    let signed = encode_parts(&header, claims);
    let signature = URL_SAFE_NO_PAD.encode(key.sign(&signed));
    format!("{signed}.{signature}")
}

fn encode_parts(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}
