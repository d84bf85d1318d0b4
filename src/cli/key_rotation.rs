//! `portico secrets rotate-key`: seals every stored secret again under the current key, so
//! the old keys can then be removed. Safe to interrupt and run again: values already under
//! the current key are skipped, and each value is replaced by its own statement.

use std::collections::BTreeSet;

use crate::crypto::Keyring;
use crate::store::Db;
use crate::store::sealed::{self, SEALED_COLUMNS, SealedColumn};

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
            sealed::count_by_prefix(db, column, &prefix).await?;
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
        let batch = sealed::not_under(db, column, prefix, &after, BATCH).await?;
        let Some(last) = batch.last() else {
            return Ok(report);
        };
        after.clone_from(&last.row_key);
        for value in &batch {
            let context = column.context(&value.tenant, &value.row_key);
            match keys.open(&value.sealed, &context) {
                Ok(secret) => {
                    let resealed = keys.seal(&secret, &context);
                    if sealed::replace(db, column, value, &resealed).await? {
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
