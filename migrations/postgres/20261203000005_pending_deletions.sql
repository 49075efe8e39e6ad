-- Objects of deleted accounts still to remove from storage. Deleting an account deletes its
-- rows and records its objects here in the same transaction; the objects are deleted right
-- after, and a row stays while its delete fails (storage down), so a retry finishes the job.
-- A direct upload's key is deleted again until the upload's confirm window is over
-- (keep_until): whatever is still posted to it with its form goes too.
CREATE TABLE pending_deletions (
    id              BIGSERIAL PRIMARY KEY,
    storage         TEXT   NOT NULL CHECK (storage IN ('public', 'private')),
    object_key      TEXT   NOT NULL,
    queued_at       BIGINT NOT NULL,
    keep_until      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL
);
CREATE INDEX pending_deletions_next_attempt_idx ON pending_deletions (next_attempt_at);
