-- A burst of refused attempts past the throttle's limit is one entry per account or address
-- and quarter hour, counting its attempts, instead of one row each.
ALTER TABLE audit_events ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
