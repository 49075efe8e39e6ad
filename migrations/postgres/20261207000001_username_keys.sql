-- Usernames are compared by one key, NFKC then lowercase, computed by the app
-- (`db::users::username_key`) and stored: PostgreSQL's lower() depends on the database's
-- locale and SQLite's folds ASCII only, so comparing with either let one name match under
-- spellings the sign-in throttle counted apart (`ADMİN`). lower() is the key of every
-- ASCII name; `stowage migrate` rewrites the others with the app's own function.
ALTER TABLE users ADD COLUMN username_key TEXT;
UPDATE users SET username_key = lower(username);
ALTER TABLE users ALTER COLUMN username_key SET NOT NULL;
CREATE UNIQUE INDEX users_username_key_nfkc ON users (username_key);
