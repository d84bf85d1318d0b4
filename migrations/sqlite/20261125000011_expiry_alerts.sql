-- Expiry alerts: who a tenant's admins want told, and every alert due, one row each, so the
-- scheduler survives restarts and several instances send each alert once.

CREATE TABLE expiry_alert_settings (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Email addresses, one a line.
    recipients         TEXT NOT NULL,
    -- The tenant's outgoing SMTP mailbox to send through; NULL: the deployment's relay
    -- (PORTICO_SMTP_URL).
    sender_mailbox_id  TEXT REFERENCES mailboxes (id) ON DELETE SET NULL,
    version            BIGINT NOT NULL DEFAULT 1,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE expiry_alerts (
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
    status        TEXT NOT NULL CHECK (status IN ('pending', 'sent')),
    attempts      BIGINT NOT NULL,
    -- No instance tries to send before this time: a claim's lease, or a retry's backoff.
    not_before    BIGINT NOT NULL,
    -- The lease of the instance sending it now; only its holder may record the outcome.
    claimed_by    TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    sent_at       BIGINT,
    UNIQUE (tenant_id, kind, subject_id, instance, threshold)
);
CREATE INDEX expiry_alerts_due ON expiry_alerts (status, not_before);
CREATE INDEX expiry_alerts_by_tenant ON expiry_alerts (tenant_id, created_at);
