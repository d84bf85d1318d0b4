//! One `Config` for the whole process, built from flags and environment variables and
//! validated once, before anything listens or connects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use url::Url;

use crate::crypto::{Keyring, SecretKey};
use crate::egress::{EgressPolicy, parse_allow_list};

/// Where the database and the generated secret key live unless told otherwise.
const DEFAULT_DATA_DIR: &str = "data";

/// Options shared by every command that touches the database.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Directory for the embedded SQLite database and the generated secret key.
    #[arg(long, env = "PORTICO_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// `sqlite:PATH` or `postgres://...`; defaults to SQLite at DATA_DIR/portico.db.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DatabaseArgs {
    pub fn resolved_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("portico.db").display()),
        }
    }
}

/// The keys that seal secrets at rest: the current one, and earlier ones during a rotation.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Base64 of 32 random bytes; when unset, the first key in DATA_DIR/secret.key (created
    /// when missing).
    #[arg(long, env = "PORTICO_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Earlier keys, base64, separated by commas or spaces: they only open secrets sealed
    /// before a rotation, until `portico secrets rotate-key` has sealed those again.
    #[arg(long, env = "PORTICO_OLD_SECRET_KEYS", hide_env_values = true)]
    pub old_secret_keys: Option<String>,
}

/// Options of `portico serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub keys: KeyArgs,

    /// Address to listen on.
    #[arg(long, env = "PORTICO_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Public URL of this deployment, used to build redirect URIs; defaults to http://BIND.
    #[arg(long, env = "PORTICO_BASE_URL")]
    pub base_url: Option<Url>,

    /// Take the client address from the last X-Forwarded-For hop (only behind a trusted proxy).
    #[arg(long, env = "PORTICO_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// PEM file of extra CA certificates to trust for mail servers (a company's private CA).
    #[arg(long, env = "PORTICO_MAIL_CA_FILE")]
    pub mail_ca_file: Option<PathBuf>,

    /// Serve /metrics on this separate address (e.g. 0.0.0.0:9090 on a private network).
    #[arg(long, env = "PORTICO_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Bearer token Prometheus must send for /metrics; with it /metrics is served on BIND too.
    #[arg(long, env = "PORTICO_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Seconds in-flight requests get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "PORTICO_SHUTDOWN_TIMEOUT", default_value_t = 20)]
    pub shutdown_timeout: u64,

    /// The deployment's mail relay for expiry alerts of tenants that send through no mailbox
    /// of their own: smtps://user:password@host:465, smtp://user:password@host:587?tls=required
    /// or smtp://host:25.
    #[arg(long, env = "PORTICO_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The From address of mail sent through PORTICO_SMTP_URL; defaults to
    /// portico@<the host of PORTICO_BASE_URL>.
    #[arg(long, env = "PORTICO_SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Internal ranges a tenant's mail servers and OAuth URLs may reach after all, as CIDRs
    /// separated by commas or spaces (an on-premises Exchange at 10.20.0.0/16, say).
    #[arg(long, env = "PORTICO_EGRESS_ALLOW")]
    pub egress_allow: Option<String>,
    /// Days the audit log keeps an entry; a daily job deletes older ones (at least 1).
    #[arg(long, env = "PORTICO_AUDIT_RETENTION_DAYS", default_value_t = DEFAULT_AUDIT_RETENTION_DAYS)]
    pub audit_retention_days: u32,
    /// Minutes between two background tests of each enabled mailbox (0: none).
    #[arg(long, env = "PORTICO_MAILBOX_CHECK_INTERVAL", default_value_t = DEFAULT_MAILBOX_CHECK_MINUTES)]
    pub mailbox_check_interval: u64,

    #[command(flatten)]
    pub microsoft: MicrosoftArgs,
}

/// How long audit entries are kept unless PORTICO_AUDIT_RETENTION_DAYS says otherwise: over
/// a year, so last year's same month can still be compared.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 400;

/// Each mailbox is tested hourly unless PORTICO_MAILBOX_CHECK_INTERVAL says otherwise: a
/// broken one is Failing within two hours, and a tenant's servers see one sign-in an hour.
pub const DEFAULT_MAILBOX_CHECK_MINUTES: u64 = 60;

/// Where Microsoft's identity platform and Graph are reached.
#[derive(Debug, Clone, Args)]
pub struct MicrosoftArgs {
    /// Replaces https://login.microsoftonline.com (the Global cloud's identity platform).
    #[arg(long = "microsoft-login-url", env = "PORTICO_MICROSOFT_LOGIN_URL")]
    pub login_url: Option<Url>,

    /// Replaces https://graph.microsoft.com (the Global cloud's Graph).
    #[arg(long = "microsoft-graph-url", env = "PORTICO_MICROSOFT_GRAPH_URL")]
    pub graph_url: Option<Url>,

