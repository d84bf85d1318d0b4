-- Certificate credentials: a Graph credential proves itself to Microsoft with a client
-- secret (as before) or with a certificate whose key pair Portico generated and whose
-- private key it keeps sealed. A certificate credential has no client secret, so the
-- secret's columns become optional.
--
-- SQLite changes a column only by rebuilding the table, and sqlx runs this file in a
-- transaction, where `PRAGMA foreign_keys = OFF` does nothing. Deferred foreign keys do the
-- job instead: dropping the table leaves mailboxes pointing at nothing until the rows are
-- copied back under the same ids, before the commit checks them.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE graph_credentials_before_certificates AS SELECT * FROM graph_credentials;
DROP TABLE graph_credentials;

CREATE TABLE graph_credentials (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    -- As the admin typed it (a GUID or a verified domain), and the GUID it resolved to.
    directory             TEXT NOT NULL,
    directory_id          TEXT NOT NULL,
    cloud                 TEXT NOT NULL,
    auth_method           TEXT NOT NULL DEFAULT 'client_secret'
        CHECK (auth_method IN ('client_secret', 'certificate')),
    -- Client secrets only. Sealed with the deployment key (see crypto.rs).
    client_secret_sealed  TEXT,
    -- YYYY-MM-DD, as Azure shows it.
    secret_expires_on     TEXT,
    secret_replaced_at    BIGINT,
    last_test_at          BIGINT,
    last_test_ok          BIGINT,
    last_test_summary     TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    version               BIGINT NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name),
    CHECK (auth_method = 'certificate'
        OR (client_secret_sealed IS NOT NULL AND secret_expires_on IS NOT NULL
            AND secret_replaced_at IS NOT NULL))
);
INSERT INTO graph_credentials (id, tenant_id, name, client_id, directory, directory_id, cloud,
    auth_method, client_secret_sealed, secret_expires_on, secret_replaced_at, last_test_at,
    last_test_ok, last_test_summary, created_at, updated_at, version)
SELECT id, tenant_id, name, client_id, directory, directory_id, cloud, 'client_secret',
    client_secret_sealed, secret_expires_on, secret_replaced_at, last_test_at, last_test_ok,
    last_test_summary, created_at, updated_at, version
FROM graph_credentials_before_certificates;
DROP TABLE graph_credentials_before_certificates;
CREATE INDEX graph_credentials_by_tenant_expiry ON graph_credentials (tenant_id, secret_expires_on);

-- A certificate credential's certificates: the `current` one signs Portico's client
-- assertions; a `next` one, made by "Renew certificate", waits until the admin has uploaded
-- it to Azure and switches. The certificate is public; its private key is sealed.
CREATE TABLE graph_credential_certificates (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    credential_id       TEXT NOT NULL REFERENCES graph_credentials (id) ON DELETE CASCADE,
    slot                TEXT NOT NULL CHECK (slot IN ('current', 'next')),
    private_key_sealed  TEXT NOT NULL,
    certificate_pem     TEXT NOT NULL,
    -- SHA-1 of the certificate in hex capitals: the Thumbprint the Azure portal lists.
    thumbprint          TEXT NOT NULL,
    not_before          BIGINT NOT NULL,
    not_after           BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    UNIQUE (credential_id, slot)
);
CREATE INDEX graph_credential_certificates_by_expiry
    ON graph_credential_certificates (tenant_id, not_after);
