//! Key material and password hashing: with `certificates`, the only code that touches raw
//! secret bytes.

pub mod certificates;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The deployment's 32-byte key. Secrets sealed at rest are keyed by it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    pub fn generate() -> Self {
        Self(random_bytes())
    }

    pub fn from_base64(encoded: &str) -> Option<Self> {
        let bytes = Zeroizing::new(STANDARD.decode(encoded.trim()).ok()?);
        let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Self(key))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0))
    }

    /// A short public name for this key, stored beside every sealed value so the key can rotate.
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0);
        hex(&digest[..4])
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({}, [redacted])", self.key_id())
    }
}

/// Fills an array from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing means the machine cannot do cryptography at all.
    #[expect(
        clippy::expect_used,
        reason = "no safe way to continue without randomness"
    )]
    getrandom::fill(&mut bytes).expect("operating system random generator failed");
    bytes
}

/// A 256-bit random token, URL-safe, for CSRF tokens, setup links and the like.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// SHA-256 in hex: how tokens that must be looked up (session ids) are stored.
pub fn sha256_hex(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes()))
}

/// Compares two secrets in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Format version of sealed values; bump when the layout changes.
const SEALED_VERSION: &str = "v1";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the sealed value is malformed")]
    Malformed,
    #[error("the value was sealed with key {0}, which this deployment does not have")]
    UnknownKey(String),
    #[error("the sealed value does not open with this key and context")]
    Inauthentic,
}

impl SecretKey {
    /// Encrypts a secret for storage with XChaCha20-Poly1305. `context` names where the value
    /// lives (e.g. `sign-in-client-secret/<tenant id>`) and is authenticated, so a sealed value
    /// copied into another row or tenant does not open. The result carries the key id.
    pub fn seal(&self, secret: &SecretString, context: &str) -> String {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};

        let cipher = XChaCha20Poly1305::new(&self.0.into());
        let nonce_bytes = random_bytes::<24>();
        let payload = Payload {
            msg: secret.expose_secret().as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages of gigabytes; secrets are bounded far below that.
        let ciphertext = cipher
            .encrypt(&XNonce::from(nonce_bytes), payload)
            .unwrap_or_default();
        let mut sealed = Vec::with_capacity(24 + ciphertext.len());
        sealed.extend_from_slice(&nonce_bytes);
        sealed.extend_from_slice(&ciphertext);
        format!(
            "{SEALED_VERSION}.{}.{}",
            self.key_id(),
            URL_SAFE_NO_PAD.encode(sealed)
        )
    }

    /// Opens a value made by [`SecretKey::seal`] with the same context.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, SealError> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};

        let mut parts = sealed.splitn(3, '.');
        let (Some(SEALED_VERSION), Some(key_id), Some(body)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Malformed);
        };
        if key_id != self.key_id() {
            return Err(SealError::UnknownKey(key_id.to_owned()));
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < 24 {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce = XNonce::try_from(nonce).map_err(|_| SealError::Malformed)?;
        let cipher = XChaCha20Poly1305::new(&self.0.into());
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    &nonce,
                    Payload {
                        msg: ciphertext,
                        aad: context.as_bytes(),
                    },
                )
                .map_err(|_| SealError::Inauthentic)?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| SealError::Inauthentic)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

/// The key new secrets are sealed with, and older keys kept only to open what they sealed
/// until `portico secrets rotate-key` has sealed it again under the current one.
#[derive(Clone)]
pub struct Keyring {
    current: SecretKey,
    old: Vec<SecretKey>,
}

#[derive(Debug, thiserror::Error)]
#[error("two of the secret keys given have the same key id {0}: give each key once")]
pub struct DuplicateKey(String);

impl Keyring {
    pub fn new(current: SecretKey, old: Vec<SecretKey>) -> Result<Self, DuplicateKey> {
        let mut seen = vec![current.key_id()];
        for key in &old {
            let id = key.key_id();
            if seen.contains(&id) {
                return Err(DuplicateKey(id));
            }
            seen.push(id);
        }
        Ok(Self { current, old })
    }

    /// The id of the key new secrets are sealed with.
    pub fn key_id(&self) -> String {
        self.current.key_id()
    }

    pub fn old_key_ids(&self) -> Vec<String> {
        self.old.iter().map(SecretKey::key_id).collect()
    }

