-- Nothing changes in PostgreSQL: SQLite's 0004 adds a trigram index for substring matches on
-- symbol names. The version exists so both backends number their schemas alike (backups record
-- the version and restore across backends).
SELECT 1;
