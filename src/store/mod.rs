//! All SQL lives here. One pool (sqlx's `Any` driver) serves SQLite and PostgreSQL; both
//! accept `$n` placeholders, so a query is written once unless the dialects truly differ.

pub mod audit;
pub mod backup;
pub mod certificates;
pub mod expiry_alerts;
pub mod graph_credentials;
pub mod identities;
pub mod job_runs;
pub mod mailbox_checks;
pub mod mailboxes;
pub mod microsoft_sign_in;
pub mod oauth_connections;
pub mod sealed;
pub mod sealed_columns;
pub mod segments;
pub mod sessions;
pub mod tenants;
pub mod users;

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor as _};
use time::{Date, OffsetDateTime};

use crate::clock::Clock;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL must start with sqlite: or postgres:")]
    UnsupportedUrl,
    #[error("cannot create or open the SQLite database {path}: {source}")]
    SqliteFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A database transaction; committed with `commit`, rolled back when dropped.
pub type Transaction = sqlx::Transaction<'static, sqlx::Any>;

/// The database handle every store function takes first.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Statements (or transactions) started through this handle: lets tests check that a
    /// page's query count does not grow with the data.
    queries: Arc<AtomicU64>,
    /// The store's "now": the app's clock, so what it stamps and what it compares with
    /// moves when a test moves time.
    clock: Clock,
}

impl Db {
    /// Connects with a clock of its own (operator commands, tests' own handles).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_clock(url, Clock::default()).await
    }

    /// Connects with `clock` as the store's "now": the app gives the clock it gives
    /// everything else.
    pub async fn connect_with_clock(url: &str, clock: Clock) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::of_url(url).ok_or(StoreError::UnsupportedUrl)?;
        if backend == Backend::Sqlite {
            create_sqlite_file(url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            })
            // A SQLite connection is a file that cannot go away: checking it before each
            // query only doubled the round trips to its worker thread.
            .test_before_acquire(backend == Backend::Postgres)
            // Short enough that /readyz answers while the database is away.
            .acquire_timeout(Duration::from_secs(3))
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // With WAL, NORMAL syncs the file at checkpoints instead of at
                        // every commit (a sign-in commits three times): a power cut may
                        // lose the last commits, never the database's consistency.
                        connection.execute("PRAGMA synchronous = NORMAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if backend == Backend::Sqlite {
            // WAL lets page reads run while a write commits; the setting persists in the file.
            pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        Ok(Self {
            pool,
            backend,
            queries: Arc::default(),
            clock,
        })
    }

    /// Applies pending migrations. On PostgreSQL sqlx holds an advisory lock meanwhile, so
    /// instances starting together apply them once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// Which migrations the database has and which this version of Portico knows, without
    /// applying any.
    pub async fn migration_status(&self) -> Result<MigrationStatus, sqlx::Error> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        // Before the first start there is no table to read.
        let applied: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT version, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) \
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(self.pool())
        .await
        .or_else(|err| match &err {
            sqlx::Error::Database(db_err) if db_err.message().contains("_sqlx_migrations") => {
                Ok(Vec::new())
            }
            _ => Err(err),
        })?;
        Ok(MigrationStatus {
            pending: known
                .iter()
                .filter(|version| !applied.iter().any(|(done, _)| done == *version))
                .copied()
                .collect(),
            unknown: applied
                .iter()
                .filter(|(version, _)| !known.contains(version))
                .map(|(version, _)| *version)
                .collect(),
            failed: applied
                .iter()
                .filter(|(_, success)| *success == 0)
                .map(|(version, _)| *version)
                .collect(),
            known: known.len(),
        })
    }

    /// Answers whether the database serves queries right now.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.pool.execute("SELECT 1").await.map(drop)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The clock's now, in the unix seconds the store stamps rows with and compares them to.
    pub fn unix_now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// Connections of the pool now: checked out, idle, and the most it opens.
    pub fn pool_usage(&self) -> PoolUsage {
        let size = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(size);
        PoolUsage {
            in_use: size.saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction for writes that span store modules (a tenant and its first admin).
    pub async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        self.pool().begin().await
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        self.queries.fetch_add(1, Ordering::Relaxed);
        &self.pool
    }

    /// How many statements or transactions were started so far.
    pub fn queries_started(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

/// The file an SQLite URL names (`sqlite:PATH`, `sqlite://PATH`, `sqlite:///ABSOLUTE`, with
/// sqlx's percent-decoding), or `None` for an in-memory database.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let in_memory = path.as_os_str().is_empty()
        || path.to_string_lossy().starts_with("file:sqlx-in-memory-")
        || sqlite_mode(url).as_deref() == Some("memory");
    (!in_memory).then(|| path.to_path_buf())
}

/// The `mode` parameter of an SQLite URL, if it has one.
fn sqlite_mode(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "mode")
        .map(|(_, value)| value.into_owned())
}

