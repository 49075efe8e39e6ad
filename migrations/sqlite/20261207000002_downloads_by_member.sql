-- What a member downloaded, for their export and their account's deletion: without it both
-- read the whole log, a cost that grew with every member's downloads rather than theirs.
CREATE INDEX downloads_member_at_idx ON downloads (member_id, at) WHERE member_id IS NOT NULL;
