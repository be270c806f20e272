//! Where documents come from: a directory tree (walked recursively in sorted order), one
//! `.json`/`.yml`/`.yaml` file, a `.jsonl`/`.jsonl.gz` file, or JSONL on stdin (`-`).
//!
//! Items are produced lazily and in a fixed order (the input order that the shards keep), so
//! memory stays bounded whatever the corpus size: a directory costs one sorted listing per open
//! level, a JSONL file one line at a time.

use flate2::read::MultiGzDecoder;
use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Documents larger than this are rejected rather than read (the largest workflow in the
/// development corpus is 168 KB of YAML).
pub const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// What an item holds before it is parsed.
#[derive(Debug)]
pub enum Payload {
    /// A file to read in a worker thread (directory inputs: reading is parallel too).
    File {
        path: PathBuf,
        format: Format,
        size: u64,
    },
    /// One JSONL line (already read, without its line break).
    Line(Vec<u8>),
    /// Something that could not even be listed or read; the reason is reported.
    Unreadable(String),
    /// The input stream itself is damaged (a corrupt gzip stream): nothing read from it can be
    /// trusted, so the run stops and publishes nothing.
    Corrupt(String),
}

/// One input entry. `ordinal` counts every entry of the input in order (it decides the
/// `--shard-index` slice); `source` is what the meta records (`path` relative to the input
/// directory, or `FILE:LINE`).
#[derive(Debug)]
pub struct Item {
    pub ordinal: u64,
    pub source: String,
    pub payload: Payload,
}

impl Item {
    /// Input bytes this item stands for (for chunk sizing and MB/s).
    pub fn size(&self) -> u64 {
        match &self.payload {
            Payload::File { size, .. } => *size,
            Payload::Line(b) => b.len() as u64,
            Payload::Unreadable(_) | Payload::Corrupt(_) => 0,
        }
    }
}

/// A fatal problem with the input as a whole (exit status 2).
#[derive(Debug)]
pub struct InputError(pub String);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The format of a file by its extension, `None` for files a directory walk ignores.
pub fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()? {
        "json" => Some(Format::Json),
        "yml" | "yaml" => Some(Format::Yaml),
        _ => None,
    }
}

fn is_jsonl(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".jsonl") || name.ends_with(".jsonl.gz")
}

/// How far through the input we are, for the ETA: `(done, total)` in units of the input
/// (files for a directory, bytes of the file as stored for JSONL).
#[derive(Clone, Default)]
pub struct Position {
    done: Arc<AtomicU64>,
    total: Option<u64>,
    /// Progress counts items (directories, single files) rather than bytes read (JSONL).
    counts_items: bool,
}

