//! The OpenAI-compatible HTTP embedder: `POST {base}/v1/embeddings` on OpenAI, Azure OpenAI,
//! Ollama, vLLM, LM Studio or text-embeddings-inference.
//!
//! One call to [`Embedder::embed`] may become several HTTP requests: over-long inputs are split
//! (or truncated) to `max_input_tokens`, and the pieces are packed into requests of at most
//! `max_batch_inputs` inputs and `max_batch_tokens` tokens. Either every input gets its vector or
//! the call fails; nothing partial is returned.
//!
//! Each request goes through, in order:
//! - the **circuit breaker**: after `breaker_threshold` consecutive failed requests (retries
//!   exhausted) it opens and every call fails fast with [`EmbedError::CircuitOpen`], without
//!   touching the network, for `breaker_cooldown`; then one probe request (a single attempt) is
//!   let through and closes it on success or re-opens it on failure. Any answer from the upstream,
//!   even a 4xx, shows it is up and resets the count;
//! - the **rate-limit pause**: when the last response said `x-ratelimit-remaining-requests: 0`,
//!   or fewer tokens remain than the request needs, the request waits for the matching
//!   `x-ratelimit-reset-*` (capped by `retry_after_cap`) instead of collecting a 429;
//! - the **concurrency cap**: a semaphore bounds requests in flight (not requests sleeping
//!   between retries);
//! - **retries**: 408, 409, 429, 5xx, connection errors, timeouts, and 2xx answers that are not a
//!   valid batch (malformed JSON, the wrong count, missing or duplicate indices, non-finite or
//!   all-zero vectors: what a flaky proxy produces) are retried with exponential backoff and full
//!   jitter (`rand(0, min(backoff_cap, backoff_base * 2^n))`), or after `Retry-After` /
//!   `retry-after-ms` when the server sends one (capped by `retry_after_cap`); at most
//!   `max_retries + 1` attempts per request. 400, 401, 403, 404, 422 and every other 4xx fail fast
//!   with the upstream's message, and so does a 429 whose error code is `insufficient_quota`
//!   (billing, which no wait fixes). So do vectors that all have the wrong number of dimensions: that
//!   is a configuration mistake (model and `dimensions` disagree), not a transient fault.
//!
//! Error messages never contain the API key or the value of a secret-looking extra header: they
//! are scrubbed from everything that leaves this module, and [`OpenAiConfig`]'s `Debug` hides them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use super::{CircuitState, EmbedError, Embedded, Embedder, InputAdjustment, ModelSpec, Result};

/// What to do with an input longer than `max_input_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverLongPolicy {
    /// Embed it in pieces and average their vectors, weighted by tokens, then re-normalise.
    Split,
    /// Embed only its beginning.
    Truncate,
}

/// How the upstream is asked to encode vectors (the request's `encoding_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodingFormat {
    /// The standard base64 of little-endian `f32`s: 4 bytes of raw data (5.3 of text) a float,
    /// decoded almost as fast as memory is copied. OpenAI, Azure, vLLM and TEI support it.
    Base64,
    /// JSON arrays of numbers: about 12.5 bytes of text a float, and tens of nanoseconds each to
    /// parse; for servers that reject `base64`.
    Float,
}

impl EncodingFormat {
    /// The request field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            EncodingFormat::Base64 => "base64",
            EncodingFormat::Float => "float",
        }
    }
}

