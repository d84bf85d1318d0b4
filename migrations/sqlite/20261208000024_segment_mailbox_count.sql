-- Each segment keeps how many mailboxes it holds, so the segment pages read a column
-- instead of counting the segment's mailboxes on every view. The store changes it in the
-- transaction of every mailbox create, move and delete; existing segments start recounted.
-- Instances from before this migration do not keep it: stop every instance first.
ALTER TABLE segments ADD COLUMN mailbox_count BIGINT NOT NULL DEFAULT 0;
UPDATE segments SET mailbox_count = (SELECT COUNT(*) FROM mailboxes m
    WHERE m.tenant_id = segments.tenant_id AND m.segment_id = segments.id);
