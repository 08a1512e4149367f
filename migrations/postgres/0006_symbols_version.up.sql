-- Nothing changes on PostgreSQL. SQLite gains a counter of symbol writes (`symbols_version`)
-- that the in-memory symbol table of embedded mode checks before each search; in server mode
-- symbol search stays in the database. The migration exists so that both backends share one
-- schema version, which backups record and restores check.
SELECT 1;
