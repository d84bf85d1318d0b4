-- An expiry alert that keeps failing is given up after 7 days: it stays listed with why
-- (status 'given_up', when in given_up_at) and is never tried again.

ALTER TABLE expiry_alerts DROP CONSTRAINT expiry_alerts_status_check;
ALTER TABLE expiry_alerts ADD CONSTRAINT expiry_alerts_status_check
    CHECK (status IN ('pending', 'sent', 'given_up'));
ALTER TABLE expiry_alerts ADD COLUMN given_up_at BIGINT;
