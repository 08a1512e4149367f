//! The local vector index of the embedded default (and the fallback of server mode without
//! pgvector): one HNSW per embedding model, kept in step with the store's `embeddings` table.
//!
//! The store is the source of truth. [`LocalVectors::sync`] compares the index's extent (count
//! and highest id) with the store's: equal means current; a store that only grew is caught up by
//! inserting the new rows; anything else (a restore, a corrupt or foreign file) rebuilds from the
//! store. A saved index that is a true prefix of the store (fewer rows, all of them still there)
//! is loaded and caught up instead of rebuilt. The daemon defers saves (at most one per interval,
//! and one at shutdown), since the store can always fill the gap. Embeddings are never deleted by indexing (they are a cache keyed by content), so ghost
//! results are prevented where chunks are joined in, not here.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::store::{EmbeddingModel, Store};
use crate::vector::{Extent, HnswIndex, HnswParams, VectorHit};

/// Rows fetched per page when catching up or rebuilding.
const PAGE: i64 = 2048;

/// A lazily loaded, self-updating local HNSW for one model.
#[derive(Debug)]
pub struct LocalVectors {
    dir: PathBuf,
    model: EmbeddingModel,
    params: HnswParams,
    index: RwLock<Option<Arc<HnswIndex>>>,
    /// Serialises syncs so two callers never catch up the same rows at once.
    sync_lock: tokio::sync::Mutex<()>,
    /// When a search last checked the store for new vectors.
    checked: std::sync::Mutex<Option<std::time::Instant>>,
    /// Minimum time between saves in milliseconds; 0 saves on every sync.
    save_every_ms: AtomicU64,
    last_saved: std::sync::Mutex<Option<Instant>>,
    /// The in-memory index holds vectors the files do not.
    dirty: AtomicBool,
}

/// How stale a search may find the index before it checks the store again. Runs in this
/// process sync as they finish; this bounds the lag behind writers in other processes.
const SEARCH_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The index in memory was already current.
    Current,
    /// The saved index was current and was loaded.
    Loaded,
    /// New rows were added to the index in memory, or to a saved prefix loaded from disk.
    CaughtUp { from_disk: bool, added: usize },
    /// Built from the store from scratch.
    Rebuilt { added: usize },
}

/// Why the local index could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum LocalVectorError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Vector(#[from] crate::vector::VectorError),
    #[error("vector index task failed: {0}")]
    Task(String),
}

impl LocalVectors {
    /// The index of `model`, kept under `root/model-<id>`.
    pub fn new(root: PathBuf, model: EmbeddingModel) -> LocalVectors {
        LocalVectors {
            dir: root.join(format!("model-{}", model.id)),
            model,
            params: HnswParams::default(),
            index: RwLock::new(None),
            sync_lock: tokio::sync::Mutex::new(()),
            checked: std::sync::Mutex::new(None),
            save_every_ms: AtomicU64::new(0),
            last_saved: std::sync::Mutex::new(None),
            dirty: AtomicBool::new(false),
        }
    }

