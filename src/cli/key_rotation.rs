//! `portico secrets rotate-key`: seals every stored secret again under the current key, so
//! the old keys can then be removed. Safe to interrupt and run again: values already under
//! the current key are skipped, and each value is replaced by its own statement.

use std::collections::BTreeSet;

use crate::cli::CommandResult;
use crate::cli::database::open_database;
use crate::config::{DatabaseArgs, KeyArgs, KeyFile, load_keys};
use crate::crypto::Keyring;
use crate::store::Db;
use crate::store::sealed_columns::{self, SEALED_COLUMNS, SealedColumn};

/// Values read per query while paging through a column.
const BATCH: i64 = 100;

/// What a rotation did to one sealed column.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ColumnReport {
    pub table: &'static str,
    pub column: &'static str,
    /// Whose rows of the column, when owners of several kinds share it.
    pub rows: Option<&'static str>,
    /// Sealed again under the current key by this run.
    pub resealed: u64,
    /// Changed by Portico between reading and replacing (so already under the current key).
    pub changed_meanwhile: u64,
    /// Under the current key once this run was done, whoever sealed them.
    pub under_current_key: i64,
    /// Still under another key, which this run could not open.
    pub left_behind: i64,
}

/// What a rotation did, column by column, and why anything was left behind.
#[derive(Debug)]
pub struct RotationReport {
    pub key_id: String,
    pub columns: Vec<ColumnReport>,
    /// Why values could not be opened, e.g. "sealed with key 1a2b3c4d, which was not given".
    pub problems: BTreeSet<String>,
}

impl ColumnReport {
    /// `table.column`, after whose rows they are when the column is shared.
    pub fn name(&self) -> String {
        match self.rows {
            Some(rows) => format!("{rows} {}.{}", self.table, self.column),
            None => format!("{}.{}", self.table, self.column),
        }
    }
}

impl RotationReport {
    /// Values still sealed under a key other than the current one.
    pub fn left_behind(&self) -> i64 {
        self.columns.iter().map(|column| column.left_behind).sum()
    }
}

/// `portico secrets rotate-key`: rotates and reports column by column; fails while any
/// secret is still under an old key, so the operator keeps the old keys until none is.
pub async fn run(database: &DatabaseArgs, keys: &KeyArgs) -> CommandResult {
    let keys =
        load_keys(keys, &database.data_dir, KeyFile::MustExist).map_err(|e| e.to_string())?;
    let db = open_database(database).await?;
    println!(
        "Sealing every secret under key {}; old keys given: {}.",
        keys.key_id(),
        match keys.old_key_ids() {
            ids if ids.is_empty() => "none".to_owned(),
            ids => ids.join(", "),
        }
    );
    let report = rotate(&db, &keys).await.map_err(|e| e.to_string())?;
    for column in &report.columns {
        let mut line = format!(
            "{}: {} re-encrypted, {} under key {}",
            column.name(),
            column.resealed,
            column.under_current_key,
            report.key_id
        );
        if column.changed_meanwhile > 0 {
            line.push_str(&format!(
                ", {} changed by Portico meanwhile",
                column.changed_meanwhile
            ));
        }
        if column.left_behind > 0 {
            line.push_str(&format!(", {} still under an old key", column.left_behind));
        }
        println!("{line}");
    }
    match report.left_behind() {
        0 => {
            println!(
                "No secret under an old key remains: remove the old keys \
                 (PORTICO_OLD_SECRET_KEYS, or the further keys of secret.key)."
            );
            Ok(())
        }
        left => {
            let why = if report.problems.is_empty() {
                "sealed meanwhile by an instance that still seals with an old key".to_owned()
            } else {
                report
                    .problems
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Err(format!(
                "{left} secrets are still under an old key ({why}). Give every instance the \
                 new key and any missing old keys, and run this again; keep the old keys \
                 until then."
            ))
        }
    }
}

pub async fn rotate(db: &Db, keys: &Keyring) -> Result<RotationReport, sqlx::Error> {
    let prefix = keys.current_prefix();
    let mut report = RotationReport {
        key_id: keys.key_id(),
        columns: Vec::new(),
        problems: BTreeSet::new(),
    };
    for column in &SEALED_COLUMNS {
        let mut done = reseal_column(db, keys, column, &prefix, &mut report.problems).await?;
        (done.under_current_key, done.left_behind) =
            sealed_columns::count_by_prefix(db, column, &prefix).await?;
        report.columns.push(done);
    }
    Ok(report)
}

async fn reseal_column(
    db: &Db,
    keys: &Keyring,
    column: &SealedColumn,
    prefix: &str,
    problems: &mut BTreeSet<String>,
) -> Result<ColumnReport, sqlx::Error> {
    let mut report = ColumnReport {
        table: column.table,
        column: column.column,
        rows: column.rows.as_ref().map(|rows| rows.label),
        ..ColumnReport::default()
    };
    let mut after = String::new();
    loop {
        let batch = sealed_columns::not_under(db, column, prefix, &after, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(report);
        };
        after.clone_from(&last.row_key);
        for value in &batch {
            let context = column.context(&value.tenant, &value.row_key);
            match keys.open(&value.sealed, &context) {
                Ok(secret) => {
                    let resealed = keys.seal(&secret, &context);
                    if sealed_columns::replace(db, column, value, &resealed).await? {
                        report.resealed += 1;
                    } else {
                        report.changed_meanwhile += 1;
                    }
                }
                Err(error) => {
                    problems.insert(error.to_string());
                }
            }
        }
    }
}
