//! The embedding cache: only content hashes without a vector are sent, each once.
//!
//! The cache is the store's `embeddings` table, keyed by (provider, model, dimensions) through
//! the model id, and by chunk content hash. [`embed_pending`] asks the store for distinct hashes
//! that have no vector for the model, so a hash shared by many chunks, files, branches or
//! projects is embedded once, and re-indexing unchanged code makes no call at all.
//!
//! Query embeddings are cached in memory by [`QueryEmbedder`] (least recently used first out).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, OptionFuture};
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use super::{EmbedError, Embedder, InputAdjustment, Result};
use crate::store::{Result as StoreResult, Store};

/// What one pass of [`embed_pending`] did. Cache hits are the caller's to count (chunks written
/// minus hashes that were pending).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmbedStats {
    /// Distinct content hashes embedded and stored.
    pub chunks_embedded: u64,
    /// Tokens the provider reported (or the estimate when it does not).
    pub tokens: u64,
    /// Batches handed to the embedder, failed ones included.
    pub calls: u64,
    /// Batches that failed; their chunks stay pending for the next pass.
    pub failures: u64,
    pub failed_chunks: u64,
    /// Over-long inputs embedded in pieces, and ones truncated.
    pub split: u64,
    pub truncated: u64,
    /// The circuit breaker opened: the pass stopped early and the rest stays pending. Not an
    /// error: the upstream is down, and the next pass picks the chunks up.
    pub paused: bool,
    /// The pass was cancelled; in-flight batches were dropped and nothing partial was stored.
    pub cancelled: bool,
    /// The last batch failure, for the run's timeline.
    pub last_error: Option<String>,
}

/// A pending content hash and its text, as the store lists them.
type Pending = (String, String);

/// One batch: content hashes and their texts.
struct Batch {
    hashes: Vec<String>,
    contents: Vec<String>,
}

/// Whether an error means no later batch can succeed either, so the pass should stop and fail:
/// bad credentials, an unknown model, mismatched dimensions, a broken store. A 400, 413 or 422 is
/// about this batch's inputs; the pass goes on without it.
fn fails_the_pass(error: &EmbedError) -> bool {
    match error {
        EmbedError::Rejected { status, .. } => !matches!(status, 400 | 413 | 422),
        EmbedError::Config(_) | EmbedError::Store(_) | EmbedError::DimensionMismatch { .. } => true,
        EmbedError::Exhausted { .. }
        | EmbedError::InvalidResponse(_)
        | EmbedError::CircuitOpen
        | EmbedError::DeadlineExceeded(_) => false,
    }
}

