-- SHA-256 digests, hex. A direct upload is issued for one file, known by its size and digest
-- (both signed into the upload) and checked again at confirm; the profile keeps the digest of
-- each object it points at, for `check-media --verify`. Rows from before have none.
ALTER TABLE direct_uploads ADD COLUMN size BIGINT;
ALTER TABLE direct_uploads ADD COLUMN sha256 TEXT;
ALTER TABLE profiles ADD COLUMN avatar_sha256 TEXT;
ALTER TABLE profiles ADD COLUMN resume_sha256 TEXT;