/// Settings for an OpenAI-compatible endpoint. [`OpenAiConfig::default`] is OpenAI's
/// `text-embedding-3-large` at 3072 dimensions with OpenAI's limits.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// `https://api.openai.com`, `http://localhost:11434` (Ollama), ...: `/v1/embeddings` is
    /// appended; a base already ending in `/v1` gets `/embeddings`, and one already ending in
    /// `/embeddings` (an Azure deployment URL) is used as is.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; `None` for servers without auth. Azure's key goes in
    /// `headers` as `api-key` instead.
    pub api_key: Option<String>,
    pub model: String,
    pub dimensions: usize,
    /// Whether to send `dimensions` in the request; servers that reject it (Ollama, most local
    /// servers) need `false`, and must then return `dimensions` floats on their own.
    pub send_dimensions: bool,
    /// Extra request headers, e.g. `("api-key", key)` for Azure.
    pub headers: Vec<(String, String)>,
    /// Extra query parameters, e.g. `("api-version", "2024-10-21")` for Azure.
    pub query: Vec<(String, String)>,
    /// Whole-request timeout (connect, send, wait, read the body).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt; a request makes at most `max_retries + 1` calls.
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Longest wait honoured from `Retry-After`, `retry-after-ms` or `x-ratelimit-reset-*`.
    pub retry_after_cap: Duration,
    pub max_batch_inputs: usize,
    pub max_batch_tokens: usize,
    pub max_input_tokens: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Consecutive failed requests that open the circuit; 0 disables the breaker.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    pub over_long: OverLongPolicy,
    /// The encoding asked for. Either is accepted in the answer whatever was asked (a string
    /// embedding is base64, an array is floats), so a server that ignores the field still works.
    pub encoding_format: EncodingFormat,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com".to_string(),
            api_key: None,
            model: "text-embedding-3-large".to_string(),
            dimensions: 3072,
            send_dimensions: true,
            headers: Vec::new(),
            query: Vec::new(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_retries: 5,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(60),
            max_batch_inputs: 2048,
            max_batch_tokens: 300_000,
            max_input_tokens: 8192,
            concurrency: 4,
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            over_long: OverLongPolicy::Split,
            encoding_format: EncodingFormat::Base64,
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_header(k) { "[redacted]" } else { v.as_str() }))
            .collect();
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("send_dimensions", &self.send_dimensions)
            .field("headers", &headers)
            .field("query", &self.query)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("max_batch_inputs", &self.max_batch_inputs)
            .field("max_batch_tokens", &self.max_batch_tokens)
            .field("max_input_tokens", &self.max_input_tokens)
            .field("concurrency", &self.concurrency)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("over_long", &self.over_long)
            .field("encoding_format", &self.encoding_format)
            .finish_non_exhaustive()
    }
}

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "auth", "token", "secret", "cookie"].iter().any(|s| name.contains(s))
}

/// Counters since the embedder was created, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenAiMetrics {
    /// HTTP requests sent (every attempt).
    pub requests: u64,
    /// Attempts after the first, per request.
    pub retries: u64,
    /// Requests that failed for good (retries exhausted, rejected, invalid).
    pub failed_requests: u64,
    /// Times a request waited for a rate-limit window to reset.
    pub rate_limit_pauses: u64,
    /// Calls refused by the open circuit.
    pub circuit_rejections: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    failed_requests: AtomicU64,
    rate_limit_pauses: AtomicU64,
    circuit_rejections: AtomicU64,
}

