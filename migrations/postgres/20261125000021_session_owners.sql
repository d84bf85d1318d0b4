-- Whose session a row is (NULL until it signs in), so a password reset, a Microsoft
-- unlink or a user's own password change can end that user's other sessions at once.
ALTER TABLE sessions ADD COLUMN tenant_id TEXT;
ALTER TABLE sessions ADD COLUMN user_id TEXT;
UPDATE sessions SET tenant_id = record::jsonb #>> '{signed_in,tenant_id}',
    user_id = record::jsonb #>> '{signed_in,user_id}';
CREATE INDEX sessions_by_user ON sessions (tenant_id, user_id);
