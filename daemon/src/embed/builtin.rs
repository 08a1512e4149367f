//! The builtin embedder: offline, deterministic, lexical (hashed code-aware token features).
//!
//! This is **not** a neural model. It knows nothing about meaning, synonyms or other languages:
//! two texts are close when they share identifiers, identifier parts and adjacent word pairs.
//! It exists so that semdex works with no network and no key, and so that tests are
//! deterministic. For real semantic search configure the `openai` provider.
//!
//! How a text becomes a vector (model `semdex-lexical-v1`; changing any step below changes the
//! vectors and so needs a new model name, since vectors are cached by model):
//!
//! 1. Tokens come from [`crate::lexical::for_each_token`], word by word: each identifier whole,
//!    lowercased (weight 1.0), then its camelCase / snake_case / digit parts (weight 0.6). Common
//!    JavaScript / TypeScript keywords get weight 0.25 so that `const` and `return` do not
//!    dominate every chunk.
//! 2. Bigrams of adjacent whole words, and of adjacent parts inside one identifier (weight 0.5),
//!    so that the query `create user` lands near `createUser` and `create_user`.
//! 3. Each feature is hashed with blake3 (a specified hash, identical on every platform and in
//!    every version) over `semdex-lexical-v1` + a kind byte + the feature text. The first 8 bytes,
//!    little-endian, pick the bucket (`% dimensions`) and the top bit the sign (signed feature
//!    hashing keeps collisions from adding up in one direction).
//! 4. A feature seen `tf` times contributes `weight * (1 + ln tf)` (sublinear term frequency),
//!    with the highest weight it was seen with.
//! 5. The vector is L2-normalised. A text with no token at all (empty, only punctuation) gets a
//!    fixed unit vector on bucket 0, so every input yields a valid unit vector.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Embedded, Embedder, InputAdjustment, ModelSpec, Result};

const WHOLE_WEIGHT: f32 = 1.0;
const PART_WEIGHT: f32 = 0.6;
const BIGRAM_WEIGHT: f32 = 0.5;
const KEYWORD_WEIGHT: f32 = 0.25;

/// Keywords so frequent in JS/TS code that they carry little signal.
const KEYWORDS: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "case",
    "catch",
    "class",
    "const",
    "continue",
    "default",
    "delete",
    "do",
    "else",
    "export",
    "extends",
    "false",
    "finally",
    "for",
    "from",
    "function",
    "if",
    "implements",
    "import",
    "in",
    "instanceof",
    "interface",
    "let",
    "new",
    "null",
    "of",
    "private",
    "protected",
    "public",
    "readonly",
    "return",
    "static",
    "super",
    "switch",
    "this",
    "throw",
    "true",
    "try",
    "type",
    "typeof",
    "undefined",
    "var",
    "void",
    "while",
    "yield",
];

/// Feature kinds, hashed in so that a bigram never collides by construction with a token.
const KIND_TOKEN: u8 = 0;
const KIND_BIGRAM: u8 = 1;

/// Offline embedder; see the module doc for what it is and is not.
#[derive(Debug)]
pub struct BuiltinEmbedder {
    spec: ModelSpec,
}

impl BuiltinEmbedder {
    /// Provider name, the first part of the cache key.
    pub const PROVIDER: &str = "builtin";
    /// Model name; bump it whenever the feature recipe changes.
    pub const MODEL: &str = "semdex-lexical-v1";
    /// Default dimensions, the same as the default OpenAI model.
    pub const DEFAULT_DIMENSIONS: usize = 3072;

    /// A builtin embedder producing vectors of `dimensions` floats (at least 1).
    pub fn new(dimensions: usize) -> BuiltinEmbedder {
        BuiltinEmbedder {
            spec: ModelSpec {
                provider: Self::PROVIDER.to_string(),
                model: Self::MODEL.to_string(),
                dimensions: dimensions.max(1),
            },
        }
    }

    /// Embeds one text synchronously: a unit vector of the configured dimensions.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        embed_text(text, self.spec.dimensions)
    }
}

impl Default for BuiltinEmbedder {
    fn default() -> Self {
        BuiltinEmbedder::new(Self::DEFAULT_DIMENSIONS)
    }
}

#[async_trait]
impl Embedder for BuiltinEmbedder {
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    fn max_batch_inputs(&self) -> usize {
        256
    }

    fn max_batch_tokens(&self) -> usize {
        // No upstream limit; this only keeps one blocking task short.
        1 << 20
    }

