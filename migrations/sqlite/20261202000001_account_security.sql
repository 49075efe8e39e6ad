-- Holding accounts under attack.
--
-- login_failures: failed sign-ins (and sign-up attempts) counted per username and per client
-- address, in fixed windows, in the database so that every instance shares one count. A bucket
-- is 'user:<lowercased name>', 'addr:<ip>' or 'signup:<ip>'; swept once its window is over.
CREATE TABLE login_failures (
    bucket            TEXT   PRIMARY KEY,
    failures          BIGINT NOT NULL,
    window_started_at BIGINT NOT NULL
);
CREATE INDEX login_failures_window_idx ON login_failures (window_started_at);

-- Bumped by "sign out everywhere" and by a password change: every session binds to it (with the
-- password hash), so a bump ends every session of the member on every instance.
ALTER TABLE users ADD COLUMN session_epoch BIGINT NOT NULL DEFAULT 0;

-- Positive marks a database carries about itself; make-staging scrubs only a database marked
-- 'staging' (by `stowage mark-staging` on the restored copy).
CREATE TABLE instance_marks (
    mark      TEXT   PRIMARY KEY,
    marked_at BIGINT NOT NULL
);

-- A confirmed direct upload keeps its row until the sweep: confirming copies the object to a
-- fresh key, and whatever is posted again under the issued key (its form is still valid for a
-- while) is deleted with the row once the confirm window is over.
ALTER TABLE direct_uploads ADD COLUMN confirmed_at BIGINT;
