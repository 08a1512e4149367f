-- Reverts 0001_schema: drops every object it created. Views first, then tables children before
-- parents (triggers and indexes, the per-model HNSW indexes included, go with their tables), then
-- the trigger functions. The pgvector extension stays: other objects may use it, and the up
-- migration creates it only if missing.

DROP VIEW IF EXISTS active_runs;
DROP VIEW IF EXISTS project_overview;

DROP TABLE IF EXISTS activity_log;
DROP TABLE IF EXISTS reviews;
DROP TABLE IF EXISTS executions;
DROP TABLE IF EXISTS tasks;
DROP TABLE IF EXISTS agents;
DROP TABLE IF EXISTS embeddings;
DROP TABLE IF EXISTS embedding_models;
DROP TABLE IF EXISTS chunks;
DROP TABLE IF EXISTS imports;
DROP TABLE IF EXISTS symbols;
DROP TABLE IF EXISTS files;
DROP TABLE IF EXISTS commits;
DROP TABLE IF EXISTS index_run_events;
DROP TABLE IF EXISTS index_runs;
DROP TABLE IF EXISTS project_members;
DROP TABLE IF EXISTS projects;
DROP TABLE IF EXISTS api_tokens;
DROP TABLE IF EXISTS users;

DROP FUNCTION IF EXISTS semdex_index_runs_activity();
DROP FUNCTION IF EXISTS semdex_api_tokens_activity();
DROP FUNCTION IF EXISTS semdex_projects_activity();
DROP FUNCTION IF EXISTS semdex_embeddings_check_dimensions();
DROP FUNCTION IF EXISTS semdex_chunks_stats();
DROP FUNCTION IF EXISTS semdex_files_stats();
DROP FUNCTION IF EXISTS semdex_touch_updated_at();
DROP FUNCTION IF EXISTS semdex_lexical_tsvector(text);