impl Position {
    /// Items handled by the pipeline (no effect for JSONL, whose reader counts bytes).
    pub fn add_done_items(&self, n: u64) {
        if self.counts_items {
            self.done.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn fraction(&self) -> Option<f64> {
        let total = self.total?;
        if total == 0 {
            return Some(1.0);
        }
        Some((self.done.load(Ordering::Relaxed) as f64 / total as f64).min(1.0))
    }
}

/// Counts the bytes read from the underlying file (compressed bytes for `.gz`).
struct Counting<R> {
    inner: R,
    done: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// One directory entry of a tree walk.
#[derive(Debug)]
enum Entry {
    Dir,
    File,
    /// Listed but not read, with the reason (reported as a rejected input).
    Refused(String),
}

/// How a walk treats what is not a plain file or directory.
#[derive(Debug, Clone)]
struct WalkRules {
    /// The root, symlinks resolved: a link whose target lies outside it is not read unless
    /// `follow_symlinks` (a link to `~/.kube/config` must not land in a shard).
    root: PathBuf,
    follow_symlinks: bool,
}

enum Kind {
    Walk {
        root: PathBuf,
        rules: WalkRules,
        stack: Vec<std::vec::IntoIter<(PathBuf, Entry)>>,
    },
    Single(Option<PathBuf>),
    Lines {
        reader: Box<dyn BufRead + Send>,
        name: String,
        line: u64,
        failed: bool,
    },
}

/// The ordered stream of items of one input.
pub struct Input {
    kind: Kind,
    next_ordinal: u64,
    position: Position,
}

impl Input {
    /// Open INPUT. `count` walks a directory once first so that the progress has a total.
    pub fn open(input: &str, count: bool) -> Result<Input, InputError> {
        Input::open_with(input, count, false)
    }

    /// `open`, choosing whether a tree walk reads symlinks to files outside the tree.
    pub fn open_with(input: &str, count: bool, follow_symlinks: bool) -> Result<Input, InputError> {
        if input == "-" {
            let reader: Box<dyn BufRead + Send> =
                Box::new(BufReader::with_capacity(1 << 20, io::stdin()));
            return Ok(Input::lines(reader, "<stdin>".into(), Position::default()));
        }
        let path = PathBuf::from(input);
        let meta = fs::metadata(&path).map_err(|e| InputError(format!("{input}: {e}")))?;
        if meta.is_dir() {
            let rules = WalkRules {
                root: fs::canonicalize(&path).map_err(|e| InputError(format!("{input}: {e}")))?,
                follow_symlinks,
            };
            let total = if count {
                Some(count_files(&path, &rules))
            } else {
                None
            };
            let top = list_dir(&path, &rules).map_err(|e| InputError(format!("{input}: {e}")))?;
            return Ok(Input {
                kind: Kind::Walk {
                    root: path,
                    rules,
                    stack: vec![top.into_iter()],
                },
                next_ordinal: 0,
                position: Position {
                    done: Arc::new(AtomicU64::new(0)),
                    total,
                    counts_items: true,
                },
            });
        }
        if is_jsonl(&path) {
            let done = Arc::new(AtomicU64::new(0));
            let file = fs::File::open(&path).map_err(|e| InputError(format!("{input}: {e}")))?;
            let counting = Counting {
                inner: file,
                done: done.clone(),
            };
            let reader: Box<dyn BufRead + Send> = if input.ends_with(".gz") {
                Box::new(BufReader::with_capacity(
                    1 << 20,
                    MultiGzDecoder::new(BufReader::with_capacity(1 << 16, counting)),
                ))
            } else {
                Box::new(BufReader::with_capacity(1 << 20, counting))
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| input.to_string());
            return Ok(Input::lines(
                reader,
                name,
                Position {
                    done,
                    total: Some(meta.len()),
                    counts_items: false,
                },
            ));
        }
        if format_of(&path).is_some() {
            return Ok(Input {
                kind: Kind::Single(Some(path)),
                next_ordinal: 0,
                position: Position {
                    done: Arc::new(AtomicU64::new(0)),
                    total: Some(1),
                    counts_items: true,
                },
            });
        }
        Err(InputError(format!(
            "{input}: not a directory, a .jsonl/.jsonl.gz file, a .json/.yml/.yaml file or '-'"
        )))
    }

    fn lines(reader: Box<dyn BufRead + Send>, name: String, position: Position) -> Input {
        Input {
            kind: Kind::Lines {
                reader,
                name,
                line: 0,
                failed: false,
            },
            next_ordinal: 0,
            position,
        }
    }

    /// Entries produced so far, every slice's included.
    pub fn items_seen(&self) -> u64 {
        self.next_ordinal
    }

    pub fn position(&self) -> Position {
        self.position.clone()
    }

    /// Shard slices count only their own items in the total.
    pub fn restrict_total(&mut self, num_shards: u64, shard_index: u64) {
        if let Some(t) = self.position.total {
            if self.position.counts_items && num_shards > 1 {
                let own = if t > shard_index {
                    (t - shard_index).div_ceil(num_shards)
                } else {
                    0
                };
                self.position.total = Some(own);
            }
        }
    }

    fn item(&mut self, source: String, payload: Payload) -> Item {
        let ordinal = self.next_ordinal;
        self.next_ordinal += 1;
        Item {
            ordinal,
            source,
            payload,
        }
    }
}

impl Iterator for Input {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        match &mut self.kind {
            Kind::Single(p) => {
                let path = p.take()?;
                let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                let format = format_of(&path).unwrap_or(Format::Json);
                let source = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Some(self.item(source, Payload::File { path, format, size }))
            }
            Kind::Walk { root, rules, stack } => loop {
                let top = stack.last_mut()?;
                let Some((path, entry)) = top.next() else {
                    stack.pop();
                    continue;
                };
                let source = relative_source(root, &path);
                if let Entry::Refused(reason) = entry {
                    return Some(self.item(source, Payload::Unreadable(reason)));
                }
                if matches!(entry, Entry::Dir) {
                    match list_dir(&path, rules) {
                        Ok(entries) => stack.push(entries.into_iter()),
                        Err(e) => {
                            return Some(self.item(
                                source,
                                Payload::Unreadable(format!("cannot list directory: {e}")),
                            ))
                        }
                    }
                    continue;
                }
                let Some(format) = format_of(&path) else {
                    continue;
                };
                let size = match fs::metadata(&path) {
                    Ok(m) => m.len(),
                    Err(e) => {
                        return Some(
                            self.item(source, Payload::Unreadable(format!("unreadable: {e}"))),
                        )
                    }
                };
                return Some(self.item(source, Payload::File { path, format, size }));
            },
            Kind::Lines {
                reader,
                name,
                line,
                failed,
            } => loop {
                if *failed {
                    return None;
                }
                let mut buf = Vec::new();
                *line += 1;
                let at = *line;
                match read_line_limited(reader.as_mut(), &mut buf) {
                    Ok(0) => return None,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                            if buf.last() == Some(&b'\r') {
                                buf.pop();
                            }
                        }
                        // Blank lines carry no document (a trailing empty line is common).
                        if buf.iter().all(|b| b.is_ascii_whitespace()) {
                            continue;
                        }
                        let source = format!("{name}:{at}");
                        if buf.len() as u64 > MAX_DOCUMENT_BYTES {
                            return Some(self.item(
                                source,
                                Payload::Unreadable(format!(
                                    "document larger than {MAX_DOCUMENT_BYTES} bytes"
                                )),
                            ));
                        }
                        return Some(self.item(source, Payload::Line(buf)));
                    }
                    Err(e) => {
                        // A gzip checksum covers its whole member and is checked only at its
                        // end, so a bit flip shows first as garbled lines (which may even still
                        // parse) and only then as an error: every line read so far is suspect.
                        // The run reports the stream once and stops (nothing is published).
                        *failed = true;
                        let source = format!("{name}:{at}");
                        let before = at - 1;
                        let reason = if name.ends_with(".gz") {
                            format!(
                                "{name}: corrupt gzip stream, detected at line {at} ({e}); the \
                                 {before} lines decompressed before it come from the damaged \
                                 stream and cannot be trusted"
                            )
                        } else {
                            format!("{name}: read error at line {at}: {e}")
                        };
                        return Some(self.item(source, Payload::Corrupt(reason)));
                    }
                }
            },
        }
    }
}

