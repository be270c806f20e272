//! `tct-encode`: a corpus (directory tree of JSON/YAML files, JSONL, JSONL.gz or stdin) to token
//! shards (see `docs/shard-format.md`).

pub mod pipeline;
pub mod pyjson;
pub mod shard_writer;
pub mod sources;
pub mod yaml;

pub use pipeline::{
    encode_corpus, read_document, DocEncoder, Options, Progress, RunError, Summary,
};
pub use shard_writer::{Counts, ShardPaths, TokenizerInfo};

use crate::tokenizer::Tokenizer;

impl TokenizerInfo {
    /// The meta's tokenizer fields for `tok`.
    pub fn of(tok: &Tokenizer) -> TokenizerInfo {
        let (name, hash) = tok.identity();
        TokenizerInfo {
            name,
            hash,
            vocab_size: tok.vocab_size(),
            pad_id: tok.pad_id(),
            bos_id: tok.bos_id(),
            eos_id: tok.eos_id(),
            position_range: Some({
                let (lo, hi) = tok.position_range();
                [lo, hi]
            }),
        }
    }
}
