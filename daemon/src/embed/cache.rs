//! The embedding cache: only content hashes without a vector are sent, each once.
//!
//! The cache is the store's `embeddings` table, keyed by (provider, model, dimensions) through
//! the model id, and by chunk content hash. [`embed_pending`] asks the store for distinct hashes
//! that have no vector for the model, so a hash shared by many chunks, files, branches or
//! projects is embedded once, and re-indexing unchanged code makes no call at all.
//!
//! Query embeddings are cached in memory by [`QueryEmbedder`] (least recently used first out).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, OptionFuture};
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{EmbedError, Embedder, InputAdjustment, Result};
use crate::store::{InputMode, Result as StoreResult, Store};

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

/// A pending content hash, its text and its estimated tokens.
type Pending = (String, String, usize);

/// Largest page of pending rows read at once.
const MAX_PAGE: usize = 16_384;

/// One batch: content hashes and their texts.
struct Batch {
    hashes: Vec<String>,
    contents: Vec<String>,
}

/// A batch the embedder answered, on its way to the store.
struct Answered {
    rows: Vec<(String, Vec<f32>)>,
    modes: Vec<InputMode>,
    tokens: u64,
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

type Progress<'a> = Option<&'a (dyn Fn(&EmbedStats) + Sync)>;

/// A page of pending `(content hash, content)` rows being read.
type PageRead<'a> = BoxFuture<'a, StoreResult<Vec<(String, String)>>>;

/// Embeds every chunk of a project (all projects when `None`) that has no vector for
/// `model_id`, storing each successful batch whole.
///
/// Two futures run side by side on the caller's task:
/// - the **call loop** reads pending hashes page by page with a keyset cursor (each hash is read
///   once per pass, so nothing is sent twice), packs them into batches by the embedder's input
///   and token limits, and keeps up to [`Embedder::concurrency`] batches in flight. The first
///   page is one round of batches, so the first calls go out at once; the next page is read
///   while those run, so the pipeline never drains between pages. The embedder decodes large
///   answers off this task, and the loop never waits for the store: an answered batch goes to
///   the writer, and its slot is refilled at once;
/// - the **writer** takes answered batches from a bounded channel and stores each whole, with
///   how each input was sent (whole, split or truncated). When the channel is full the loop
///   holds answered batches and launches nothing new until there is room, so memory stays
///   bounded by a few rounds of batches.
///
/// A failed batch is counted and skipped for this pass (its chunks stay pending for the next
/// one). The pass stops early, returning its stats, when the circuit opens (`paused`) or
/// `cancel` fires (`cancelled`: in-flight batches are dropped; answered ones are still stored,
/// whole). It returns an error when the failure means no other batch can succeed: a 401, 402,
/// 403, 404 (any 4xx but 400, 413 and 422, which are about one batch's inputs),
/// [`EmbedError::DimensionMismatch`], a configuration or a store error. `progress` is called
/// after every batch, stored or failed.
pub async fn embed_pending(
    store: &dyn Store,
    model_id: i64,
    embedder: &dyn Embedder,
    project_id: Option<i64>,
    cancel: &CancellationToken,
    progress: Option<&(dyn Fn(&EmbedStats) + Sync)>,
) -> Result<EmbedStats> {
    let stats = Mutex::new(EmbedStats::default());
    let (sender, receiver) = mpsc::channel(embedder.concurrency().max(1));
    let writer_failed = CancellationToken::new();
    let calls =
        call_loop(store, model_id, embedder, project_id, cancel, progress, &stats, sender, &writer_failed);
    let writes = write_loop(store, model_id, receiver, progress, &stats, &writer_failed);
    let (called, written) = tokio::join!(calls, writes);
    written?;
    called?;
    Ok(stats.into_inner().unwrap_or_else(PoisonError::into_inner))
}

fn lock(stats: &Mutex<EmbedStats>) -> MutexGuard<'_, EmbedStats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Updates the stats, then reports them (outside the lock).
fn record(stats: &Mutex<EmbedStats>, progress: Progress<'_>, update: impl FnOnce(&mut EmbedStats)) {
    let snapshot = {
        let mut stats = lock(stats);
        update(&mut stats);
        progress.map(|_| stats.clone())
    };
    if let (Some(progress), Some(snapshot)) = (progress, snapshot) {
        progress(&snapshot);
    }
}

/// Reads, packs and sends batches; hands answered ones to the writer. See [`embed_pending`].
#[allow(clippy::too_many_arguments)]
async fn call_loop(
    store: &dyn Store,
    model_id: i64,
    embedder: &dyn Embedder,
    project_id: Option<i64>,
    cancel: &CancellationToken,
    progress: Progress<'_>,
    stats: &Mutex<EmbedStats>,
    sender: mpsc::Sender<Answered>,
    writer_failed: &CancellationToken,
) -> Result<()> {
    let concurrency = embedder.concurrency().max(1);
    let max_inputs = embedder.max_batch_inputs().max(1);
    let max_tokens = embedder.max_batch_tokens().max(1);
    let round = max_inputs.saturating_mul(concurrency);
    // The first page is one round, so the first calls go out as soon as it is read; later pages
    // are two, read while the previous one is in flight.
    let first_page = round.clamp(64, MAX_PAGE);
    let page = round.saturating_mul(2).clamp(64, MAX_PAGE);

    // The last hash read: the next page starts after it.
    let mut cursor: Option<String> = None;
    let mut pages = 0u64;
    let mut read: Option<PageRead<'_>> = None;
    let mut read_limit = first_page;
    // The last read returned less than a page: nothing more is pending.
    let mut drained = false;
    // Rows too few for a full batch, held until the next page fills it (or nothing more comes).
    let mut carry: Vec<Pending> = Vec::new();
    let mut queue: VecDeque<Batch> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    // Answered batches waiting for room in the writer's channel.
    let mut ready: VecDeque<Answered> = VecDeque::new();
    let mut stopping = false;
    let mut fatal: Option<EmbedError> = None;

    loop {
        if cancel.is_cancelled() {
            lock(stats).cancelled = true;
            break;
        }
        if writer_failed.is_cancelled() {
            break;
        }
        if read.is_none() && !drained && !stopping && queue.len() < 2 * concurrency {
            read_limit = if pages == 0 { first_page } else { page };
            let limit = i64::try_from(read_limit).unwrap_or(i64::MAX);
            read = Some(Box::pin(store.pending_embeddings(model_id, project_id, cursor.as_deref(), limit)));
        }
        while !stopping && ready.is_empty() && in_flight.len() < concurrency {
            let Some(batch) = queue.pop_front() else { break };
            lock(stats).calls += 1;
            in_flight.push(async move {
                let result = embedder.embed(&batch.contents).await;
                (batch, result)
            });
        }
        if in_flight.is_empty() && read.is_none() && ready.is_empty() {
            break;
        }

        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                lock(stats).cancelled = true;
                break;
            }
            () = writer_failed.cancelled() => break,
            permit = sender.reserve(), if !ready.is_empty() => match permit {
                Ok(permit) => permit.send(ready.pop_front().expect("ready is not empty")),
                // The writer stopped on a store error; it reports it.
                Err(_) => break,
            },
            Some(rows) = OptionFuture::from(read.as_mut()), if read.is_some() => {
                read = None;
                pages += 1;
                let rows = rows?;
                drained = rows.len() < read_limit;
                if let Some((last, _)) = rows.last() {
                    cursor = Some(last.clone());
                }
                carry.extend(rows.into_iter().map(|(hash, content)| {
                    let tokens = indexer::count_tokens(&content);
                    (hash, content, tokens)
                }));
                let mut ranges = super::pack(carry.iter().map(|p| p.2), max_inputs, max_tokens);
                // A short last batch waits for the next page, unless there is none.
                let held = match ranges.last() {
                    Some(last) if !drained && last.len() < max_inputs => ranges.pop().map_or(0, |r| r.len()),
                    _ => 0,
                };
                let rest = carry.split_off(carry.len() - held);
                let mut packed = std::mem::replace(&mut carry, rest).into_iter();
                for range in ranges {
                    let (hashes, contents) = packed.by_ref().take(range.len()).map(|(h, c, _)| (h, c)).unzip();
                    queue.push_back(Batch { hashes, contents });
                }
            }
            Some((batch, result)) = in_flight.next(), if !in_flight.is_empty() => {
                match answered(batch, result) {
                    Ok(answer) => match sender.try_send(answer) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(answer)) => ready.push_back(answer),
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    },
                    Err((EmbedError::CircuitOpen, _)) => {
                        tracing::warn!(model_id, "embedding upstream unavailable; pausing the embedding stage");
                        record(stats, progress, |s| s.paused = true);
                        stopping = true;
                    }
                    Err((error, chunks)) => {
                        let message = error.to_string();
                        record(stats, progress, |s| {
                            s.failures += 1;
                            s.failed_chunks += chunks;
                            s.last_error = Some(message);
                        });
                        if fails_the_pass(&error) {
                            fatal.get_or_insert(error);
                            stopping = true;
                        } else {
                            tracing::warn!(model_id, %error, "embedding batch failed; its chunks stay pending");
                        }
                    }
                }
                if stopping {
                    read = None;
                }
            }
        }
    }
    // Whatever was answered is stored, even when the pass stops early: it has been paid for.
    for answer in ready {
        if sender.send(answer).await.is_err() {
            break;
        }
    }
    match fatal {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Checks an answer against its batch; a failure comes with the number of chunks it concerns.
fn answered(
    batch: Batch,
    result: Result<super::Embedded>,
) -> std::result::Result<Answered, (EmbedError, u64)> {
    let chunks = batch.hashes.len() as u64;
    let embedded = result.map_err(|e| (e, chunks))?;
    if embedded.vectors.len() != batch.hashes.len() {
        let message = format!("{} vectors for {} inputs", embedded.vectors.len(), batch.hashes.len());
        return Err((EmbedError::InvalidResponse(message), chunks));
    }
    let modes = if embedded.adjustments.len() == embedded.vectors.len() {
        embedded
            .adjustments
            .iter()
            .map(|a| match a {
                InputAdjustment::None => InputMode::Whole,
                InputAdjustment::Split { .. } => InputMode::Split,
                InputAdjustment::Truncated => InputMode::Truncated,
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Answered {
        rows: batch.hashes.into_iter().zip(embedded.vectors).collect(),
        modes,
        tokens: embedded.tokens,
    })
}

/// Stores answered batches, each whole, until the call loop hangs up; on a store error, tells
/// the call loop to stop and returns the error.
async fn write_loop(
    store: &dyn Store,
    model_id: i64,
    mut receiver: mpsc::Receiver<Answered>,
    progress: Progress<'_>,
    stats: &Mutex<EmbedStats>,
    failed: &CancellationToken,
) -> Result<()> {
    while let Some(answer) = receiver.recv().await {
        if let Err(error) = store.put_embeddings_with_modes(model_id, &answer.rows, &answer.modes).await {
            failed.cancel();
            return Err(error.into());
        }
        record(stats, progress, |s| {
            s.chunks_embedded += answer.rows.len() as u64;
            s.tokens += answer.tokens;
            s.split += answer.modes.iter().filter(|m| **m == InputMode::Split).count() as u64;
            s.truncated += answer.modes.iter().filter(|m| **m == InputMode::Truncated).count() as u64;
        });
    }
    Ok(())
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
