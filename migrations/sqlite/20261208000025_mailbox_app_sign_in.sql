-- IMAP, POP3 and SMTP mailboxes may sign in app-only with a Graph credential's Azure app
-- (client credentials for Exchange Online, XOAUTH2 as the mailbox address) instead of a
-- password or a delegated OAuth connection. No cascade: a credential in use cannot be
-- deleted.
ALTER TABLE mailboxes ADD COLUMN app_credential_id TEXT REFERENCES graph_credentials (id);
CREATE INDEX mailboxes_by_app_credential ON mailboxes (app_credential_id);

-- SQLite adds no table constraint to an existing table, so the composite key PostgreSQL
-- has, (tenant_id, app_credential_id) -> graph_credentials (tenant_id, id), is kept by
-- these triggers: a mailbox never signs in with another tenant's app.
CREATE TRIGGER mailboxes_app_credential_of_tenant_insert
BEFORE INSERT ON mailboxes
WHEN NEW.app_credential_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM graph_credentials c
    WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.app_credential_id)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: app_credential_id of another tenant');
END;
CREATE TRIGGER mailboxes_app_credential_of_tenant_update
BEFORE UPDATE OF app_credential_id, tenant_id ON mailboxes
WHEN NEW.app_credential_id IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM graph_credentials c
    WHERE c.tenant_id = NEW.tenant_id AND c.id = NEW.app_credential_id)
BEGIN
    SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed: app_credential_id of another tenant');
END;