/// HTTP embedder for any OpenAI-compatible endpoint; see the module doc for its behaviour.
pub struct OpenAiEmbedder {
    config: OpenAiConfig,
    spec: ModelSpec,
    client: reqwest::Client,
    endpoint: reqwest::Url,
    /// Strings scrubbed from every error message: the key and secret header values.
    secrets: Vec<String>,
    permits: tokio::sync::Semaphore,
    breaker: Breaker,
    rate: Mutex<RateWindow>,
    counters: Counters,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("config", &self.config)
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// Checks the configuration and builds the HTTP client. Makes no request.
    pub fn new(config: OpenAiConfig) -> Result<OpenAiEmbedder> {
        let bad = |m: &str| Err(EmbedError::Config(m.to_string()));
        if config.dimensions == 0 {
            return bad("dimensions must be at least 1");
        }
        if config.model.trim().is_empty() {
            return bad("model must not be empty");
        }
        if config.max_batch_inputs == 0 || config.max_batch_tokens == 0 || config.max_input_tokens == 0 {
            return bad("batch and input limits must be at least 1");
        }
        if config.concurrency == 0 {
            return bad("concurrency must be at least 1");
        }
        let endpoint = endpoint(&config.base_url, &config.query)?;

        let mut secrets = Vec::new();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = config.api_key.as_deref().filter(|k| !k.is_empty()) {
            secrets.push(key.to_string());
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                EmbedError::Config("the API key holds characters not allowed in a header".into())
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        for (name, value) in &config.headers {
            let secret = is_secret_header(name);
            if secret && !value.is_empty() {
                secrets.push(value.clone());
            }
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| EmbedError::Config(format!("invalid header name {name:?}")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| EmbedError::Config(format!("invalid value for header {name:?}")))?;
            value.set_sensitive(secret);
            headers.insert(header, value);
        }
        // Longest first, so that a secret containing another is scrubbed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));

        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("semdex/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EmbedError::Config(format!("cannot build the HTTP client: {e}")))?;

        Ok(OpenAiEmbedder {
            spec: ModelSpec {
                provider: "openai".to_string(),
                model: config.model.clone(),
                dimensions: config.dimensions,
            },
            client,
            endpoint,
            secrets,
            permits: tokio::sync::Semaphore::new(config.concurrency),
            breaker: Breaker::new(config.breaker_threshold, config.breaker_cooldown),
            rate: Mutex::new(RateWindow::default()),
            counters: Counters::default(),
            config,
        })
    }

    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// The URL requests go to (without credentials: those travel in headers).
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    pub fn metrics(&self) -> OpenAiMetrics {
        let c = &self.counters;
        OpenAiMetrics {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            failed_requests: c.failed_requests.load(Ordering::Relaxed),
            rate_limit_pauses: c.rate_limit_pauses.load(Ordering::Relaxed),
            circuit_rejections: c.circuit_rejections.load(Ordering::Relaxed),
        }
    }

    /// Removes every secret from a message and bounds its length.
    fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "[redacted]");
        }
        truncate_chars(&out, 500)
    }

    /// Sends one request's worth of pieces, with retries; returns their vectors in order and the
    /// tokens the API reported, if it did.
    async fn send_request(
        &self,
        pieces: &[&str],
        estimated_tokens: u64,
    ) -> Result<(Vec<Vec<f32>>, Option<u64>)> {
        let admission = match self.breaker.admit() {
            Ok(a) => a,
            Err(e) => {
                self.counters.circuit_rejections.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let body = self.request_body(pieces)?;
        // A half-open probe is a single attempt: a dead upstream costs one call per cool-down.
        let max_attempts = if admission == Admission::Probe { 1 } else { self.config.max_retries + 1 };
        let mut attempt = 0u32;
        loop {
            if attempt > 0 && !self.breaker.still_admitted(admission) {
                // Another request opened the circuit while this one was backing off.
                self.counters.circuit_rejections.fetch_add(1, Ordering::Relaxed);
                return Err(EmbedError::CircuitOpen);
            }
            self.pause_for_rate_limit(estimated_tokens).await;
            attempt += 1;
            if attempt > 1 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
            }
            let outcome = {
                let _permit = self.permits.acquire().await.ok();
                self.counters.requests.fetch_add(1, Ordering::Relaxed);
                self.attempt(body.clone(), pieces.len()).await
            };
            match outcome {
                Ok(ok) => {
                    self.breaker.on_answer();
                    return Ok(ok);
                }
                Err(Failure::Fatal(e)) => {
                    self.breaker.on_answer();
                    self.counters.failed_requests.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
                Err(Failure::Retry { message, retry_after, invalid }) => {
                    if attempt >= max_attempts {
                        self.breaker.on_failure(admission);
                        self.counters.failed_requests.fetch_add(1, Ordering::Relaxed);
                        let last = self.scrub(&message);
                        return Err(if invalid {
                            EmbedError::InvalidResponse(format!("{last} (after {attempt} attempts)"))
                        } else {
                            EmbedError::Exhausted { attempts: attempt, last }
                        });
                    }
                    let delay = match retry_after {
                        Some(d) => d.min(self.config.retry_after_cap),
                        None => backoff(self.config.backoff_base, self.config.backoff_cap, attempt),
                    };
                    tracing::debug!(attempt, delay_ms = delay.as_millis() as u64, error = %self.scrub(&message), "retrying embedding request");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn request_body(&self, pieces: &[&str]) -> Result<bytes::Bytes> {
        #[derive(serde::Serialize)]
        struct Request<'a> {
            model: &'a str,
            input: &'a [&'a str],
            #[serde(skip_serializing_if = "Option::is_none")]
            dimensions: Option<usize>,
            encoding_format: &'static str,
        }
        let request = Request {
            model: &self.config.model,
            input: pieces,
            dimensions: self.config.send_dimensions.then_some(self.config.dimensions),
            encoding_format: self.config.encoding_format.as_str(),
        };
        serde_json::to_vec(&request)
            .map(bytes::Bytes::from)
            .map_err(|e| EmbedError::Config(format!("cannot encode the request: {e}")))
    }

    /// One HTTP call.
    async fn attempt(
        &self,
        body: bytes::Bytes,
        expected: usize,
    ) -> std::result::Result<(Vec<Vec<f32>>, Option<u64>), Failure> {
        let response = match self.client.post(self.endpoint.clone()).body(body).send().await {
            Ok(r) => r,
            Err(e) => return Err(Failure::retry(transport_message(e))),
        };
        let status = response.status();
        self.note_rate_limits(response.headers());
        let retry_after = retry_after(response.headers());
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(Failure::retry(transport_message(e))),
        };
        let code = status.as_u16();
        if status.is_success() {
            let dims = self.config.dimensions;
            // A large answer is parsed on the blocking pool: at 2,048 inputs of 3,072 floats
            // that is tens of milliseconds even as base64 (and hundreds as floats), which must
            // neither stall a runtime worker nor the reading of the other answers in flight.
            let parsed = if bytes.len() < PARSE_INLINE_BYTES {
                parse_batch(&bytes, expected, dims)
            } else {
                tokio::task::spawn_blocking(move || parse_batch(&bytes, expected, dims)).await.map_err(
                    |e| {
                        Failure::Fatal(EmbedError::InvalidResponse(format!("parsing the answer failed: {e}")))
                    },
                )?
            };
            return parsed.map_err(|e| match e {
                BatchError::Retry(message) => Failure::Retry { message, retry_after: None, invalid: true },
                BatchError::Dimensions { got } => {
                    Failure::Fatal(EmbedError::DimensionMismatch { expected: self.config.dimensions, got })
                }
            });
        }
        let message = self.scrub(&upstream_message(&bytes));
        // OpenAI answers an exhausted quota (billing) with a 429 that no wait will fix.
        if code == 429 && is_quota_exhausted(&bytes) {
            return Err(Failure::Fatal(EmbedError::Rejected { status: code, message }));
        }
        if matches!(code, 408 | 409 | 429) || status.is_server_error() {
            return Err(Failure::Retry {
                message: format!("status {code}: {message}"),
                retry_after,
                invalid: false,
            });
        }
        Err(Failure::Fatal(EmbedError::Rejected { status: code, message }))
    }

    fn rate(&self) -> MutexGuard<'_, RateWindow> {
        self.rate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note_rate_limits(&self, headers: &HeaderMap) {
        let now = Instant::now();
        let number = |name: &str| header_str(headers, name).and_then(|v| v.trim().parse::<u64>().ok());
        let reset = |name: &str| header_str(headers, name).and_then(parse_reset).map(|d| now + d);
        let mut rate = self.rate();
        if let Some(n) = number("x-ratelimit-remaining-requests") {
            rate.requests_remaining = Some(n);
            rate.requests_reset = reset("x-ratelimit-reset-requests");
        }
        if let Some(n) = number("x-ratelimit-remaining-tokens") {
            rate.tokens_remaining = Some(n);
            rate.tokens_reset = reset("x-ratelimit-reset-tokens");
        }
    }

    /// Waits for a rate-limit window to reset when the last response said it was used up.
    async fn pause_for_rate_limit(&self, estimated_tokens: u64) {
        let wait = {
            let rate = self.rate();
            let now = Instant::now();
            let mut until: Option<Instant> = None;
            if rate.requests_remaining == Some(0)
                && let Some(reset) = rate.requests_reset
            {
                until = Some(reset);
            }
            if rate.tokens_remaining.is_some_and(|n| n == 0 || n < estimated_tokens)
                && let Some(reset) = rate.tokens_reset
            {
                until = Some(until.map_or(reset, |u| u.max(reset)));
            }
            until.and_then(|u| u.checked_duration_since(now)).filter(|d| !d.is_zero())
        };
        if let Some(wait) = wait {
            let wait = wait.min(self.config.retry_after_cap);
            self.counters.rate_limit_pauses.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(wait_ms = wait.as_millis() as u64, "pausing for the upstream's rate limit");
            tokio::time::sleep(wait).await;
        }
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn max_batch_inputs(&self) -> usize {
        self.config.max_batch_inputs
    }

    fn max_batch_tokens(&self) -> usize {
        self.config.max_batch_tokens
    }

    fn concurrency(&self) -> usize {
        self.config.concurrency
    }

    fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embedded> {
        if inputs.is_empty() {
            return Ok(Embedded { vectors: Vec::new(), tokens: 0, adjustments: Vec::new() });
        }
        // Pieces to send: (input index, text, estimated tokens).
        let mut pieces: Vec<(usize, &str, usize)> = Vec::with_capacity(inputs.len());
        let mut adjustments = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            // The OpenAI API rejects an empty string, which would fail the whole batch.
            let text = if input.is_empty() { " " } else { input.as_str() };
            let tokens = indexer::count_tokens(text);
            if tokens <= self.config.max_input_tokens {
                pieces.push((i, text, tokens));
                adjustments.push(InputAdjustment::None);
                continue;
            }
            let parts = split_by_tokens(text, self.config.max_input_tokens);
            match self.config.over_long {
                OverLongPolicy::Truncate => {
                    let first = parts.first().copied().unwrap_or(text);
                    pieces.push((i, first, indexer::count_tokens(first)));
                    adjustments.push(InputAdjustment::Truncated);
                }
                OverLongPolicy::Split => {
                    adjustments.push(if parts.len() > 1 {
                        InputAdjustment::Split { parts: parts.len() }
                    } else {
                        InputAdjustment::None
                    });
                    for part in parts {
                        pieces.push((i, part, indexer::count_tokens(part)));
                    }
                }
            }
        }

        let requests = super::pack(
            pieces.iter().map(|p| p.2),
            self.config.max_batch_inputs,
            self.config.max_batch_tokens,
        );
        let sends = requests.iter().map(|range| {
            let texts: Vec<&str> = pieces[range.clone()].iter().map(|p| p.1).collect();
            let estimated: u64 = pieces[range.clone()].iter().map(|p| p.2 as u64).sum();
            async move {
                let (vectors, usage) = self.send_request(&texts, estimated).await?;
                Ok::<_, EmbedError>((vectors, usage.unwrap_or(estimated)))
            }
        });
        let answers = futures::future::try_join_all(sends).await?;

        let mut tokens = 0u64;
        let mut piece_vectors = Vec::with_capacity(pieces.len());
        for (vectors, used) in answers {
            tokens += used;
            piece_vectors.extend(vectors);
        }
        if pieces.len() == inputs.len() {
            // One piece per input, in input order: each vector is already validated and unit
            // length, so there is nothing to average (and no copy to make).
            return Ok(Embedded { vectors: piece_vectors, tokens, adjustments });
        }
        // Reassemble: each input's pieces, averaged by tokens (a single piece is its own vector).
        let dims = self.config.dimensions;
        let mut sums = vec![vec![0.0f32; dims]; inputs.len()];
        for ((input, _, piece_tokens), vector) in pieces.iter().zip(piece_vectors) {
            let weight = (*piece_tokens).max(1) as f32;
            for (s, x) in sums[*input].iter_mut().zip(vector) {
                *s += weight * x;
            }
        }
        for (i, v) in sums.iter_mut().enumerate() {
            if !super::normalize(v) {
                // Opposite pieces cancelling exactly; every piece was valid, so this is not the
                // upstream's fault, but the vector is unusable.
                return Err(EmbedError::InvalidResponse(format!("the pieces of input {i} cancel out")));
            }
        }
        Ok(Embedded { vectors: sums, tokens, adjustments })
    }
}

/// Builds the endpoint URL from a base and query parameters.
fn endpoint(base: &str, query: &[(String, String)]) -> Result<reqwest::Url> {
    let base = base.trim().trim_end_matches('/');
    let full = if base.ends_with("/embeddings") {
        base.to_string()
    } else if base.ends_with("/v1") {
        format!("{base}/embeddings")
    } else {
        format!("{base}/v1/embeddings")
    };
    let mut url = reqwest::Url::parse(&full)
        .map_err(|e| EmbedError::Config(format!("invalid embedding URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EmbedError::Config(format!("embedding URL must be http or https, not {}", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in the URL would end up in logs and error messages.
        return Err(EmbedError::Config("put credentials in the API key, not in the embedding URL".into()));
    }
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    Ok(url)
}

/// Splits `text` into consecutive pieces of at most `max_tokens` estimated tokens, cutting at a
/// line break when one is near.
fn split_by_tokens(text: &str, max_tokens: usize) -> Vec<&str> {
    let max_tokens = max_tokens.max(1);
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let total = indexer::count_tokens(rest);
        if total <= max_tokens || rest.chars().nth(1).is_none() {
            if !rest.is_empty() {
                parts.push(rest);
            }
            return parts;
        }
        // Guess from the average bytes per token, then shrink until it fits.
        let guess = rest.len().saturating_mul(max_tokens) / total.max(1);
        let mut end = floor_char_boundary(rest, guess);
        if let Some(nl) = rest[..end].rfind('\n')
            && nl + 1 > end / 2
        {
            end = nl + 1;
        }
        while end > 0 && indexer::count_tokens(&rest[..end]) > max_tokens {
            end = floor_char_boundary(rest, end - end.div_ceil(10));
        }
        if end == 0 {
            // Always progress by at least one character.
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Full jitter: a uniform delay in `[0, min(cap, base * 2^(attempt - 1))]`.
fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << exp).min(cap);
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `retry-after-ms` (milliseconds, OpenAI's), else `Retry-After` (seconds or an HTTP date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64((ms / 1000.0).min(1e9)));
    }
    let value = header_str(headers, "retry-after")?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Parses a rate-limit reset such as `1s`, `6m0s`, `20ms`, `1h2m3.5s`, or a bare number of
/// seconds.
fn parse_reset(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let mut total = 0.0f64;
    let mut rest = value;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(1e9)))
}

/// The upstream's error message: `error.message`, `error` or `message` from a JSON body, else
/// the body itself.
fn upstream_message(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let found = json
            .pointer("/error/message")
            .or_else(|| json.get("error"))
            .or_else(|| json.get("message"))
            .or_else(|| json.get("detail"));
        if let Some(serde_json::Value::String(s)) = found {
            return truncate_chars(s, 300);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() { "no message".to_string() } else { truncate_chars(text, 300) }
}

/// Whether an error body says the account's quota is used up (`insufficient_quota`).
fn is_quota_exhausted(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|json| {
        ["/error/code", "/error/type"]
            .iter()
            .any(|p| json.pointer(p).and_then(|v| v.as_str()) == Some("insufficient_quota"))
    })
}

/// A transport error as text, without the URL, with its causes.
fn transport_message(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let error = error.without_url();
    let mut message = format!("{kind}: {error}");
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Why one attempt failed.
enum Failure {
    /// Worth another attempt.
    Retry { message: String, retry_after: Option<Duration>, invalid: bool },
    /// Final.
    Fatal(EmbedError),
}

impl Failure {
    fn retry(message: String) -> Failure {
        Failure::Retry { message, retry_after: None, invalid: false }
    }
}

enum BatchError {
    Retry(String),
    /// Every vector has the same wrong length: configuration, not a transient fault.
    Dimensions {
        got: usize,
    },
}

/// Answers smaller than this are parsed on the task that read them (a query's vector, a small
/// batch): moving them to the blocking pool would cost more than parsing them.
const PARSE_INLINE_BYTES: usize = 64 * 1024;

/// One item's `embedding`: an array of numbers, or a string holding the standard base64 of
/// little-endian `f32`s (`encoding_format: "base64"`). Either is accepted whatever was asked.
struct Embedding(Vec<f32>);

impl<'de> serde::Deserialize<'de> for Embedding {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Embedding;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of numbers or a base64 string of little-endian f32s")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Embedding, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                // Read as f64 and narrowed, so a value beyond f32's range becomes infinite and
                // is refused with the other non-finite values.
                while let Some(x) = seq.next_element::<f64>()? {
                    out.push(x as f32);
                }
                Ok(Embedding(out))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> std::result::Result<Embedding, E> {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| E::custom(format!("invalid base64 embedding: {e}")))?;
                if bytes.len() % 4 != 0 {
                    return Err(E::custom(format!(
                        "a base64 embedding of {} bytes is not a whole number of f32s",
                        bytes.len()
                    )));
                }
                Ok(Embedding(
                    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                ))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Parses and validates a 2xx body: one finite, non-zero vector of `dims` floats per input,
/// matched by `index`; returns them normalised, in input order.
fn parse_batch(
    body: &[u8],
    expected: usize,
    dims: usize,
) -> std::result::Result<(Vec<Vec<f32>>, Option<u64>), BatchError> {
    #[derive(serde::Deserialize)]
    struct Response {
        data: Vec<Item>,
        #[serde(default)]
        usage: Option<Usage>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        index: Option<usize>,
        embedding: Embedding,
    }
    #[derive(serde::Deserialize)]
    struct Usage {
        #[serde(default)]
        total_tokens: Option<u64>,
        #[serde(default)]
        prompt_tokens: Option<u64>,
    }

    let response: Response = serde_json::from_slice(body)
        .map_err(|e| BatchError::Retry(format!("malformed embedding response: {e}")))?;
    if response.data.len() != expected {
        return Err(BatchError::Retry(format!("expected {expected} vectors, got {}", response.data.len())));
    }
    let lengths: Vec<usize> = response.data.iter().map(|d| d.embedding.0.len()).collect();
    if !lengths.is_empty() && lengths.iter().all(|&n| n != dims) && lengths.windows(2).all(|w| w[0] == w[1]) {
        return Err(BatchError::Dimensions { got: lengths[0] });
    }
    let with_index = response.data.iter().filter(|d| d.index.is_some()).count();
    if with_index != 0 && with_index != expected {
        return Err(BatchError::Retry("some vectors lack an index".to_string()));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in response.data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        if index >= expected {
            return Err(BatchError::Retry(format!("index {index} out of range for {expected} inputs")));
        }
        if slots[index].is_some() {
            return Err(BatchError::Retry(format!("index {index} appears twice")));
        }
        let mut vector = item.embedding.0;
        if vector.len() != dims {
            return Err(BatchError::Retry(format!(
                "vector {index} has {} dimensions, expected {dims}",
                vector.len()
            )));
        }
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(BatchError::Retry(format!("vector {index} holds a non-finite value")));
        }
        if !super::normalize(&mut vector) {
            return Err(BatchError::Retry(format!("vector {index} is all zeros")));
        }
        slots[index] = Some(vector);
    }
    // Every slot is filled: `expected` items, each in range, none twice.
    let vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
    let tokens = response.usage.and_then(|u| u.total_tokens.or(u.prompt_tokens));
    Ok((vectors, tokens))
}

/// Latest rate-limit headers seen.
#[derive(Debug, Default)]
struct RateWindow {
    requests_remaining: Option<u64>,
    requests_reset: Option<Instant>,
    tokens_remaining: Option<u64>,
    tokens_reset: Option<Instant>,
}

/// How a request got past the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    /// The single request let through after the cool-down.
    Probe,
}

#[derive(Debug)]
enum BreakerState {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Consecutive failures -> open for a cool-down -> half-open single probe -> closed or open.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<BreakerState>,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker { threshold, cooldown, state: Mutex::new(BreakerState::Closed { failures: 0 }) }
    }

    fn lock(&self) -> MutexGuard<'_, BreakerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Result<Admission> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Ok(Admission::Normal),
            BreakerState::Open { until } if Instant::now() < until => Err(EmbedError::CircuitOpen),
            BreakerState::Open { .. } | BreakerState::HalfOpen { probing: false } => {
                *state = BreakerState::HalfOpen { probing: true };
                Ok(Admission::Probe)
            }
            BreakerState::HalfOpen { probing: true } => Err(EmbedError::CircuitOpen),
        }
    }

    /// Whether a request admitted earlier may make another attempt.
    fn still_admitted(&self, admission: Admission) -> bool {
        matches!(*self.lock(), BreakerState::Closed { .. }) || admission == Admission::Probe
    }

    /// The upstream answered (success or a final 4xx): it is up.
    fn on_answer(&self) {
        *self.lock() = BreakerState::Closed { failures: 0 };
    }

    /// A request failed for good on retryable faults.
    fn on_failure(&self, admission: Admission) {
        let mut state = self.lock();
        if self.threshold == 0 {
            *state = BreakerState::Closed { failures: 0 };
            return;
        }
        let open = BreakerState::Open { until: Instant::now() + self.cooldown };
        match (admission, &*state) {
            (Admission::Probe, _) => *state = open,
            (Admission::Normal, BreakerState::Closed { failures }) => {
                let failures = failures + 1;
                *state = if failures >= self.threshold { open } else { BreakerState::Closed { failures } };
            }
            // Already open or probing: another request decided.
            (Admission::Normal, _) => {}
        }
    }

    fn state(&self) -> CircuitState {
        match *self.lock() {
            BreakerState::Closed { .. } => CircuitState::Closed,
            BreakerState::Open { until } if Instant::now() < until => CircuitState::Open,
            BreakerState::Open { .. } | BreakerState::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_reset_durations() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_reset("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
        assert_eq!(parse_reset("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset("5x"), None);
        assert_eq!(parse_reset("-1"), None);
    }

    #[test]
    fn parses_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date in the past means now");
        let future =
            (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822().replace("+0000", "GMT");
        h.insert("retry-after", HeaderValue::from_str(&future).unwrap());
        let wait = retry_after(&h).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30), "{wait:?}");
    }

    #[test]
    fn builds_endpoints() {
        let e = |b: &str| endpoint(b, &[]).map(|u| u.to_string());
        assert_eq!(e("https://api.openai.com").unwrap(), "https://api.openai.com/v1/embeddings");
        assert_eq!(e("https://api.openai.com/").unwrap(), "https://api.openai.com/v1/embeddings");
        assert_eq!(e("http://localhost:11434/v1").unwrap(), "http://localhost:11434/v1/embeddings");
        let azure = "https://x.openai.azure.com/openai/deployments/emb/embeddings";
        let q = [("api-version".to_string(), "2024-10-21".to_string())];
        assert_eq!(endpoint(azure, &q).unwrap().as_str(), format!("{azure}?api-version=2024-10-21"));
        assert!(e("ftp://x").is_err());
        assert!(e("https://user:pw@x").is_err());
        assert!(e("not a url").is_err());
    }

    #[test]
    fn backoff_stays_under_its_ceiling() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(250);
        for _ in 0..200 {
            assert!(backoff(base, cap, 1) <= base);
            assert!(backoff(base, cap, 2) <= base * 2);
            assert!(backoff(base, cap, 10) <= cap);
            assert!(backoff(base, cap, u32::MAX) <= cap);
        }
    }

    #[test]
    fn upstream_messages() {
        assert_eq!(upstream_message(br#"{"error":{"message":"bad key","type":"x"}}"#), "bad key");
        assert_eq!(upstream_message(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(upstream_message(b"  Bad Gateway \n"), "Bad Gateway");
        assert_eq!(upstream_message(b""), "no message");
        assert_eq!(upstream_message(&[b'x'; 1000]).chars().count(), 303);
    }

    #[test]
    fn validates_batches() {
        let ok = br#"{"data":[{"index":1,"embedding":[0,2]},{"index":0,"embedding":[3,4]}],"usage":{"total_tokens":7}}"#;
        let (vectors, tokens) = parse_batch(ok, 2, 2).ok().unwrap();
        assert_eq!(vectors, [vec![0.6, 0.8], vec![0.0, 1.0]]);
        assert_eq!(tokens, Some(7));
        let retry = |body: &[u8]| matches!(parse_batch(body, 2, 2), Err(BatchError::Retry(_)));
        assert!(retry(br#"{"data":[{"index":0,"embedding":[1,0]}]}"#), "count");
        assert!(retry(br#"{"data":[{"index":0,"embedding":[1,0]},{"index":0,"embedding":[1,0]}]}"#), "dup");
        assert!(retry(br#"{"data":[{"index":0,"embedding":[1,0]},{"index":2,"embedding":[1,0]}]}"#), "range");
        assert!(retry(br#"{"data":[{"index":0,"embedding":[1,0]},{"embedding":[1,0]}]}"#), "mixed");
        assert!(retry(br#"{"data":[{"index":0,"embedding":[1,0]},{"index":1,"embedding":[0,0]}]}"#), "zero");
        assert!(retry(br#"{"data":[{"index":0,"embedding":[1,0]},{"index":1,"embedding":[1e39,0]}]}"#));
        assert!(retry(br#"{"data":[{"index":0,"embedding":[1,0]},{"index":1,"embedding":[1,0,0]}]}"#));
        assert!(retry(b"{"), "malformed");
        let fatal = br#"{"data":[{"index":0,"embedding":[1,0,0]},{"index":1,"embedding":[1,0,0]}]}"#;
        assert!(matches!(parse_batch(fatal, 2, 2), Err(BatchError::Dimensions { got: 3 })), "dims");
        let positional = br#"{"data":[{"embedding":[1,0]},{"embedding":[0,1]}]}"#;
        assert_eq!(parse_batch(positional, 2, 2).ok().unwrap().0, [vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn accepts_base64_and_float_embeddings_alike() {
        use base64::Engine as _;
        let b64 = |v: &[f32]| {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        // One item as base64, one as floats: a server may do either whatever was asked.
        let body = format!(
            r#"{{"data":[{{"index":0,"embedding":"{}"}},{{"index":1,"embedding":[0,2]}}]}}"#,
            b64(&[3.0, 4.0])
        );
        let (vectors, _) = parse_batch(body.as_bytes(), 2, 2).ok().unwrap();
        assert_eq!(vectors, [vec![0.6, 0.8], vec![0.0, 1.0]]);
        let one = |embedding: String| format!(r#"{{"data":[{{"embedding":{embedding}}}]}}"#);
        let retry = |body: String| matches!(parse_batch(body.as_bytes(), 1, 2), Err(BatchError::Retry(_)));
        assert!(retry(one(format!("\"{}\"", b64(&[f32::NAN, 1.0])))), "NaN");
        assert!(retry(one(format!("\"{}\"", b64(&[0.0, 0.0])))), "zero");
        assert!(retry(one("\"AAAA\"".into())), "3 bytes: not whole floats");
        assert!(retry(one("\"not base64!\"".into())), "not base64");
        let three = one(format!("\"{}\"", b64(&[1.0, 0.0, 0.0])));
        assert!(matches!(parse_batch(three.as_bytes(), 1, 2), Err(BatchError::Dimensions { got: 3 })));
    }

    #[test]
    fn breaker_cycles() {
        let b = Breaker::new(2, Duration::from_millis(0));
        assert_eq!(b.admit().ok(), Some(Admission::Normal));
        b.on_failure(Admission::Normal);
        assert_eq!(b.state(), CircuitState::Closed);
        b.on_failure(Admission::Normal);
        // Cool-down of zero: immediately half-open, one probe at a time.
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.admit().ok(), Some(Admission::Probe));
        assert!(matches!(b.admit(), Err(EmbedError::CircuitOpen)));
        b.on_failure(Admission::Probe);
        assert_eq!(b.admit().ok(), Some(Admission::Probe));
        b.on_answer();
        assert_eq!(b.state(), CircuitState::Closed);

        let b = Breaker::new(1, Duration::from_secs(3600));
        b.on_failure(Admission::Normal);
        assert_eq!(b.state(), CircuitState::Open);
        assert!(matches!(b.admit(), Err(EmbedError::CircuitOpen)));
        assert!(!b.still_admitted(Admission::Normal));
    }
}
