-- A logged download's row was still most of what the log cost the database: half of it the
-- entry in the (profile_id, at) B-tree that the member's list reads. Downloads of the same
-- resume by the same member or link in the same second now share one row: `request_ids` holds
-- their request ids (a JSON array, in the order they came) and `hits` how many there are. A
-- member or a link fetching a resume again and again (a script, a refreshing tab, a hammered
-- link) so costs a row a second, not a row a download; each download keeps its own request
-- id, and its time stays the second it was made. Existing rows become one-download rows.
ALTER TABLE downloads ADD COLUMN request_ids TEXT;
ALTER TABLE downloads ADD COLUMN hits INTEGER NOT NULL DEFAULT 1;
UPDATE downloads SET request_ids = json_build_array(request_id)::text;
ALTER TABLE downloads ALTER COLUMN request_ids SET NOT NULL;
ALTER TABLE downloads ALTER COLUMN hits DROP DEFAULT;
ALTER TABLE downloads DROP COLUMN request_id;
-- A row of a busy second holds kilobytes of request ids, and PostgreSQL's default compression
-- (pglz) of every row past 2 kB then cost the database more than the rest of the log: random
-- ids barely compress. Rows up to a page stay inline as they are; longer ones (a second with
-- hundreds of downloads by one member) go out of line, uncompressed.
ALTER TABLE downloads ALTER COLUMN request_ids SET STORAGE EXTERNAL;
ALTER TABLE downloads SET (toast_tuple_target = 8160);
