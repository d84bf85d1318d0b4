//! Backups of the embedded SQLite database, consistent while Portico serves, and restoring
//! one into an empty database. PostgreSQL has its own tools (pg_dump, pg_restore).

use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use sqlx::any::AnyPoolOptions;

use super::{Backend, Db, SQLITE_MIGRATIONS, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "this database is PostgreSQL: back it up with pg_dump and restore it with pg_restore \
         (docs/operations.md shows how); portico backup and restore handle SQLite"
    )]
    Postgres,
    #[error("DATABASE_URL must name an SQLite file or a PostgreSQL server")]
    UnsupportedUrl,
    #[error("there is no database at {0}")]
    NoDatabase(PathBuf),
    #[error("{0} exists already: choose a new file name")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a Portico backup (or it is damaged)")]
    NotABackup(PathBuf),
    #[error(
        "{path} was made by a newer Portico (migration {version}); restore it with that version"
    )]
    Newer { path: PathBuf, version: i64 },
    #[error(
        "the database at {0} already holds data: restore only into an empty database \
         (stop Portico and move that file away first)"
    )]
    NotEmpty(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a restore brought back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub tenants: i64,
    pub users: i64,
}

/// The file behind an SQLite database URL.
pub fn sqlite_path(url: &str) -> Result<PathBuf, BackupError> {
    match Backend::of_url(url) {
        Some(Backend::Postgres) => return Err(BackupError::Postgres),
        None => return Err(BackupError::UnsupportedUrl),
        Some(Backend::Sqlite) => {}
    }
    super::sqlite_file(url).ok_or(BackupError::UnsupportedUrl)
}

/// Writes a consistent copy of the SQLite database at `database_url` to the new file `to`
/// (mode 0600: it holds password hashes and sealed secrets). `VACUUM INTO` reads inside one
/// transaction, so requests served meanwhile neither block nor tear the copy.
pub async fn backup(database_url: &str, to: &Path) -> Result<(), BackupError> {
    let source = sqlite_path(database_url)?;
    if !source.exists() {
        return Err(BackupError::NoDatabase(source));
    }
    let file_error = |source| BackupError::File {
        path: to.to_path_buf(),
        source,
    };
    // An empty file is what VACUUM INTO accepts besides none; creating it first fixes its
    // mode and refuses to overwrite anything.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|err| match err.kind() {
            ErrorKind::AlreadyExists => BackupError::Exists(to.to_path_buf()),
            _ => file_error(err),
        })?;
    let copied = async {
        let db = Db::connect(database_url).await?;
        let result = sqlx::query("VACUUM INTO $1")
            .bind(to.to_string_lossy().into_owned())
            .execute(db.pool())
            .await;
        db.close().await;
        result.map(drop).map_err(BackupError::from)
    }
    .await;
    if copied.is_err() {
        let _ = std::fs::remove_file(to);
    }
    copied
}

/// Restores the backup `from` into the SQLite database at `database_url`, which must hold
/// no tenant yet; then applies the migrations this version adds.
pub async fn restore(from: &Path, database_url: &str) -> Result<Restored, BackupError> {
    let target = sqlite_path(database_url)?;
    check_backup(from).await?;
    if target.exists() {
        if holds_tenants(&target).await? {
            return Err(BackupError::NotEmpty(target));
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut path = target.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Err(err) if err.kind() != ErrorKind::NotFound => {
                    return Err(BackupError::File {
                        path: path.into(),
                        source: err,
                    });
                }
                _ => {}
            }
        }
    }
    let file_error = |source| BackupError::File {
        path: target.clone(),
        source,
    };
    std::fs::copy(from, &target).map_err(file_error)?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
        .map_err(file_error)?;

    let db = Db::connect(database_url).await?;
    db.migrate().await?;
    let tenants = sqlx::query_scalar("SELECT COUNT(*) FROM tenants")
        .fetch_one(db.pool())
        .await?;
    let users = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(db.pool())
        .await?;
    db.close().await;
    Ok(Restored { tenants, users })
}

/// Opens `path` read-only: it must be an intact SQLite database migrated by Portico, and
/// by no newer version than this one.
async fn check_backup(path: &Path) -> Result<(), BackupError> {
    if !path.is_file() {
        return Err(BackupError::NoDatabase(path.to_path_buf()));
    }
    let not_a_backup = || BackupError::NotABackup(path.to_path_buf());
    let pool = read_only(path).await.map_err(|_| not_a_backup())?;
    let checked = async {
        let integrity: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&pool)
            .await?;
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await?;
        Ok::<_, sqlx::Error>((integrity, newest))
    }
    .await;
    pool.close().await;
    let (integrity, newest) = checked.map_err(|_| not_a_backup())?;
    let Some(newest) = newest.filter(|_| integrity == "ok") else {
        return Err(not_a_backup());
    };
    let known = SQLITE_MIGRATIONS.iter().map(|m| m.version).max();
    if known.is_some_and(|known| newest > known) {
        return Err(BackupError::Newer {
            path: path.to_path_buf(),
            version: newest,
        });
    }
    Ok(())
}

async fn holds_tenants(path: &Path) -> Result<bool, BackupError> {
    let pool = read_only(path).await?;
    let counted = async {
        let has_table: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'tenants'",
        )
        .fetch_one(&pool)
        .await?;
        if has_table == 0 {
            return Ok(0);
        }
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM tenants")
            .fetch_one(&pool)
            .await
    }
    .await;
    pool.close().await;
    Ok(counted? > 0)
}

async fn read_only(path: &Path) -> Result<sqlx::AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", path.display()))
        .await
}
