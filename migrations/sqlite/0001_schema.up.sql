-- semdex schema, SQLite flavour (the PostgreSQL flavour in migrations/postgres mirrors it).
--
-- Conventions, shared by both backends:
-- * Timestamps are TEXT in one sortable UTC form, `YYYY-MM-DDTHH:MM:SS.sssZ`, always written by
--   SQL (`strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`) so comparisons such as lease expiry are plain
--   string comparisons in one format.
-- * Booleans are INTEGER 0/1, JSON is TEXT checked with json_valid, lists are JSON arrays.
-- * Tables are STRICT so a value of the wrong type is an error, not a silent coercion.
-- * Hashes are lowercase hex: blake3 content hashes are 64 characters.
-- * Project stats (total_files, total_size_bytes, total_chunks) are maintained incrementally by
--   the triggers below, one O(1) update per row written; nothing ever counts rows to keep them.

-- Accounts ----------------------------------------------------------------------------------

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL CHECK (length(email) BETWEEN 3 AND 320 AND email LIKE '%_@_%'),
    username TEXT NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 64),
    display_name TEXT,
    github_username TEXT UNIQUE CHECK (github_username IS NULL OR length(github_username) BETWEEN 1 AND 39),
    is_active INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    preferences TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(preferences) AND json_type(preferences) = 'object'),
    last_login_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
-- Emails are unique regardless of case.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Bearer tokens, stored hashed; `prefix` is the first characters of the plain token, shown in
-- listings so a user can tell tokens apart. A token without a user is a service token.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    token_hash TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64 AND token_hash NOT GLOB '*[^0-9a-f]*'),
    prefix TEXT NOT NULL CHECK (length(prefix) BETWEEN 1 AND 16),
    scopes TEXT NOT NULL DEFAULT '["read"]' CHECK (json_valid(scopes) AND json_type(scopes) = 'array'),
    expires_at TEXT,
    last_used_at TEXT,
    revoked_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK (expires_at IS NULL OR expires_at > created_at)
) STRICT;
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);

-- Projects ----------------------------------------------------------------------------------

CREATE TABLE projects (
    id INTEGER PRIMARY KEY,
    owner_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    root_path TEXT,
    repository_url TEXT,
    default_branch TEXT,
    settings TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(settings) AND json_type(settings) = 'object'),
    total_files INTEGER NOT NULL DEFAULT 0 CHECK (total_files >= 0),
    total_size_bytes INTEGER NOT NULL DEFAULT 0 CHECK (total_size_bytes >= 0),
    total_chunks INTEGER NOT NULL DEFAULT 0 CHECK (total_chunks >= 0),
    last_indexed_commit TEXT,
    last_indexed_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX projects_owner_idx ON projects (owner_id);

