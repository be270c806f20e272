//! Parallel, ordered, memory-bounded encoding of a corpus into shards.
//!
//! The input is cut into chunks of at most `chunk_docs` items / `chunk_bytes` bytes. Each chunk
//! is read, parsed (JSON or YAML), encoded and range-checked by a rayon pool, then written in
//! input order by this thread. So the output is byte-identical whatever the thread count, and
//! memory holds only a few chunks however large the corpus is. With N > 1 threads the pool has
//! N workers and this thread reads the next chunks and writes finished ones meanwhile; with one
//! thread everything runs on the calling thread.

// Why reading and writing overlap the pool: the first version made the pool wait while this
// thread read and wrote, and 2 threads were no faster than one on the 2-core box (with a base
// tokenizer, whose output is larger than its input).

use super::pyjson::compact_json_size;
use super::shard_writer::{publish, Counts, ShardPaths, ShardWriter, SplitInfo, TokenizerInfo};
use super::sources::{read_file, Format, Input, Item, Payload};
use super::yaml::parse_yaml;
use crate::error::EncodeError;
use crate::json::Json;
use crate::tokenizer::{Encoding, Tokenizer};
use rayon::prelude::*;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the pipeline needs from a tokenizer (a trait so that tests can use a dummy encoder).
pub trait DocEncoder: Sync {
    fn encode(&self, doc: &Json) -> Result<Encoding, EncodeError>;
}

impl DocEncoder for Tokenizer {
    fn encode(&self, doc: &Json) -> Result<Encoding, EncodeError> {
        self.encode_tree(doc)
    }
}

impl<F> DocEncoder for F
where
    F: Fn(&Json) -> Result<Encoding, EncodeError> + Sync,
{
    fn encode(&self, doc: &Json) -> Result<Encoding, EncodeError> {
        self(doc)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads (>= 1).
    pub threads: usize,
    /// Share of documents routed to the validation shard, decided by a hash of `(seed, group)`;
    /// 0 writes no validation shard. A document's group is the `val_group` field of its JSONL
    /// record (`repo` by default, when the record has it), the top directory of a tree input
    /// (the file itself at the top level), else the document's source. Near-copies of a
    /// workflow live in one repository: splitting by document would leak them into validation.
    pub val_fraction: f64,
    /// The record field naming a JSONL document's group; `None` means `repo` when present.
    pub val_group: Option<String>,
    /// The document inside each parsed input: a JSON pointer (`/json`) or a top-level key
    /// (`json`). `None`: the whole input is the document.
    pub field: Option<String>,
    /// Read symlinks to files outside a tree input (refused by default).
    pub follow_symlinks: bool,
    pub seed: u64,
    /// This run encodes the items whose input ordinal is `shard_index` modulo `num_shards`.
    pub num_shards: u64,
    pub shard_index: u64,
    /// Documents with more ids than this (BOS and EOS included) are skipped and counted.
    pub max_tokens: Option<u64>,
    pub chunk_docs: usize,
    pub chunk_bytes: u64,
    /// Test hook: fail (as a fatal error) after this many documents were written.
    pub fail_after_docs: Option<u64>,
    /// Walk a directory input once first, so that the progress has a total (ETA).
    pub count_first: bool,
    /// How often `progress` is called (it is also where an interrupt is noticed).
    pub progress_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            threads: 1,
            val_fraction: 0.0,
            val_group: None,
            field: None,
            follow_symlinks: false,
            seed: 0,
            num_shards: 1,
            shard_index: 0,
            max_tokens: None,
            chunk_docs: 256,
            chunk_bytes: 8 << 20,
            fail_after_docs: None,
            count_first: true,
            progress_every: Duration::from_millis(200),
        }
    }
}

/// A snapshot for progress display.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Own input items handled (documents + rejected + skipped).
    pub items: u64,
    pub documents: u64,
    pub rejected: u64,
    pub skipped_too_long: u64,
    pub tokens: u64,
    /// Bytes of document text read (uncompressed).
    pub input_bytes: u64,
    pub elapsed_s: f64,
    /// Share of the input done, when the input size is known (directories, files).
    pub fraction: Option<f64>,
    pub finished: bool,
}

