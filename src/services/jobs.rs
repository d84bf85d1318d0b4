//! Background jobs of a serving instance. Each runs on its own interval and stops only
//! between runs, so a shutdown never leaves a renewal half done. With several instances on
//! one database, each interval's run happens on one of them (see `run_if_due`).

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{App, AppState};
use crate::metrics::Job;
use crate::store::job_runs;
use crate::store::sessions::DbSessionStore;

/// Every background job.
const JOBS: [Job; 5] = [
    Job::SessionCleanup,
    Job::OAuthRenewal,
    Job::ExpiryAlerts,
    Job::AuditCleanup,
    Job::MailboxChecks,
];

/// How often a job runs, across all instances.
fn interval(job: Job) -> Duration {
    match job {
        Job::SessionCleanup => Duration::from_secs(15 * 60),
        // Each mailbox is checked once per PORTICO_MAILBOX_CHECK_INTERVAL; every minute the
        // job looks for those due.
        Job::OAuthRenewal | Job::ExpiryAlerts | Job::MailboxChecks => Duration::from_secs(60),
        Job::AuditCleanup => Duration::from_secs(24 * 60 * 60),
    }
}

/// A run claims the job until this long before its next interval ends, so that the next
/// tick of whichever instance comes first finds it due again.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);

async fn work(app: &App, job: Job) -> Result<(), String> {
    match job {
        Job::SessionCleanup => DbSessionStore::new(app.db.clone())
            .delete_expired()
            .await
            .map(drop)
            .map_err(|err| err.to_string()),
        Job::OAuthRenewal => crate::services::oauth_connections::renew_due(app)
            .await
            .map(drop)
            .map_err(|err| err.to_string()),
        Job::ExpiryAlerts => crate::services::alerts::run(app)
            .await
            .map(drop)
            .map_err(|err| err.to_string()),
        Job::AuditCleanup => delete_old_audit_entries(app)
            .await
            .map_err(|err| err.to_string()),
        Job::MailboxChecks => crate::services::mailbox_checks::run(app)
            .await
            .map(drop)
            .map_err(|err| err.to_string()),
    }
}

/// Deletes audit entries older than PORTICO_AUDIT_RETENTION_DAYS, so the log does not grow
/// without end (every failed sign-in writes to it). The throttle reads only its last quarter
/// hour, which a retention of at least a day never touches.
async fn delete_old_audit_entries(app: &App) -> Result<(), sqlx::Error> {
    let retention = i64::from(app.config.audit_retention_days) * 24 * 60 * 60;
    let before = app.clock.now().unix_timestamp().saturating_sub(retention);
    let deleted = crate::store::audit::delete_older_than(&app.db, before).await?;
    tracing::info!(deleted, "old audit entries deleted");
    Ok(())
}

/// Runs `job` here, unless another instance on the database already ran it within its
/// interval; true when it ran (failed or not: failures are logged and counted).
pub async fn run_if_due(app: &App, job: Job) -> Result<bool, sqlx::Error> {
    let now = app.clock.now().unix_timestamp();
    let claimed_for = interval(job).saturating_sub(CLAIM_MARGIN).as_secs();
    let next_run_at = now.saturating_add(i64::try_from(claimed_for).unwrap_or(i64::MAX));
    if !job_runs::claim(&app.db, job.label(), now, next_run_at).await? {
        return Ok(false);
    }
    let result = work(app, job).await;
    if let Err(err) = &result {
        tracing::warn!(job = job.label(), error = %err, "background job failed");
    }
    app.metrics.job_run(job, result.is_err());
    Ok(true)
}

/// Starts every background job (mailbox checks only when PORTICO_MAILBOX_CHECK_INTERVAL is
/// not 0); each ends at its next safe point after `stop` is cancelled.
pub fn spawn(state: &AppState, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    let checks_on = state.config.mailbox_check_interval.is_some();
    JOBS.into_iter()
        .filter(|job| checks_on || !matches!(job, Job::MailboxChecks))
        .map(|job| spawn_job(state, stop, job))
        .collect()
}

fn spawn_job(state: &AppState, stop: &CancellationToken, job: Job) -> JoinHandle<()> {
    let (state, stop) = (state.clone(), stop.clone());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval(job));
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            if let Err(err) = run_if_due(&state, job).await {
                tracing::warn!(job = job.label(), error = %err, "background job not started");
            }
        }
        tracing::debug!(job = job.label(), "background job stopped");
    })
}
