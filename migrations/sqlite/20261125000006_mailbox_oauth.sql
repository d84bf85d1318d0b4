-- IMAP, POP3 and SMTP mailboxes may sign in with a delegated OAuth connection (XOAUTH2)
-- instead of a password. No cascade: a connection in use cannot be deleted.
ALTER TABLE mailboxes ADD COLUMN oauth_connection_id TEXT REFERENCES oauth_connections (id);
CREATE INDEX mailboxes_by_oauth_connection ON mailboxes (oauth_connection_id);
