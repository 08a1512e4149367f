-- Nothing changes in SQLite: PostgreSQL's 0003 turns chunks.lexical_tsv into a column semdex
-- fills, and SQLite's full-text table is kept by triggers. The version exists so both backends
-- number their schemas alike (backups record the version and restore across backends).
SELECT 1;