CREATE TABLE project_members (
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL DEFAULT 'read' CONSTRAINT project_members_role_check CHECK (role IN ('read', 'write', 'admin')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (project_id, user_id)
) STRICT;
-- "Which projects may this user read" goes by user.
CREATE INDEX project_members_user_idx ON project_members (user_id);

-- Index runs come before the rows that record which run wrote them.
CREATE TABLE index_runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    "trigger" TEXT NOT NULL CONSTRAINT index_runs_trigger_check
        CHECK ("trigger" IN ('api', 'cli', 'git_hook', 'watch', 'ci', 'schedule')),
    status TEXT NOT NULL DEFAULT 'queued' CONSTRAINT index_runs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    -- Changed paths given by a git hook (JSON array); NULL means a full walk.
    paths TEXT CHECK (paths IS NULL OR (json_valid(paths) AND json_type(paths) = 'array')),
    commit_sha TEXT,
    files_indexed INTEGER NOT NULL DEFAULT 0 CHECK (files_indexed >= 0),
    files_skipped INTEGER NOT NULL DEFAULT 0 CHECK (files_skipped >= 0),
    files_deleted INTEGER NOT NULL DEFAULT 0 CHECK (files_deleted >= 0),
    chunks INTEGER NOT NULL DEFAULT 0 CHECK (chunks >= 0),
    chunks_embedded INTEGER NOT NULL DEFAULT 0 CHECK (chunks_embedded >= 0),
    embedding_cache_hits INTEGER NOT NULL DEFAULT 0 CHECK (embedding_cache_hits >= 0),
    tokens_embedded INTEGER NOT NULL DEFAULT 0 CHECK (tokens_embedded >= 0),
    error TEXT,
    lease_owner TEXT,
    lease_expires_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at TEXT,
    finished_at TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- A running run is always held by someone until a time; a finished one has an end time and
    -- holds no lease.
    CONSTRAINT index_runs_lease_check CHECK (
        status <> 'running' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL AND started_at IS NOT NULL)
    ),
    CONSTRAINT index_runs_finished_check CHECK (
        (status IN ('succeeded', 'failed', 'cancelled')) = (finished_at IS NOT NULL)
    ),
    CHECK (finished_at IS NULL OR lease_owner IS NULL)
) STRICT;
CREATE INDEX index_runs_project_idx ON index_runs (project_id, created_at);
-- Leasing looks only at unfinished runs: a small partial index however long the history.
CREATE INDEX index_runs_active_idx ON index_runs (status, lease_expires_at) WHERE status IN ('queued', 'running');

