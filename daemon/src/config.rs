//! Configuration: one struct, read from the TOML file, then the environment (`SEMDEX_*`), then
//! command-line flags, each layer overriding the one before. Unknown keys in the file are
//! rejected so a typo never silently does nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::embed::{EncodingFormat, OverLongPolicy};

/// Which embedding provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedderKind {
    Builtin,
    OpenAi,
}

impl EmbedderKind {
    fn parse(s: &str) -> anyhow::Result<EmbedderKind> {
        match s {
            "builtin" => Ok(EmbedderKind::Builtin),
            "openai" => Ok(EmbedderKind::OpenAi),
            other => bail!("unknown embedder {other:?} (expected builtin or openai)"),
        }
    }
}

/// Embedding settings.
#[derive(Debug, Clone)]
pub struct EmbeddingSettings {
    pub url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub dimensions: usize,
    /// Whether to send `dimensions` in requests (servers such as Ollama reject it).
    pub send_dimensions: bool,
    /// `encoding_format` asked of the server: `base64` (the default, compact and fast to decode)
    /// or `float` for servers that reject it. Either is accepted in the answer.
    pub encoding_format: EncodingFormat,
    /// What happens to an input over the provider's per-input token limit: `split` (the
    /// default; the pieces' vectors are averaged) or `truncate`. Each embedding records which.
    pub over_long: OverLongPolicy,
    pub max_batch_inputs: usize,
    pub concurrency: usize,
    pub timeout_secs: u64,
    pub max_retries: u32,
    /// Price in US dollars per million tokens, for dry-run cost estimates.
    pub price_per_million_tokens: f64,
}

/// Repository walking and chunking settings (defaults for every project).
#[derive(Debug, Clone)]
pub struct IndexSettings {
    pub max_file_size: u64,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub chunk_max_tokens: u32,
}

/// How HTTP clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// No authentication: allowed only when listening on loopback, and the default there.
    None,
    /// Bearer tokens with scopes; required beyond loopback.
    Token,
}