/// Creates the SQLite file named by `url`, and its directory, when missing, both private to
/// Portico's user: the file holds password hashes and sealed secrets. sqlx would only say
/// "unable to open database file"; this names the path and the reason. A URL that asks for
/// an existing file (`mode=ro` or `mode=rw`) is left to sqlx.
fn create_sqlite_file(url: &str) -> Result<(), StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(());
    };
    if sqlite_mode(url).is_some_and(|mode| mode != "rwc") {
        return Ok(());
    }
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::SqliteFile { path, source }
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(failed(dir))?;
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(failed(&path))?;
    Ok(())
}

/// Creates `dir` and any missing parents with mode 0700; existing directories are kept as
/// they are.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| match err.kind() {
            // What is there is a file: "File exists" would read as if all were well.
            std::io::ErrorKind::AlreadyExists => std::io::ErrorKind::NotADirectory.into(),
            _ => err,
        })
}

/// Migrations compared: the database's and this version's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Known here, not yet applied: the next start applies them.
    pub pending: Vec<i64>,
    /// Applied by a newer Portico: this version must not serve that database.
    pub unknown: Vec<i64>,
    /// Started and not finished.
    pub failed: Vec<i64>,
    pub known: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct PoolUsage {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// A new primary key: UUIDv7 keeps inserts in time order. Its time part comes from the
/// system clock, not the app's: it only breaks ties in row order and is never compared
/// with "now" (the app's clock only ever moves forward, so the order is the same).
pub(crate) fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(crate) fn from_unix(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A day as its column holds it, `YYYY-MM-DD`: text that sorts as the days do.
pub(crate) fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// A day read back from its column.
pub(crate) fn date_from_text(text: &str) -> Result<Date, sqlx::Error> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| sqlx::Error::Decode(format!("a stored date {text:?}: {e}").into()))
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|db_err| db_err.is_unique_violation())
}

/// Why saving or deleting a named row that others may reference did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("another row of the tenant has this name")]
    NameTaken,
    #[error("not found")]
    NotFound,
    #[error("other rows still use it")]
    InUse,
    /// Someone else saved the row after the form was loaded (see `saved_at_version`).
    #[error("someone else saved it since it was loaded")]
    Stale,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Sorts a database error into the cases people can act on: a taken name (unique
/// violation) or a row still in use (foreign-key violation).
pub(crate) fn save_error(err: sqlx::Error) -> SaveError {
    let violation = err.as_database_error().map(|db_err| {
        (
            db_err.is_unique_violation(),
            db_err.is_foreign_key_violation(),
        )
    });
    match violation {
        Some((true, _)) => SaveError::NameTaken,
        Some((_, true)) => SaveError::InUse,
        _ => SaveError::Database(err),
    }
}

/// `NotFound` when a statement touched no row of the tenant.
pub(crate) fn found(rows: u64) -> Result<(), SaveError> {
    if rows == 0 {
        Err(SaveError::NotFound)
    } else {
        Ok(())
    }
}

/// The outcome of an `UPDATE ... WHERE tenant_id = .. AND id = .. AND version = ..` that
/// touched `rows` rows: none means someone else saved first (`Stale`), or the row is gone.
pub(crate) async fn saved_at_version<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    table: &'static str,
    tenant: &tenants::TenantId,
    id: &str,
    rows: u64,
) -> Result<(), SaveError> {
    if rows > 0 {
        return Ok(());
    }
    let still_there: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM {table} WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.as_str())
    .bind(id)
    .fetch_one(executor)
    .await?;
    Err(if still_there > 0 {
        SaveError::Stale
    } else {
        SaveError::NotFound
    })
}

/// One page of a list: 1-based page number and its size.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub number: u32,
    pub size: u32,
}

impl Page {
    pub fn new(number: Option<u32>, size: u32) -> Self {
        Self {
            number: number.unwrap_or(1).clamp(1, 100_000),
            size,
        }
    }

    fn limit(self) -> i64 {
        i64::from(self.size)
    }

    fn offset(self) -> i64 {
        i64::from(self.number - 1) * i64::from(self.size)
    }
}

