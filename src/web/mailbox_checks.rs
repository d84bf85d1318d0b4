//! What the background checks of mailboxes found, as the pages show it: a mailbox Failing
//! since when, with the step that failed and the server's words, or working again. The
//! dashboard, the Expiring page, a segment and a mailbox all show the same lines
//! (templates/parts/watched_mailboxes.html).

use std::time::Duration;

use super::format_time;
use crate::app::App;
use crate::domain::{CheckRecord, CheckState};
use crate::services::mailbox_checks;
use crate::store::mailbox_checks::WatchedMailbox;
use crate::store::tenants::TenantId;

/// One mailbox that fails, or recently recovered.
pub struct WatchedLine {
    pub mailbox_id: String,
    pub name: String,
    pub email: String,
    /// Since when, and the step that failed with the server's words.
    pub failing: Option<(String, String)>,
    /// When it recovered, and since when it had failed.
    pub recovered: Option<(String, String)>,
}

impl From<WatchedMailbox> for WatchedLine {
    fn from(watched: WatchedMailbox) -> Self {
        let record = &watched.record;
        Self {
            failing: record
                .failing()
                .map(|(since, words)| (format_time(since), words.to_owned())),
            recovered: record
                .recovered
                .map(|(at, from)| (format_time(at), format_time(from))),
            mailbox_id: watched.mailbox_id,
            name: watched.name,
            email: watched.email,
        }
    }
}

/// The tenant's failing and recently recovered mailboxes, of one segment or all.
pub async fn watched_lines(
    app: &App,
    tenant: &TenantId,
    segment_id: Option<&str>,
) -> Result<Vec<WatchedLine>, sqlx::Error> {
    let watched = mailbox_checks::watched(app, tenant, segment_id).await?;
    Ok(watched.into_iter().map(WatchedLine::from).collect())
}

/// One sentence about a mailbox's background checks, for its page.
pub fn summary(enabled: bool, record: Option<&CheckRecord>, interval: Option<Duration>) -> String {
    let Some(interval) = interval else {
        return "Off: your operator turned background checks off.".into();
    };
    if !enabled {
        return "Off while the mailbox is disabled.".into();
    }
    let every = format!("every {} minutes", interval.as_secs() / 60);
    let Some(record) = record.filter(|record| record.state() != CheckState::Unchecked) else {
        return format!(
            "Tested {every}; not tested yet: the first test comes within the interval."
        );
    };
    let last = record.last_checked_at.map(format_time).unwrap_or_default();
    match record.state() {
        CheckState::Failing | CheckState::FailedOnce => format!(
            "Tested {every}; the last test, at {last}, failed ({} in a row).",
            record.consecutive_failures
        ),
        CheckState::Passing | CheckState::Unchecked => {
            format!("Tested {every}; the last test, at {last}, passed.")
        }
    }
}
