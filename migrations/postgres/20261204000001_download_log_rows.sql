-- What a logged download still cost the database, measured by COPY of the writer's batches:
-- its id taken from the sequence one value at a time (a shared buffer access each and a WAL
-- record every 32), and a primary-key B-tree no query uses, together about a third of the
-- row. The writer keeps one connection (see src/db/downloads.rs) and now takes ids 1,000 at a
-- time; ids stay unique, and rise within each instance's writer, which is all the ordering of
-- entries within one second needs (a reconnect leaves a gap; two instances' entries of the
-- same second interleave in no particular order, as they would anyway). Without a key,
-- logical replication identifies deleted rows (the purge, an account's deletion) by the
-- whole row.
ALTER SEQUENCE downloads_id_seq CACHE 1000;
ALTER TABLE downloads DROP CONSTRAINT downloads_pkey;
ALTER TABLE downloads REPLICA IDENTITY FULL;
