//! Background jobs of a serving instance. Each runs on its own interval and stops only
//! between runs, so a shutdown never leaves a renewal half done.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::AppState;
use crate::metrics::Job;
use crate::store::sessions::DbSessionStore;

/// Starts every background job; each ends at its next safe point after `stop` is cancelled.
pub fn spawn(state: &AppState, stop: &CancellationToken) -> Vec<JoinHandle<()>> {
    vec![
        spawn_job(
            state,
            stop,
            Job::SessionCleanup,
            Duration::from_secs(15 * 60),
            |state| async move {
                DbSessionStore::new(state.db.clone())
                    .delete_expired()
                    .await
                    .map(drop)
                    .map_err(|err| err.to_string())
            },
        ),
        spawn_job(
            state,
            stop,
            Job::OAuthRenewal,
            Duration::from_secs(60),
            |state| async move {
                crate::connections::renew_due(&state)
                    .await
                    .map(drop)
                    .map_err(|err| err.to_string())
            },
        ),
    ]
}

fn spawn_job<F, Fut>(
    state: &AppState,
    stop: &CancellationToken,
    job: Job,
    every: Duration,
    run: F,
) -> JoinHandle<()>
where
    F: Fn(AppState) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let (state, stop) = (state.clone(), stop.clone());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let result = run(state.clone()).await;
            if let Err(err) = &result {
                tracing::warn!(job = job.label(), error = %err, "background job failed");
            }
            state.metrics.job_run(job, result.is_err());
        }
        tracing::debug!(job = job.label(), "background job stopped");
    })
}