    fn concurrency(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    async fn embed(&self, inputs: &[String]) -> Result<Embedded> {
        // Hashing a batch is CPU work: keep it off the async workers.
        let owned = inputs.to_vec();
        let dims = self.spec.dimensions;
        let work = move || {
            let tokens: u64 = owned.iter().map(|t| indexer::count_tokens(t) as u64).sum();
            let vectors: Vec<Vec<f32>> = owned.iter().map(|t| embed_text(t, dims)).collect();
            (vectors, tokens)
        };
        let (vectors, tokens) = match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::spawn_blocking(work).await.map_err(|e| {
                super::EmbedError::InvalidResponse(format!("builtin embedder task failed: {e}"))
            })?,
            Err(_) => work(),
        };
        Ok(Embedded { adjustments: vec![InputAdjustment::None; vectors.len()], vectors, tokens })
    }
}

fn is_keyword(token: &str) -> bool {
    KEYWORDS.binary_search(&token).is_ok()
}

/// Accumulates features: key -> (count, highest weight).
#[derive(Default)]
struct Features {
    map: HashMap<(u8, String), (u32, f32)>,
}

impl Features {
    fn add(&mut self, kind: u8, text: String, weight: f32) {
        let entry = self.map.entry((kind, text)).or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 = entry.1.max(weight);
    }
}

fn token_weight(token: &str, base: f32) -> f32 {
    if is_keyword(token) { KEYWORD_WEIGHT.min(base) } else { base }
}

fn embed_text(text: &str, dims: usize) -> Vec<f32> {
    let mut features = Features::default();
    let mut prev_whole: Option<String> = None;
    // Words as `for_each_token` sees them; calling it per word tells the whole identifier (the
    // first token) from its parts (the rest).
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')) {
        let mut whole: Option<String> = None;
        let mut prev_part: Option<String> = None;
        crate::lexical::for_each_token(word, |token| {
            if whole.is_none() {
                whole = Some(token.to_string());
                features.add(KIND_TOKEN, token.to_string(), token_weight(token, WHOLE_WEIGHT));
            } else {
                features.add(KIND_TOKEN, token.to_string(), token_weight(token, PART_WEIGHT));
                if let Some(p) = &prev_part {
                    features.add(KIND_BIGRAM, format!("{p} {token}"), BIGRAM_WEIGHT);
                }
                prev_part = Some(token.to_string());
            }
        });
        if let Some(w) = whole {
            if let Some(p) = &prev_whole
                && !is_keyword(p)
                && !is_keyword(&w)
            {
                features.add(KIND_BIGRAM, format!("{p} {w}"), BIGRAM_WEIGHT);
            }
            prev_whole = Some(w);
        }
    }

    let mut v = vec![0.0f32; dims];
    for ((kind, text), (tf, weight)) in &features.map {
        let (bucket, sign) = bucket_of(*kind, text, dims);
        v[bucket] += sign * weight * (1.0 + (*tf as f32).ln());
    }
    if !super::normalize(&mut v) {
        // No features, or (astronomically unlikely) exact cancellation: a fixed unit vector.
        v.iter_mut().for_each(|x| *x = 0.0);
        v[0] = 1.0;
    }
    v
}

/// The stable hash of a feature: its bucket and its sign.
fn bucket_of(kind: u8, text: &str, dims: usize) -> (usize, f32) {
    let mut hasher = blake3::Hasher::new();
    hasher.update(BuiltinEmbedder::MODEL.as_bytes());
    hasher.update(&[0, kind]);
    hasher.update(text.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    let h = u64::from_le_bytes(first);
    let bucket = ((h & (u64::MAX >> 1)) % dims as u64) as usize;
    let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
    (bucket, sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_sorted_for_binary_search() {
        assert!(KEYWORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn vectors_are_pinned() {
        // Pinned so that a change to the recipe (which would silently invalidate every cached
        // builtin vector) fails here and forces a new model name.
        let mut lines = Vec::new();
        for (kind, text) in [(KIND_TOKEN, "createuser"), (KIND_TOKEN, "create"), (KIND_BIGRAM, "create user")]
        {
            let (bucket, sign) = bucket_of(kind, text, 3072);
            lines.push(format!("{kind} {text:?}: bucket {bucket} sign {sign}"));
        }
        let v = embed_text("createUser(name)", 3072);
        let nonzero: Vec<String> =
            v.iter().enumerate().filter(|(_, x)| **x != 0.0).map(|(i, x)| format!("{i}:{x:.4}")).collect();
        lines.push(nonzero.join(" "));
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn empty_input_gives_the_fallback_unit_vector() {
        for text in ["", "   ", "(){};", "\u{1F600}"] {
            let v = embed_text(text, 8);
            assert_eq!(v, [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "{text:?}");
        }
    }
}
