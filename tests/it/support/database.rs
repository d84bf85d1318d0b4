//! A fresh database per test: a temporary SQLite file, or a new PostgreSQL database on the
//! server named by TEST_DATABASE_URL.

use sqlx::Executor as _;
use sqlx::any::AnyPoolOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn postgres_available() -> bool {
        let available = std::env::var("TEST_DATABASE_URL").is_ok();
        if !available {
            eprintln!("TEST_DATABASE_URL is not set: the PostgreSQL variant is skipped");
        }
        available
    }
}

pub struct TestDatabase {
    pub url: String,
    /// Keeps the SQLite directory alive as long as the test.
    _dir: Option<tempfile::TempDir>,
}

/// Prefix of every test database, so `.ci/run` can drop leftovers of earlier runs.
pub const PREFIX: &str = "portico_test_";

impl TestDatabase {
    /// Where the SQLite files are, for tests that read them raw.
    pub fn sqlite_dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(tempfile::TempDir::path)
    }

    /// The same database again, for a second Portico instance; the first handle keeps it.
    pub fn shared(&self) -> Self {
        Self {
            url: self.url.clone(),
            _dir: None,
        }
    }

    /// The SQLite database `portico.db` already in `dir` (a restored backup, say).
    pub fn sqlite_in(dir: tempfile::TempDir) -> Self {
        Self {
            url: format!("sqlite://{}/portico.db?mode=rwc", dir.path().display()),
            _dir: Some(dir),
        }
    }

    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/portico.db?mode=rwc", dir.path().display());
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let server = std::env::var("TEST_DATABASE_URL").unwrap();
                let name = format!("{PREFIX}{}", uuid::Uuid::new_v4().simple());
                sqlx::any::install_default_drivers();
                let admin = AnyPoolOptions::new()
                    .max_connections(1)
                    .connect(&server)
                    .await
                    .unwrap();
                admin
                    .execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap();
                admin.close().await;
                let mut url: url::Url = server.parse().unwrap();
                url.set_path(&name);
                Self {
                    url: url.to_string(),
                    _dir: None,
                }
            }
        }
    }
}