    /// Replaces the Global cloud's Exchange Online mail servers (outlook.office365.com,
    /// smtp.office365.com): the only host an app-only mailbox sends its Exchange token to.
    #[arg(
        long = "microsoft-exchange-host",
        env = "PORTICO_MICROSOFT_EXCHANGE_HOST"
    )]
    pub exchange_host: Option<String>,

    /// Longest wait, in seconds, for any one call to Microsoft before giving up.
    #[arg(
        long = "microsoft-timeout",
        env = "PORTICO_MICROSOFT_TIMEOUT",
        default_value_t = 10
    )]
    pub timeout_seconds: u64,
}

/// The validated configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub base_url: Url,
    pub database_url: String,
    /// Seals secrets at rest with the current key; opens them with it or an old one.
    pub secret_key: Keyring,
    pub trust_forwarded_for: bool,
    pub mail_ca_file: Option<PathBuf>,
    pub microsoft: MicrosoftArgs,
    pub metrics: MetricsAccess,
    /// How long a shutdown waits for in-flight requests and background jobs.
    pub shutdown_timeout: Duration,
    /// The deployment's mail relay (PORTICO_SMTP_URL), when there is one.
    pub smtp_relay: Option<SmtpRelay>,
    /// What a tenant's settings may connect to.
    pub egress: EgressPolicy,
    /// The longest one expiry alert may take to send before it counts as failed: a tenant's
    /// mail server that never answers holds one of the few sending places this long.
    pub alert_send_timeout: Duration,
    /// Days the audit log keeps an entry (PORTICO_AUDIT_RETENTION_DAYS).
    pub audit_retention_days: u32,
    /// How often every enabled mailbox is tested in the background; `None`: never.
    pub mailbox_check_interval: Option<Duration>,
    /// The longest one background mailbox test may take before it counts as failed: a
    /// tenant's server that never answers holds one of the few checking places this long.
    pub mailbox_check_timeout: Duration,
}

/// Two minutes: mail servers answer each step within seconds, and a send well inside its
/// 5-minute lease is never taken over by another instance while it still runs.
pub const DEFAULT_ALERT_SEND_TIMEOUT: Duration = Duration::from_secs(120);

/// One minute: each step of a test (connect, TLS, greeting, sign-in) has its own 10 seconds,
/// and a server slower than a minute in all fails the way it would fail an agent.
pub const DEFAULT_MAILBOX_CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// PORTICO_SMTP_URL, which may hold a password, and the address mail through it comes from.
#[derive(Debug, Clone)]
pub struct SmtpRelay {
    pub url: SecretString,
    pub from: String,
}

/// Where /metrics is served, and what it asks for. Neither set: it is not served at all.
#[derive(Debug, Clone, Default)]
pub struct MetricsAccess {
    pub bind: Option<SocketAddr>,
    pub token: Option<SecretString>,
}

/// A metrics token shorter than this is too easy to guess.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("PORTICO_BASE_URL must be an absolute http or https URL without query or fragment")]
    BaseUrl,
    #[error("PORTICO_METRICS_TOKEN must be at least 16 characters (openssl rand -hex 32)")]
    MetricsToken,
    #[error(
        "PORTICO_AUDIT_RETENTION_DAYS must be a whole number of days, at least 1 (the sign-in \
         throttle counts the last quarter hour of the audit log)"
    )]
    AuditRetention,
    #[error(
        "PORTICO_SMTP_URL must look like smtps://user:password@host:465, \
         smtp://user:password@host:587?tls=required or smtp://host:25"
    )]
    SmtpUrl,
    #[error(
        "PORTICO_EGRESS_ALLOW: {0:?} is not a CIDR range such as 10.20.0.0/16 or an address \
         such as 10.20.0.5"
    )]
    EgressAllow(String),
    #[error("PORTICO_SECRET_KEY must be base64 of exactly 32 bytes")]
    SecretKey,
    #[error(
        "PORTICO_OLD_SECRET_KEYS must be keys of base64 of exactly 32 bytes each, separated by commas or spaces"
    )]
    OldSecretKeys,
    #[error("no secret key: set PORTICO_SECRET_KEY, or keep {0}")]
    NoSecretKey(PathBuf),
    #[error(transparent)]
    DuplicateKey(#[from] crate::crypto::DuplicateKey),
    #[error("secret key file {path}: {source}")]
    SecretKeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("secret key file {0} must hold keys of base64 of exactly 32 bytes, one a line")]
    SecretKeyFileContent(PathBuf),
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl KeyArgs {
    /// PORTICO_SECRET_KEY, unless unset or empty (Compose passes `${VAR:-}` as empty).
    pub fn given_secret_key(&self) -> Option<&str> {
        self.secret_key.as_deref().filter(|key| !key.is_empty())
    }

    /// PORTICO_OLD_SECRET_KEYS, unless unset or empty.
    fn given_old_secret_keys(&self) -> Option<&str> {
        self.old_secret_keys
            .as_deref()
            .filter(|keys| !keys.is_empty())
    }
}