    /// Seals with the current key (see [`SecretKey::seal`]).
    pub fn seal(&self, secret: &SecretString, context: &str) -> String {
        self.current.seal(secret, context)
    }

    /// Opens a sealed value with whichever key of the ring its key id names.
    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, SealError> {
        let key_id = sealed
            .strip_prefix(SEALED_VERSION)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.split_once('.'))
            .map(|(key_id, _)| key_id)
            .ok_or(SealError::Malformed)?;
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|key| key.key_id() == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?
            .open(sealed, context)
    }

    /// A MAC of `message` for `purpose` (HMAC-SHA256 under the current key), URL-safe: for
    /// values Portico hands out and must recognize as its own, such as the form-token cookie.
    pub fn sign(&self, purpose: &str, message: &str) -> String {
        URL_SAFE_NO_PAD.encode(mac(&self.current, purpose, message))
    }

    /// Whether `signature` is `sign(purpose, message)` under any key of the ring, compared in
    /// constant time.
    pub fn verify_signature(&self, purpose: &str, message: &str, signature: &str) -> bool {
        let Ok(offered) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        std::iter::once(&self.current).chain(&self.old).any(|key| {
            use subtle::ConstantTimeEq;
            mac(key, purpose, message).ct_eq(&offered).into()
        })
    }

    /// The start every value sealed with the current key has, e.g. `v1.1a2b3c4d.`.
    pub fn current_prefix(&self) -> String {
        format!("{SEALED_VERSION}.{}.", self.current.key_id())
    }
}

/// HMAC-SHA256 of `purpose`, a NUL and `message`, under a key of its own derived from `key`,
/// so a MAC never doubles as anything the sealing key does.
fn mac(key: &SecretKey, purpose: &str, message: &str) -> [u8; 32] {
    use hmac::Mac as _;
    let mac_key = Sha256::new()
        .chain_update(b"portico mac key v1\0")
        .chain_update(key.0)
        .finalize();
    // HMAC takes keys of any length: this cannot fail.
    let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&mac_key) else {
        return [0; 32];
    };
    mac.update(purpose.as_bytes());
    mac.update(b"\0");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

impl From<SecretKey> for Keyring {
    fn from(current: SecretKey) -> Self {
        Self {
            current,
            old: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring(current {}, old {:?}, [redacted])",
            self.key_id(),
            self.old_key_ids()
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every hashing thread is busy and the queue in front of them is full: the request is
    /// answered now (503, try again shortly) instead of waiting past its timeout.
    #[error("the password hashing queue is full")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Work for the hashing threads.
type HashJob = Box<dyn FnOnce() + Send>;

/// Hashes that may wait per hashing thread. One takes about 30 ms on a current core, so a
/// full queue is worked off in about two seconds, well within the 30-second request timeout.
const QUEUE_PER_THREAD: usize = 64;

/// Argon2id with OWASP's parameters, on threads of its own: one fewer than the cores (at
/// least one), so a burst of sign-ins queues for them and leaves a core to the pages. And
/// each hash's 19 MiB is then reused by the same few threads, where on the blocking pool
/// every thread's allocator arena kept a copy (about 200 MiB after 32 sign-ins at once).
/// The queue is bounded: past it, hashing answers `Busy` at once.
#[derive(Clone)]
pub struct PasswordHasher {
    jobs: std::sync::mpsc::SyncSender<HashJob>,
    counts: Arc<HashCounts>,
    threads: usize,
    queue_capacity: usize,
}

#[derive(Default)]
struct HashCounts {
    /// Jobs sent and not yet taken by a thread.
    queued: AtomicUsize,
    /// Hashes a thread started computing (verifications included).
    started: AtomicU64,
}

/// Verified against when the email is unknown, so that costs as much as a wrong password: the
/// hash of a random password nobody kept, with `argon2()`'s parameters. A constant, so
/// starting Portico hashes nothing.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$7As44HM+7jaeMZq38Ds7RQ$Dtm0dl71cAAuD9ec5OBPlKmOJRk3UGOiNZjuzzGnK9U";

impl PasswordHasher {
    pub fn new() -> Result<Self, HashError> {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = cores.saturating_sub(1).max(1);
        Self::with_limits(threads, threads * QUEUE_PER_THREAD)
    }

    /// `threads` hashing threads, and at most `queue_capacity` hashes waiting for them.
    pub fn with_limits(threads: usize, queue_capacity: usize) -> Result<Self, HashError> {
        let (jobs, queue) = std::sync::mpsc::sync_channel::<HashJob>(queue_capacity);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let counts = Arc::new(HashCounts::default());
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            let counts = Arc::clone(&counts);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    // Ends when the hasher and every clone of it are gone.
                    while let Ok(job) = queue
                        .lock()
                        .map_err(drop)
                        .and_then(|q| q.recv().map_err(drop))
                    {
                        counts.queued.fetch_sub(1, Ordering::Relaxed);
                        job();
                    }
                })
                .map_err(|e| HashError::Failed(e.to_string()))?;
        }
        Ok(Self {
            jobs,
            counts,
            threads,
            queue_capacity,
        })
    }

