-- Microsoft Graph credentials: one Azure app each, shared by the tenant's Graph mailboxes.

CREATE TABLE graph_credentials (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    client_id             TEXT NOT NULL,
    -- As the admin typed it (a GUID or a verified domain), and the GUID it resolved to.
    directory             TEXT NOT NULL,
    directory_id          TEXT NOT NULL,
    cloud                 TEXT NOT NULL,
    -- Sealed with the deployment key (see crypto.rs); never stored in plaintext.
    client_secret_sealed  TEXT NOT NULL,
    -- YYYY-MM-DD, as Azure shows it.
    secret_expires_on     TEXT NOT NULL,
    secret_replaced_at    BIGINT NOT NULL,
    last_test_at          BIGINT,
    last_test_ok          BIGINT,
    last_test_summary     TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX graph_credentials_by_tenant_expiry ON graph_credentials (tenant_id, secret_expires_on);
