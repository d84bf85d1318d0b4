//! `portico doctor`: looks at what `portico serve` would use with the same options, changes
//! nothing, and says what to fix.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use url::{Host, Url};

use crate::cli::CommandResult;
use crate::clock::Clock;
use crate::config::{KeyFile, MIN_METRICS_TOKEN_LEN, ServeArgs, load_keys};
use crate::crypto::SecretKey;
use crate::egress::{EgressPolicy, parse_allow_list};
use crate::metrics::Metrics;
use crate::microsoft::Microsoft;
use crate::store::backup::sqlite_path;
use crate::store::{Backend, Db};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    /// Works, but not as it should in production.
    Warn,
    /// Portico will not start, or runs unsafely.
    Fail,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
        }
    }
}

/// One observation, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub topic: &'static str,
    pub message: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(topic: &'static str, message: impl Into<String>) -> Self {
        Self {
            level: Level::Ok,
            topic,
            message: message.into(),
            fix: None,
        }
    }

    fn problem(
        level: Level,
        topic: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            level,
            topic,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// `portico doctor`: prints every finding, one line each with its fix below, and fails when
/// any finding would keep Portico from starting or leave it unsafe.
pub async fn run(args: &ServeArgs) -> CommandResult {
    let findings = examine(args).await;
    for finding in &findings {
        println!(
            "{:<4}  {:<13} {}",
            finding.level.label(),
            finding.topic,
            finding.message
        );
        if let Some(fix) = &finding.fix {
            println!("      {:<13} fix: {fix}", "");
        }
    }
    let failures = findings
        .iter()
        .filter(|finding| finding.level == Level::Fail)
        .count();
    match failures {
        0 => Ok(()),
        n => Err(format!("{n} problems to fix")),
    }
}

/// Every check, in the order an operator fixes things.
pub async fn examine(args: &ServeArgs) -> Vec<Finding> {
    let mut findings = vec![base_url(args)];
    findings.extend(secret_key(args));
    findings.push(metrics_access(args));
    findings.extend(mail_ca_file(args));
    findings.push(egress(args));
    findings.extend(database(args).await);
    findings.extend(microsoft(args).await);
    findings
}

fn base_url(args: &ServeArgs) -> Finding {
    const TOPIC: &str = "base URL";
    match args.public_base_url() {
        Ok(url) => base_url_rule(&url),
        Err(err) => Finding::problem(
            Level::Fail,
            TOPIC,
            err.to_string(),
            "set PORTICO_BASE_URL to the address people type, e.g. https://portal.example.com",
        ),
    }
}

/// https everywhere; plain http only for a portal that never leaves this machine.
pub fn base_url_rule(url: &Url) -> Finding {
    const TOPIC: &str = "base URL";
    let fix = "serve Portico behind a TLS proxy and set PORTICO_BASE_URL=https://<public name>";
    if url.scheme() == "https" {
        return Finding::ok(TOPIC, format!("{url}"));
    }
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if loopback {
        Finding::problem(
            Level::Warn,
            TOPIC,
            format!("{url} is reachable from this machine only; fine for a trial"),
            fix,
        )
    } else {
        Finding::problem(
            Level::Fail,
            TOPIC,
            format!(
                "{url} is plain http: passwords and session cookies would cross the network \
                 unencrypted, and Microsoft accepts http redirect URIs only for localhost"
            ),
            fix,
        )
    }
}

fn secret_key(args: &ServeArgs) -> Vec<Finding> {
    const TOPIC: &str = "secret key";
    let postgres = args
        .database
        .database_url
        .as_deref()
        .and_then(Backend::of_url)
        == Some(Backend::Postgres);
    if let Some(encoded) = args.keys.given_secret_key() {
        return vec![match SecretKey::from_base64(encoded) {
            Some(_) => Finding::ok(TOPIC, "PORTICO_SECRET_KEY is set"),
            None => Finding::problem(
                Level::Fail,
                TOPIC,
                "PORTICO_SECRET_KEY is not base64 of 32 bytes",
                "set it to the output of `openssl rand -base64 32` (the same on every instance)",
            ),
        }];
    }
    let path = args.database.data_dir.join("secret.key");
    let shown = path.display();
    let mut findings = Vec::new();
    match std::fs::metadata(&path) {
        Err(_) => findings.push(Finding::problem(
            Level::Warn,
            TOPIC,
            format!("{shown} does not exist yet: the first start generates it"),
            "keep a copy of it somewhere safe once it exists: sealed secrets need it",
        )),
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                findings.push(Finding::problem(
                    Level::Fail,
                    TOPIC,
                    format!(
                        "{shown} is readable or writable by others than its owner (mode {mode:o})"
                    ),
                    format!("chmod 600 {shown}"),
                ));
            }
            let valid = load_keys(&args.keys, &args.database.data_dir, KeyFile::MustExist).ok();
            match valid {
                None => findings.push(Finding::problem(
                    Level::Fail,
                    TOPIC,
                    format!("{shown} does not hold keys of base64 of 32 bytes, one a line"),
                    "restore the key file from your copy; a new key cannot open sealed secrets",
                )),
                Some(_) if mode & 0o077 == 0 => {
                    findings.push(Finding::ok(TOPIC, format!("{shown} (mode {mode:o})")));
                }
                Some(_) => {}
            }
        }
    }
    if postgres {
        findings.push(Finding::problem(
            Level::Warn,
            TOPIC,
            "PostgreSQL serves several instances, which must share one key",
            "set PORTICO_SECRET_KEY to the same value on every instance",
        ));
    }
    findings
}

