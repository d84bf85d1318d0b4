//! When each background job may next run, shared by every instance on the database.

use super::Db;

/// Claims the job's run that is due at `now`, and sets its next one to `next_run_at`: true
/// for exactly one of several instances asking at once, and false for all of them until
/// `next_run_at` has come. A compare-and-set that reads the same on both backends.
pub async fn claim(db: &Db, job: &str, now: i64, next_run_at: i64) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "INSERT INTO job_runs (job, next_run_at) VALUES ($1, $2) \
         ON CONFLICT (job) DO UPDATE SET next_run_at = excluded.next_run_at \
         WHERE job_runs.next_run_at <= $3",
    )
    .bind(job)
    .bind(next_run_at)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(claimed.rows_affected() == 1)
}
