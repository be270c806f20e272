//! Atomic writer of one token shard (`.bin`, `.idx`, `.meta.json`; docs/shard-format.md v1).
//!
//! Everything is written to `NAME.tmp-<pid>` files. Nothing is held in memory per document:
//! ids stream into the `.bin`, offsets into the `.idx` (its document count is patched at the
//! end), and the per-document meta arrays into spool files that are spliced into the
//! `.meta.json` when the shard is finished. The files are `crate::atomic_file::TempFile`s: a crash
//! leaves only `*.tmp-<pid>` files; an error or an interrupt removes them (`Drop`).

use crate::atomic_file::{self, TempFile};
use serde::Serialize;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"TCTSHRD\0";
pub const VERSION: u32 = 1;

/// The tokenizer fields of the meta.
#[derive(Debug, Clone, Serialize)]
pub struct TokenizerInfo {
    pub name: String,
    pub hash: String,
    pub vocab_size: u32,
    pub pad_id: u32,
    pub bos_id: u32,
    pub eos_id: u32,
    pub position_range: Option<[u32; 2]>,
}

/// The `split` fields of the meta.
#[derive(Debug, Clone, Serialize)]
pub struct SplitInfo {
    pub kind: &'static str,
    pub val_fraction: f64,
    pub seed: u64,
    pub num_shards: u64,
    pub shard_index: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub documents: u64,
    pub tokens: u64,
    pub json_bytes: u64,
    pub fallback_documents: u64,
    pub rejected: u64,
    pub skipped_too_long: u64,
}

/// The three final paths of a shard named `OUTPUT.bin`.
#[derive(Debug, Clone)]
pub struct ShardPaths {
    pub bin: PathBuf,
    pub idx: PathBuf,
    pub meta: PathBuf,
}

impl ShardPaths {
    /// `x.bin` -> `x.bin`, `x.idx`, `x.meta.json`; with `infix` (`"val"`): `x.val.bin` ...
    pub fn for_output(output: &Path, infix: Option<&str>) -> Result<ShardPaths, String> {
        let name = output
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: not a file name", output.display()))?;
        let stem = name
            .strip_suffix(".bin")
            .ok_or_else(|| format!("{}: the output name must end in .bin", output.display()))?;
        if stem.is_empty() {
            return Err(format!("{}: empty output name", output.display()));
        }
        let stem = match infix {
            Some(i) => format!("{stem}.{i}"),
            None => stem.to_string(),
        };
        let dir = output.parent().unwrap_or(Path::new(""));
        Ok(ShardPaths {
            bin: dir.join(format!("{stem}.bin")),
            idx: dir.join(format!("{stem}.idx")),
            meta: dir.join(format!("{stem}.meta.json")),
        })
    }
}

/// Where the spool `what` of the meta `p` lives (`META.what.tmp-<pid>`; never persisted).
fn spool_target(p: &Path, what: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{what}"));
    PathBuf::from(s)
}

/// A JSON array written element by element to a temporary file.
struct Spool {
    out: TempFile,
    empty: bool,
}

impl Spool {
    fn create(target: &Path) -> io::Result<Spool> {
        Ok(Spool {
            out: TempFile::create(target, 1 << 16)?,
            empty: true,
        })
    }
    fn push_raw(&mut self, json: &[u8]) -> io::Result<()> {
        if !self.empty {
            self.out.write_all(b",")?;
        }
        self.empty = false;
        self.out.write_all(json)
    }
    /// Copy the elements (without brackets) into `w`.
    fn splice_into(&mut self, w: &mut impl Write) -> io::Result<()> {
        self.out.flush()?;
        let mut f = File::open(self.out.path())?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            w.write_all(&buf[..n])?;
        }
    }
}

/// One shard being written.
pub struct ShardWriter {
    paths: ShardPaths,
    bin: TempFile,
    idx: TempFile,
    /// Written by `finish`.
    meta: Option<TempFile>,
    json_bytes: Spool,
    sources: Spool,
    rejected: Spool,
    tokenizer: TokenizerInfo,
    split: SplitInfo,
    pub counts: Counts,
}

