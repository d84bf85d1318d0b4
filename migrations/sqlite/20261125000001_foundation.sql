-- Tenants, their users, the audit log and browser sessions.
-- Times are Unix seconds (UTC); ids are UUIDv7 text; states are words, not booleans,
-- so both backends read them the same way.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email          TEXT NOT NULL,
    display_name   TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    status         TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    password_hash  TEXT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE audit_events (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    actor_user_id  TEXT,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    detail         TEXT NOT NULL,
    ip             TEXT,
    created_at     BIGINT NOT NULL
);
CREATE INDEX audit_events_by_tenant_time ON audit_events (tenant_id, created_at);
-- Sign-in throttling counts recent failures per account and per client address.
CREATE INDEX audit_events_by_action_target ON audit_events (tenant_id, action, target, created_at);
CREATE INDEX audit_events_by_action_ip ON audit_events (action, ip, created_at);

-- Sessions are keyed by the SHA-256 of their id: a copy of the database opens no session.
CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    record      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