CREATE TABLE index_run_events (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES index_runs (id) ON DELETE CASCADE,
    phase TEXT NOT NULL CHECK (length(phase) BETWEEN 1 AND 64),
    event TEXT NOT NULL CONSTRAINT index_run_events_event_check
        CHECK (event IN ('start', 'complete', 'error', 'progress')),
    message TEXT,
    data TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX index_run_events_run_idx ON index_run_events (run_id, id);

CREATE TABLE commits (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    sha TEXT NOT NULL CHECK (length(sha) BETWEEN 7 AND 64 AND sha NOT GLOB '*[^0-9a-f]*'),
    parents TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(parents) AND json_type(parents) = 'array'),
    message TEXT NOT NULL DEFAULT '',
    author_name TEXT,
    author_email TEXT,
    branch TEXT,
    committed_at TEXT,
    files_changed INTEGER NOT NULL DEFAULT 0 CHECK (files_changed >= 0),
    additions INTEGER NOT NULL DEFAULT 0 CHECK (additions >= 0),
    deletions INTEGER NOT NULL DEFAULT 0 CHECK (deletions >= 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (project_id, sha)
) STRICT;
CREATE INDEX commits_project_time_idx ON commits (project_id, committed_at);

-- Files, symbols, imports, chunks -----------------------------------------------------------

CREATE TABLE files (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path TEXT NOT NULL CHECK (length(path) BETWEEN 1 AND 4096),
    language TEXT CHECK (language IS NULL OR length(language) BETWEEN 1 AND 32),
    size INTEGER NOT NULL CHECK (size >= 0),
    line_count INTEGER NOT NULL DEFAULT 0 CHECK (line_count >= 0),
    -- NULL for files skipped before they were read.
    content_hash TEXT CHECK (content_hash IS NULL OR (length(content_hash) = 64 AND content_hash NOT GLOB '*[^0-9a-f]*')),
    mtime_ns INTEGER NOT NULL,
    is_binary INTEGER NOT NULL DEFAULT 0 CHECK (is_binary IN (0, 1)),
    is_generated INTEGER NOT NULL DEFAULT 0 CHECK (is_generated IN (0, 1)),
    skip_reason TEXT CHECK (skip_reason IS NULL OR length(skip_reason) BETWEEN 1 AND 200),
    diagnostics_count INTEGER NOT NULL DEFAULT 0 CHECK (diagnostics_count >= 0),
    chunker_version INTEGER NOT NULL DEFAULT 0 CHECK (chunker_version >= 0),
    indexed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (project_id, path),
    -- Target of the composite foreign keys below, which keep a child's project_id equal to its
    -- file's project.
    UNIQUE (id, project_id)
) STRICT;
-- Rename detection and "which files hold this content" go by hash within a project.
CREATE INDEX files_content_hash_idx ON files (project_id, content_hash);

CREATE TABLE symbols (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    -- Deferred: a file's symbols are written in batches and a parent may come in a later batch.
    parent_id INTEGER REFERENCES symbols (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    name TEXT NOT NULL CHECK (length(name) >= 1),
    qualified_name TEXT NOT NULL CHECK (length(qualified_name) >= 1),
    kind TEXT NOT NULL CONSTRAINT symbols_kind_check CHECK (kind IN (
        'function', 'class', 'method', 'constructor', 'getter', 'setter', 'property', 'interface',
        'type_alias', 'enum', 'namespace', 'variable', 'constant'
    )),
    signature TEXT NOT NULL DEFAULT '',
    start_line INTEGER NOT NULL CHECK (start_line >= 1),
    end_line INTEGER NOT NULL,
    start_byte INTEGER NOT NULL CHECK (start_byte >= 0),
    end_byte INTEGER NOT NULL,
    exported INTEGER NOT NULL DEFAULT 0 CHECK (exported IN (0, 1)),
    CHECK (end_line >= start_line),
    CHECK (end_byte >= start_byte),
    CHECK (parent_id IS NULL OR parent_id <> id),
    FOREIGN KEY (file_id, project_id) REFERENCES files (id, project_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX symbols_file_idx ON symbols (file_id);
CREATE INDEX symbols_parent_idx ON symbols (parent_id);
CREATE INDEX symbols_name_idx ON symbols (name);
-- Symbol search is case-insensitive: exact and prefix matches use these.
CREATE INDEX symbols_lower_name_idx ON symbols (lower(name));
CREATE INDEX symbols_lower_qualified_name_idx ON symbols (lower(qualified_name));

CREATE TABLE imports (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    specifier TEXT NOT NULL CHECK (length(specifier) >= 1),
    -- The resolved path is kept even while the target file is absent, so the edge resolves
    -- whichever of the two files is written first.
    resolved_path TEXT,
    resolved_file_id INTEGER REFERENCES files (id) ON DELETE SET NULL,
    external_package TEXT,
    kind TEXT NOT NULL CONSTRAINT imports_kind_check CHECK (kind IN (
        'static', 'type_only', 'side_effect', 'dynamic', 'require', 're_export'
    )),
    names TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(names) AND json_type(names) = 'array'),
    line INTEGER NOT NULL CHECK (line >= 1),
    CHECK (resolved_file_id IS NULL OR resolved_path IS NOT NULL),
    FOREIGN KEY (file_id, project_id) REFERENCES files (id, project_id) ON DELETE CASCADE
) STRICT;
CREATE INDEX imports_file_idx ON imports (file_id);
-- Importers of a file (reverse graph walks).
CREATE INDEX imports_resolved_file_idx ON imports (resolved_file_id);
-- Fixing up edges to a path when its file is written.
CREATE INDEX imports_resolved_path_idx ON imports (project_id, resolved_path);

CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    project_id INTEGER NOT NULL,
    ordinal INTEGER NOT NULL CHECK (ordinal >= 0),
    content TEXT NOT NULL,
    content_hash TEXT NOT NULL CHECK (length(content_hash) = 64 AND content_hash NOT GLOB '*[^0-9a-f]*'),
    start_line INTEGER NOT NULL CHECK (start_line >= 1),
    end_line INTEGER NOT NULL,
    start_byte INTEGER NOT NULL CHECK (start_byte >= 0),
    end_byte INTEGER NOT NULL,
    symbol_path TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL CONSTRAINT chunks_kind_check CHECK (kind IN ('symbol', 'symbol_part', 'statements', 'lines')),
    language TEXT NOT NULL CHECK (length(language) BETWEEN 1 AND 32),
    token_count INTEGER NOT NULL CHECK (token_count >= 0),
    commit_sha TEXT,
    index_run_id INTEGER REFERENCES index_runs (id) ON DELETE SET NULL,
    -- The code-aware lexical document (lowercased tokens separated by spaces), indexed by chunks_fts.
    lexical TEXT NOT NULL,
    CHECK (end_line >= start_line),
    CHECK (end_byte >= start_byte),
    UNIQUE (file_id, ordinal),
    FOREIGN KEY (file_id, project_id) REFERENCES files (id, project_id) ON DELETE CASCADE
) STRICT;
-- Embedding lookups and the pending-embeddings scan join on the content hash.
CREATE INDEX chunks_content_hash_idx ON chunks (content_hash);
CREATE INDEX chunks_project_hash_idx ON chunks (project_id, content_hash);
CREATE INDEX chunks_run_idx ON chunks (index_run_id);

-- Full text over the lexical document. External content: the text lives once, in chunks, and the
-- triggers below keep the index in step. The document is already code-aware tokens separated by
-- spaces; `_` and `$` are token characters so `user_id` stays one term.
CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    lexical,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = "unicode61 remove_diacritics 0 tokenchars '_$'"
);

-- Embeddings: a cache shared by every project, keyed by (model, content hash), deliberately not
-- tied to files or chunks; chunks find their vector by content hash.

CREATE TABLE embedding_models (
    id INTEGER PRIMARY KEY,
    provider TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 64),
    model TEXT NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    dimensions INTEGER NOT NULL CHECK (dimensions BETWEEN 1 AND 16000),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (provider, model, dimensions)
) STRICT;