    /// Runs `work` on a hashing thread, after the work queued before it; `Busy` at once
    /// when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let stopped = || HashError::Failed("the hashing threads stopped".into());
        let (done, result) = tokio::sync::oneshot::channel();
        let counts = Arc::clone(&self.counts);
        // Counted before sending, so a thread that takes the job at once never counts below 0.
        self.counts.queued.fetch_add(1, Ordering::Relaxed);
        let sent = self.jobs.try_send(Box::new(move || {
            // A request that went away (the browser gave up) costs no hashing.
            if !done.is_closed() {
                counts.started.fetch_add(1, Ordering::Relaxed);
                let _ = done.send(work());
            }
        }));
        if let Err(err) = sent {
            self.counts.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(match err {
                std::sync::mpsc::TrySendError::Full(_) => HashError::Busy,
                std::sync::mpsc::TrySendError::Disconnected(_) => stopped(),
            });
        }
        result.await.map_err(|_| stopped())
    }

    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        self.run(move || hash_blocking(&password)).await?
    }

    /// Checks `password` against `stored`, or against a dummy hash when there is none.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let known = stored.is_some();
        let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let verified = self
            .run(move || {
                argon2()
                    .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(known && verified)
    }

    /// Hashes started since this hasher was made (verifications included).
    pub fn hashes_started(&self) -> u64 {
        self.counts.started.load(Ordering::Relaxed)
    }

    /// Hashes waiting for a thread now.
    pub fn queued(&self) -> usize {
        self.counts.queued.load(Ordering::Relaxed)
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP Password Storage Cheat Sheet: m=19 MiB, t=2, p=1.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &SecretString) -> Result<String, HashError> {
    argon2()
        .hash_password(password.expose_secret().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_password_hash_costs() {
        let dummy = argon2::PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(dummy.algorithm, Algorithm::Argon2id.ident());
        let cost = |p: &Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(
            cost(&Params::try_from(&dummy).unwrap()),
            cost(argon2().params())
        );
    }

    #[test]
    fn key_round_trips_through_base64_and_has_a_stable_id() {
        let key = SecretKey::generate();
        let again = SecretKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(key.key_id(), again.key_id());
        assert_eq!(key.key_id().len(), 8);
        assert!(!format!("{key:?}").contains(key.to_base64().as_str()));
    }

    #[test]
    fn sealed_secret_opens_only_with_its_key_and_context() {
        let key = SecretKey::generate();
        let secret = SecretString::from("canary-client-secret");
        let sealed = key.seal(&secret, "ctx/tenant-a");
        assert!(sealed.starts_with(&format!("v1.{}.", key.key_id())));
        assert!(!sealed.contains("canary"));
        assert_ne!(
            sealed,
            key.seal(&secret, "ctx/tenant-a"),
            "nonces must differ"
        );
        let opened = key.open(&sealed, "ctx/tenant-a").unwrap();
        assert_eq!(opened.expose_secret(), "canary-client-secret");
        assert!(matches!(
            key.open(&sealed, "ctx/tenant-b"),
            Err(SealError::Inauthentic)
        ));
        assert!(matches!(
            SecretKey::generate().open(&sealed, "ctx/tenant-a"),
            Err(SealError::UnknownKey(_))
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(key.open(&tampered, "ctx/tenant-a").is_err());
        assert!(matches!(key.open("v1.x", "ctx"), Err(SealError::Malformed)));
    }

    #[test]
    fn keyring_seals_with_its_current_key_and_opens_with_any_of_its_keys() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let secret = SecretString::from("canary-rotated-secret");
        let sealed_before = old.seal(&secret, "ctx");
        let ring = Keyring::new(new.clone(), vec![old.clone()]).unwrap();
        let sealed_now = ring.seal(&secret, "ctx");
        assert!(sealed_now.starts_with(&ring.current_prefix()));
        assert_eq!(ring.current_prefix(), format!("v1.{}.", new.key_id()));
        for sealed in [&sealed_before, &sealed_now] {
            assert_eq!(
                ring.open(sealed, "ctx").unwrap().expose_secret(),
                "canary-rotated-secret"
            );
            assert!(matches!(
                ring.open(sealed, "other"),
                Err(SealError::Inauthentic)
            ));
        }
        // Without the old key, what it sealed no longer opens, and says which key it needs.
        let without_old = Keyring::from(new.clone());
        match without_old.open(&sealed_before, "ctx") {
            Err(SealError::UnknownKey(id)) => assert_eq!(id, old.key_id()),
            other => panic!("expected an unknown key, got {other:?}"),
        }
        assert!(matches!(
            without_old.open("v2.abc.def", "ctx"),
            Err(SealError::Malformed)
        ));
        assert!(Keyring::new(new.clone(), vec![old.clone(), new.clone()]).is_err());
        assert!(!format!("{ring:?}").contains(new.to_base64().as_str()));
    }

    #[test]
    fn signatures_verify_only_for_their_message_purpose_and_keys() {
        let (old, new) = (SecretKey::generate(), SecretKey::generate());
        let before = Keyring::from(old.clone()).sign("csrf", "token");
        let ring = Keyring::new(new.clone(), vec![old]).unwrap();
        let now = ring.sign("csrf", "token");
        assert!(ring.verify_signature("csrf", "token", &now));
        assert!(ring.verify_signature("csrf", "token", &before));
        assert!(!ring.verify_signature("csrf", "tokem", &now));
        assert!(!ring.verify_signature("other", "token", &now));
        assert!(!ring.verify_signature("csrf", "token", "not base64!"));
        assert!(!Keyring::from(new).verify_signature("csrf", "token", &before));
    }

    #[test]
    fn key_of_wrong_length_is_refused() {
        assert!(SecretKey::from_base64(&STANDARD.encode([0u8; 31])).is_none());
        assert!(SecretKey::from_base64("not base64!").is_none());
    }

    #[tokio::test]
    async fn hash_verifies_only_the_right_password_with_owasp_parameters() {
        let hasher = PasswordHasher::new().unwrap();
        let hash = hasher
            .hash(SecretString::from("correct horse"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let verify = async |password: &str, stored: Option<String>| {
            hasher
                .verify(SecretString::from(password.to_owned()), stored)
                .await
                .unwrap()
        };
        assert!(verify("correct horse", Some(hash.clone())).await);
        assert!(!verify("wrong horse", Some(hash)).await);
        assert!(!verify("anything", None).await);
        assert_eq!(hasher.hashes_started(), 4);
    }

    /// With every thread busy and the queue full, the next hash is refused at once, not
    /// queued; once the threads are free again hashing goes on.
    #[tokio::test]
    async fn a_full_hashing_queue_answers_busy_at_once() {
        let hasher = PasswordHasher::with_limits(1, 2).unwrap();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let blocked = tokio::spawn({
            let hasher = hasher.clone();
            async move {
                hasher
                    .run(move || {
                        let _ = started_tx.send(());
                        let _ = gate.recv();
                    })
                    .await
            }
        });
        started.await.unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                tokio::spawn({
                    let hasher = hasher.clone();
                    async move { hasher.hash(SecretString::from("queued")).await }
                })
            })
            .collect();
        while hasher.queued() < 2 {
            tokio::task::yield_now().await;
        }
        // The thread is held by the gate: an answer now cannot have waited for it.
        assert!(matches!(
            hasher
                .verify(SecretString::from("one too many"), None)
                .await,
            Err(HashError::Busy)
        ));
        assert_eq!(hasher.hashes_started(), 1);

        release.send(()).unwrap();
        blocked.await.unwrap().unwrap();
        for queued in waiting {
            assert!(queued.await.unwrap().is_ok());
        }
        assert_eq!(hasher.hashes_started(), 3);
        assert_eq!(hasher.queued(), 0);
    }
}
