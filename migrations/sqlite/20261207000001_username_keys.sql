-- Usernames are compared by one key, NFKC then lowercase, computed by the app
-- (`db::users::username_key`) and stored (see migrations/postgres for why). lower() is the
-- key of every ASCII name; `stowage migrate` rewrites the others with the app's own function.
ALTER TABLE users ADD COLUMN username_key TEXT NOT NULL DEFAULT '';
UPDATE users SET username_key = lower(username);
CREATE UNIQUE INDEX users_username_key_nfkc ON users (username_key);
