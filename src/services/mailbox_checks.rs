//! Mailboxes watched in the background: every enabled mailbox is tested once per
//! PORTICO_MAILBOX_CHECK_INTERVAL by the code behind Test connection (so through the same
//! egress policy, timeouts and explanations), its checks spread over the interval. Two
//! failures in a row make it Failing, which the pages show and the tenant's alert recipients
//! are told once; so is its recovery. Several instances check each mailbox once an interval:
//! a check claims its mailbox by moving its next time on (see `store::mailbox_checks`). And
//! the checks take turns across tenants (`fair_share`), so one tenant's hanging servers
//! cost another tenant at most one check's timeout.

use std::time::Duration;

use time::OffsetDateTime;

use crate::app::App;
use crate::domain::{CheckRecord, Transition, format_time};
use crate::metrics::MailboxCheckOutcome;
use crate::services::fair_share::{self, Turns};
use crate::services::mailboxes::{TestError, test_connection};
use crate::store::expiry_alerts::{self, Alert, PlannedAlert};
use crate::store::mailbox_checks::{self, DueCheck, WatchedMailbox};
use crate::store::mailboxes;
use crate::store::tenants::TenantId;

/// The alert that a mailbox became Failing, and the one that it works again. Both use the
/// "failing" threshold of the alert table (services::alerts' `Threshold::Failing`); the
/// kind tells them apart, and the instance is when the failing spell began, so each spell
/// is told once and its end once.
pub const FAILING_ALERT: &str = "mailbox";
pub const RECOVERED_ALERT: &str = "mailbox_recovered";
const ALERT_THRESHOLD: &str = "failing";

/// Checks looked at per run, taken in turns across tenants; the rest wait for the next run.
const BATCH: i64 = 500;
/// New mailboxes given their first check time per run.
const ADD_PER_RUN: i64 = 5_000;
/// No check starts later than this into a run, so a run ends within this plus one check's
/// timeout, before the job's next minute; checks not started stay due for the next run.
const CHECKING_WINDOW: Duration = Duration::from_secs(50);
/// How long the pages show that a mailbox works again.
pub const RECOVERY_SHOWN: time::Duration = time::Duration::days(1);

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CheckRun {
    /// Mailboxes seen for the first time, given a time within the interval.
    pub added: u64,
    pub passed: usize,
    pub failed: usize,
    /// Due, but another instance had claimed it first.
    pub not_claimed: usize,
}

/// What became of one due check.
enum Checked {
    NotClaimed,
    /// Deleted or disabled since it was found due.
    Gone,
    Passed,
    Failed,
}

/// One run of the job: give new mailboxes a time, then check those due that this instance
/// claims. Does nothing when PORTICO_MAILBOX_CHECK_INTERVAL is 0.
pub async fn run(app: &App) -> Result<CheckRun, sqlx::Error> {
    let Some(interval) = app.config.mailbox_check_interval else {
        return Ok(CheckRun::default());
    };
    let interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX).max(1);
    let now = app.clock.now().unix_timestamp();
    let mut run = CheckRun {
        added: mailbox_checks::add_missing(&app.db, now, interval, ADD_PER_RUN).await?,
        ..CheckRun::default()
    };
    let work = mailbox_checks::due(&app.db, now, BATCH)
        .await?
        .into_iter()
        .map(|due| (due.tenant_id.clone(), due))
        .collect();
    let turns = Turns {
        concurrency: fair_share::CONCURRENCY,
        start_until: tokio::time::Instant::now() + CHECKING_WINDOW,
    };
    for checked in fair_share::in_turns(work, turns, |due| check_one(app, due, interval)).await {
        match checked? {
            Checked::NotClaimed => run.not_claimed += 1,
            Checked::Gone => {}
            Checked::Passed => run.passed += 1,
            Checked::Failed => run.failed += 1,
        }
    }
    Ok(run)
}

/// The first time after `now` of a check due at `due` every `interval` seconds: it keeps its
/// place in the interval, so checks stay spread out even after the instances were down.
fn next_check_at(due: i64, now: i64, interval: i64) -> i64 {
    let behind = now.saturating_sub(due).max(0);
    due.saturating_add((behind / interval + 1).saturating_mul(interval))
}

