//! The `semdex` command line: `index`, `search`, `status`, `migrate`, `backup`, `restore` and
//! `hooks`, on the configured store (the embedded SQLite default, or PostgreSQL with a database
//! URL).
//!
//! `index` and `search` open the engine, which migrates the store up first; `status`, `migrate`
//! and `backup` connect without migrating, so they show and manage the schema as it is.
//!
//! Exit status: 0 success, 1 failure, 2 usage error.

use std::io::IsTerminal;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::backup;
use crate::config::{Config, Overrides};
use crate::engine::{self, Engine};
use crate::hooks;
use crate::indexing::{self, IndexOptions, Progress};
use crate::search::{self, Mode, SearchRequest};
use crate::store::{NewProject, NewToken, Project, RunStatus};

#[derive(Debug, Parser)]
#[command(name = "semdex", version, about = "Semantic code search and indexing")]
struct Cli {
    /// Data directory (SQLite file, vector index). Default: $SEMDEX_DATA_DIR, else the platform data dir.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL for server mode. Default: $SEMDEX_DATABASE_URL, else $DATABASE_URL, else embedded.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Configuration file. Default: $SEMDEX_CONFIG, else semdex.toml in the data dir.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: the HTTP API and the job runner.
    Serve {
        /// Listen address. Default: $SEMDEX_LISTEN, else 127.0.0.1:7878.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Manage API bearer tokens (stored hashed; the secret is shown once).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Index a repository (incrementally), without a daemon.
    Index {
        /// The repository root.
        path: PathBuf,
        /// Project name. Default: the root folder's name.
        #[arg(long)]
        project: Option<String>,
        /// Print one JSON summary object.
        #[arg(long)]
        json: bool,
        /// Report files, chunks, tokens and estimated cost without writing or embedding.
        #[arg(long)]
        dry_run: bool,
    },
    /// Search indexed code.
    Search {
        query: String,
        /// Restrict to one project. Default: all projects.
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value_t = 10)]
        top_k: usize,
        /// hybrid, semantic, lexical or symbol.
        #[arg(long, default_value = "hybrid")]
        mode: String,
        /// Only paths matching this glob (repeatable).
        #[arg(long = "path")]
        paths: Vec<String>,
        /// Only this language (repeatable): typescript, tsx, javascript.
        #[arg(long = "language")]
        languages: Vec<String>,
        /// Only results defining a symbol of this kind (repeatable, or a comma list): function,
        /// class, method, interface, type_alias, enum, variable, ...
        #[arg(long = "kind", value_delimiter = ',')]
        kinds: Vec<String>,
        /// Include each signal's rank and score.
        #[arg(long)]
        explain: bool,
        #[arg(long)]
        json: bool,
        /// Search the store here even when a daemon serves this data directory.
        #[arg(long)]
        local: bool,
    },
    /// Show the store: backend, schema version, row counts, size on disk, pgvector, projects.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Apply, revert or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Write every table (vectors included) to a versioned JSON Lines file.
    Backup {
        /// The backup file to write (replaced only once the backup is complete).
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Restore a backup: validates the whole file first, then loads it in one transaction.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// Replace the contents of a store that already holds data.
        #[arg(long)]
        force: bool,
    },
    /// Install or remove the git hooks that tell the daemon what each commit, merge, checkout
    /// and rebase changed.
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
}

