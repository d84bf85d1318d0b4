//! The SQLite compiled into Portico carries the defines of `.cargo/config.toml`.

use crate::support::{Backend, spawn_app};

/// Without MEMSTATUS=0 every SQLite malloc and free takes one process-wide lock.
#[tokio::test]
async fn sqlite_is_built_without_memory_statistics() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut tx = app.state.db.begin().await.unwrap();
    let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert!(
        options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"),
        "{options:?}"
    );
}
