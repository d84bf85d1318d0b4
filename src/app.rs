//! The running application: its state, and how it starts.

use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::config::Config;
use crate::crypto::{HashError, PasswordHasher, constant_time_eq, random_token};
use crate::domain::throttle::{AddressFailures, MAX_SETUP_FAILURES_PER_ADDRESS};
use crate::mail::{ProbeOptions, load_pem_certificates};
use crate::metrics::Metrics;
use crate::microsoft::Microsoft;
use crate::store::tenants::TenantCache;
use crate::store::{self, Db, StoreError};

/// Shared by every request; cheap to clone.
pub type AppState = Arc<App>;

pub struct App {
    pub config: Config,
    pub db: Db,
    pub passwords: PasswordHasher,
    pub microsoft: Microsoft,
    /// How mail server connection tests connect, and which CAs they trust.
    pub mail_probe: ProbeOptions,
    pub clock: Clock,
    pub metrics: Metrics,
    /// Tenants by slug, looked up by every tenant page.
    pub tenants: TenantCache,
    setup_token: Mutex<Option<SecretString>>,
    /// Wrong setup links per address: the link has no tenant whose audit log could count them.
    pub setup_failures: AddressFailures,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("PORTICO_MAIL_CA_FILE {path}: {message}")]
    MailCa { path: String, message: String },
}

/// Mail servers get as long as Microsoft does to answer each step.
const MAIL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn mail_probe_options(config: &Config) -> Result<ProbeOptions, StartError> {
    let extra_roots = match &config.mail_ca_file {
        None => Vec::new(),
        Some(path) => {
            let ca_error = |message: String| StartError::MailCa {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            load_pem_certificates(&pem).map_err(ca_error)?
        }
    };
    Ok(ProbeOptions {
        timeout: MAIL_TIMEOUT,
        extra_roots,
        egress: config.egress.clone(),
    })
}

impl App {
    /// Connects, migrates, and opens the setup link when no tenant exists yet.
    pub async fn start(config: Config) -> Result<AppState, StartError> {
        // One TLS crypto provider for the process (ring); installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let clock = Clock::default();
        let metrics = Metrics::new()?;
        let microsoft = Microsoft::new(
            &config.microsoft,
            config.egress.clone(),
            clock.clone(),
            metrics.clone(),
        )?;
        let mail_probe = mail_probe_options(&config)?;
        let db = Db::connect_with_clock(&config.database_url, clock.clone()).await?;
        db.migrate().await?;
        let no_tenant_yet = store::tenants::count(&db).await? == 0;
        Ok(Arc::new(Self {
            config,
            db,
            passwords: PasswordHasher::new()?,
            microsoft,
            mail_probe,
            clock,
            metrics,
            tenants: TenantCache::default(),
            setup_token: Mutex::new(no_tenant_yet.then(|| SecretString::from(random_token()))),
            setup_failures: AddressFailures::new(MAX_SETUP_FAILURES_PER_ADDRESS),
        }))
    }

    /// The one-time link that creates the first tenant, while there is none.
    pub fn setup_url(&self) -> Option<SecretString> {
        let guard = self.setup_token.lock().ok()?;
        let token = guard.as_ref()?;
        Some(SecretString::from(self.config.public_url(&format!(
            "/setup?token={}",
            token.expose_secret()
        ))))
    }

    pub fn setup_token_matches(&self, offered: &str) -> bool {
        self.setup_token.lock().is_ok_and(|guard| {
            guard
                .as_ref()
                .is_some_and(|token| constant_time_eq(token.expose_secret(), offered))
        })
    }

    /// Called once setup has created the first tenant: the link stops working.
    pub fn close_setup(&self) {
        if let Ok(mut guard) = self.setup_token.lock() {
            *guard = None;
        }
    }
}