    fn current(&self) -> Option<Arc<HnswIndex>> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, index: Arc<HnswIndex>) {
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Some(index);
    }

    fn model_key(&self) -> String {
        format!("{}/{}/{}", self.model.provider, self.model.model, self.model.dimensions)
    }

    /// Makes the index fit for a search: loaded, and checked against the store at most once a
    /// second. Concurrent searches never queue behind one another here: while one syncs, the
    /// others search the index as it is.
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), LocalVectorError> {
        let loaded = self.current().is_some();
        if loaded {
            let now = std::time::Instant::now();
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.is_some_and(|t| now.duration_since(t) < SEARCH_RECHECK) {
                return Ok(());
            }
            *checked = Some(now);
            drop(checked);
            if self.sync_lock.try_lock().is_err() {
                return Ok(());
            }
        }
        self.sync(store).await.map(|_| ())
    }

    /// Brings the index up to date with the store, loading or rebuilding it as needed, and
    /// publishes it to disk when it changed.
    pub async fn sync(&self, store: &dyn Store) -> Result<SyncOutcome, LocalVectorError> {
        let _guard = self.sync_lock.lock().await;
        let (count, max_id) = store.embeddings_extent(self.model.id).await?;
        let expected = Extent { count, max_id };
        let dims = self.model.dimensions as usize;
        let mut index = match self.current() {
            Some(index) if index.extent() == expected => return Ok(SyncOutcome::Current),
            Some(index) => Some(index),
            None => {
                let (dir, key, params) = (self.dir.clone(), self.model_key(), self.params.clone());
                let loaded = blocking(move || HnswIndex::load(&dir, &key, dims, params, expected)).await??;
                if let Some(loaded) = loaded {
                    self.set(Arc::new(loaded));
                    return Ok(SyncOutcome::Loaded);
                }
                // A saved index that stops short of the store (the daemon defers saves, and a
                // crash can fall between a write and a save) is still usable when it is a true
                // prefix of the store: load it and catch up rather than rebuild everything.
                let dir = self.dir.clone();
                match blocking(move || HnswIndex::published_extent(&dir)).await? {
                    Some(p)
                        if p.max_id < max_id
                            && p.count < count
                            && store.embeddings_count_upto(self.model.id, p.max_id).await? == p.count =>
                    {
                        let (dir, key, params) = (self.dir.clone(), self.model_key(), self.params.clone());
                        blocking(move || HnswIndex::load(&dir, &key, dims, params, p)).await??.map(Arc::new)
                    }
                    _ => None,
                }
            }
        };
        // Catch up when the store only grew past what the index holds; otherwise rebuild.
        let from = match &index {
            Some(ix) if ix.extent().max_id <= max_id && ix.extent().count <= count => ix.extent().max_id,
            _ => {
                index = None;
                0
            }
        };
        let index = match index {
            Some(ix) => ix,
            None => Arc::new(HnswIndex::new(self.model_key(), dims, self.params.clone())?),
        };
        let from_disk = from > 0 && self.current().is_none();
        let rebuilt = from == 0;
        let mut added = 0;
        let mut after = from;
        loop {
            let page = store.embeddings_page(self.model.id, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.0;
            let ix = index.clone();
            let rows: Vec<(i64, Vec<f32>)> = page.into_iter().map(|(id, _, v)| (id, v)).collect();
            added += rows.len();
            blocking(move || ix.insert_batch(rows)).await??;
        }
        // Searches see the new vectors at once; the files follow, now or, when saves are
        // deferred, once the interval has passed (the store can always fill the gap).
        self.set(index.clone());
        if self.save_due() {
            self.save(index).await?;
        } else {
            self.dirty.store(true, Ordering::SeqCst);
        }
        Ok(if rebuilt { SyncOutcome::Rebuilt { added } } else { SyncOutcome::CaughtUp { from_disk, added } })
    }

    /// Saves at most once per `every` from now on (the daemon, which syncs after every run);
    /// [`LocalVectors::flush`] writes what is pending. Without it, every sync saves.
    pub fn defer_saves(&self, every: Duration) {
        self.save_every_ms.store(every.as_millis() as u64, Ordering::SeqCst);
    }

    fn save_due(&self) -> bool {
        let every = self.save_every_ms.load(Ordering::SeqCst);
        let last = *self.last_saved.lock().unwrap_or_else(|e| e.into_inner());
        every == 0 || last.is_none_or(|t| t.elapsed() >= Duration::from_millis(every))
    }

    async fn save(&self, index: Arc<HnswIndex>) -> Result<(), LocalVectorError> {
        let dir = self.dir.clone();
        blocking(move || index.save(&dir)).await??;
        *self.last_saved.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.dirty.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Writes the in-memory index to disk if a deferred save is pending; with `only_when_due`,
    /// only once the save interval has passed. Returns whether it saved.
    pub async fn flush(&self, only_when_due: bool) -> Result<bool, LocalVectorError> {
        if !self.dirty.load(Ordering::SeqCst) || (only_when_due && !self.save_due()) {
            return Ok(false);
        }
        let _guard = self.sync_lock.lock().await;
        match self.current() {
            Some(index) if self.dirty.load(Ordering::SeqCst) => {
                self.save(index).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The `k` nearest embeddings to `query` among `allowed` (all when `None`). An index that was
    /// never synced answers nothing.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allowed: Option<&HashSet<i64>>,
    ) -> Result<Vec<VectorHit>, LocalVectorError> {
        match self.current() {
            Some(index) => Ok(index.search(query, k, None, allowed)?),
            None => Ok(Vec::new()),
        }
    }

    /// Number of live vectors in memory (0 before the first sync).
    pub fn len(&self) -> usize {
        self.current().map_or(0, |ix| ix.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, LocalVectorError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| LocalVectorError::Task(e.to_string()))
}