#[derive(Debug)]
pub enum RunError {
    /// Bad arguments (exit status 2).
    Usage(String),
    /// The input as a whole cannot be read, the output cannot be written, an id does not fit:
    /// nothing is published (exit status 2).
    Fatal(String),
    /// The progress callback asked to stop (Ctrl-C); nothing is published.
    Interrupted(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Usage(m) => write!(f, "usage error: {m}"),
            RunError::Fatal(m) => write!(f, "fatal error: {m}"),
            RunError::Interrupted(m) => write!(f, "interrupted: {m}"),
        }
    }
}

impl std::error::Error for RunError {}

#[derive(Debug, Clone)]
pub struct Summary {
    pub train: Counts,
    pub val: Option<Counts>,
    pub outputs: Vec<ShardPaths>,
    pub items: u64,
    pub input_bytes: u64,
    pub elapsed_s: f64,
    /// The first rejected inputs (source, reason), for the summary printout; the full list is in
    /// the meta files.
    pub rejected_sample: Vec<(String, String)>,
    /// The commonest places where documents left the schema (pointer, documents), most first:
    /// when most documents fall back, these say whether the schema or the input is wrong.
    pub fallback_pointers: Vec<(String, u64)>,
}

const FALLBACK_POINTERS: usize = 5;

const REJECTED_SAMPLE: usize = 20;
/// Chunks submitted to the pool ahead of the one being written.
const IN_FLIGHT: usize = 3;

enum Outcome {
    Encoded {
        ids: Vec<u16>,
        json_bytes: u64,
        /// The first place the document left the schema, if it did.
        fallback: Option<String>,
    },
    Rejected(String),
    TooLong,
    Fatal(String),
}

struct Processed {
    source: String,
    val: bool,
    bytes: u64,
    outcome: Outcome,
}