impl ShardWriter {
    pub fn create(
        paths: ShardPaths,
        tokenizer: TokenizerInfo,
        split: SplitInfo,
    ) -> io::Result<ShardWriter> {
        // Each file removes itself when dropped unpersisted, also when a later one fails here.
        let bin = TempFile::create(&paths.bin, 1 << 20)?;
        let idx = TempFile::create(&paths.idx, 1 << 16)?;
        let [json_bytes, sources, rejected] =
            ["json_bytes", "source", "rejected"].map(|w| spool_target(&paths.meta, w));
        let json_bytes = Spool::create(&json_bytes)?;
        let sources = Spool::create(&sources)?;
        let rejected = Spool::create(&rejected)?;
        let mut w = ShardWriter {
            bin,
            idx,
            meta: None,
            json_bytes,
            sources,
            rejected,
            paths,
            tokenizer,
            split,
            counts: Counts::default(),
        };
        w.idx.write_all(MAGIC)?;
        w.idx.write_all(&VERSION.to_le_bytes())?;
        w.idx.write_all(&w.tokenizer.vocab_size.to_le_bytes())?;
        w.idx.write_all(&0u64.to_le_bytes())?; // document count, patched in finish()
        w.idx.write_all(&0u64.to_le_bytes())?; // offsets[0]
        Ok(w)
    }

    pub fn paths(&self) -> &ShardPaths {
        &self.paths
    }

    /// Append one document; `ids` already include BOS and EOS and were range-checked.
    pub fn push_document(
        &mut self,
        ids: &[u16],
        json_bytes: u64,
        fallback: bool,
        source: &str,
    ) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(ids.len() * 2);
        for id in ids {
            bytes.extend_from_slice(&id.to_le_bytes());
        }
        self.bin.write_all(&bytes)?;
        self.counts.documents += 1;
        self.counts.tokens += ids.len() as u64;
        self.counts.json_bytes += json_bytes;
        self.counts.fallback_documents += u64::from(fallback);
        self.idx.write_all(&self.counts.tokens.to_le_bytes())?;
        self.json_bytes
            .push_raw(json_bytes.to_string().as_bytes())?;
        self.sources
            .push_raw(&serde_json::to_vec(source).expect("a string serialises"))
    }

    pub fn push_rejected(&mut self, source: &str, reason: &str) -> io::Result<()> {
        self.counts.rejected += 1;
        let entry = serde_json::json!({"source": source, "reason": reason});
        self.rejected
            .push_raw(&serde_json::to_vec(&entry).expect("a JSON value serialises"))
    }

    pub fn skip_too_long(&mut self) {
        self.counts.skipped_too_long += 1;
    }

    /// Write everything to the temporary files and fsync them. The shard is complete on disk
    /// but invisible until `publish`.
    pub fn finish(&mut self) -> io::Result<()> {
        self.bin.sync()?;
        let f = self.idx.file_mut()?;
        f.seek(SeekFrom::Start(16))?;
        f.write_all(&self.counts.documents.to_le_bytes())?;
        self.idx.sync()?;

        let mut meta = TempFile::create(&self.paths.meta, 1 << 16)?;
        let head = serde_json::json!({
            "format": "tct-shard",
            "version": VERSION,
            "tokenizer": &self.tokenizer,
            "counts": &self.counts,
        });
        // Splice the spooled arrays into the object text without holding them in memory.
        let head = serde_json::to_string(&head).expect("meta head serialises");
        meta.write_all(&head.as_bytes()[..head.len() - 1])?;
        meta.write_all(b",\"documents\":{\"json_bytes\":[")?;
        self.json_bytes.splice_into(&mut meta)?;
        meta.write_all(b"],\"source\":[")?;
        self.sources.splice_into(&mut meta)?;
        meta.write_all(b"]},\"rejected\":[")?;
        self.rejected.splice_into(&mut meta)?;
        meta.write_all(b"],\"split\":")?;
        meta.write_all(&serde_json::to_vec(&self.split).expect("split serialises"))?;
        meta.write_all(b"}\n")?;
        meta.sync()?;
        self.meta = Some(meta);
        Ok(())
    }
}