#[derive(Debug, Subcommand)]
enum HooksAction {
    /// Install post-commit, post-merge, post-checkout and post-rewrite hooks (idempotent; hooks
    /// already there are chained, not overwritten).
    Install {
        /// The repository. Default: the current directory.
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Remove semdex's hooks, restoring any hook they chained.
    Uninstall {
        /// The repository. Default: the current directory.
        #[arg(long)]
        repo: Option<PathBuf>,
    },
    /// Run by the installed hooks: tell the daemon what changed, or spool it. Always exits 0.
    #[command(hide = true)]
    Notify {
        #[arg(long)]
        repo: PathBuf,
        #[arg(long)]
        hook: String,
        /// HEAD when the hook ran (empty: none). Without --head, the state is read now.
        #[arg(long)]
        head: Option<String>,
        /// ORIG_HEAD when the hook ran (empty: none).
        #[arg(long)]
        orig_head: Option<String>,
        /// The branch when the hook ran (empty: detached).
        #[arg(long)]
        branch: Option<String>,
        /// The hook's own arguments.
        #[arg(last = true)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token and print its secret once.
    Create {
        /// A name to tell the token apart.
        #[arg(long, default_value = "cli")]
        name: String,
        /// read, write or admin (each implies the ones before it).
        #[arg(long, default_value = "admin")]
        scope: String,
        /// Days until the token expires. Default: never.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke { id: i64 },
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the latest migration, or every migration above `--to`.
    Down {
        /// Revert down to this version (it stays applied); 0 reverts everything.
        #[arg(long)]
        to: Option<i64>,
    },
    /// List applied and pending migrations.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// Runs the CLI and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // A hook's notify is quiet unless SEMDEX_LOG asks: its output goes nowhere anyway.
    let quiet = matches!(cli.command, Command::Hooks { action: HooksAction::Notify { .. } });
    let serving = matches!(cli.command, Command::Serve { .. });
    init_tracing(if quiet {
        "off"
    } else if serving {
        "semdex=info,warn"
    } else {
        "warn"
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("semdex: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("semdex: {}", crate::error_line(&e));
            ExitCode::from(1)
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEMDEX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Hooks load the configuration themselves, if at all: installing needs none, and a
    // hook's notify must not fail over a bad one.
    let command = match cli.command {
        Command::Hooks { action } => {
            return hooks_command(action, cli.data_dir, cli.database_url, cli.config).await;
        }
        command => command,
    };
    let listen = match &command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides =
        Overrides { data_dir: cli.data_dir, database_url: cli.database_url, listen, config: cli.config };
    let config = Config::load(&overrides)?;
    match command {
        Command::Hooks { .. } => unreachable!("hooks are handled before the configuration is loaded"),
        Command::Serve { .. } => crate::serve::serve(config).await,
        Command::Token { action } => token(&config, action).await,
        Command::Index { path, project, json, dry_run } => index(config, path, project, json, dry_run).await,
        Command::Search { query, project, top_k, mode, paths, languages, kinds, explain, json, local } => {
            let Some(mode) = Mode::parse(&mode) else {
                eprintln!("semdex: unknown mode {mode:?} (expected hybrid, semantic, lexical or symbol)");
                return Ok(ExitCode::from(2));
            };
            if let Err(e) = search::check_kinds(&kinds) {
                eprintln!("semdex: {e}");
                return Ok(ExitCode::from(2));
            }
            // A daemon serving this data directory answers, so the search sees its warm caches
            // and its freshest index; without one, the search runs here on the store.
            if !local && let Some(daemon) = crate::serve::running_daemon(&config).await {
                let mut body = serde_json::json!({
                    "query": query, "top_k": top_k, "mode": mode.name(), "explain": explain,
                    "filters": { "path_include": paths, "languages": languages, "kinds": kinds },
                });
                if let Some(name) = &project {
                    body["projects"] = serde_json::json!([name]);
                }
                let response = daemon.post("/v1/search", &body, config.token.as_deref()).await?;
                print_search(&response, json, explain);
                return Ok(ExitCode::SUCCESS);
            }
            let engine = Engine::open(config).await?;
            let projects = match project {
                Some(name) => vec![find_project(&engine, &name).await?],
                None => engine.store.list_projects().await?,
            };
            if projects.is_empty() {
                bail!("nothing is indexed yet: run `semdex index PATH` first");
            }
            let mut req = SearchRequest::new(query, projects.iter().map(|p| p.id).collect());
            req.top_k = top_k;
            req.mode = mode;
            req.path_include = paths;
            req.languages = languages;
            req.kinds = kinds;
            req.explain = explain;
            let response = search::search(&engine, &req).await?;
            print_search(&api::search_response_json(&response, explain), json, explain);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => status(&config, json).await,
        Command::Migrate { action } => migrate(&config, action).await,
        Command::Backup { output } => {
            let store = engine::connect_store(&config).await?;
            let summary = backup::backup(store.as_ref(), &output).await?;
            println!(
                "backed up {} rows from {} (schema version {}) to {} ({})",
                summary.total_rows(),
                summary.header.backend,
                summary.header.schema_version,
                output.display(),
                human_bytes(summary.bytes)
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { file, force } => {
            // The whole file is checked before the store is even opened.
            let validated = backup::validate(&file)?;
            let store = engine::connect_store(&config).await?;
            let summary = backup::restore_validated(store.as_ref(), &file, force, &validated).await?;
            // The local vector index is derived from the embeddings just replaced: drop it so it
            // is rebuilt from the store on next use rather than trusted by its extent.
            let vectors = config.vector_dir();
            if vectors.exists() {
                std::fs::remove_dir_all(&vectors)
                    .with_context(|| format!("removing the stale vector index in {}", vectors.display()))?;
            }
            println!(
                "restored {} rows into {} from {} (written by {} at {})",
                summary.total_rows(),
                store.backend().name(),
                file.display(),
                summary.header.backend,
                summary.header.created_at
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn token(config: &Config, action: TokenAction) -> anyhow::Result<ExitCode> {
    let store = engine::open_store(config).await?;
    match action {
        TokenAction::Create { name, scope, expires_in_days } => {
            let Some(scope) = api::Scope::parse(&scope) else {
                eprintln!("semdex: unknown scope {scope:?} (expected read, write or admin)");
                return Ok(ExitCode::from(2));
            };
            let secret = api::new_token_secret()?;
            let expires_at =
                expires_in_days.map(|d| chrono::Utc::now() + chrono::Duration::days(i64::from(d)));
            let token = store
                .create_token(NewToken {
                    user_id: None,
                    name,
                    token_hash: api::hash_token(&secret),
                    prefix: secret[..8].to_string(),
                    scopes: vec![scope.name().to_string()],
                    expires_at,
                })
                .await?;
            eprintln!(
                "created token {} ({}, scope {}); the secret is shown only once:",
                token.id,
                token.name,
                scope.name()
            );
            println!("{secret}");
        }
        TokenAction::List { json } => {
            let tokens = store.list_tokens().await?;
            if json {
                let list: Vec<serde_json::Value> = tokens
                    .iter()
                    .map(|t| {
                        serde_json::json!({
                            "id": t.id, "name": t.name, "prefix": t.prefix, "scopes": t.scopes,
                            "user_id": t.user_id, "expires_at": t.expires_at, "revoked_at": t.revoked_at,
                            "last_used_at": t.last_used_at, "created_at": t.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "tokens": list }));
            } else {
                for t in &tokens {
                    let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                    println!(
                        "{:>5}  {:<10} {:<8} {:<24} {}",
                        t.id,
                        t.prefix,
                        state,
                        t.scopes.join(","),
                        t.name
                    );
                }
                if tokens.is_empty() {
                    println!("no tokens");
                }
            }
        }
        TokenAction::Revoke { id } => {
            if store.revoke_token(id).await? {
                println!("revoked token {id}");
            } else {
                bail!("no active token with id {id}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn hooks_command(
    action: HooksAction,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    config: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let here = || std::env::current_dir().context("reading the current directory");
    match action {
        HooksAction::Install { repo } => {
            let repo = match repo {
                Some(r) => r,
                None => here()?,
            };
            let bin = std::env::current_exe().context("finding the semdex binary")?;
            // Only a data dir given on this command line is written into the hooks; otherwise
            // the hook's environment and configuration decide when it runs.
            let report = hooks::install(&repo, &bin, data_dir.as_deref())?;
            for (hook, action) in &report.hooks {
                let what = match action {
                    hooks::InstallAction::Installed => "installed",
                    hooks::InstallAction::Chained => "installed, chaining the existing hook",
                    hooks::InstallAction::Updated => "updated",
                    hooks::InstallAction::Unchanged => "already installed",
                };
                println!("{hook}: {what}");
            }
            println!("hooks in {} for {}", report.hooks_dir.display(), report.root.display());
        }
        HooksAction::Uninstall { repo } => {
            let repo = match repo {
                Some(r) => r,
                None => here()?,
            };
            let report = hooks::uninstall(&repo)?;
            for (hook, action) in &report.hooks {
                let what = match action {
                    hooks::UninstallAction::Removed => "removed",
                    hooks::UninstallAction::Restored => "removed, the chained hook restored",
                    hooks::UninstallAction::NotInstalled => "not installed",
                };
                println!("{hook}: {what}");
            }
        }
        HooksAction::Notify { repo, hook, head, orig_head, branch, args } => {
            // Never fails: a hook's trouble must not become git's. Problems are logged only.
            let overrides = Overrides { data_dir, database_url, listen: None, config };
            let config = match Config::load(&overrides) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot load the configuration; notification dropped");
                    return Ok(ExitCode::SUCCESS);
                }
            };
            let mut stdin = String::new();
            if hook == "post-rewrite" {
                let _ = std::io::stdin().read_to_string(&mut stdin);
            }
            let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
            let state = head.is_some().then(|| hooks::HookState {
                head: non_empty(head),
                orig_head: non_empty(orig_head),
                branch: non_empty(branch),
            });
            match hooks::notify(&config, &repo, &hook, &args, &stdin, state.as_ref()).await {
                Ok(outcome) => tracing::debug!(?outcome, hook, "git notification handled"),
                Err(e) => tracing::warn!(error = %e, hook, "git notification failed"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn status(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let store = engine::connect_store(config).await?;
    let status = store.status().await?;
    // Projects are listed only once the schema exists; status never migrates.
    let projects = if status.schema_version.is_some() { store.list_projects().await? } else { Vec::new() };
    let daemon = crate::serve::running_daemon(config).await.map(|d| d.base().to_string());
    let pgvector = match &status.pgvector {
        Some(v) => format!("present, version {v}"),
        None => "absent: local HNSW serves search".to_string(),
    };
    if json {
        let value = serde_json::json!({
            "backend": status.backend.name(),
            "daemon": daemon,
            "schema_version": status.schema_version,
            "latest_version": status.latest_version,
            "size_bytes": status.size_bytes,
            "pgvector": status.pgvector,
            "pgvector_status": pgvector,
            "rows": status.row_counts.iter().map(|(t, n)| (t.clone(), serde_json::json!(n)))
                .collect::<serde_json::Map<_, _>>(),
            "projects": projects.iter().map(|p| serde_json::json!({
                "name": p.name, "root_path": p.root_path, "files": p.total_files,
                "chunks": p.total_chunks, "size_bytes": p.total_size_bytes,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("backend: {}", status.backend.name());
    match &daemon {
        Some(base) => println!("daemon: running at {base}"),
        None => println!("daemon: not running for this data directory"),
    }
    match status.schema_version {
        Some(v) if v == status.latest_version => println!("schema version: {v} (latest)"),
        Some(v) => {
            println!("schema version: {v} (latest {}: run `semdex migrate up`)", status.latest_version)
        }
        None => println!("schema version: none (latest {}: run `semdex migrate up`)", status.latest_version),
    }
    match status.size_bytes {
        Some(size) => println!("size on disk: {}", human_bytes(u64::try_from(size).unwrap_or(0))),
        None => println!("size on disk: unknown"),
    }
    println!("pgvector: {pgvector}");
    println!("rows:");
    for (table, rows) in &status.row_counts {
        println!("  {table}: {rows}");
    }
    for p in &projects {
        println!(
            "project {}: {} files, {} chunks ({})",
            p.name,
            p.total_files,
            p.total_chunks,
            p.root_path.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: &Config, action: MigrateAction) -> anyhow::Result<ExitCode> {
    let store = engine::connect_store(config).await?;
    match action {
        MigrateAction::Up => {
            store.migrate_up().await.context("applying migrations")?;
            let status = store.status().await?;
            println!("schema at version {}", status.schema_version.unwrap_or(0));
        }
        MigrateAction::Down { to } => {
            if to.is_some_and(|v| v < 0) {
                eprintln!("semdex: --to must be a version >= 0");
                return Ok(ExitCode::from(2));
            }
            store.migrate_down(to).await.context("reverting migrations")?;
            let status = store.status().await?;
            match status.schema_version {
                Some(v) => println!("schema at version {v}"),
                None => println!("schema at version 0 (no migration applied)"),
            }
        }
        MigrateAction::Status { json } => {
            let migrations = store.migrations().await?;
            if json {
                let list: Vec<serde_json::Value> = migrations
                    .iter()
                    .map(|m| {
                        serde_json::json!({
                            "version": m.version, "description": m.description,
                            "applied": m.applied, "known": m.known,
                        })
                    })
                    .collect();
                println!("{}", serde_json::json!({ "backend": store.backend().name(), "migrations": list }));
            } else {
                for m in &migrations {
                    let state = if m.applied { "applied" } else { "pending" };
                    println!("{:>6}  {state:<8} {}", m.version, m.description);
                }
                if migrations.is_empty() {
                    println!("no migrations");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A byte count for people: `12.3 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

async fn find_project(engine: &Engine, name: &str) -> anyhow::Result<Project> {
    engine.store.project_by_name(name).await?.with_context(|| format!("no project named {name:?}"))
}

async fn index(
    config: Config,
    path: PathBuf,
    project: Option<String>,
    json: bool,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let root = std::fs::canonicalize(&path).with_context(|| format!("cannot open {}", path.display()))?;
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let root_text = root.to_str().context("the repository path is not valid UTF-8")?.to_string();
    let name = match project {
        Some(n) => n,
        None => root.file_name().and_then(|n| n.to_str()).unwrap_or("default").to_string(),
    };
    let engine = Engine::open(config).await?;
    let store = engine.store.clone();
    let existing = store.project_by_name(&name).await?;
    if let Some(p) = &existing
        && p.root_path.as_deref() != Some(root_text.as_str())
    {
        bail!(
            "project {name:?} is registered for {}; pass --project with another name",
            p.root_path.as_deref().unwrap_or("no path")
        );
    }
    let commit = head_commit(&root).await;
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("semdex: stopping at the next file boundary");
                cancel.cancel();
            }
        });
    }
    let options = IndexOptions { dry_run, progress: Some(progress_printer(json)) };

    let project = match existing {
        Some(p) => p,
        None if dry_run => dry_run_project(&name, &root_text),
        None => {
            store
                .create_project(NewProject {
                    name: name.clone(),
                    root_path: Some(root_text.clone()),
                    settings: serde_json::json!({}),
                    ..NewProject::default()
                })
                .await?
        }
    };
    let trigger = if std::env::var_os("CI").is_some() { "ci" } else { "cli" };
    let run = if dry_run {
        dry_run_run(&project)
    } else {
        let run = store.create_run(project.id, trigger, None, commit.as_deref()).await?;
        let owner = format!("cli-{}", std::process::id());
        if !store.claim_run(run.id, &owner, 300).await? {
            bail!("index run {} was taken by another worker", run.id);
        }
        run
    };
    let result = indexing::index_project(&engine, &project, &run, &options, &cancel).await;
    let summary = match result {
        Ok(summary) => {
            if !dry_run {
                store.finish_run(run.id, RunStatus::Succeeded, None).await?;
                store.set_last_indexed_commit(project.id, commit.as_deref()).await?;
            }
            summary
        }
        Err(e) => {
            if !dry_run {
                let cancelled = e.downcast_ref::<indexing::Cancelled>().is_some();
                let status = if cancelled { RunStatus::Cancelled } else { RunStatus::Failed };
                let message = crate::error_line(&e);
                let _ =
                    store.add_run_event(run.id, "run", "error", Some(&message), serde_json::json!({})).await;
                let _ = store.finish_run(run.id, status, Some(&message)).await;
            }
            return Err(e);
        }
    };
    if json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        let verb = if dry_run { "would index" } else { "indexed" };
        println!(
            "{} {}: {verb} {} files ({} unchanged, {} skipped, {} deleted), {} chunks, {} embedded, \
             {} cache hits, {} tokens in {} ms",
            summary.project,
            root.display(),
            summary.files_indexed,
            summary.files_unchanged,
            summary.files_skipped,
            summary.files_deleted,
            summary.chunks,
            summary.chunks_embedded,
            summary.embedding_cache_hits,
            if dry_run { summary.estimated_tokens } else { summary.tokens_embedded },
            summary.duration_ms
        );
        if dry_run {
            println!("estimated embedding cost: ${:.4}", summary.estimated_cost_usd);
        }
        if summary.embedding_paused {
            println!("the embedding service is unavailable: chunks stay pending for the next run");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Progress on stderr: a bar on a terminal, and otherwise (CI logs) one line per phase change
/// plus a line every two seconds within long phases.
fn progress_printer(quiet: bool) -> indexing::ProgressFn {
    if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {elapsed}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        bar.set_style(style);
        return Box::new(move |p: &Progress| {
            if bar.prefix() != p.phase {
                bar.set_prefix(p.phase);
                bar.reset_elapsed();
            }
            bar.set_length(p.total);
            bar.set_position(p.done);
            if p.phase == "vectors" && p.total > 0 && p.done == p.total {
                bar.finish_and_clear();
            }
        });
    }
    let last = std::sync::Mutex::new(("", std::time::Instant::now()));
    Box::new(move |p: &Progress| {
        if quiet {
            return;
        }
        let Ok(mut last) = last.lock() else { return };
        let now = std::time::Instant::now();
        let finished = p.total > 0 && p.done == p.total;
        if last.0 != p.phase || finished || now.duration_since(last.1).as_secs() >= 2 {
            if p.total > 0 {
                eprintln!("{}: {}/{}", p.phase, p.done, p.total);
            } else {
                eprintln!("{}...", p.phase);
            }
            *last = (p.phase, now);
        }
    })
}

/// The commit checked out at `root`, when it is a git repository.
async fn head_commit(root: &std::path::Path) -> Option<String> {
    let out = tokio::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--verify", "-q", "HEAD"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && sha.len() == 40).then_some(sha)
}

fn dry_run_project(name: &str, root: &str) -> Project {
    let now = chrono::Utc::now();
    Project {
        id: -1,
        name: name.to_string(),
        root_path: Some(root.to_string()),
        repository_url: None,
        default_branch: None,
        settings: serde_json::json!({}),
        total_files: 0,
        total_size_bytes: 0,
        total_chunks: 0,
        last_indexed_commit: None,
        created_at: now,
        updated_at: now,
    }
}

fn dry_run_run(project: &Project) -> crate::store::IndexRun {
    crate::store::IndexRun {
        id: -1,
        project_id: project.id,
        trigger: "cli".into(),
        status: RunStatus::Running,
        paths: None,
        commit_sha: None,
        files_indexed: 0,
        files_skipped: 0,
        files_deleted: 0,
        chunks: 0,
        chunks_embedded: 0,
        embedding_cache_hits: 0,
        tokens_embedded: 0,
        error: None,
        lease_owner: None,
        lease_expires_at: None,
        created_at: project.created_at,
        started_at: None,
        finished_at: None,
    }
}

fn print_search(response: &serde_json::Value, json: bool, explain: bool) {
    if json {
        println!("{response}");
        return;
    }
    if let Some(d) = response["degraded"].as_str() {
        eprintln!("note: {d}");
    }
    let empty = Vec::new();
    let results = response["results"].as_array().unwrap_or(&empty);
    if results.is_empty() {
        println!("no results");
    }
    for h in results {
        let symbol = match h["symbol_path"].as_str() {
            Some(s) if !s.is_empty() => format!("  {s}"),
            _ => String::new(),
        };
        println!(
            "{}:{}-{}{}  ({:.4})",
            h["path"].as_str().unwrap_or(""),
            h["start_line"],
            h["end_line"],
            symbol,
            h["score"].as_f64().unwrap_or(0.0)
        );
        if explain {
            for s in h["signals"].as_array().unwrap_or(&empty) {
                println!(
                    "    {} rank {} score {:.4}",
                    s["signal"].as_str().unwrap_or(""),
                    s["rank"],
                    s["score"].as_f64().unwrap_or(0.0)
                );
            }
        }
        for line in h["snippet"].as_str().unwrap_or("").lines().take(6) {
            println!("    {line}");
        }
        println!();
    }
}
