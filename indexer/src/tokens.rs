//! Token counting close to OpenAI's cl100k tokenizer, fast enough for the indexing hot path.
//!
//! It errs on the high side so that batches packed with it stay under an API's token limits.

/// Estimates the number of cl100k tokens in `text`.
pub fn count_tokens(text: &str) -> usize {
    let _ = text;
    todo!("chunk helper")
}
