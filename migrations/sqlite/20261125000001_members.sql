-- Members, their profiles, and their sessions.
-- Times are unix seconds and flags are 0/1, both BIGINT: the sqlx Any driver maps those the
-- same way on PostgreSQL and SQLite, so one set of queries serves both.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL CHECK (length(username) BETWEEN 1 AND 150),
    password_hash TEXT    NOT NULL,
    is_staff      BIGINT  NOT NULL DEFAULT 0 CHECK (is_staff IN (0, 1)),
    created_at    BIGINT  NOT NULL,
    last_login    BIGINT
);
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE profiles (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    display_name        TEXT   NOT NULL,
    avatar_key          TEXT,
    avatar_content_type TEXT,
    avatar_size         BIGINT,
    resume_key          TEXT,
    resume_filename     TEXT,
    resume_size         BIGINT,
    resume_uploaded_at  BIGINT,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    CONSTRAINT profiles_user_id_key UNIQUE (user_id)
);

CREATE TABLE sessions (
    id         TEXT   PRIMARY KEY,
    data       BLOB   NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
