-- Sign in with Microsoft: one Azure app per tenant, and the Microsoft identities linked
-- to Portico users. Flags are 0/1 integers in both backends.

CREATE TABLE microsoft_sign_in (
    tenant_id             TEXT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    client_id             TEXT NOT NULL,
    -- As the admin typed it (a GUID or a verified domain); NULL admits any Microsoft account.
    directory             TEXT,
    -- The directory GUID that `directory` resolved to.
    directory_id          TEXT,
    cloud                 TEXT NOT NULL,
    -- Sealed with the deployment key (see crypto.rs); never stored in plaintext.
    client_secret_sealed  TEXT,
    secret_replaced_at    BIGINT,
    enabled               BIGINT NOT NULL,
    auto_create_agents    BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
);

-- A Microsoft identity is the pair (tid, oid): never an email, never `sub`.
CREATE TABLE microsoft_identities (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tid         TEXT NOT NULL,
    oid         TEXT NOT NULL,
    username    TEXT NOT NULL,
    linked_at   BIGINT NOT NULL,
    UNIQUE (tenant_id, tid, oid),
    UNIQUE (user_id)
);

-- One-time links an admin gives a user to bind the Microsoft account they sign in with.
CREATE TABLE identity_link_invites (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at  BIGINT NOT NULL
);