/// Claims one due check and runs it, within the check timeout, and records what it found.
async fn check_one(app: &App, due: DueCheck, interval: i64) -> Result<Checked, sqlx::Error> {
    let next = next_check_at(
        due.next_check_at,
        app.clock.now().unix_timestamp(),
        interval,
    );
    if !mailbox_checks::claim(&app.db, &due, next).await? {
        return Ok(Checked::NotClaimed);
    }
    let tenant = due.tenant();
    let Some(mailbox) = mailboxes::get(&app.db, &tenant, &due.mailbox_id).await? else {
        return Ok(Checked::Gone);
    };
    if !mailbox.enabled {
        return Ok(Checked::Gone);
    }
    let limit = app.config.mailbox_check_timeout;
    let (outcome, words) =
        match tokio::time::timeout(limit, test_connection(app, &tenant, &mailbox)).await {
            Ok(Ok((true, message))) => (MailboxCheckOutcome::Passed, message),
            Ok(Ok((false, message))) => (MailboxCheckOutcome::Failed, message),
            Ok(Err(TestError::Database(err))) => return Err(err),
            // Recorded as Test connection's result would be, had it got that far.
            Ok(Err(err)) => {
                let message = format!("The test could not run: {err}.");
                mailboxes::record_test(&app.db, &tenant, &mailbox.id, false, &message).await?;
                (MailboxCheckOutcome::Failed, message)
            }
            Err(_) => {
                let message = format!(
                    "No answer within {} seconds: the server took the connection but did not \
                 finish the test.",
                    limit.as_secs()
                );
                mailboxes::record_test(&app.db, &tenant, &mailbox.id, false, &message).await?;
                (MailboxCheckOutcome::TimedOut, message)
            }
        };
    app.metrics.mailbox_check(outcome);
    let passed = outcome == MailboxCheckOutcome::Passed;
    let before = mailbox_checks::get(&app.db, &tenant, &mailbox.id)
        .await?
        .unwrap_or_default();
    let result = if passed { Ok(()) } else { Err(words.as_str()) };
    let (after, transition) = before.after(result, app.clock.now());
    mailbox_checks::record(&app.db, &tenant, &mailbox.id, &after).await?;
    match transition {
        Some(Transition::Failing { .. }) => {
            tracing::info!(tenant = %tenant.as_str(), mailbox = %mailbox.id, "a mailbox is failing");
        }
        Some(Transition::Recovered { .. }) => {
            tracing::info!(tenant = %tenant.as_str(), mailbox = %mailbox.id, "a mailbox recovered");
        }
        None => {}
    }
    plan_alert(app, &tenant, &mailbox.id, &mailbox.name, &after, transition).await?;
    Ok(if passed {
        Checked::Passed
    } else {
        Checked::Failed
    })
}

/// Plans the alert this check calls for, once per failing spell (planned again on every
/// failing check, which is a no-op, so recipients listed later still hear of it) and once
/// for its end. Sent, like expiry alerts, by the alert job.
async fn plan_alert(
    app: &App,
    tenant: &TenantId,
    mailbox_id: &str,
    mailbox_name: &str,
    record: &CheckRecord,
    transition: Option<Transition>,
) -> Result<(), sqlx::Error> {
    let (kind, since) = match (transition, record.failing()) {
        (Some(Transition::Recovered { since }), _) => (RECOVERED_ALERT, since),
        (_, Some((since, _))) => (FAILING_ALERT, since),
        _ => return Ok(()),
    };
    if expiry_alerts::settings(&app.db, tenant)
        .await?
        .recipients
        .is_empty()
    {
        return Ok(());
    }
    let instance = since.unix_timestamp().to_string();
    let alert = PlannedAlert {
        kind,
        subject_id: mailbox_id,
        instance: &instance,
        threshold: ALERT_THRESHOLD,
        subject_name: mailbox_name,
        ends_on: None,
    };
    expiry_alerts::plan(&app.db, tenant, &alert, app.clock.now().unix_timestamp()).await?;
    Ok(())
}

/// Makes the mailbox's check due now, so an admin who just fixed its settings sees its
/// state within a minute rather than an interval.
pub async fn check_soon(app: &App, tenant: &TenantId, mailbox_id: &str) -> Result<(), sqlx::Error> {
    let now = app.clock.now().unix_timestamp();
    mailbox_checks::check_soon(&app.db, tenant, mailbox_id, now).await
}

/// The tenant's mailboxes that are Failing, or recovered within `RECOVERY_SHOWN`; of one
/// segment, or all.
pub async fn watched(
    app: &App,
    tenant: &TenantId,
    segment_id: Option<&str>,
) -> Result<Vec<WatchedMailbox>, sqlx::Error> {
    let recovered_after = (app.clock.now() - RECOVERY_SHOWN).unix_timestamp();
    mailbox_checks::watched(&app.db, tenant, segment_id, recovered_after).await
}