-- AUTOINCREMENT: ids only grow, so (count, max id) tells a vector index built from this table
-- whether it is stale.
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model_id INTEGER NOT NULL REFERENCES embedding_models (id) ON DELETE CASCADE,
    content_hash TEXT NOT NULL CHECK (length(content_hash) = 64 AND content_hash NOT GLOB '*[^0-9a-f]*'),
    -- Little-endian f32s.
    vector BLOB NOT NULL CHECK (length(vector) > 0 AND length(vector) % 4 = 0),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (model_id, content_hash)
) STRICT;
-- Paging a model's vectors in id order, to (re)build its vector index.
CREATE INDEX embeddings_model_idx ON embeddings (model_id, id);

-- Agent work -------------------------------------------------------------------------------

CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    kind TEXT NOT NULL DEFAULT 'assistant' CHECK (length(kind) BETWEEN 1 AND 64),
    model TEXT,
    config TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(config) AND json_type(config) = 'object'),
    is_active INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY,
    project_id INTEGER REFERENCES projects (id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES tasks (id) ON DELETE CASCADE,
    title TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'pending' CONSTRAINT tasks_status_check
        CHECK (status IN ('pending', 'in_progress', 'blocked', 'done', 'cancelled')),
    -- 0 is the most urgent.
    priority INTEGER NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 4),
    assigned_agent_id INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    created_by INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    completed_at TEXT,
    CHECK (parent_id IS NULL OR parent_id <> id),
    CHECK (completed_at IS NULL OR status IN ('done', 'cancelled'))
) STRICT;
CREATE INDEX tasks_project_status_idx ON tasks (project_id, status, priority);
CREATE INDEX tasks_parent_idx ON tasks (parent_id);
CREATE INDEX tasks_agent_idx ON tasks (assigned_agent_id);
CREATE INDEX tasks_created_by_idx ON tasks (created_by);

CREATE TABLE executions (
    id INTEGER PRIMARY KEY,
    task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    agent_id INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    status TEXT NOT NULL DEFAULT 'running' CONSTRAINT executions_status_check
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
    input_tokens INTEGER NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens INTEGER NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cost_usd REAL NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    duration_ms INTEGER CHECK (duration_ms IS NULL OR duration_ms >= 0),
    error TEXT,
    started_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    finished_at TEXT,
    CHECK (finished_at IS NULL OR finished_at >= started_at)
) STRICT;
CREATE INDEX executions_task_idx ON executions (task_id);
CREATE INDEX executions_agent_idx ON executions (agent_id);