/// `read_until(b'\n')` that stops storing past the document size limit (the rest of the line is
/// consumed and dropped, so one huge line cannot exhaust memory).
fn read_line_limited(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut total = 0usize;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(total);
        }
        let (used, done) = match memchr_newline(available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if (buf.len() as u64) <= MAX_DOCUMENT_BYTES {
            buf.extend_from_slice(&available[..used]);
        }
        reader.consume(used);
        total += used;
        if done {
            return Ok(total);
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// The entries of one directory that a walk visits, sorted by name (bytes). Symlinks to
/// directories are not followed (no cycles). Symlinks to files are read when their target lies
/// inside the tree (or with `follow_symlinks`), else refused. A FIFO, socket or device with a
/// document's extension is refused (reading a FIFO could block forever). Shard metadata
/// (`X.meta.json` beside `X.bin`) is refused: the tool never reads its own outputs.
fn list_dir(dir: &Path, rules: &WalkRules) -> io::Result<Vec<(PathBuf, Entry)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let path = entry.path();
        if ft.is_dir() {
            out.push((path, Entry::Dir));
            continue;
        }
        if format_of(&path).is_none() {
            continue;
        }
        let kind = if ft.is_file() {
            own_output(&path).map_or(Entry::File, Entry::Refused)
        } else if ft.is_symlink() {
            match fs::canonicalize(&path) {
                Ok(target) if target.is_file() => {
                    if rules.follow_symlinks || target.starts_with(&rules.root) {
                        own_output(&path).map_or(Entry::File, Entry::Refused)
                    } else {
                        Entry::Refused(format!(
                            "a symbolic link to {}, outside the input tree (not read; \
                             --follow-symlinks reads it)",
                            target.display()
                        ))
                    }
                }
                Ok(target) if target.is_dir() => continue,
                Ok(_) => Entry::Refused("a symbolic link to something that is not a file".into()),
                Err(e) => Entry::Refused(format!("a broken symbolic link: {e}")),
            }
        } else {
            Entry::Refused("not a regular file (a FIFO, socket or device): not read".into())
        };
        out.push((path, kind));
    }
    out.sort_by(|a, b| {
        a.0.as_os_str()
            .as_encoded_bytes()
            .cmp(b.0.as_os_str().as_encoded_bytes())
    });
    Ok(out)
}