fn metrics_access(args: &ServeArgs) -> Finding {
    const TOPIC: &str = "metrics";
    match (&args.metrics_bind, args.given_metrics_token()) {
        (_, Some(token)) if token.len() < MIN_METRICS_TOKEN_LEN => Finding::problem(
            Level::Fail,
            TOPIC,
            "PORTICO_METRICS_TOKEN is shorter than 16 characters",
            "set it to the output of `openssl rand -hex 32`",
        ),
        (None, None) => Finding::ok(
            TOPIC,
            "/metrics is off (set PORTICO_METRICS_BIND or PORTICO_METRICS_TOKEN to serve it)",
        ),
        (Some(bind), None) if !bind.ip().is_loopback() => Finding::problem(
            Level::Warn,
            TOPIC,
            format!("/metrics on {bind} answers anyone who can reach that address"),
            "keep that port on a private network, or set PORTICO_METRICS_TOKEN",
        ),
        (Some(bind), _) => Finding::ok(TOPIC, format!("/metrics on {bind}")),
        (None, Some(_)) => Finding::ok(TOPIC, "/metrics on the public address, with a token"),
    }
}

fn mail_ca_file(args: &ServeArgs) -> Option<Finding> {
    const TOPIC: &str = "mail CA file";
    let path = args.mail_ca_file.as_deref()?;
    let loaded = std::fs::read(path)
        .map_err(|err| err.to_string())
        .and_then(|pem| crate::mail::load_pem_certificates(&pem));
    Some(match loaded {
        Ok(certificates) => Finding::ok(
            TOPIC,
            format!("{}: {} certificates", path.display(), certificates.len()),
        ),
        Err(err) => Finding::problem(
            Level::Fail,
            TOPIC,
            format!("{}: {err}", path.display()),
            "point PORTICO_MAIL_CA_FILE at a readable PEM file of CA certificates",
        ),
    })
}

/// What tenants' mail servers and OAuth URLs may reach: never the internal ranges, unless
/// PORTICO_EGRESS_ALLOW opens some.
fn egress(args: &ServeArgs) -> Finding {
    const TOPIC: &str = "egress";
    let raw = args.egress_allow.as_deref().unwrap_or_default();
    let allowed = match parse_allow_list(raw) {
        Ok(allowed) => allowed,
        Err(item) => {
            return Finding::problem(
                Level::Fail,
                TOPIC,
                format!("PORTICO_EGRESS_ALLOW: {item:?} is not a CIDR range or an address"),
                "write ranges such as 10.20.0.0/16, separated by commas",
            );
        }
    };
    if allowed.is_empty() {
        return Finding::ok(
            TOPIC,
            "tenants' mail servers and OAuth URLs may reach public addresses only",
        );
    }
    let list = allowed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let metadata = EgressPolicy::allowing(allowed)
        .check(std::net::IpAddr::from([169, 254, 169, 254]))
        .is_ok();
    if metadata {
        Finding::problem(
            Level::Warn,
            TOPIC,
            format!(
                "tenants may also reach {list}, which includes 169.254.169.254, where cloud \
                 metadata services hand out this machine's credentials"
            ),
            "allow only the ranges of your on-premises mail servers",
        )
    } else {
        Finding::ok(TOPIC, format!("public addresses, and also {list}"))
    }
}

