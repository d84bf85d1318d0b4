-- Tenancy in the schema: every reference from one tenant's row to another row of a tenant
-- goes through (tenant_id, id), so the database itself refuses a row that points at another
-- tenant's, whatever the code does. Each referenced table gets (tenant_id, id) as a key.
--
-- SQLite changes a foreign key only by rebuilding the table. As in migration 10, deferred
-- foreign keys let a referenced table be dropped and filled again under the same ids
-- before the commit checks them.
PRAGMA defer_foreign_keys = ON;

CREATE UNIQUE INDEX users_tenant_key ON users (tenant_id, id);
CREATE UNIQUE INDEX segments_tenant_key ON segments (tenant_id, id);
CREATE UNIQUE INDEX graph_credentials_tenant_key ON graph_credentials (tenant_id, id);
CREATE UNIQUE INDEX oauth_connections_tenant_key ON oauth_connections (tenant_id, id);
-- Dropped with this mailboxes table below, and made again on the new one.
CREATE UNIQUE INDEX mailboxes_tenant_key ON mailboxes (tenant_id, id);

-- First the alert settings, so that dropping mailboxes below no longer clears their sender.
-- SQLite's ON DELETE SET NULL cannot name a column and would clear tenant_id too: the
-- trigger mailboxes_clear_alert_sender clears the sender instead.
CREATE TABLE expiry_alert_settings_before_tenant_keys AS SELECT * FROM expiry_alert_settings;
DROP TABLE expiry_alert_settings;
CREATE TABLE expiry_alert_settings (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Email addresses, one a line.
    recipients         TEXT NOT NULL,
    -- The tenant's outgoing SMTP mailbox to send through; NULL: the deployment's relay
    -- (PORTICO_SMTP_URL).
    sender_mailbox_id  TEXT,
    version            BIGINT NOT NULL DEFAULT 1,
    updated_at         BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, sender_mailbox_id) REFERENCES mailboxes (tenant_id, id)
);
INSERT INTO expiry_alert_settings (tenant_id, recipients, sender_mailbox_id, version, updated_at)
SELECT tenant_id, recipients, sender_mailbox_id, version, updated_at
FROM expiry_alert_settings_before_tenant_keys;
DROP TABLE expiry_alert_settings_before_tenant_keys;

CREATE TABLE mailboxes_before_tenant_keys AS SELECT * FROM mailboxes;
DROP TABLE mailboxes;
CREATE TABLE mailboxes (
    id                   TEXT PRIMARY KEY,
    tenant_id            TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    segment_id           TEXT NOT NULL,
    name                 TEXT NOT NULL,
    email                TEXT NOT NULL,
    direction            TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing', 'both')),
    protocol             TEXT NOT NULL CHECK (protocol IN ('graph', 'imap', 'pop3', 'smtp')),
    -- Graph mailboxes only.
    graph_credential_id  TEXT,
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
    -- IMAP, POP3 and SMTP mailboxes that sign in with XOAUTH2 instead of a password.
    oauth_connection_id  TEXT,
    version              BIGINT NOT NULL DEFAULT 1,
    -- No cascades: a segment with mailboxes, or a credential or connection in use, cannot be
    -- deleted until the mailboxes move or go.
    FOREIGN KEY (tenant_id, segment_id) REFERENCES segments (tenant_id, id),
    FOREIGN KEY (tenant_id, graph_credential_id) REFERENCES graph_credentials (tenant_id, id),
    FOREIGN KEY (tenant_id, oauth_connection_id) REFERENCES oauth_connections (tenant_id, id),
    CHECK ((protocol = 'graph') = (graph_credential_id IS NOT NULL)),
    CHECK ((protocol = 'graph') = (host IS NULL))
);
CREATE UNIQUE INDEX mailboxes_tenant_key ON mailboxes (tenant_id, id);
INSERT INTO mailboxes (id, tenant_id, segment_id, name, email, direction, protocol,
    graph_credential_id, host, port, security, username, password_sealed, enabled,
    last_test_at, last_test_ok, last_test_summary, created_at, updated_at,
    oauth_connection_id, version)
SELECT id, tenant_id, segment_id, name, email, direction, protocol, graph_credential_id, host,
    port, security, username, password_sealed, enabled, last_test_at, last_test_ok,
    last_test_summary, created_at, updated_at, oauth_connection_id, version
FROM mailboxes_before_tenant_keys;
DROP TABLE mailboxes_before_tenant_keys;
CREATE INDEX mailboxes_by_segment_name ON mailboxes (tenant_id, segment_id, LOWER(name), id);
CREATE INDEX mailboxes_by_credential ON mailboxes (graph_credential_id);
CREATE INDEX mailboxes_by_oauth_connection ON mailboxes (oauth_connection_id);

