-- The download log: each redirect to a resume, by a member (/resume/{id}) or through a share
-- link (/s/{token}). Written in batches off the request path; entries older than
-- DOWNLOAD_LOG_DAYS are deleted. 'who' is the member's username or the link's label as they
-- were at the time.
CREATE TABLE downloads (
    id            BIGSERIAL PRIMARY KEY,
    profile_id    BIGINT NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    member_id     BIGINT REFERENCES users (id) ON DELETE SET NULL,
    share_link_id BIGINT REFERENCES share_links (id) ON DELETE SET NULL,
    who           TEXT   NOT NULL,
    request_id    TEXT   NOT NULL,
    at            BIGINT NOT NULL
);
CREATE INDEX downloads_profile_at_idx ON downloads (profile_id, at);
CREATE INDEX downloads_at_idx ON downloads (at);
