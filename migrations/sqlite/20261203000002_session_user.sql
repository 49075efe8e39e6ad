-- The member a session is signed in as, beside the record that also says so: a signed-in
-- request then reads its session, its member (and the resume it asks for) in one statement.
-- Rows from before have none and fall back to reading the member on its own.
ALTER TABLE sessions ADD COLUMN user_id BIGINT;