/// Embeds every chunk of a project (all projects when `None`) that has no vector for
/// `model_id`, storing each successful batch whole.
///
/// Batches are packed by the embedder's input and token limits and up to its
/// [`Embedder::concurrency`] are in flight. The next page of pending hashes is read while batches
/// are still running, so the pipeline never drains between pages. A failed batch is counted and
/// skipped for this pass (its chunks stay pending for the next one). The pass stops early,
/// returning its stats, when the circuit opens (`paused`) or `cancel` fires (`cancelled`:
/// in-flight batches are dropped, nothing partial is stored). It returns an error when the
/// failure means no other batch can succeed: a 401, 402, 403, 404 (any 4xx but 400, 413 and
/// 422, which are about one batch's inputs), [`EmbedError::DimensionMismatch`], a configuration
/// or a store error. `progress` is called after every batch.
pub async fn embed_pending(
    store: &dyn Store,
    model_id: i64,
    embedder: &dyn Embedder,
    project_id: Option<i64>,
    cancel: &CancellationToken,
    progress: Option<&(dyn Fn(&EmbedStats) + Sync)>,
) -> Result<EmbedStats> {
    let concurrency = embedder.concurrency().max(1);
    let max_inputs = embedder.max_batch_inputs().max(1);
    let max_tokens = embedder.max_batch_tokens().max(1);
    // About two rounds of batches per read, so a read is due well before the queue runs dry.
    let page = max_inputs.saturating_mul(concurrency).saturating_mul(2).clamp(64, 16_384);

    let mut stats = EmbedStats::default();
    // Hashes queued, in flight or failed in this pass. The store still reports them as pending,
    // so a read asks for that many more rows than a page and skips them.
    let mut outstanding: HashSet<String> = HashSet::new();
    // Hashes stored while a read was running: that read may still return them (it may have
    // started before they were stored), so they stay outstanding until it has been processed.
    let mut stored_during_read: Vec<String> = Vec::new();
    let mut queue: VecDeque<Batch> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    let mut read: Option<BoxFuture<'_, StoreResult<Vec<Pending>>>> = None;
    let mut drained = false;
    let mut stopping = false;
    let mut fatal: Option<EmbedError> = None;

    loop {
        if cancel.is_cancelled() {
            stats.cancelled = true;
            break;
        }
        if read.is_none() && !drained && !stopping && queue.len() < concurrency {
            let limit = i64::try_from(page + outstanding.len()).unwrap_or(i64::MAX);
            read = Some(Box::pin(store.pending_embeddings(model_id, project_id, limit)));
        }
        while !stopping && in_flight.len() < concurrency {
            let Some(batch) = queue.pop_front() else { break };
            stats.calls += 1;
            in_flight.push(async move {
                let result = embedder.embed(&batch.contents).await;
                (batch, result)
            });
        }
        if in_flight.is_empty() && read.is_none() {
            break;
        }

        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                stats.cancelled = true;
                break;
            }
            Some(rows) = OptionFuture::from(read.as_mut()), if read.is_some() => {
                read = None;
                let rows = rows?;
                let fresh: Vec<(String, String)> =
                    rows.into_iter().filter(|(h, _)| !outstanding.contains(h)).collect();
                for hash in stored_during_read.drain(..) {
                    outstanding.remove(&hash);
                }
                // A read asks for a page more than is outstanding; when nothing new comes back,
                // everything pending is already in hand.
                drained = fresh.is_empty();
                let sizes: Vec<usize> = fresh.iter().map(|(_, c)| indexer::count_tokens(c)).collect();
                let mut fresh = fresh.into_iter();
                for range in super::pack(sizes, max_inputs, max_tokens) {
                    let (hashes, contents): (Vec<String>, Vec<String>) = fresh.by_ref().take(range.len()).unzip();
                    outstanding.extend(hashes.iter().cloned());
                    queue.push_back(Batch { hashes, contents });
                }
            }
            Some((batch, result)) = in_flight.next(), if !in_flight.is_empty() => {
                match handle_batch(store, model_id, batch, result, &mut stats).await? {
                    Ok(hashes) if read.is_some() => stored_during_read.extend(hashes),
                    Ok(hashes) => {
                        for hash in hashes {
                            outstanding.remove(&hash);
                        }
                    }
                    Err(EmbedError::CircuitOpen) => {
                        tracing::warn!(model_id, "embedding upstream unavailable; pausing the embedding stage");
                        stats.paused = true;
                        stopping = true;
                    }
                    Err(error) if fails_the_pass(&error) => {
                        fatal.get_or_insert(error);
                        stopping = true;
                    }
                    Err(error) => {
                        tracing::warn!(model_id, %error, "embedding batch failed; its chunks stay pending");
                    }
                }
                if let Some(progress) = progress {
                    progress(&stats);
                }
            }
        }
    }
    match fatal {
        Some(error) => Err(error),
        None => Ok(stats),
    }
}

/// Stores a successful batch whole and counts it, or counts a failed one. The outer `Err` is a
/// store error; the inner result is the stored hashes or the batch's error.
async fn handle_batch(
    store: &dyn Store,
    model_id: i64,
    batch: Batch,
    result: Result<super::Embedded>,
    stats: &mut EmbedStats,
) -> Result<Result<Vec<String>>> {
    let result = result.and_then(|embedded| {
        if embedded.vectors.len() == batch.hashes.len() {
            Ok(embedded)
        } else {
            Err(EmbedError::InvalidResponse(format!(
                "{} vectors for {} inputs",
                embedded.vectors.len(),
                batch.hashes.len()
            )))
        }
    });
    let embedded = match result {
        Ok(embedded) => embedded,
        Err(EmbedError::CircuitOpen) => return Ok(Err(EmbedError::CircuitOpen)),
        Err(error) => {
            stats.failures += 1;
            stats.failed_chunks += batch.hashes.len() as u64;
            stats.last_error = Some(error.to_string());
            return Ok(Err(error));
        }
    };
    for adjustment in &embedded.adjustments {
        match adjustment {
            InputAdjustment::None => {}
            InputAdjustment::Split { .. } => stats.split += 1,
            InputAdjustment::Truncated => stats.truncated += 1,
        }
    }
    let rows: Vec<(String, Vec<f32>)> = batch.hashes.into_iter().zip(embedded.vectors).collect();
    store.put_embeddings(model_id, &rows).await?;
    stats.chunks_embedded += rows.len() as u64;
    stats.tokens += embedded.tokens;
    Ok(Ok(rows.into_iter().map(|(h, _)| h).collect()))
}

