-- PostgreSQL hands the download log's ids out 1,000 at a time and drops its unused primary
-- key (see migrations/postgres); SQLite's rowid costs nothing of the kind. This file keeps the
-- two lists alike.
SELECT 1;
