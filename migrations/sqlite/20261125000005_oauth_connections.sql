-- Delegated OAuth connections: a mailbox user's consent, kept as a sealed refresh token and
-- renewed in the background. `/oauth/callback` completes every tenant's flows.

CREATE TABLE oauth_connections (
    id                      TEXT PRIMARY KEY,
    tenant_id               TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    client_id               TEXT NOT NULL,
    -- A directory GUID or domain, or common / organizations / consumers.
    directory               TEXT NOT NULL,
    cloud                   TEXT NOT NULL,
    -- Sealed with the deployment key (see crypto.rs); NULL for a public client.
    client_secret_sealed    TEXT,
    secret_replaced_at      BIGINT,
    purpose                 TEXT NOT NULL,
    -- Set only when the admin overrides Microsoft's endpoints (Advanced).
    authorization_url       TEXT,
    token_url               TEXT,
    scope                   TEXT NOT NULL,
    status                  TEXT NOT NULL
        CHECK (status IN ('not_authenticated', 'authenticated', 'needs_reauthentication')),
    status_reason           TEXT,
    authenticated_as        TEXT,
    authenticated_at        BIGINT,
    refresh_token_sealed    TEXT,
    access_token_sealed     TEXT,
    access_token_expires_at BIGINT,
    renewed_at              BIGINT,
    renewal_failures        BIGINT NOT NULL,
    -- A renewer's lease: no instance starts a renewal before this time, and only the
    -- holder of `renewal_lease` may write what its renewal found.
    renewal_not_before      BIGINT,
    renewal_lease           TEXT,
    created_at              BIGINT NOT NULL,
    updated_at              BIGINT NOT NULL
);
CREATE UNIQUE INDEX oauth_connections_by_name ON oauth_connections (tenant_id, LOWER(name));
CREATE INDEX oauth_connections_due ON oauth_connections (status, access_token_expires_at);
