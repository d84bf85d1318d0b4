-- A segment's page lists its mailboxes by LOWER(name), then id: this index hands them out
-- in that order, so a page reads its own rows instead of sorting the whole segment.
DROP INDEX mailboxes_by_segment;
CREATE INDEX mailboxes_by_segment_name ON mailboxes (tenant_id, segment_id, LOWER(name), id);