/// Publish finished shards: first remove any old `.meta.json` of these names (so that an old
/// meta never sits beside new data), then rename every `.bin`, then every `.idx`, then every
/// `.meta.json`, and fsync the directories. A reader needs all three files, and the meta appears
/// last, so at no point is there a complete-looking set that is not the new one.
pub fn publish(writers: &mut [&mut ShardWriter]) -> io::Result<()> {
    for w in writers.iter() {
        match fs::remove_file(&w.paths.meta) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    for w in writers.iter() {
        if w.meta.is_none() {
            return Err(io::Error::other(format!(
                "{}: shard published before it was finished",
                w.paths.meta.display()
            )));
        }
    }
    for w in writers.iter_mut() {
        w.bin.persist()?;
    }
    for w in writers.iter_mut() {
        w.idx.persist()?;
    }
    for w in writers.iter_mut() {
        if let Some(meta) = w.meta.as_mut() {
            meta.persist()?;
        }
    }
    for w in writers.iter() {
        atomic_file::sync_dir(&w.paths.meta);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> TokenizerInfo {
        TokenizerInfo {
            name: "t".into(),
            hash: "h".into(),
            vocab_size: 10,
            pad_id: 7,
            bos_id: 8,
            eos_id: 9,
            position_range: None,
        }
    }

    fn split() -> SplitInfo {
        SplitInfo {
            kind: "train",
            val_fraction: 0.0,
            seed: 0,
            num_shards: 1,
            shard_index: 0,
        }
    }

    #[test]
    fn writes_the_documented_layout() {
        let d = std::env::temp_dir().join(format!("tct-shardw-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let paths = ShardPaths::for_output(&d.join("out.bin"), None).unwrap();
        let mut w = ShardWriter::create(paths.clone(), info(), split()).unwrap();
        w.push_document(&[8, 1, 2, 9], 10, false, "a.yml").unwrap();
        w.push_rejected("b.yml", "empty document").unwrap();
        w.push_document(&[8, 3, 9], 7, true, "c \"q\".yml").unwrap();
        w.finish().unwrap();
        assert!(!paths.meta.exists(), "nothing is visible before publish");
        publish(&mut [&mut w]).unwrap();
        drop(w);
        let bin = fs::read(&paths.bin).unwrap();
        assert_eq!(bin, [8u8, 0, 1, 0, 2, 0, 9, 0, 8, 0, 3, 0, 9, 0]);
        let idx = fs::read(&paths.idx).unwrap();
        assert_eq!(&idx[..8], MAGIC);
        assert_eq!(u32::from_le_bytes(idx[8..12].try_into().unwrap()), 1);
        assert_eq!(u32::from_le_bytes(idx[12..16].try_into().unwrap()), 10);
        assert_eq!(u64::from_le_bytes(idx[16..24].try_into().unwrap()), 2);
        let offs: Vec<u64> = idx[24..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(offs, [0, 4, 7]);
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(&paths.meta).unwrap()).unwrap();
        assert_eq!(meta["counts"]["documents"], 2);
        assert_eq!(meta["counts"]["fallback_documents"], 1);
        assert_eq!(meta["documents"]["source"][1], "c \"q\".yml");
        assert_eq!(meta["documents"]["json_bytes"], serde_json::json!([10, 7]));
        assert_eq!(meta["rejected"][0]["reason"], "empty document");
        let left: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 3, "only the three shard files remain: {left:?}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let d = std::env::temp_dir().join(format!("tct-shardw-drop-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        let paths = ShardPaths::for_output(&d.join("out.bin"), Some("val")).unwrap();
        assert!(paths.meta.ends_with("out.val.meta.json"));
        let mut w = ShardWriter::create(paths, info(), split()).unwrap();
        w.push_document(&[8, 9], 2, false, "x").unwrap();
        drop(w);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn output_name_must_end_in_bin() {
        assert!(ShardPaths::for_output(Path::new("out.tokens"), None).is_err());
        assert!(ShardPaths::for_output(Path::new(".bin"), None).is_err());
    }
}