CREATE TABLE reviews (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    commit_id INTEGER NOT NULL REFERENCES commits (id) ON DELETE CASCADE,
    reviewer_agent_id INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    reviewer_user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    -- 0..100.
    score INTEGER CHECK (score IS NULL OR score BETWEEN 0 AND 100),
    summary TEXT NOT NULL DEFAULT '',
    issues TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(issues) AND json_type(issues) = 'array'),
    suggestions TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(suggestions) AND json_type(suggestions) = 'array'),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX reviews_project_idx ON reviews (project_id);
CREATE INDEX reviews_commit_idx ON reviews (commit_id);
CREATE INDEX reviews_agent_idx ON reviews (reviewer_agent_id);
CREATE INDEX reviews_user_idx ON reviews (reviewer_user_id);

-- Audit trail ------------------------------------------------------------------------------

-- Entries outlive what they describe: deleting a project or user keeps its entries (the ids are
-- set to NULL; subject_type/subject_id and details keep what was acted on).
CREATE TABLE activity_log (
    id INTEGER PRIMARY KEY,
    project_id INTEGER REFERENCES projects (id) ON DELETE SET NULL,
    user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    action TEXT NOT NULL CHECK (length(action) BETWEEN 1 AND 64),
    source TEXT NOT NULL DEFAULT 'system' CONSTRAINT activity_log_source_check
        CHECK (source IN ('user', 'api', 'git_hook', 'ci', 'system')),
    subject_type TEXT,
    subject_id INTEGER,
    details TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details) AND json_type(details) = 'object'),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
CREATE INDEX activity_log_project_idx ON activity_log (project_id, id);
CREATE INDEX activity_log_user_idx ON activity_log (user_id);

-- updated_at -------------------------------------------------------------------------------
-- Touched after any update that did not set it itself (the WHEN guard also stops the trigger's
-- own UPDATE from recursing). On projects only the project's own fields count: the stats
-- counters change with every file written and are not an edit of the project.

CREATE TRIGGER users_updated_at AFTER UPDATE ON users
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE users SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER projects_updated_at
AFTER UPDATE OF owner_id, name, root_path, repository_url, default_branch, settings, last_indexed_commit, last_indexed_at
ON projects
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE projects SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER files_updated_at AFTER UPDATE ON files
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE files SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER index_runs_updated_at AFTER UPDATE ON index_runs
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE index_runs SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER agents_updated_at AFTER UPDATE ON agents
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE agents SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER tasks_updated_at AFTER UPDATE ON tasks
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE tasks SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

CREATE TRIGGER reviews_updated_at AFTER UPDATE ON reviews
WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE reviews SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;

-- Project stats, incrementally -------------------------------------------------------------

CREATE TRIGGER files_stats_insert AFTER INSERT ON files
BEGIN
    UPDATE projects SET total_files = total_files + 1, total_size_bytes = total_size_bytes + NEW.size
    WHERE id = NEW.project_id;
END;

CREATE TRIGGER files_stats_delete AFTER DELETE ON files
BEGIN
    UPDATE projects SET total_files = total_files - 1, total_size_bytes = total_size_bytes - OLD.size
    WHERE id = OLD.project_id;
END;

CREATE TRIGGER files_stats_update AFTER UPDATE OF size, project_id ON files
WHEN NEW.size IS NOT OLD.size OR NEW.project_id IS NOT OLD.project_id
BEGIN
    UPDATE projects SET total_files = total_files - 1, total_size_bytes = total_size_bytes - OLD.size
    WHERE id = OLD.project_id;
    UPDATE projects SET total_files = total_files + 1, total_size_bytes = total_size_bytes + NEW.size
    WHERE id = NEW.project_id;
END;

CREATE TRIGGER chunks_stats_insert AFTER INSERT ON chunks
BEGIN
    UPDATE projects SET total_chunks = total_chunks + 1 WHERE id = NEW.project_id;