/// 64-bit FNV-1a followed by the splitmix64 finaliser: stable across platforms and versions
/// (unlike std's SipHash keys), cheap, and well mixed in the high bits used below.
pub fn split_hash(seed: u64, source: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.to_le_bytes().iter().chain(source.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Whether the document named `source` goes to the validation shard.
pub fn is_val(seed: u64, source: &str, fraction: f64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let u = (split_hash(seed, source) >> 11) as f64 / (1u64 << 53) as f64;
    u < fraction
}

struct Ctx<'a, E: DocEncoder> {
    encoder: &'a E,
    vocab_size: u32,
    bos: u16,
    eos: u16,
    opts: &'a Options,
}

/// Parse one input and hand the tree to `then`; `Err` is why the input is rejected. JSON is
/// parsed straight into a tree that borrows from `bytes` (`crate::json`); YAML into a
/// `serde_json::Value` first.
pub fn with_parsed<R>(
    bytes: &[u8],
    format: Format,
    then: impl FnOnce(&Json<'_>) -> R,
) -> Result<R, String> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
    };
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if body.trim().is_empty() {
        return Err("empty document".into());
    }
    match format {
        Format::Json => match crate::json::parse_str(body) {
            Ok(doc) => Ok(then(&doc)),
            Err(e) => {
                // Offsets count from the start of the file, byte-order mark included.
                let at = e.offset.map_or(0, |o| o + (text.len() - body.len()));
                let inside = if e.pointer.is_empty() {
                    String::new()
                } else {
                    format!(" (in {})", e.pointer)
                };
                let what = e
                    .message
                    .strip_prefix("invalid JSON: ")
                    .unwrap_or(&e.message);
                Err(format!("invalid JSON at byte {at}{inside}: {what}"))
            }
        },
        Format::Yaml => match parse_yaml(body) {
            Ok(v) => match Json::from_value(&v) {
                Ok(doc) => Ok(then(&doc)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) if e.message == "empty document" => Err(e.message),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// One input item as compact JSON text, with the item's group (the `group_field` of a record,
/// as in [`Options::val_group`]): the whole input, or its `field`. `Err` is why it is rejected
/// (the same reasons `tct-encode` records). `Ok(None)`: the `field` is null, a record that holds
/// no document (`tct.read_corpus` skips those; `tct-encode` rejects them).
#[allow(clippy::type_complexity)]
pub fn read_document(
    item: Item,
    field: Option<&str>,
    group_field: Option<&str>,
) -> (String, Result<Option<(String, Option<String>)>, String>) {
    let payload = match item.payload {
        Payload::Unreadable(reason) | Payload::Corrupt(reason) => {
            return (item.source, Err(reason))
        }
        Payload::File { path, format, size } => read_file(&path, size).map(|b| (b, format)),
        Payload::Line(line) => Ok((line, Format::Json)),
    };
    let result = payload.and_then(|(bytes, format)| {
        with_parsed(&bytes, format, |input| {
            let group = group_field.and_then(|g| group_of(input, g));
            let doc = match field {
                None => input,
                Some(f) => match select(input, f) {
                    Some(Json::Null) => return Ok(None),
                    _ => selected(input, f)?,
                },
            };
            let mut text = String::new();
            doc.write_compact(&mut text);
            Ok(Some((text, group)))
        })
        .and_then(|r| r)
    });
    (item.source, result)
}

/// `select`, with the reason when there is no document there.
fn selected<'t, 'a>(input: &'t Json<'a>, field: &str) -> Result<&'t Json<'a>, String> {
    match select(input, field) {
        None => Err(format!("no field {field:?} in this input (--field)")),
        // A record whose document could not be converted (`"json": null`) holds none.
        Some(Json::Null) => Err(format!("the field {field:?} is null: no document")),
        Some(doc) => Ok(doc),
    }
}

/// The value at `field` (a JSON pointer, or a top-level key when it does not start with `/`).
pub fn select<'t, 'a>(doc: &'t Json<'a>, field: &str) -> Option<&'t Json<'a>> {
    let Some(pointer) = field.strip_prefix('/') else {
        return doc.get(field);
    };
    let mut at = doc;
    for token in pointer.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        at = match at {
            Json::Object(_) => at.get(&token)?,
            Json::Array(items) => {
                // RFC 6901: decimal digits, no leading zero.
                if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
                    return None;
                }
                items.get(token.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(at)
}

/// The document of a parsed input: the whole input, or its `--field`.
fn encode_selected<E: DocEncoder>(input: &Json<'_>, source: &str, ctx: &Ctx<'_, E>) -> Outcome {
    match &ctx.opts.field {
        None => encode_document(input, source, ctx),
        Some(field) => match selected(input, field) {
            Ok(doc) => encode_document(doc, source, ctx),
            Err(reason) => Outcome::Rejected(reason),
        },
    }
}

/// A record's group: its `field` (strings as they are, other values as compact JSON).
fn group_of(record: &Json<'_>, field: &str) -> Option<String> {
    Some(match record.get(field)? {
        Json::String(s) => s.to_string(),
        other => {
            let mut text = String::new();
            other.write_compact(&mut text);
            text
        }
    })
}

/// A JSONL record's group for the split: its `val_group` field, `repo` by default.
fn record_group(record: &Json<'_>, opts: &Options) -> Option<String> {
    group_of(record, opts.val_group.as_deref().unwrap_or("repo"))
}

/// A tree input's group: the top directory of `source` (the file itself at the top level).
fn tree_group(source: &str) -> &str {
    source.split_once('/').map_or(source, |(top, _)| top)
}

fn process<E: DocEncoder>(item: Item, ctx: &Ctx<'_, E>) -> Processed {
    let bytes = item.size();
    let mut group: Option<String> = None;
    let outcome = match item.payload {
        Payload::Unreadable(reason) => Outcome::Rejected(reason),
        Payload::Corrupt(reason) => Outcome::Fatal(reason),
        Payload::File { path, format, size } => match read_file(&path, size) {
            Ok(b) => with_parsed(&b, format, |doc| encode_selected(doc, &item.source, ctx))
                .unwrap_or_else(Outcome::Rejected),
            Err(reason) => Outcome::Rejected(reason),
        },
        Payload::Line(line) => with_parsed(&line, Format::Json, |record| {
            if ctx.opts.val_fraction > 0.0 {
                group = record_group(record, ctx.opts);
            }
            encode_selected(record, &item.source, ctx)
        })
        .unwrap_or_else(Outcome::Rejected),
    };
    let key = match &group {
        Some(g) => g.as_str(),
        // JSONL sources are `NAME:LINE` (no `/`): each line is its own group.
        None => tree_group(&item.source),
    };
    let val = is_val(ctx.opts.seed, key, ctx.opts.val_fraction);
    Processed {
        source: item.source,
        val,
        bytes,
        outcome,
    }
}

fn encode_document<E: DocEncoder>(doc: &Json, source: &str, ctx: &Ctx<'_, E>) -> Outcome {
    let json_bytes = compact_json_size(doc);
    let enc = match ctx.encoder.encode(doc) {
        Ok(e) => e,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    let n = enc.ids.len() as u64 + 2;
    if ctx.opts.max_tokens.is_some_and(|m| n > m) {
        return Outcome::TooLong;
    }
    let mut ids = Vec::with_capacity(enc.ids.len() + 2);
    ids.push(ctx.bos);
    for (i, &id) in enc.ids.iter().enumerate() {
        if id >= ctx.vocab_size || id > u32::from(u16::MAX) {
            return Outcome::Fatal(format!(
                "{source}: the tokenizer produced id {id} at position {i}, outside the vocabulary of {} ids (uint16 shards)",
                ctx.vocab_size
            ));
        }
        ids.push(id as u16);
    }
    ids.push(ctx.eos);
    Outcome::Encoded {
        ids,
        json_bytes,
        fallback: enc.fallbacks.into_iter().next(),
    }
}

/// Take the next chunk of this slice's items (other slices' items are skipped unread).
fn next_chunk(input: &mut Input, opts: &Options) -> Vec<Item> {
    let mut chunk = Vec::with_capacity(opts.chunk_docs);
    let mut bytes = 0u64;
    for item in input.by_ref() {
        if item.ordinal % opts.num_shards != opts.shard_index {
            continue;
        }
        bytes += item.size();
        chunk.push(item);
        if chunk.len() >= opts.chunk_docs || bytes >= opts.chunk_bytes {
            break;
        }
    }
    chunk
}

fn check_options(tokenizer: &TokenizerInfo, opts: &Options) -> Result<(), RunError> {
    if opts.threads == 0 {
        return Err(RunError::Usage("--threads must be at least 1".into()));
    }
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(RunError::Usage(format!(
            "--val-fraction must be in [0, 1), got {}",
            opts.val_fraction
        )));
    }
    if opts.num_shards == 0 || opts.shard_index >= opts.num_shards {
        return Err(RunError::Usage(format!(
            "--shard-index must be in [0, {}), got {}",
            opts.num_shards, opts.shard_index
        )));
    }
    if opts.max_tokens == Some(0) {
        return Err(RunError::Usage("--max-tokens must be positive".into()));
    }
    if opts.chunk_docs == 0 {
        return Err(RunError::Usage("chunk size must be positive".into()));
    }
    let v = tokenizer.vocab_size;
    if v == 0 || v > u32::from(u16::MAX) + 1 {
        return Err(RunError::Fatal(format!(
            "a vocabulary of {v} ids does not fit uint16 shards"
        )));
    }
    if tokenizer.bos_id >= v || tokenizer.eos_id >= v {
        return Err(RunError::Fatal(format!(
            "BOS {} / EOS {} outside the vocabulary of {v}",
            tokenizer.bos_id, tokenizer.eos_id
        )));
    }
    Ok(())
}

/// `path` made absolute with its existing ancestors' symlinks resolved (the output files and
/// their directory may not exist yet).
fn resolved(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p: PathBuf, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return abs,
        }
    }
}

/// Refuse outputs that are the input or lie inside an input directory: writing them would
/// replace an input (`tct-encode X.meta.json X.bin`), or the next run would read them back as
/// documents.
fn refuse_outputs_in_input(input: &str, outputs: &[&ShardPaths]) -> Result<(), RunError> {
    if input == "-" {
        return Ok(());
    }
    let Ok(inp) = std::fs::canonicalize(input) else {
        return Ok(()); // Input::open reports a missing input.
    };
    let is_dir = inp.is_dir();
    for p in outputs {
        for f in [&p.bin, &p.idx, &p.meta] {
            let out = resolved(f);
            if out == inp || (is_dir && out.starts_with(&inp)) {
                let how = if out == inp { "is" } else { "lies inside" };
                return Err(RunError::Usage(format!(
                    "the output {} {how} the input {input}: write the shards outside the input",
                    f.display()
                )));
            }
        }
    }
    Ok(())
}

/// Encode `input` into `output` (`NAME.bin`, plus `NAME.val.bin` with a validation fraction).
/// `progress` is called about every 200 ms and once at the end; returning `Err` stops the run
/// (nothing is published, temporary files are removed).
pub fn encode_corpus<E: DocEncoder>(
    encoder: &E,
    tokenizer: &TokenizerInfo,
    input: &str,
    output: &Path,
    opts: &Options,
    progress: &mut dyn FnMut(&Progress) -> Result<(), String>,
) -> Result<Summary, RunError> {
    check_options(tokenizer, opts)?;
    let train_paths = ShardPaths::for_output(output, None).map_err(RunError::Usage)?;
    let val_paths = if opts.val_fraction > 0.0 {
        Some(ShardPaths::for_output(output, Some("val")).map_err(RunError::Usage)?)
    } else {
        None
    };
    let input_name = input;
    {
        let mut outputs = vec![&train_paths];
        outputs.extend(val_paths.as_ref());
        refuse_outputs_in_input(input, &outputs)?;
    }
    // Like `mkdir -p`: a fresh output directory is the common case (`out/corpus.bin`); made only
    // once the outputs are known not to touch the input.
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            RunError::Fatal(format!(
                "cannot create the output directory {}: {e}",
                parent.display()
            ))
        })?;
    }
    let mut input = Input::open_with(input, opts.count_first, opts.follow_symlinks)
        .map_err(|e| RunError::Fatal(e.to_string()))?;
    input.restrict_total(opts.num_shards, opts.shard_index);
    let position = input.position();

    let split = |kind| SplitInfo {
        kind,
        val_fraction: opts.val_fraction,
        seed: opts.seed,
        num_shards: opts.num_shards,
        shard_index: opts.shard_index,
    };
    let io_err =
        |p: &ShardPaths, e: std::io::Error| RunError::Fatal(format!("{}: {e}", p.bin.display()));
    let mut train = ShardWriter::create(train_paths.clone(), tokenizer.clone(), split("train"))
        .map_err(|e| io_err(&train_paths, e))?;
    let mut val = match &val_paths {
        Some(p) => Some(
            ShardWriter::create(p.clone(), tokenizer.clone(), split("val"))
                .map_err(|e| io_err(p, e))?,
        ),
        None => None,
    };

    let ctx = Ctx {
        encoder,
        vocab_size: tokenizer.vocab_size,
        bos: tokenizer.bos_id as u16,
        eos: tokenizer.eos_id as u16,
        opts,
    };

    // With one thread everything runs here, in order. With more, this thread reads chunks and
    // writes results while the pool encodes: up to IN_FLIGHT chunks are submitted ahead, and
    // their results are taken back in submission order (one channel per chunk), so the output
    // order never depends on scheduling.
    let start = Instant::now();
    let mut last_report = start;
    let mut snap = Progress::default();
    let mut rejected_sample = Vec::new();
    let mut fallback_at: std::collections::HashMap<String, u64> = Default::default();
    let mut write_results = |results: Vec<Processed>| -> Result<(), RunError> {
        let n_items = results.len() as u64;
        for p in results {
            let writer = match (&mut val, p.val) {
                (Some(v), true) => v,
                _ => &mut train,
            };
            let io = |e: std::io::Error| RunError::Fatal(format!("{}: {e}", output.display()));
            snap.input_bytes += p.bytes;
            match p.outcome {
                Outcome::Encoded {
                    ids,
                    json_bytes,
                    fallback,
                } => {
                    writer
                        .push_document(&ids, json_bytes, fallback.is_some(), &p.source)
                        .map_err(io)?;
                    if let Some(at) = fallback {
                        *fallback_at.entry(at).or_default() += 1;
                    }
                    snap.documents += 1;
                    snap.tokens += ids.len() as u64;
                    if opts.fail_after_docs.is_some_and(|n| snap.documents >= n) {
                        return Err(RunError::Fatal(format!(
                            "injected failure after {} documents (TCT_TEST_FAIL_AFTER_DOCS)",
                            snap.documents
                        )));
                    }
                }
                Outcome::Rejected(reason) => {
                    writer.push_rejected(&p.source, &reason).map_err(io)?;
                    snap.rejected += 1;
                    if rejected_sample.len() < REJECTED_SAMPLE {
                        rejected_sample.push((p.source, reason));
                    }
                }
                Outcome::TooLong => {
                    writer.skip_too_long();
                    snap.skipped_too_long += 1;
                }
                Outcome::Fatal(m) => return Err(RunError::Fatal(m)),
            }
        }
        snap.items += n_items;
        position.add_done_items(n_items);
        let now = Instant::now();
        if now.duration_since(last_report) >= opts.progress_every {
            last_report = now;
            snap.elapsed_s = now.duration_since(start).as_secs_f64();
            snap.fraction = position.fraction();
            progress(&snap).map_err(RunError::Interrupted)?;
        }
        Ok(())
    };

    if opts.threads == 1 {
        loop {
            let chunk = next_chunk(&mut input, opts);
            if chunk.is_empty() {
                break;
            }
            write_results(chunk.into_iter().map(|item| process(item, &ctx)).collect())?;
        }
    } else {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.threads)
            .thread_name(|i| format!("tct-encode-{i}"))
            .build()
            .map_err(|e| RunError::Fatal(format!("cannot start {} threads: {e}", opts.threads)))?;
        let ctx = &ctx;
        pool.in_place_scope(|scope| -> Result<(), RunError> {
            let mut pending: VecDeque<mpsc::Receiver<Vec<Processed>>> = VecDeque::new();
            let mut exhausted = false;
            loop {
                while !exhausted && pending.len() < IN_FLIGHT {
                    let chunk = next_chunk(&mut input, opts);
                    if chunk.is_empty() {
                        exhausted = true;
                        break;
                    }
                    let (tx, rx) = mpsc::sync_channel(1);
                    scope.spawn(move |_| {
                        let results: Vec<Processed> = chunk
                            .into_par_iter()
                            .map(|item| process(item, ctx))
                            .collect();
                        // The receiver is gone only when the run already failed.
                        let _ = tx.send(results);
                    });
                    pending.push_back(rx);
                }
                let Some(rx) = pending.pop_front() else {
                    return Ok(());
                };
                let results = rx.recv().map_err(|_| {
                    RunError::Fatal("an encoding worker stopped unexpectedly".into())
                })?;
                write_results(results)?;
            }
        })?;
    }

    // An input with nothing in it (an empty folder, a folder without .json/.yml/.yaml files,
    // an empty JSONL file) is a mistake, not a corpus of zero documents: nothing is published.
    if input.items_seen() == 0 {
        return Err(RunError::Fatal(format!(
            "{}: no input documents (a directory needs .json/.yml/.yaml files; a JSONL file \
             one JSON value per line)",
            input_name
        )));
    }
    let fin = |w: &mut ShardWriter| {
        w.finish()
            .map_err(|e| RunError::Fatal(format!("{}: {e}", w.paths().bin.display())))
    };
    fin(&mut train)?;
    if let Some(v) = val.as_mut() {
        fin(v)?;
    }
    {
        let mut all: Vec<&mut ShardWriter> = vec![&mut train];
        if let Some(v) = val.as_mut() {
            all.push(v);
        }
        publish(&mut all)
            .map_err(|e| RunError::Fatal(format!("publishing {}: {e}", output.display())))?;
    }
    snap.elapsed_s = start.elapsed().as_secs_f64();
    snap.fraction = Some(1.0);
    snap.finished = true;
    progress(&snap).map_err(RunError::Interrupted).ok();
    let mut outputs = vec![train.paths().clone()];
    if let Some(v) = &val {
        outputs.push(v.paths().clone());
    }
    Ok(Summary {
        train: train.counts,
        val: val.as_ref().map(|v| v.counts),
        outputs,
        items: snap.items,
        input_bytes: snap.input_bytes,
        elapsed_s: snap.elapsed_s,
        rejected_sample,
        fallback_pointers: {
            let mut v: Vec<(String, u64)> = fallback_at.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.truncate(FALLBACK_POINTERS);
            v
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::fs;
    use std::path::PathBuf;

    /// A stand-in tokenizer: one id per byte of compact JSON (offset by 3), so that decoding is
    /// trivial and the pipeline can be tested before (and independently of) the real codec.
    fn dummy(doc: &Json) -> Result<Encoding, EncodeError> {
        let mut text = String::new();
        doc.write_compact(&mut text);
        let fallbacks = if doc.get("bad").is_some() {
            vec!["/bad".to_string()]
        } else {
            vec![]
        };
        Ok(Encoding {
            ids: text.bytes().map(|b| u32::from(b) + 3).collect(),
            fallbacks,
        })
    }

    fn info() -> TokenizerInfo {
        TokenizerInfo {
            name: "dummy".into(),
            hash: "0".into(),
            vocab_size: 300,
            pad_id: 0,
            bos_id: 1,
            eos_id: 2,
            position_range: None,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tct-pipe-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn run(input: &Path, out: &Path, opts: &Options) -> Result<Summary, RunError> {
        encode_corpus(
            &dummy,
            &info(),
            input.to_str().unwrap(),
            out,
            opts,
            &mut |_| Ok(()),
        )
    }

    fn decode_all(bin: &Path) -> Vec<String> {
        let bytes = fs::read(bin).unwrap();
        let ids: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        ids.split(|&i| i == 2)
            .filter(|d| !d.is_empty())
            .map(|d| d[1..].iter().map(|&i| (i - 3) as u8 as char).collect())
            .collect()
    }

    fn corpus(dir: &Path, n: usize) {
        let mut lines = String::new();
        for i in 0..n {
            lines.push_str(&format!("{{\"i\":{i},\"s\":\"{}\"}}\n", "x".repeat(i % 17)));
        }
        fs::write(dir.join("c.jsonl"), lines).unwrap();
    }

    #[test]
    fn output_is_identical_for_any_thread_count_and_chunk_size() {
        let d = tmp("threads");
        corpus(&d, 1000);
        let mut outs = Vec::new();
        for (threads, chunk) in [(1, 256), (2, 256), (3, 7), (2, 1)] {
            let out = d.join(format!("o{threads}-{chunk}.bin"));
            let opts = Options {
                threads,
                chunk_docs: chunk,
                val_fraction: 0.2,
                ..Options::default()
            };
            let s = run(&d.join("c.jsonl"), &out, &opts).unwrap();
            assert_eq!(s.train.documents + s.val.unwrap().documents, 1000);
            let val = d.join(format!("o{threads}-{chunk}.val.bin"));
            outs.push((fs::read(&out).unwrap(), fs::read(&val).unwrap()));
        }
        for o in &outs[1..] {
            assert!(o == &outs[0]);
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn documents_round_trip_in_input_order() {
        let d = tmp("order");
        corpus(&d, 300);
        let out = d.join("o.bin");
        run(
            &d.join("c.jsonl"),
            &out,
            &Options {
                threads: 2,
                chunk_docs: 16,
                ..Options::default()
            },
        )
        .unwrap();
        let docs = decode_all(&out);
        assert_eq!(docs.len(), 300);
        for (i, doc) in docs.iter().enumerate() {
            let v: Value = serde_json::from_str(doc).unwrap();
            assert_eq!(v["i"], i);
        }
        let meta: Value =
            serde_json::from_slice(&fs::read(d.join("o.meta.json")).unwrap()).unwrap();
        assert_eq!(meta["documents"]["source"][299], "c.jsonl:300");
        assert_eq!(meta["documents"]["json_bytes"][0], docs[0].len());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn shard_slices_cover_everything_once() {
        let d = tmp("slices");
        corpus(&d, 101);
        let mut seen = Vec::new();
        for i in 0..3 {
            let out = d.join(format!("s{i}.bin"));
            run(
                &d.join("c.jsonl"),
                &out,
                &Options {
                    num_shards: 3,
                    shard_index: i,
                    ..Options::default()
                },
            )
            .unwrap();
            seen.extend(decode_all(&out).into_iter().map(|t| {
                serde_json::from_str::<Value>(&t).unwrap()["i"]
                    .as_u64()
                    .unwrap()
            }));
        }
        seen.sort();
        assert_eq!(seen, (0..101).collect::<Vec<_>>());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_inputs_are_reported_and_skipped() {
        let d = tmp("bad");
        let src = d.join("tree");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("a.yml"), "on: push\njobs: {}\n").unwrap();
        fs::write(src.join("b.json"), "{\"x\": ").unwrap();
        fs::write(src.join("c.yaml"), "a: 1\n---\nb: 2\n").unwrap();
        fs::write(src.join("d.yml"), b"a: \xff\n").unwrap();
        fs::write(src.join("e.yml"), "  \n").unwrap();
        fs::write(src.join("sub/f.json"), "{\"bad\": 1}").unwrap();
        fs::write(src.join("sub/g.txt"), "ignored").unwrap();
        let out = d.join("o.bin");
        let s = run(
            &src,
            &out,
            &Options {
                threads: 2,
                ..Options::default()
            },
        )
        .unwrap();
        assert_eq!(s.train.documents, 2);
        assert_eq!(s.train.rejected, 4);
        assert_eq!(s.train.fallback_documents, 1);
        let reasons: Vec<String> = s
            .rejected_sample
            .iter()
            .map(|(s, r)| format!("{s}: {r}"))
            .collect();
        assert!(
            reasons[0].starts_with("b.json: invalid JSON"),
            "{reasons:?}"
        );
        assert!(
            reasons[1].starts_with("c.yaml: YAML error at line 2"),
            "{reasons:?}"
        );
        assert!(
            reasons[2].starts_with("d.yml: invalid UTF-8 at byte 3"),
            "{reasons:?}"
        );
        assert_eq!(reasons[3], "e.yml: empty document");
        let docs = decode_all(&out);
        assert_eq!(docs, vec![r#"{"on":"push","jobs":{}}"#, r#"{"bad":1}"#]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn max_tokens_skips_and_counts() {
        let d = tmp("maxtok");
        corpus(&d, 50);
        let out = d.join("o.bin");
        let s = run(
            &d.join("c.jsonl"),
            &out,
            &Options {
                max_tokens: Some(25),
                ..Options::default()
            },
        )
        .unwrap();
        assert!(s.train.skipped_too_long > 0 && s.train.documents > 0);
        assert_eq!(s.train.documents + s.train.skipped_too_long, 50);
        assert!(decode_all(&out).iter().all(|t| t.len() + 2 <= 25));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failure_and_interrupt_leave_no_output() {
        let d = tmp("fail");
        corpus(&d, 500);
        let out = d.join("o.bin");
        // A complete-looking old set must not survive beside the temporaries either.
        let err = run(
            &d.join("c.jsonl"),
            &out,
            &Options {
                fail_after_docs: Some(100),
                chunk_docs: 10,
                val_fraction: 0.5,
                ..Options::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Fatal(_)));
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["c.jsonl".to_string()]);
        let opts = Options {
            chunk_docs: 10,
            progress_every: Duration::ZERO,
            ..Options::default()
        };
        let mut calls = 0;
        let err = encode_corpus(
            &dummy,
            &info(),
            d.join("c.jsonl").to_str().unwrap(),
            &out,
            &opts,
            &mut |p| {
                calls += 1;
                if p.documents >= 50 {
                    Err("interrupted by the test".into())
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(err, Err(RunError::Interrupted(_))));
        assert_eq!(calls, 5);
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["c.jsonl".to_string()]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn out_of_range_ids_are_fatal() {
        let d = tmp("range");
        corpus(&d, 5);
        let small = TokenizerInfo {
            vocab_size: 50,
            ..info()
        };
        let err = encode_corpus(
            &dummy,
            &small,
            d.join("c.jsonl").to_str().unwrap(),
            &d.join("o.bin"),
            &Options::default(),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert!(
            matches!(&err, RunError::Fatal(m) if m.contains("outside the vocabulary")),
            "{err}"
        );
        assert!(!d.join("o.bin").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn split_is_deterministic_and_near_the_fraction() {
        let n = (0..20000)
            .filter(|i| is_val(7, &format!("f.jsonl:{i}"), 0.1))
            .count();
        assert!((1800..2200).contains(&n), "{n}");
        assert_eq!(split_hash(7, "a.yml"), split_hash(7, "a.yml"));
        assert_ne!(split_hash(7, "a.yml"), split_hash(8, "a.yml"));
    }

    #[test]
    fn usage_errors() {
        let d = tmp("usage");
        corpus(&d, 1);
        let input = d.join("c.jsonl");
        for opts in [
            Options {
                threads: 0,
                ..Options::default()
            },
            Options {
                val_fraction: 1.0,
                ..Options::default()
            },
            Options {
                num_shards: 2,
                shard_index: 2,
                ..Options::default()
            },
        ] {
            assert!(matches!(
                run(&input, &d.join("o.bin"), &opts),
                Err(RunError::Usage(_))
            ));
        }
        assert!(matches!(
            run(&input, &d.join("o.tokens"), &Options::default()),
            Err(RunError::Usage(_))
        ));
        assert!(matches!(
            run(&d.join("missing"), &d.join("o.bin"), &Options::default()),
            Err(RunError::Fatal(_))
        ));
        fs::remove_dir_all(&d).unwrap();
    }
}
