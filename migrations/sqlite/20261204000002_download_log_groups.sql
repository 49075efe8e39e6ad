-- Downloads of the same resume by the same member or link in the same second share one row:
-- `request_ids` holds their request ids (a JSON array, in the order they came) and `hits` how
-- many there are (see migrations/postgres for why). Existing rows become one-download rows.
ALTER TABLE downloads ADD COLUMN request_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE downloads ADD COLUMN hits INTEGER NOT NULL DEFAULT 1;
UPDATE downloads SET request_ids = json_array(request_id);
ALTER TABLE downloads DROP COLUMN request_id;
