//! TCT: type-constrained tokenization.
//!
//! A JSON document plus its JSON Schema becomes a short sequence of token ids that carries only
//! the decisions the schema leaves open. The crate is plain Rust; the Python bindings live in
//! `python.rs` behind the `python` feature.
//!
//! Key types and the flow (docs/architecture.md has the stages and their allowed imports):
//! - [`Tokenizer`]: the facade. `Tokenizer::from_schema` / `from_bytes` compile the schema
//!   (`compile`: schema -> atoms -> [`compile::Graph`], the codec graph) and load a
//!   vocabulary ([`vocab::Vocab`], in a [`vocab::TokenizerFile`]).
//! - Encoding: document -> base ids (`encode::Encoder`, walking the graph) -> vocabulary
//!   ids (`Vocab::apply`: dictionary and merges over base ids).
//! - Decoding: ids -> base ids (`Vocab::expand`) -> `machine::Machine` (the one state
//!   machine over the graph, writing compact JSON) -> [`Decoded`].
//! - Generation: [`Matcher`] drives the same machine in strict mode and gives the exact mask
//!   of allowed next ids (`matcher`: trie, tables and caches over the vocabulary).
//! - Training: [`Tokenizer::train`] ([`TrainOptions`]) encodes documents to base ids and
//!   trains the vocabulary (`vocab`).
//! - Corpora: `corpus` reads trees, JSONL and YAML and writes token shards (`tct-encode`).
//! - Errors: [`SchemaError`], [`EncodeError`], [`DecodeError`], each saying where.

pub mod corpus;
pub mod error;
pub(crate) mod matcher;
pub(crate) mod testing;
pub(crate) mod tokenizer;
pub(crate) mod train;
pub mod vocab;

#[cfg(feature = "python")]
mod python;

pub use error::{DecodeError, EncodeError, SchemaError};
pub use tokenizer::{Decoded, Encoding, Matcher, Tokenizer};
pub use train::TrainOptions;
pub(crate) mod atomic_file;
pub mod base;
pub mod bitmask;
pub mod compile;
pub(crate) mod encode;
pub mod json;
pub(crate) mod machine;
pub(crate) mod numbers;
pub mod partial;
pub(crate) mod pool;
pub mod rules;
pub mod strings;

/// Longest string (bytes) the decoder accepts: bounds memory whatever the input.
pub const MAX_STRING_BYTES: usize = 64 << 20;
/// Deepest nesting the decoder accepts.
pub const MAX_DEPTH: usize = 10_000;
