//! `portico migrate`, `backup` and `restore`, and opening the database the other commands
//! work on.

use std::path::Path;

use crate::cli::CommandResult;
use crate::config::{DatabaseArgs, ensure_data_dir};
use crate::store::Db;

/// Connects and migrates, so a command works on the schema its binary expects.
pub async fn open_database(args: &DatabaseArgs) -> Result<Db, String> {
    if args.database_url.is_none() {
        ensure_data_dir(&args.data_dir).map_err(|e| e.to_string())?;
    }
    let db = Db::connect(&args.resolved_url())
        .await
        .map_err(|e| e.to_string())?;
    db.migrate().await.map_err(|e| e.to_string())?;
    Ok(db)
}

pub async fn migrate(args: &DatabaseArgs) -> CommandResult {
    open_database(args).await?;
    println!("migrations applied");
    Ok(())
}

pub async fn backup(to: &Path, database: &DatabaseArgs) -> CommandResult {
    crate::store::backup::backup(&database.resolved_url(), to)
        .await
        .map_err(|e| e.to_string())?;
    println!("backup written to {}", to.display());
    Ok(())
}

pub async fn restore(from: &Path, database: &DatabaseArgs) -> CommandResult {
    if database.database_url.is_none() {
        ensure_data_dir(&database.data_dir).map_err(|e| e.to_string())?;
    }
    let restored = crate::store::backup::restore(from, &database.resolved_url())
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "restored {} tenants and {} users from {}",
        restored.tenants,
        restored.users,
        from.display()
    );
    Ok(())
}