/// Rows of one page plus whether another follows (fetched as one extra row).
#[derive(Debug)]
pub struct Paged<T> {
    pub rows: Vec<T>,
    pub page: Page,
    pub has_next: bool,
}

impl<T> Paged<T> {
    fn from_rows(mut rows: Vec<T>, page: Page) -> Self {
        let has_next = rows.len() > page.size as usize;
        rows.truncate(page.size as usize);
        Self {
            rows,
            page,
            has_next,
        }
    }
}

/// Escapes `%`, `_` and `\` so user text matches literally inside `LIKE ... ESCAPE '\'`.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file_as_sqlx_opens_it() {
        let file = |url| sqlite_file(url).map(|path| path.display().to_string());
        assert_eq!(
            file("sqlite:///var/lib/p.db").as_deref(),
            Some("/var/lib/p.db")
        );
        assert_eq!(
            file("sqlite://data/p.db?mode=rwc").as_deref(),
            Some("data/p.db")
        );
        assert_eq!(file("sqlite:data/p.db").as_deref(), Some("data/p.db"));
        assert_eq!(
            file("sqlite:///my%20dir/p.db").as_deref(),
            Some("/my dir/p.db")
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("sqlite://p.db?mode=memory"), None);
    }

    /// Migration 10 rebuilds graph_credentials on SQLite. A database with data made by the
    /// migrations before it keeps every credential, and every mailbox still points at its
    /// credential under a foreign key that still holds.
    #[tokio::test]
    async fn the_sqlite_rebuild_of_graph_credentials_keeps_rows_and_references() {
        let dir = tempfile::tempdir().unwrap();
        let earlier = dir.path().join("migrations");
        std::fs::create_dir(&earlier).unwrap();
        for entry in std::fs::read_dir("migrations/sqlite").unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.as_str() < "20261125000010" {
                std::fs::copy(&path, earlier.join(&name)).unwrap();
            }
        }
        let url = format!("sqlite://{}/portico.db?mode=rwc", dir.path().display());
        let db = Db::connect(&url).await.unwrap();
        Migrator::new(earlier.as_path())
            .await
            .unwrap()
            .run(db.pool())
            .await
            .unwrap();
        for statement in [
            "INSERT INTO tenants (id, slug, name, created_at) VALUES ('t1', 'acme', 'Acme', 0)",
            "INSERT INTO graph_credentials (id, tenant_id, name, client_id, directory, \
             directory_id, cloud, client_secret_sealed, secret_expires_on, secret_replaced_at, \
             created_at, updated_at, version) VALUES ('g1', 't1', 'Mail', \
             '55555555-5555-4555-8555-555555555555', 'contoso.com', \
             '44444444-4444-4444-8444-444444444444', 'global', 'v1.key.sealed', '2030-01-31', \
             7, 0, 0, 3)",
            "INSERT INTO segments (id, tenant_id, name, description, created_at, updated_at) \
             VALUES ('s1', 't1', 'Support', '', 0, 0)",
            "INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, protocol, \
             graph_credential_id, enabled, created_at, updated_at) VALUES ('m1', 't1', 's1', \
             'Support', 'support@contoso.com', 'incoming', 'graph', 'g1', 1, 0, 0)",
        ] {
            sqlx::query(statement).execute(db.pool()).await.unwrap();
        }

        db.migrate().await.unwrap();

        let kept: (String, String, String, i64, String) = sqlx::query_as(
            "SELECT g.name, g.auth_method, g.client_secret_sealed, g.version, m.id \
             FROM graph_credentials g JOIN mailboxes m ON m.graph_credential_id = g.id",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(
            kept,
            (
                "Mail".into(),
                "client_secret".into(),
                "v1.key.sealed".into(),
                3,
                "m1".into()
            )
        );
        let in_use = sqlx::query("DELETE FROM graph_credentials WHERE id = 'g1'")
            .execute(db.pool())
            .await
            .unwrap_err();
        assert!(
            in_use
                .as_database_error()
                .unwrap()
                .is_foreign_key_violation()
        );
        let orphan = sqlx::query(
            "INSERT INTO certificates (id, tenant_id, graph_credential_id, slot, \
             private_key_sealed, certificate_pem, thumbprint, not_before, not_after, created_at) \
             VALUES ('c1', 't1', 'nothing', 'current', 'v1.x', 'pem', 'AB', 0, 1, 0)",
        )
        .execute(db.pool())
        .await
        .unwrap_err();
        assert!(
            orphan
                .as_database_error()
                .unwrap()
                .is_foreign_key_violation()
        );
    }
}
