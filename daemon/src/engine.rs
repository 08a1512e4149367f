//! The engine: the configured store, embedder and vector index that the CLI, the job runner
//! and the HTTP API share. Opening it runs pending migrations and registers the embedding model.

use std::sync::Arc;

use anyhow::Context;

use crate::config::{Config, EmbedderKind};
use crate::embed::{BuiltinEmbedder, Embedder, OpenAiConfig, OpenAiEmbedder, QueryEmbedder};
use crate::search::symtab::SymbolIndex;
use crate::store::{EmbeddingModel, PgStore, SharedStore, SqliteStore};
use crate::vector::LocalVectors;

/// Everything a command needs to index and search.
#[derive(Debug, Clone)]
pub struct Engine {
    pub config: Config,
    pub store: SharedStore,
    pub embedder: Arc<dyn Embedder>,
    pub query_embedder: Arc<QueryEmbedder>,
    pub model: EmbeddingModel,
    pub vectors: Arc<LocalVectors>,
    /// The symbols held in memory for symbol search, once a long-running process loads them.
    pub symbols: Arc<SymbolIndex>,
}

impl Engine {
    /// Opens the configured backend, migrates it, and registers the embedding model.
    pub async fn open(config: Config) -> anyhow::Result<Engine> {
        let store = open_store(&config).await?;
        let embedder = open_embedder(&config)?;
        let spec = embedder.spec().clone();
        let model = store
            .register_model(&spec.provider, &spec.model, spec.dimensions as i32)
            .await
            .context("registering the embedding model")?;
        let vectors = Arc::new(LocalVectors::new(config.vector_dir(), model.clone()));
        let query_embedder = Arc::new(QueryEmbedder::new(
            embedder.clone(),
            QueryEmbedder::DEFAULT_CAPACITY,
            QueryEmbedder::DEFAULT_DEADLINE,
        ));
        let symbols = Arc::new(SymbolIndex::default());
        Ok(Engine { config, store, embedder, query_embedder, model, vectors, symbols })
    }
}

/// Opens and migrates the store the configuration names: PostgreSQL when a database URL is
/// set, else the SQLite file in the data directory.
pub async fn open_store(config: &Config) -> anyhow::Result<SharedStore> {
    let store = connect_store(config).await?;
    store.migrate_up().await.context("applying migrations")?;
    Ok(store)
}

/// Opens the store the configuration names without migrating it, for the commands that manage
/// the schema themselves (`migrate`, `status`, `backup`, `restore`).
pub async fn connect_store(config: &Config) -> anyhow::Result<SharedStore> {
    let store: SharedStore = match &config.database_url {
        Some(url) => Arc::new(PgStore::connect(url).await.context("connecting to PostgreSQL")?),
        None => {
            let path = config.sqlite_path();
            Arc::new(
                SqliteStore::open(&path)
                    .await
                    .with_context(|| format!("opening the SQLite store at {}", path.display()))?,
            )
        }
    };
    Ok(store)
}

/// Builds the configured embedder.
pub fn open_embedder(config: &Config) -> anyhow::Result<Arc<dyn Embedder>> {
    let e = &config.embedding;
    Ok(match config.embedder {
        EmbedderKind::Builtin => Arc::new(BuiltinEmbedder::new(e.dimensions)),
        EmbedderKind::OpenAi => {
            let oc = OpenAiConfig {
                base_url: e.url.clone(),
                api_key: e.api_key.clone(),
                model: e.model.clone(),
                dimensions: e.dimensions,
                send_dimensions: e.send_dimensions,
                encoding_format: e.encoding_format,
                over_long: e.over_long,
                max_batch_inputs: e.max_batch_inputs,
                concurrency: e.concurrency,
                timeout: std::time::Duration::from_secs(e.timeout_secs),
                max_retries: e.max_retries,
                ..OpenAiConfig::default()
            };
            Arc::new(OpenAiEmbedder::new(oc).context("configuring the OpenAI-compatible embedder")?)
        }
    })
}
