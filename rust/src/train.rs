//! Training orchestration: encode the training documents to base ids in parallel, train the
//! vocabulary on those streams (`vocab::train_grouped`), and assemble the tokenizer file.

use crate::error::EncodeError;
use crate::vocab::TokenizerFile;
use crate::Tokenizer;
use serde_json::Value;

/// Options of [`Tokenizer::train`] beyond the vocabulary size (defaults: `vocab::TrainConfig::new`).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub vocab_size: u32,
    pub dictionary_size: Option<u32>,
    pub scope: Option<crate::vocab::MergeScope>,
    pub name: String,
    pub progress: bool,
    pub num_threads: Option<usize>,
    /// A group id (e.g. the repository) per document: training weighs repetition inside a
    /// group down (`vocab::weighting`). `None`: every occurrence counts 1.
    pub groups: Option<Vec<u32>>,
}

impl Tokenizer {
    /// Train a vocabulary (dictionary + merges) for `schema` on documents given as JSON texts.
    /// Documents are encoded to base ids in parallel; a document that is not JSON is an error
    /// naming its index. Deterministic: the same inputs give the same tokenizer file.
    pub fn train(
        schema: &Value,
        registry: &[(String, Value)],
        docs: &[&[u8]],
        opts: &TrainOptions,
    ) -> Result<Tokenizer, crate::error::TctTrainError> {
        use crate::error::TctTrainError;
        use rayon::prelude::*;
        let base = Tokenizer::from_schema(schema, registry).map_err(TctTrainError::Schema)?;
        let encode_all = || {
            docs.par_iter()
                .enumerate()
                .map(|(i, d)| {
                    let v = crate::json::parse(d).map_err(|e| (i, e))?;
                    base.encode_base_tree(&v).map(|e| e.ids).map_err(|e| (i, e))
                })
                .collect::<Result<Vec<Vec<u32>>, (usize, EncodeError)>>()
        };
        // Every parallel step (encoding, then the vocabulary's) runs on one capped pool of this
        // process: rayon's global pool hangs in a forked child (see `pool`).
        crate::pool::install(opts.num_threads, || {
            Self::train_on_pool(schema, registry, opts, &base, encode_all)
        })
    }

    fn train_on_pool(
        schema: &Value,
        registry: &[(String, Value)],
        opts: &TrainOptions,
        base: &Tokenizer,
        encode_all: impl FnOnce() -> Result<Vec<Vec<u32>>, (usize, EncodeError)>,
    ) -> Result<Tokenizer, crate::error::TctTrainError> {
        use crate::error::TctTrainError;
        let streams = encode_all().map_err(|(i, e)| TctTrainError::Document(i, e))?;
        let n_sel = base.vocab().n_sel();
        let mut cfg = crate::vocab::TrainConfig::new(n_sel, opts.vocab_size);
        if let Some(d) = opts.dictionary_size {
            cfg.dictionary_size = d;
        }
        if let Some(s) = opts.scope {
            cfg.scope = s;
        }
        cfg.progress = opts.progress;
        let (vocab, mut report) =
            crate::vocab::train_grouped(&streams, opts.groups.as_deref(), &cfg)
                .map_err(|e| TctTrainError::Schema(e.into()))?;
        // Wall-clock times would make the file differ between identical runs: keep them out.
        report.seconds.clear();
        let file = TokenizerFile {
            name: opts.name.clone(),
            schema: schema.clone(),
            registry: registry.to_vec(),
            vocab,
            training: serde_json::to_value(&report).unwrap_or(Value::Null),
            ref_siblings: crate::compile::RefSiblings::ByDraft,
        };
        Tokenizer::from_file(file).map_err(TctTrainError::Schema)
    }
}