END;

CREATE TRIGGER chunks_stats_delete AFTER DELETE ON chunks
BEGIN
    UPDATE projects SET total_chunks = total_chunks - 1 WHERE id = OLD.project_id;
END;

CREATE TRIGGER chunks_stats_update AFTER UPDATE OF project_id ON chunks
WHEN NEW.project_id IS NOT OLD.project_id
BEGIN
    UPDATE projects SET total_chunks = total_chunks - 1 WHERE id = OLD.project_id;
    UPDATE projects SET total_chunks = total_chunks + 1 WHERE id = NEW.project_id;
END;

-- Full-text sync ---------------------------------------------------------------------------
-- An external-content FTS5 table must be told the old text to remove it.

CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks
BEGIN
    INSERT INTO chunks_fts (rowid, lexical) VALUES (NEW.id, NEW.lexical);
END;

CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks
BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, lexical) VALUES ('delete', OLD.id, OLD.lexical);
END;

CREATE TRIGGER chunks_fts_update AFTER UPDATE OF lexical ON chunks
BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, lexical) VALUES ('delete', OLD.id, OLD.lexical);
    INSERT INTO chunks_fts (rowid, lexical) VALUES (NEW.id, NEW.lexical);
END;

-- Embedding vectors must have the model's dimensions ---------------------------------------

CREATE TRIGGER embeddings_dimensions_insert BEFORE INSERT ON embeddings
WHEN length(NEW.vector) <> 4 * (SELECT dimensions FROM embedding_models WHERE id = NEW.model_id)
BEGIN
    SELECT RAISE(ABORT, 'embedding vector length does not match the model dimensions');
END;

CREATE TRIGGER embeddings_dimensions_update BEFORE UPDATE OF vector, model_id ON embeddings
WHEN length(NEW.vector) <> 4 * (SELECT dimensions FROM embedding_models WHERE id = NEW.model_id)
BEGIN
    SELECT RAISE(ABORT, 'embedding vector length does not match the model dimensions');
END;

-- Activity log -----------------------------------------------------------------------------
-- Triggers cannot know who acted, so these entries have source 'system' (index runs take it from
-- their trigger); callers that know the user write their own entries.

CREATE TRIGGER projects_activity_insert AFTER INSERT ON projects
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (NEW.id, NEW.owner_id, 'project.created', 'system', 'project', NEW.id, json_object('name', NEW.name));
END;

CREATE TRIGGER projects_activity_update
AFTER UPDATE OF owner_id, name, root_path, repository_url, default_branch, settings ON projects
WHEN NEW.owner_id IS NOT OLD.owner_id OR NEW.name IS NOT OLD.name OR NEW.root_path IS NOT OLD.root_path
    OR NEW.repository_url IS NOT OLD.repository_url OR NEW.default_branch IS NOT OLD.default_branch
    OR NEW.settings IS NOT OLD.settings
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (
        NEW.id, NULL, 'project.updated', 'system', 'project', NEW.id,
        json_object(
            'name', NEW.name,
            'changed', (
                SELECT json_group_array(field) FROM (
                    SELECT 'owner_id' AS field WHERE NEW.owner_id IS NOT OLD.owner_id
                    UNION ALL SELECT 'name' WHERE NEW.name IS NOT OLD.name
                    UNION ALL SELECT 'root_path' WHERE NEW.root_path IS NOT OLD.root_path
                    UNION ALL SELECT 'repository_url' WHERE NEW.repository_url IS NOT OLD.repository_url
                    UNION ALL SELECT 'default_branch' WHERE NEW.default_branch IS NOT OLD.default_branch
                    UNION ALL SELECT 'settings' WHERE NEW.settings IS NOT OLD.settings
                )
            )
        )
    );
END;

-- The project row is gone, so the entry names it in subject_id and details.
CREATE TRIGGER projects_activity_delete AFTER DELETE ON projects
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (NULL, NULL, 'project.deleted', 'system', 'project', OLD.id, json_object('name', OLD.name));
END;