/// Why `path` is one of tct-encode's own outputs (`X.meta.json` with `X.bin` beside it).
fn own_output(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".meta.json")?;
    let bin = path.with_file_name(format!("{stem}.bin"));
    bin.is_file().then(|| {
        format!("shard metadata of {stem}.bin (a tct-encode output), not a document: not read")
    })
}

/// Number of entries the walk will yield (for the progress total).
fn count_files(root: &Path, rules: &WalkRules) -> u64 {
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = list_dir(&d, rules) else {
            continue;
        };
        for (p, entry) in entries {
            if matches!(entry, Entry::Dir) {
                stack.push(p);
            } else {
                n += 1;
            }
        }
    }
    n
}

fn relative_source(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// Read a file's bytes (in a worker thread), with the size limit.
pub fn read_file(path: &Path, size: u64) -> Result<Vec<u8>, String> {
    if size > MAX_DOCUMENT_BYTES {
        return Err(format!("document larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    fs::read(path).map_err(|e| format!("unreadable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tct-sources-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn walk_is_sorted_recursive_and_filtered() {
        let d = tmpdir("walk");
        for p in [
            "b.yml",
            "a/z.json",
            "a/c.yaml",
            ".github/workflows/x.yml",
            "notes.txt",
            "a/sub/deep.yml",
        ] {
            let f = d.join(p);
            fs::create_dir_all(f.parent().unwrap()).unwrap();
            fs::write(f, "a: 1").unwrap();
        }
        let input = Input::open(d.to_str().unwrap(), true).unwrap();
        assert_eq!(input.position().total, Some(5));
        let got: Vec<(u64, String)> = input.map(|i| (i.ordinal, i.source)).collect();
        let want = [
            ".github/workflows/x.yml",
            "a/c.yaml",
            "a/sub/deep.yml",
            "a/z.json",
            "b.yml",
        ];
        assert_eq!(
            got,
            want.iter()
                .enumerate()
                .map(|(i, s)| (i as u64, s.to_string()))
                .collect::<Vec<_>>()
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn jsonl_lines_numbers_and_gzip() {
        let d = tmpdir("jsonl");
        let text = b"{\"a\":1}\n\n{\"b\":2}\r\n   \n{\"c\":3}";
        fs::write(d.join("x.jsonl"), text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text).unwrap();
        fs::write(d.join("x.jsonl.gz"), gz.finish().unwrap()).unwrap();
        for name in ["x.jsonl", "x.jsonl.gz"] {
            let input = Input::open(d.join(name).to_str().unwrap(), true).unwrap();
            let got: Vec<(String, Vec<u8>)> = input
                .map(|i| match i.payload {
                    Payload::Line(b) => (i.source, b),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    (format!("{name}:1"), b"{\"a\":1}".to_vec()),
                    (format!("{name}:3"), b"{\"b\":2}".to_vec()),
                    (format!("{name}:5"), b"{\"c\":3}".to_vec())
                ]
            );
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corrupt_gzip_is_reported_as_a_corrupt_stream() {
        let d = tmpdir("gzbad");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..2000 {
            writeln!(gz, "{{\"i\":{i}}}").unwrap();
        }
        let mut bytes = gz.finish().unwrap();
        let n = bytes.len();
        bytes.truncate(n / 2);
        fs::write(d.join("t.jsonl.gz"), bytes).unwrap();
        let items: Vec<Item> = Input::open(d.join("t.jsonl.gz").to_str().unwrap(), false)
            .unwrap()
            .collect();
        assert!(
            matches!(&items.last().unwrap().payload, Payload::Corrupt(m) if m.contains("corrupt gzip stream")),
            "{:?}",
            items.last()
        );
        assert!(items.len() > 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_input_path_is_fatal() {
        assert!(Input::open("/nonexistent/tct/input", false).is_err());
        let d = tmpdir("badkind");
        fs::write(d.join("x.txt"), "x").unwrap();
        assert!(Input::open(d.join("x.txt").to_str().unwrap(), false).is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
