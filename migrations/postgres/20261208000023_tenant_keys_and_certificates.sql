-- Tenancy in the schema: every reference from one tenant's row to another row of a tenant
-- goes through (tenant_id, id), so the database itself refuses a row that points at another
-- tenant's, whatever the code does. Each referenced table gets (tenant_id, id) as a key.
CREATE UNIQUE INDEX users_tenant_key ON users (tenant_id, id);
CREATE UNIQUE INDEX segments_tenant_key ON segments (tenant_id, id);
CREATE UNIQUE INDEX graph_credentials_tenant_key ON graph_credentials (tenant_id, id);
CREATE UNIQUE INDEX oauth_connections_tenant_key ON oauth_connections (tenant_id, id);
CREATE UNIQUE INDEX mailboxes_tenant_key ON mailboxes (tenant_id, id);

-- The delete rules stay: no cascade from segments, credentials and connections in use.
ALTER TABLE mailboxes
    DROP CONSTRAINT mailboxes_segment_id_fkey,
    DROP CONSTRAINT mailboxes_graph_credential_id_fkey,
    DROP CONSTRAINT mailboxes_oauth_connection_id_fkey,
    ADD FOREIGN KEY (tenant_id, segment_id) REFERENCES segments (tenant_id, id),
    ADD FOREIGN KEY (tenant_id, graph_credential_id) REFERENCES graph_credentials (tenant_id, id),
    ADD FOREIGN KEY (tenant_id, oauth_connection_id) REFERENCES oauth_connections (tenant_id, id);

-- Deleting the sender mailbox clears the sender only (PostgreSQL 15's column list): a plain
-- SET NULL would clear tenant_id too.
ALTER TABLE expiry_alert_settings
    DROP CONSTRAINT expiry_alert_settings_sender_mailbox_id_fkey,
    ADD FOREIGN KEY (tenant_id, sender_mailbox_id) REFERENCES mailboxes (tenant_id, id)
        ON DELETE SET NULL (sender_mailbox_id);

ALTER TABLE microsoft_identities
    DROP CONSTRAINT microsoft_identities_user_id_fkey,
    ADD FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE identity_link_invites
    DROP CONSTRAINT identity_link_invites_user_id_fkey,
    ADD FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE;

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