/// The daemon's HTTP server and job runner settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub auth: AuthMode,
    /// Directories under which projects may be registered over HTTP.
    pub allowed_roots: Vec<PathBuf>,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Longest a request may take before a 503.
    pub request_timeout_secs: u64,
    /// Requests served at once; more are shed with 503 and `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Origins allowed by CORS; empty means CORS is off.
    pub cors_origins: Vec<String>,
    /// Longest search query accepted, in bytes.
    pub max_query_bytes: usize,
    /// Largest `top_k` accepted.
    pub max_top_k: usize,
    /// How long a worker holds a run before it must renew its lease.
    pub lease_secs: i64,
    /// How often an idle runner looks for runs queued by other processes.
    pub poll_millis: u64,
    /// Runs executed at once by this process.
    pub workers: usize,
    /// Watch every project's files (a project's `"watch"` setting overrides this).
    pub watch: bool,
    /// Quiet time after the last file event before a watched change is indexed.
    pub watch_debounce_millis: u64,
    /// Seconds between full verification runs of every project (0: never); they catch drift
    /// that no hook or watcher reported.
    pub verify_interval_secs: u64,
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    pub embedder: EmbedderKind,
    pub embedding: EmbeddingSettings,
    pub token: Option<String>,
    pub index: IndexSettings,
    pub server: ServerSettings,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<String>,
    embedder: Option<String>,
    embedding: Option<FileEmbedding>,
    index: Option<FileIndex>,
    server: Option<FileServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    auth: Option<String>,
    allowed_roots: Option<Vec<PathBuf>>,
    max_body_bytes: Option<usize>,
    request_timeout_secs: Option<u64>,
    max_concurrent_requests: Option<usize>,
    cors_origins: Option<Vec<String>>,
    max_query_bytes: Option<usize>,
    max_top_k: Option<usize>,
    lease_secs: Option<i64>,
    poll_millis: Option<u64>,
    workers: Option<usize>,
    watch: Option<bool>,
    watch_debounce_millis: Option<u64>,
    verify_interval_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEmbedding {
    url: Option<String>,
    api_key: Option<String>,
    model: Option<String>,
    dimensions: Option<usize>,
    send_dimensions: Option<bool>,
    encoding_format: Option<String>,
    over_long: Option<String>,
    max_batch_inputs: Option<usize>,
    concurrency: Option<usize>,
    timeout_secs: Option<u64>,
    max_retries: Option<u32>,
    price_per_million_tokens: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIndex {
    max_file_size: Option<u64>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    chunk_max_tokens: Option<u32>,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub config: Option<PathBuf>,
}

/// Where the environment comes from; a function so tests can pass their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Loads the configuration from the process environment and `overrides`.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Config> {
        Config::load_with(overrides, &process_env)
    }

    /// Loads the configuration with an explicit environment.
    pub fn load_with(overrides: &Overrides, env: Env<'_>) -> anyhow::Result<Config> {
        let data_dir = overrides
            .data_dir
            .clone()
            .or_else(|| env("SEMDEX_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| default_data_dir(env));
        let config_path = overrides
            .config
            .clone()
            .or_else(|| env("SEMDEX_CONFIG").map(PathBuf::from))
            .or_else(|| Some(data_dir.join("semdex.toml")).filter(|p| p.exists()));
        let file = match &config_path {
            Some(path) => read_file_config(path)?,
            None => FileConfig::default(),
        };
        // A data_dir in the file applies only when neither flag nor environment gave one.
        let data_dir = match (&overrides.data_dir, env("SEMDEX_DATA_DIR"), &file.data_dir) {
            (None, None, Some(dir)) => dir.clone(),
            _ => data_dir,
        };
        let fe = file.embedding.unwrap_or_default();
        let fi = file.index.unwrap_or_default();

        let listen_text = overrides
            .listen
            .clone()
            .or_else(|| env("SEMDEX_LISTEN"))
            .or(file.listen)
            .unwrap_or_else(|| "127.0.0.1:7878".to_string());
        let listen: SocketAddr =
            listen_text.parse().with_context(|| format!("invalid listen address {listen_text:?}"))?;
        let embedder = match env("SEMDEX_EMBEDDER").or(file.embedder) {
            Some(kind) => EmbedderKind::parse(&kind)?,
            None => EmbedderKind::Builtin,
        };
        let dimensions = match env("SEMDEX_EMBEDDING_DIMS") {
            Some(d) => d.parse().with_context(|| format!("SEMDEX_EMBEDDING_DIMS={d:?} is not a number"))?,
            None => fe.dimensions.unwrap_or(3072),
        };
        if dimensions == 0 || dimensions > 16_000 {
            bail!("embedding dimensions must be between 1 and 16000, got {dimensions}");
        }
        let embedding = EmbeddingSettings {
            url: env("SEMDEX_EMBEDDING_URL")
                .or(fe.url)
                .unwrap_or_else(|| "https://api.openai.com".to_string()),
            api_key: env("SEMDEX_EMBEDDING_API_KEY").or_else(|| env("OPENAI_API_KEY")).or(fe.api_key),
            model: env("SEMDEX_EMBEDDING_MODEL")
                .or(fe.model)
                .unwrap_or_else(|| "text-embedding-3-large".into()),
            dimensions,
            send_dimensions: fe.send_dimensions.unwrap_or(true),
            encoding_format: match fe.encoding_format.as_deref() {
                None | Some("base64") => EncodingFormat::Base64,
                Some("float") => EncodingFormat::Float,
                Some(other) => {
                    bail!("unknown embedding.encoding_format {other:?} (expected base64 or float)")
                }
            },
            over_long: match fe.over_long.as_deref() {
                None | Some("split") => OverLongPolicy::Split,
                Some("truncate") => OverLongPolicy::Truncate,
                Some(other) => bail!("unknown embedding.over_long {other:?} (expected split or truncate)"),
            },
            max_batch_inputs: fe.max_batch_inputs.unwrap_or(2048).clamp(1, 2048),
            concurrency: fe.concurrency.unwrap_or(4).clamp(1, 64),
            timeout_secs: fe.timeout_secs.unwrap_or(60),
            max_retries: fe.max_retries.unwrap_or(5),
            price_per_million_tokens: fe.price_per_million_tokens.unwrap_or(0.13),
        };
        let index = IndexSettings {
            max_file_size: fi.max_file_size.unwrap_or(1024 * 1024),
            include: fi.include.unwrap_or_default(),
            exclude: fi.exclude.unwrap_or_default(),
            chunk_max_tokens: fi.chunk_max_tokens.unwrap_or(512),
        };
        let fs = file.server.unwrap_or_default();
        let auth = match env("SEMDEX_AUTH").or(fs.auth) {
            Some(mode) => match mode.as_str() {
                "none" => AuthMode::None,
                "token" => AuthMode::Token,
                other => bail!("unknown auth mode {other:?} (expected none or token)"),
            },
            // Tokens are required anywhere but loopback; there, none is the default.
            None if listen.ip().is_loopback() => AuthMode::None,
            None => AuthMode::Token,
        };
        if auth == AuthMode::None && !listen.ip().is_loopback() {
            bail!("auth mode none is allowed only on a loopback address, not {listen}; use auth = \"token\"");
        }
        let allowed_roots = match env("SEMDEX_ALLOWED_ROOTS") {
            Some(list) => std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()).collect(),
            None => fs.allowed_roots.unwrap_or_else(|| env("HOME").map(PathBuf::from).into_iter().collect()),
        };
        let lease_secs = fs.lease_secs.unwrap_or(30);
        if !(3..=3600).contains(&lease_secs) {
            bail!("server.lease_secs must be between 3 and 3600, got {lease_secs}");
        }
        let server = ServerSettings {
            auth,
            allowed_roots,
            max_body_bytes: fs.max_body_bytes.unwrap_or(1024 * 1024),
            request_timeout_secs: fs.request_timeout_secs.unwrap_or(30).max(1),
            max_concurrent_requests: fs.max_concurrent_requests.unwrap_or(256).max(1),
            cors_origins: fs.cors_origins.unwrap_or_default(),
            max_query_bytes: fs.max_query_bytes.unwrap_or(4096),
            max_top_k: fs.max_top_k.unwrap_or(200).max(1),
            lease_secs,
            poll_millis: fs.poll_millis.unwrap_or(1000).max(10),
            workers: fs.workers.unwrap_or(1).clamp(1, 64),
            watch: match env("SEMDEX_WATCH") {
                Some(v) => matches!(v.as_str(), "1" | "true" | "yes" | "on"),
                None => fs.watch.unwrap_or(false),
            },
            watch_debounce_millis: fs.watch_debounce_millis.unwrap_or(300).clamp(10, 60_000),
            verify_interval_secs: fs.verify_interval_secs.unwrap_or(6 * 3600),
        };
        Ok(Config {
            server,
            data_dir,
            database_url: overrides
                .database_url
                .clone()
                .or_else(|| env("SEMDEX_DATABASE_URL"))
                .or_else(|| env("DATABASE_URL"))
                .or(file.database_url),
            listen,
            embedder,
            embedding,
            token: env("SEMDEX_TOKEN"),
            index,
        })
    }

    /// The SQLite file of the embedded store.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("semdex.db")
    }

    /// The folder holding the local HNSW files.
    pub fn vector_dir(&self) -> PathBuf {
        self.data_dir.join("vectors")
    }
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