impl ServeArgs {
    /// PORTICO_METRICS_TOKEN, unless unset or empty.
    pub fn given_metrics_token(&self) -> Option<&str> {
        self.metrics_token
            .as_deref()
            .filter(|token| !token.is_empty())
    }

    /// PORTICO_BASE_URL, or http://BIND without it; checked to be usable as a base.
    pub fn public_base_url(&self) -> Result<Url, ConfigError> {
        let base_url = match &self.base_url {
            Some(url) => url.clone(),
            None => {
                Url::parse(&format!("http://{}", self.bind)).map_err(|_| ConfigError::BaseUrl)?
            }
        };
        if !matches!(base_url.scheme(), "http" | "https")
            || base_url.cannot_be_a_base()
            || base_url.query().is_some()
            || base_url.fragment().is_some()
        {
            return Err(ConfigError::BaseUrl);
        }
        Ok(base_url)
    }
}

impl Config {
    pub fn from_args(args: ServeArgs) -> Result<Self, ConfigError> {
        let base_url = args.public_base_url()?;
        let metrics_token = match args.given_metrics_token() {
            Some(token) if token.len() < MIN_METRICS_TOKEN_LEN => {
                return Err(ConfigError::MetricsToken);
            }
            token => token.map(|token| SecretString::from(token.to_owned())),
        };
        let secret_key = load_keys(
            &args.keys,
            &args.database.data_dir,
            KeyFile::CreateWhenMissing,
        )?;
        let smtp_relay = smtp_relay(&args, &base_url)?;
        let egress_allow = match &args.egress_allow {
            Some(raw) => parse_allow_list(raw).map_err(ConfigError::EgressAllow)?,
            None => Vec::new(),
        };
        if args.audit_retention_days == 0 {
            return Err(ConfigError::AuditRetention);
        }
        Ok(Self {
            bind: args.bind,
            base_url,
            database_url: args.database.resolved_url(),
            secret_key,
            trust_forwarded_for: args.trust_forwarded_for,
            mail_ca_file: args.mail_ca_file,
            microsoft: args.microsoft,
            metrics: MetricsAccess {
                bind: args.metrics_bind,
                token: metrics_token,
            },
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            smtp_relay,
            egress: EgressPolicy::allowing(egress_allow),
            alert_send_timeout: DEFAULT_ALERT_SEND_TIMEOUT,
            audit_retention_days: args.audit_retention_days,
            mailbox_check_interval: (args.mailbox_check_interval > 0)
                .then(|| Duration::from_secs(args.mailbox_check_interval.saturating_mul(60))),
            mailbox_check_timeout: DEFAULT_MAILBOX_CHECK_TIMEOUT,
        })
    }

    /// Cookies are marked `Secure` exactly when the public URL is https.
    pub fn secure_cookies(&self) -> bool {
        self.base_url.scheme() == "https"
    }

    /// An absolute URL under the public base URL, never derived from a request's Host header.
    pub fn public_url(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.base_url.as_str().trim_end_matches('/'),
            path_and_query
        )
    }
}

/// PORTICO_SMTP_URL (unless unset or empty), checked to name a host over smtp or smtps.
fn smtp_relay(args: &ServeArgs, base_url: &Url) -> Result<Option<SmtpRelay>, ConfigError> {
    let Some(raw) = args.smtp_url.as_deref().filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    let url = Url::parse(raw).map_err(|_| ConfigError::SmtpUrl)?;
    if !matches!(url.scheme(), "smtp" | "smtps") || url.host_str().is_none() {
        return Err(ConfigError::SmtpUrl);
    }
    let from = args
        .smtp_from
        .clone()
        .filter(|from| !from.is_empty())
        .unwrap_or_else(|| {
            let domain = match base_url.host() {
                Some(url::Host::Domain(domain)) => domain,
                _ => "localhost",
            };
            format!("Portico <portico@{domain}>")
        });
    Ok(Some(SmtpRelay {
        url: SecretString::from(raw.to_owned()),
        from,
    }))
}

