-- Segments (business units such as Sales or Support) and the mailboxes that feed them.

CREATE TABLE segments (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
-- "Sales" and "sales" are one segment.
CREATE UNIQUE INDEX segments_by_name ON segments (tenant_id, LOWER(name));

CREATE TABLE mailboxes (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- No cascade: a segment with mailboxes cannot be deleted until they move or go.
    segment_id           TEXT NOT NULL REFERENCES segments (id),
    name                 TEXT NOT NULL,
    email                TEXT NOT NULL,
    direction            TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing', 'both')),
    protocol             TEXT NOT NULL CHECK (protocol IN ('graph', 'imap', 'pop3', 'smtp')),
    -- Graph mailboxes only; no cascade: a credential in use cannot be deleted.
    graph_credential_id  TEXT REFERENCES graph_credentials (id),
    -- IMAP, POP3 and SMTP mailboxes only.
    host                 TEXT,
    port                 BIGINT,
    security             TEXT,
    username             TEXT,
    -- Sealed with the deployment key (see crypto.rs); never stored in plaintext.
    password_sealed      TEXT,
    enabled              BIGINT NOT NULL,
    last_test_at         BIGINT,
    last_test_ok         BIGINT,
    last_test_summary    TEXT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    CHECK ((protocol = 'graph') = (graph_credential_id IS NOT NULL)),
    CHECK ((protocol = 'graph') = (host IS NULL))
);
CREATE INDEX mailboxes_by_segment ON mailboxes (tenant_id, segment_id, name);
CREATE INDEX mailboxes_by_credential ON mailboxes (graph_credential_id);
