-- Every enabled mailbox is tested in the background (PORTICO_MAILBOX_CHECK_INTERVAL): when
-- it is next due, and what its checks found. A row is made by the first run that sees the
-- mailbox, its first check placed at random within one interval so checks spread out; a
-- check claims its mailbox by moving next_check_at one interval on, so of several instances
-- exactly one checks it each interval. Routine results live here, not in the audit log.
CREATE TABLE mailbox_checks (
    tenant_id             TEXT NOT NULL,
    mailbox_id            TEXT NOT NULL,
    next_check_at         BIGINT NOT NULL,
    last_checked_at       BIGINT,
    last_success_at       BIGINT,
    last_failure_at       BIGINT,
    -- The step that failed and what the server said, as Test connection words it.
    last_failure          TEXT,
    consecutive_failures  BIGINT NOT NULL DEFAULT 0,
    -- When the current run of failures began; NULL after a success.
    failures_since        BIGINT,
    -- The end of the latest failing spell: when it recovered, and since when it had failed.
    recovered_at          BIGINT,
    recovered_from        BIGINT,
    PRIMARY KEY (tenant_id, mailbox_id),
    FOREIGN KEY (tenant_id, mailbox_id) REFERENCES mailboxes (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX mailbox_checks_due ON mailbox_checks (next_check_at);
CREATE INDEX mailbox_checks_failing ON mailbox_checks (tenant_id, failures_since);