/// Creates the data directory when needed (private: it holds the key and the database), so a
/// fresh checkout runs without setup.
pub fn ensure_data_dir(dir: &Path) -> Result<(), ConfigError> {
    crate::store::create_private_dir(dir).map_err(|source| ConfigError::DataDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Whether a missing DATA_DIR/secret.key is made (serving) or an error (rotating keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    CreateWhenMissing,
    MustExist,
}

/// The current key is PORTICO_SECRET_KEY, or else the first key of DATA_DIR/secret.key; the
/// old keys are PORTICO_OLD_SECRET_KEYS, plus the file's further keys when the file is used.
pub fn load_keys(args: &KeyArgs, data_dir: &Path, file: KeyFile) -> Result<Keyring, ConfigError> {
    let mut old = match args.given_old_secret_keys() {
        Some(list) => parse_keys(list).ok_or(ConfigError::OldSecretKeys)?,
        None => Vec::new(),
    };
    let current = match args.given_secret_key() {
        Some(encoded) => SecretKey::from_base64(encoded).ok_or(ConfigError::SecretKey)?,
        None => {
            let mut keys = load_key_file(data_dir, file)?.into_iter();
            let current = keys
                .next()
                .ok_or_else(|| ConfigError::SecretKeyFileContent(key_file_path(data_dir)))?;
            old.extend(keys);
            current
        }
    };
    Ok(Keyring::new(current, old)?)
}

/// Keys in base64, separated by commas, spaces or line breaks; lines starting with `#` are
/// notes for people. `None` if any key is malformed.
fn parse_keys(text: &str) -> Option<Vec<SecretKey>> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split([',', ' ', '\t']))
        .filter(|word| !word.is_empty())
        .map(SecretKey::from_base64)
        .collect()
}

fn key_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join("secret.key")
}

fn load_key_file(data_dir: &Path, file: KeyFile) -> Result<Vec<SecretKey>, ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let path = key_file_path(data_dir);
    let file_error = |source| ConfigError::SecretKeyFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(content) => {
            parse_keys(&content).ok_or_else(|| ConfigError::SecretKeyFileContent(path.clone()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && file == KeyFile::MustExist => {
            Err(ConfigError::NoSecretKey(path))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            ensure_data_dir(data_dir)?;
            let key = SecretKey::generate();
            // create_new: two instances starting at once must not overwrite each other's key.
            let mut created = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(file_error)?;
            created
                .write_all(key.to_base64().as_bytes())
                .and_then(|()| created.sync_all())
                .map_err(file_error)?;
            tracing::info!(path = %path.display(), "generated a new secret key");
            Ok(vec![key])
        }
        Err(err) => Err(file_error(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(current: Option<&SecretKey>, old: &[&SecretKey]) -> KeyArgs {
        KeyArgs {
            secret_key: current.map(|key| key.to_base64().to_string()),
            old_secret_keys: (!old.is_empty()).then(|| {
                old.iter()
                    .map(|key| key.to_base64().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            }),
        }
    }

    #[test]
    fn keys_come_from_the_environment_or_the_key_file_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        );

        // From the environment: the current key and the old ones, in any separator.
        let ring = load_keys(&args(Some(&b), &[&a, &c]), dir.path(), KeyFile::MustExist).unwrap();
        assert_eq!(ring.key_id(), b.key_id());
        assert_eq!(ring.old_key_ids(), vec![a.key_id(), c.key_id()]);

        // No key anywhere: rotating refuses, serving creates the file with one key.
        assert!(matches!(
            load_keys(&args(None, &[]), dir.path(), KeyFile::MustExist),
            Err(ConfigError::NoSecretKey(_))
        ));
        let created = load_keys(&args(None, &[]), dir.path(), KeyFile::CreateWhenMissing).unwrap();
        let again = load_keys(&args(None, &[]), dir.path(), KeyFile::MustExist).unwrap();
        assert_eq!(created.key_id(), again.key_id());
        assert!(again.old_key_ids().is_empty());

        // A file with a new first line and the old key below it, with a note.
        let file = format!(
            "{}\n# the key before 2026-12, remove after rotate-key\n{}\n",
            b.to_base64().as_str(),
            a.to_base64().as_str()
        );
        std::fs::write(dir.path().join("secret.key"), file).unwrap();
        let ring = load_keys(&args(None, &[&c]), dir.path(), KeyFile::MustExist).unwrap();
        assert_eq!(ring.key_id(), b.key_id());
        assert_eq!(ring.old_key_ids(), vec![c.key_id(), a.key_id()]);

        // Malformed or repeated keys are refused, never half used.
        let bad = KeyArgs {
            secret_key: None,
            old_secret_keys: Some("not-a-key".into()),
        };
        assert!(matches!(
            load_keys(&bad, dir.path(), KeyFile::MustExist),
            Err(ConfigError::OldSecretKeys)
        ));
        assert!(matches!(
            load_keys(&args(Some(&a), &[&a]), dir.path(), KeyFile::MustExist),
            Err(ConfigError::DuplicateKey(_))
        ));
        std::fs::write(dir.path().join("secret.key"), "# only a note\n").unwrap();
        assert!(matches!(
            load_keys(&args(None, &[]), dir.path(), KeyFile::MustExist),
            Err(ConfigError::SecretKeyFileContent(_))
        ));
    }
}
