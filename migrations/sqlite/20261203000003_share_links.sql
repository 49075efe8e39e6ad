-- Share links: a member's resume for someone outside the site, at /s/{token}. The token (256
-- random bits) is kept only as its SHA-256 (hex), so the table cannot be used to open a link.
-- A link always serves the member's current resume; it stops working when revoked, expired,
-- used max_downloads times, or when the resume is deleted (which revokes it).
CREATE TABLE share_links (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256   TEXT   NOT NULL,
    label          TEXT   NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    max_downloads  BIGINT CHECK (max_downloads > 0),
    downloads      BIGINT NOT NULL DEFAULT 0,
    last_used_at   BIGINT,
    revoked_at     BIGINT
);
CREATE UNIQUE INDEX share_links_token_key ON share_links (token_sha256);
CREATE INDEX share_links_user_id_idx ON share_links (user_id);