async fn database(args: &ServeArgs) -> Vec<Finding> {
    const TOPIC: &str = "database";
    let url = args.database.resolved_url();
    let Some(backend) = Backend::of_url(&url) else {
        return vec![Finding::problem(
            Level::Fail,
            TOPIC,
            "DATABASE_URL is neither sqlite: nor postgres:",
            "set DATABASE_URL=postgres://user:password@host/db, or leave it unset for SQLite",
        )];
    };
    let mut private_modes = Vec::new();
    if backend == Backend::Sqlite {
        match sqlite_path(&url) {
            Ok(path) if !path.exists() => {
                return vec![Finding::problem(
                    Level::Warn,
                    TOPIC,
                    format!(
                        "{} does not exist yet: the first start creates it",
                        path.display()
                    ),
                    "run `portico migrate` or start Portico; use PostgreSQL for several instances",
                )];
            }
            Ok(path) => private_modes.extend(sqlite_modes(&path)),
            Err(_) => {}
        }
    }
    let db = match Db::connect(&url).await {
        Ok(db) => db,
        Err(err) => {
            return vec![Finding::problem(
                Level::Fail,
                TOPIC,
                format!("cannot connect: {err}"),
                "check DATABASE_URL, and that the server accepts connections from this host",
            )];
        }
    };
    let status = db.migration_status().await;
    db.close().await;
    let mut findings = private_modes;
    findings.push(match status {
        Err(err) => Finding::problem(
            Level::Fail,
            TOPIC,
            format!("cannot read the migrations: {err}"),
            "check that DATABASE_URL names Portico's database and its user may read it",
        ),
        Ok(status) if !status.unknown.is_empty() => Finding::problem(
            Level::Fail,
            TOPIC,
            format!(
                "a newer Portico migrated this database (migrations {:?}); this version must \
                 not serve it",
                status.unknown
            ),
            "run the newer version, or restore the backup taken before the upgrade",
        ),
        Ok(status) if !status.failed.is_empty() => Finding::problem(
            Level::Fail,
            TOPIC,
            format!("migrations {:?} started and did not finish", status.failed),
            "restore the backup taken before the upgrade, then start Portico again",
        ),
        Ok(status) if !status.pending.is_empty() => Finding::ok(
            TOPIC,
            format!(
                "connected; {} migrations will be applied at the next start",
                status.pending.len()
            ),
        ),
        Ok(status) => Finding::ok(
            TOPIC,
            format!("connected, up to date ({} migrations)", status.known),
        ),
    });
    findings
}

/// The SQLite file holds password hashes, the audit history and sealed secrets: it and its
/// directory are for Portico's user alone (Portico creates them 0600 and 0700).
fn sqlite_modes(file: &Path) -> Vec<Finding> {
    const TOPIC: &str = "database";
    let dir = file
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    [(file, 0o600, "file"), (dir, 0o700, "directory")]
        .into_iter()
        .filter_map(|(path, wanted, kind)| {
            let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| {
                Finding::problem(
                    Level::Warn,
                    TOPIC,
                    format!(
                        "the database {kind} {} is open to others than its owner (mode {mode:o})",
                        path.display()
                    ),
                    format!("chmod {wanted:o} {}", path.display()),
                )
            })
        })
        .collect()
}

async fn microsoft(args: &ServeArgs) -> Vec<Finding> {
    const TOPIC: &str = "Microsoft";
    let client = Metrics::new()
        .map_err(|err| err.to_string())
        .and_then(|metrics| {
            Microsoft::new(
                &args.microsoft,
                EgressPolicy::default(),
                Clock::default(),
                metrics,
            )
            .map_err(|e| e.to_string())
        });
    let microsoft = match client {
        Ok(microsoft) => microsoft,
        Err(err) => {
            return vec![Finding::problem(
                Level::Fail,
                TOPIC,
                format!("no HTTP client: {err}"),
                "report this as a bug",
            )];
        }
    };
    microsoft
        .reachability()
        .await
        .into_iter()
        .map(|(url, answer)| match answer {
            Ok(()) => Finding::ok(TOPIC, format!("{url} answers")),
            Err(err) => Finding::problem(
                Level::Fail,
                TOPIC,
                format!("{url}: {err}"),
                "allow outbound HTTPS to login.microsoftonline.com and graph.microsoft.com \
                 (HTTPS_PROXY is honoured)",
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level_of(url: &str) -> Level {
        base_url_rule(&url.parse().unwrap()).level
    }

    #[test]
    fn production_needs_https() {
        assert_eq!(level_of("https://portal.example.com"), Level::Ok);
        assert_eq!(level_of("http://portal.example.com"), Level::Fail);
        assert_eq!(level_of("http://10.0.0.5:8080"), Level::Fail);
        assert_eq!(level_of("http://127.0.0.1:8080"), Level::Warn);
        assert_eq!(level_of("http://localhost:8080"), Level::Warn);
        assert_eq!(level_of("http://[::1]:8080"), Level::Warn);
    }
}