-- What PostgreSQL's ON DELETE SET NULL (sender_mailbox_id) does: alerts of a tenant whose
-- sender mailbox goes are sent through the deployment's relay.
CREATE TRIGGER mailboxes_clear_alert_sender BEFORE DELETE ON mailboxes
BEGIN
    UPDATE expiry_alert_settings SET sender_mailbox_id = NULL
    WHERE tenant_id = OLD.tenant_id AND sender_mailbox_id = OLD.id;
END;

CREATE TABLE microsoft_identities_before_tenant_keys AS SELECT * FROM microsoft_identities;
DROP TABLE microsoft_identities;
-- A Microsoft identity is the pair (tid, oid): never an email, never `sub`.
CREATE TABLE microsoft_identities (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    tid         TEXT NOT NULL,
    oid         TEXT NOT NULL,
    username    TEXT NOT NULL,
    linked_at   BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE,
    UNIQUE (tenant_id, tid, oid),
    UNIQUE (user_id)
);
INSERT INTO microsoft_identities (id, tenant_id, user_id, tid, oid, username, linked_at)
SELECT id, tenant_id, user_id, tid, oid, username, linked_at
FROM microsoft_identities_before_tenant_keys;
DROP TABLE microsoft_identities_before_tenant_keys;

CREATE TABLE identity_link_invites_before_tenant_keys AS SELECT * FROM identity_link_invites;
DROP TABLE identity_link_invites;
-- One-time links an admin gives a user to bind the Microsoft account they sign in with.
CREATE TABLE identity_link_invites (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
INSERT INTO identity_link_invites (token_hash, tenant_id, user_id, expires_at)
SELECT token_hash, tenant_id, user_id, expires_at FROM identity_link_invites_before_tenant_keys;
DROP TABLE identity_link_invites_before_tenant_keys;

-- One table for the certificates Portico generates, whoever owns them: a Graph credential,
-- or the tenant's Sign in with Microsoft settings (keyed by the tenant). Exactly one owner
-- column is set. The `current` certificate signs the client assertions; a `next` one, made
-- by "Renew certificate", waits until the admin has uploaded it to Azure and switches. The
-- certificate is public; its private key is sealed (see crypto.rs) to the owner's kind, the
-- tenant and the certificate's id, so rows keep their sealed keys as they move here.
CREATE TABLE certificates (
    id                           TEXT PRIMARY KEY,
    tenant_id                    TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    graph_credential_id          TEXT,
    microsoft_sign_in_tenant_id  TEXT CHECK (microsoft_sign_in_tenant_id = tenant_id),
    slot                         TEXT NOT NULL CHECK (slot IN ('current', 'next')),
    private_key_sealed           TEXT NOT NULL,
    certificate_pem              TEXT NOT NULL,
    -- SHA-1 of the certificate in hex capitals: the Thumbprint the Azure portal lists.
    thumbprint                   TEXT NOT NULL,
    not_before                   BIGINT NOT NULL,
    not_after                    BIGINT NOT NULL,
    created_at                   BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, graph_credential_id) REFERENCES graph_credentials (tenant_id, id)
        ON DELETE CASCADE,
    FOREIGN KEY (microsoft_sign_in_tenant_id) REFERENCES microsoft_sign_in (tenant_id)
        ON DELETE CASCADE,
    CHECK ((graph_credential_id IS NULL) <> (microsoft_sign_in_tenant_id IS NULL)),
    UNIQUE (tenant_id, graph_credential_id, slot),
    UNIQUE (microsoft_sign_in_tenant_id, slot)
);
CREATE INDEX certificates_by_expiry ON certificates (tenant_id, not_after);

INSERT INTO certificates (id, tenant_id, graph_credential_id, slot, private_key_sealed,
    certificate_pem, thumbprint, not_before, not_after, created_at)
SELECT id, tenant_id, credential_id, slot, private_key_sealed, certificate_pem, thumbprint,
    not_before, not_after, created_at
FROM graph_credential_certificates;
INSERT INTO certificates (id, tenant_id, microsoft_sign_in_tenant_id, slot, private_key_sealed,
    certificate_pem, thumbprint, not_before, not_after, created_at)
SELECT id, tenant_id, tenant_id, slot, private_key_sealed, certificate_pem, thumbprint,
    not_before, not_after, created_at
FROM microsoft_sign_in_certificates;
DROP TABLE graph_credential_certificates;
DROP TABLE microsoft_sign_in_certificates;