/// Embeds search queries through an [`Embedder`], remembering the most recent ones.
///
/// A query gets an overall deadline on top of the embedder's own timeouts and retries, so a
/// struggling upstream slows a search by at most that much (indexing, which can wait, has none).
#[derive(Debug)]
pub struct QueryEmbedder {
    inner: Arc<dyn Embedder>,
    deadline: Duration,
    cache: Mutex<Lru>,
}

impl QueryEmbedder {
    /// Default number of queries remembered.
    pub const DEFAULT_CAPACITY: usize = 1024;
    /// Default longest wait for a query's vector.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

    pub fn new(inner: Arc<dyn Embedder>, capacity: usize, deadline: Duration) -> QueryEmbedder {
        QueryEmbedder { inner, deadline, cache: Mutex::new(Lru::new(capacity)) }
    }

    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.inner
    }

    /// The query's vector, from the cache or the embedder. Failures are not cached.
    pub async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        if let Some(v) = self.lock().get(query) {
            return Ok(v);
        }
        let input = [query.to_string()];
        let embedded = tokio::time::timeout(self.deadline, self.inner.embed(&input))
            .await
            .map_err(|_| EmbedError::DeadlineExceeded(self.deadline))??;
        let vector = embedded
            .vectors
            .into_iter()
            .next()
            .ok_or_else(|| EmbedError::InvalidResponse("no vector for the query".to_string()))?;
        self.lock().put(query.to_string(), vector.clone());
        Ok(vector)
    }

    /// Number of queries currently cached.
    pub fn cached(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A small least-recently-used map: entries carry a use tick, and a tick-ordered index finds the
/// oldest in O(log n).
#[derive(Debug)]
struct Lru {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (u64, Vec<f32>)>,
    by_tick: BTreeMap<u64, String>,
}

impl Lru {
    fn new(capacity: usize) -> Lru {
        Lru { capacity, tick: 0, entries: HashMap::new(), by_tick: BTreeMap::new() }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&mut self, key: &str) -> Option<Vec<f32>> {
        self.tick += 1;
        let tick = self.tick;
        let (old, vector) = self.entries.get_mut(key)?;
        let key = self.by_tick.remove(old)?;
        *old = tick;
        let vector = vector.clone();
        self.by_tick.insert(tick, key);
        Some(vector)
    }

    fn put(&mut self, key: String, vector: Vec<f32>) {
        if self.capacity == 0 {
            return;
        }
        self.tick += 1;
        if let Some((old, _)) = self.entries.insert(key.clone(), (self.tick, vector)) {
            self.by_tick.remove(&old);
        }
        self.by_tick.insert(self.tick, key);
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.by_tick.pop_first() else { break };
            self.entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        lru.put("a".into(), vec![1.0]);
        lru.put("b".into(), vec![2.0]);
        assert_eq!(lru.get("a"), Some(vec![1.0]));
        lru.put("c".into(), vec![3.0]);
        assert_eq!(lru.get("b"), None, "b was the least recently used");
        assert_eq!(lru.get("a"), Some(vec![1.0]));
        assert_eq!(lru.get("c"), Some(vec![3.0]));
        lru.put("c".into(), vec![4.0]);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get("c"), Some(vec![4.0]));
        assert_eq!(lru.by_tick.len(), 2);
        let mut none = Lru::new(0);
        none.put("a".into(), vec![1.0]);
        assert_eq!(none.len(), 0);
    }
}