fn default_data_dir(env: Env<'_>) -> PathBuf {
    if let Some(xdg) = env("XDG_DATA_HOME") {
        return PathBuf::from(xdg).join("semdex");
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/semdex"),
        None => PathBuf::from(".semdex"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)], overrides: &Overrides) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::load_with(overrides, &move |k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = load(&[("HOME", "/home/u")], &Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/home/u/.local/share/semdex"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:7878");
        assert_eq!(c.embedder, EmbedderKind::Builtin);
        assert_eq!(c.embedding.model, "text-embedding-3-large");
        assert_eq!(c.embedding.dimensions, 3072);
        assert_eq!(c.database_url, None);
        let c = load(&[("XDG_DATA_HOME", "/x"), ("HOME", "/home/u")], &Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x/semdex"));
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("semdex.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\nembedder = \"openai\"\n[embedding]\nmodel = \"m\"\n",
        )
        .unwrap();
        let dd = dir.path().to_str().unwrap();
        let c = load(&[("SEMDEX_DATA_DIR", dd)], &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.embedder, EmbedderKind::OpenAi);
        assert_eq!(c.embedding.model, "m");
        let c = load(&[("SEMDEX_DATA_DIR", dd), ("SEMDEX_LISTEN", "127.0.0.1:9001")], &Overrides::default())
            .unwrap();
        assert_eq!(c.listen.port(), 9001);
        let flags = Overrides { listen: Some("127.0.0.1:9002".into()), ..Overrides::default() };
        let c = load(&[("SEMDEX_DATA_DIR", dd), ("SEMDEX_LISTEN", "127.0.0.1:9001")], &flags).unwrap();
        assert_eq!(c.listen.port(), 9002);
        let c = load(&[("SEMDEX_DATA_DIR", dd), ("DATABASE_URL", "postgres://a")], &Overrides::default())
            .unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://a"));
        let c = load(
            &[
                ("SEMDEX_DATA_DIR", dd),
                ("DATABASE_URL", "postgres://a"),
                ("SEMDEX_DATABASE_URL", "postgres://b"),
            ],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://b"));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("semdex.toml"), "lisen = \"x\"\n").unwrap();
        let dd = dir.path().to_str().unwrap();
        let err = load(&[("SEMDEX_DATA_DIR", dd)], &Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
        let err = load(&[("SEMDEX_EMBEDDER", "magic"), ("HOME", "/h")], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("magic"));
        let err = load(&[("SEMDEX_LISTEN", "nope"), ("HOME", "/h")], &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("listen"));
    }
}
