-- An expiry alert that keeps failing is given up after 7 days: it stays listed with why
-- (status 'given_up', when in given_up_at) and is never tried again. SQLite cannot change a
-- CHECK constraint in place, so the table is made again with the rows it had.

CREATE TABLE expiry_alerts_given_up (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- client_secret, certificate or oauth_connection, and the credential's or connection's id.
    kind          TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    -- Which secret, certificate or consent: a renewed one is alerted about afresh.
    instance      TEXT NOT NULL,
    threshold     TEXT NOT NULL
        CHECK (threshold IN ('30_days', '7_days', '1_day', 'expired', 'failing')),
    subject_name  TEXT NOT NULL,
    -- YYYY-MM-DD; NULL for what already fails.
    ends_on       TEXT,
    status        TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'given_up')),
    attempts      BIGINT NOT NULL,
    -- No instance tries to send before this time: a claim's lease, or a retry's backoff.
    not_before    BIGINT NOT NULL,
    -- The lease of the instance sending it now; only its holder may record the outcome.
    claimed_by    TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    sent_at       BIGINT,
    given_up_at   BIGINT,
    UNIQUE (tenant_id, kind, subject_id, instance, threshold)
);
INSERT INTO expiry_alerts_given_up (id, tenant_id, kind, subject_id, instance, threshold,
    subject_name, ends_on, status, attempts, not_before, claimed_by, last_error, created_at,
    sent_at)
SELECT id, tenant_id, kind, subject_id, instance, threshold, subject_name, ends_on, status,
    attempts, not_before, claimed_by, last_error, created_at, sent_at FROM expiry_alerts;
DROP TABLE expiry_alerts;
ALTER TABLE expiry_alerts_given_up RENAME TO expiry_alerts;
CREATE INDEX expiry_alerts_due ON expiry_alerts (status, not_before);
CREATE INDEX expiry_alerts_by_tenant ON expiry_alerts (tenant_id, created_at);
