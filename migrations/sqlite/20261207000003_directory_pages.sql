-- The member directory in pages: each page starts where the last ended in this order, so a
-- page costs the same whatever the number of members.
CREATE INDEX profiles_directory_idx ON profiles (lower(display_name), id);