CREATE TRIGGER api_tokens_activity_insert AFTER INSERT ON api_tokens
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (NULL, NEW.user_id, 'token.created', 'system', 'api_token', NEW.id,
            json_object('name', NEW.name, 'prefix', NEW.prefix, 'scopes', json(NEW.scopes)));
END;

CREATE TRIGGER api_tokens_activity_revoke AFTER UPDATE OF revoked_at ON api_tokens
WHEN OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (NULL, NEW.user_id, 'token.revoked', 'system', 'api_token', NEW.id,
            json_object('name', NEW.name, 'prefix', NEW.prefix));
END;

CREATE TRIGGER api_tokens_activity_delete AFTER DELETE ON api_tokens
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (NULL, NULL, 'token.deleted', 'system', 'api_token', OLD.id,
            json_object('name', OLD.name, 'prefix', OLD.prefix));
END;

CREATE TRIGGER index_runs_activity_insert AFTER INSERT ON index_runs
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (
        NEW.project_id, NULL, 'run.' || NEW.status,
        CASE NEW."trigger" WHEN 'api' THEN 'api' WHEN 'cli' THEN 'user' WHEN 'git_hook' THEN 'git_hook'
            WHEN 'ci' THEN 'ci' ELSE 'system' END,
        'index_run', NEW.id,
        json_object('trigger', NEW."trigger", 'status', NEW.status, 'commit', NEW.commit_sha)
    );
END;

CREATE TRIGGER index_runs_activity_status AFTER UPDATE OF status ON index_runs
WHEN NEW.status IS NOT OLD.status
BEGIN
    INSERT INTO activity_log (project_id, user_id, action, source, subject_type, subject_id, details)
    VALUES (
        NEW.project_id, NULL, 'run.' || NEW.status,
        CASE NEW."trigger" WHEN 'api' THEN 'api' WHEN 'cli' THEN 'user' WHEN 'git_hook' THEN 'git_hook'
            WHEN 'ci' THEN 'ci' ELSE 'system' END,
        'index_run', NEW.id,
        json_object('trigger', NEW."trigger", 'from', OLD.status, 'status', NEW.status,
                    'lease_owner', NEW.lease_owner, 'error', NEW.error)
    );
END;

-- Views ------------------------------------------------------------------------------------

-- One row per project: its stats (read from the maintained counters, not counted) and its
-- latest run.
CREATE VIEW project_overview AS
SELECT
    p.id,
    p.name,
    p.owner_id,
    p.root_path,
    p.repository_url,
    p.default_branch,
    p.total_files,
    p.total_size_bytes,
    p.total_chunks,
    p.last_indexed_commit,
    p.last_indexed_at,
    r.id AS last_run_id,
    r.status AS last_run_status,
    r."trigger" AS last_run_trigger,
    r.created_at AS last_run_created_at,
    r.finished_at AS last_run_finished_at,
    r.error AS last_run_error,
    (SELECT count(*) FROM index_runs a WHERE a.project_id = p.id AND a.status IN ('queued', 'running')) AS active_runs,
    p.created_at,
    p.updated_at
FROM projects p
LEFT JOIN index_runs r ON r.id = (SELECT max(x.id) FROM index_runs x WHERE x.project_id = p.id);

-- Runs not yet finished, with whether a running run's lease has lapsed (it will be taken over).
CREATE VIEW active_runs AS
SELECT
    r.id,
    r.project_id,
    p.name AS project,
    r."trigger",
    r.status,
    r.commit_sha,
    r.files_indexed,
    r.files_skipped,
    r.chunks,
    r.lease_owner,
    r.lease_expires_at,
    (r.status = 'running' AND r.lease_expires_at <= strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) AS lease_expired,
    r.created_at,
    r.started_at
FROM index_runs r
JOIN projects p ON p.id = r.project_id
WHERE r.status IN ('queued', 'running');
