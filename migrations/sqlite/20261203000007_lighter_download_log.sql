-- PostgreSQL drops the download log's foreign keys and swaps its index on `at` for a BRIN one
-- (see migrations/postgres): the writes there compete with the redirects. SQLite is the
-- embedded single process; its table stays as it is. This file keeps the two lists alike.
SELECT 1;
