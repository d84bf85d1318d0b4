-- IMAP, POP3 and SMTP mailboxes may sign in app-only with a Graph credential's Azure app
-- (client credentials for Exchange Online, XOAUTH2 as the mailbox address) instead of a
-- password or a delegated OAuth connection. No cascade: a credential in use cannot be
-- deleted.
ALTER TABLE mailboxes
    ADD COLUMN app_credential_id TEXT,
    ADD FOREIGN KEY (tenant_id, app_credential_id) REFERENCES graph_credentials (tenant_id, id);
CREATE INDEX mailboxes_by_app_credential ON mailboxes (app_credential_id);
