-- When each background job may next run, whichever instance runs it: an instance runs a
-- job only after moving this time forward itself, so several instances run it once.
CREATE TABLE job_runs (
    job          TEXT PRIMARY KEY,
    next_run_at  BIGINT NOT NULL
);
