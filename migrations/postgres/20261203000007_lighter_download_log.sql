-- The download log is written at the rate resumes are downloaded, so each row's cost is paid on
-- the same cores as the redirects. The batch insert already keeps out entries whose profile,
-- member or link is gone, and deleting an account deletes its entries itself, so the foreign
-- keys' per-row triggers bought nothing; the purge by age scans a time-ordered, append-only
-- table, which a BRIN index answers at a fraction of a B-tree's upkeep.
ALTER TABLE downloads DROP CONSTRAINT downloads_profile_id_fkey;
ALTER TABLE downloads DROP CONSTRAINT downloads_member_id_fkey;
ALTER TABLE downloads DROP CONSTRAINT downloads_share_link_id_fkey;
DROP INDEX downloads_at_idx;
CREATE INDEX downloads_at_brin ON downloads USING brin (at);