/// Whether `alert` is one of the mailbox checks' own.
pub fn is_check_alert(alert: &Alert) -> bool {
    alert.kind == FAILING_ALERT || alert.kind == RECOVERED_ALERT
}

/// When the failing spell an alert is about began.
fn spell_of(alert: &Alert) -> Option<OffsetDateTime> {
    let since: i64 = alert.instance.parse().ok()?;
    OffsetDateTime::from_unix_timestamp(since).ok()
}

/// One line about a mailbox check alert; `None` for other alerts.
pub fn alert_headline(alert: &Alert) -> Option<String> {
    let since = format_time(spell_of(alert)?);
    let name = &alert.subject_name;
    match alert.kind.as_str() {
        FAILING_ALERT => Some(format!("The mailbox {name} is failing since {since}")),
        RECOVERED_ALERT => Some(format!(
            "The mailbox {name} works again (it had failed since {since})"
        )),
        _ => None,
    }
}

/// Whether a mailbox check alert still stands when it is sent: a failing one while the
/// same spell lasts; a recovery when it ended that spell and the failure was told (nobody
/// needs telling that something they never heard of works again).
pub async fn alert_still_applies(app: &App, alert: &Alert) -> Result<bool, sqlx::Error> {
    let tenant = alert.tenant();
    let enabled = mailboxes::get(&app.db, &tenant, &alert.subject_id)
        .await?
        .is_some_and(|mailbox| mailbox.enabled);
    let Some(record) = mailbox_checks::get(&app.db, &tenant, &alert.subject_id).await? else {
        return Ok(false);
    };
    let spell = spell_of(alert);
    Ok(enabled
        && match alert.kind.as_str() {
            FAILING_ALERT => record.failing().map(|(since, _)| since) == spell,
            RECOVERED_ALERT => {
                record.recovered.map(|(_, from)| from) == spell
                    && mailbox_checks::failing_alert_sent(
                        &app.db,
                        &tenant,
                        FAILING_ALERT,
                        &alert.subject_id,
                        &alert.instance,
                    )
                    .await?
            }
            _ => false,
        })
}

/// The text of a mailbox check alert, as it stands when sent; `None` for other alerts.
pub async fn alert_body(
    app: &App,
    slug: &str,
    tenant_name: &str,
    alert: &Alert,
) -> Result<Option<String>, sqlx::Error> {
    let Some(headline) = alert_headline(alert) else {
        return Ok(None);
    };
    let record = mailbox_checks::get(&app.db, &alert.tenant(), &alert.subject_id)
        .await?
        .unwrap_or_default();
    let page = app
        .config
        .public_url(&format!("/t/{slug}/mailboxes/{}", alert.subject_id));
    let every = app
        .config
        .mailbox_check_interval
        .map_or_else(String::new, |interval| {
            format!(" every {} minutes", interval.as_secs() / 60)
        });
    let what_happened = match (alert.kind.as_str(), &record) {
        (
            FAILING_ALERT,
            CheckRecord {
                last_failure_at: Some(at),
                last_failure: Some(words),
                ..
            },
        ) => format!(
            "Its latest test, at {}: {words}\n\nOpen it, fix what is named (a password changed \
             on the server, a permission removed in Exchange, SMTP AUTH turned off, a \
             certificate revoked in Azure), then choose Test connection. Portico tests it{every} \
             and tells you once it works again.",
            format_time(*at)
        ),
        (
            _,
            CheckRecord {
                last_success_at: Some(at),
                ..
            },
        ) => format!("Its test at {} passed.", format_time(*at)),
        _ => String::new(),
    };
    Ok(Some(format!(
        "{headline}.\n\nIn {tenant_name}: {page}\n{what_happened}\n\n\
         You receive this because an admin of {tenant_name} listed you for Portico's expiry \
         alerts.\n"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_keeps_its_place_in_the_interval() {
        // Due at 100 every 60 seconds: run at 100 or at 159, next at 160.
        assert_eq!(next_check_at(100, 100, 60), 160);
        assert_eq!(next_check_at(100, 159, 60), 160);
        assert_eq!(next_check_at(100, 160, 60), 220);
        // After a long stop, the next free place, not a burst of missed ones.
        assert_eq!(next_check_at(100, 1_000, 60), 1_060);
        // Found early (a clock behind another instance's), still one interval on.
        assert_eq!(next_check_at(100, 90, 60), 160);
    }
}
