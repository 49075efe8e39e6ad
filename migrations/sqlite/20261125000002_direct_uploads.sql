-- Direct-to-S3 resume uploads that were issued and not yet confirmed. A row is the proof that
-- its key was issued to this profile; confirming deletes it, and so does the sweep that
-- removes the objects of uploads nobody confirmed. Whoever deletes the row owns the object.

CREATE TABLE direct_uploads (
    object_key TEXT   PRIMARY KEY,
    profile_id BIGINT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    issued_at  BIGINT NOT NULL
);
CREATE INDEX direct_uploads_issued_at_idx ON direct_uploads (issued_at);
