-- "Secret expires on" beside every client secret, as Graph credentials have had it: the
-- date Azure shows under Expires for Sign in with Microsoft's secret and for each OAuth
-- connection's, as YYYY-MM-DD. Secrets stored before this migration have none: the
-- Expiring page lists them as "expiry unknown" until an admin enters the date.
ALTER TABLE microsoft_sign_in ADD COLUMN secret_expires_on TEXT;
ALTER TABLE oauth_connections ADD COLUMN secret_expires_on TEXT;
