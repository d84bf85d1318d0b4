-- Optimistic concurrency for everything admins edit: each row counts its saves. An edit form
-- carries the version it showed, and a save applies only while that is still the stored
-- one, so two admins editing at once never lose a change silently. Rows start at 1; a form
-- without a version counts as 0 and matches no stored row.
ALTER TABLE graph_credentials ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE mailboxes ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE segments ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE oauth_connections ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE microsoft_sign_in ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
