//! TCT: type-constrained tokenization.
//!
//! A JSON document plus its JSON Schema becomes a short sequence of token ids that carries only
//! the decisions the schema leaves open. The crate is plain Rust; the Python bindings live in
//! `python.rs` behind the `python` feature.

pub mod corpus;
pub mod error;
pub mod tokenizer;
pub mod vocab;

#[cfg(feature = "python")]
mod python;

pub use error::{DecodeError, EncodeError, SchemaError};
pub use tokenizer::{Decoded, Encoding, Matcher, Tokenizer, TrainOptions};
pub mod base;
pub mod bitmask;
pub mod compile;
pub mod encode;
pub mod json;
pub mod machine;
pub mod partial;
pub mod strings;

/// Longest string (bytes) the decoder accepts: bounds memory whatever the input.
pub const MAX_STRING_BYTES: usize = 64 << 20;
/// Deepest nesting the decoder accepts.
pub const MAX_DEPTH: usize = 10_000;
