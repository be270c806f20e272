//! Files that appear whole or not at all.
//!
//! A [`TempFile`] is written under `NAME.tmp-<pid>` beside its target, fsynced, then renamed
//! over the target ([`TempFile::persist`]); [`sync_dir`] makes the renames durable. The temporary
//! file is removed on every error and whenever a `TempFile` is dropped before it was persisted,
//! so an error or an interrupt leaves nothing behind, and a crash only `*.tmp-<pid>` files.
//! [`write()`] does all of it for a file written in one piece; the shard writer keeps several
//! `TempFile`s open and persists them in the order its readers rely on.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name of `target`: beside it, so that the rename never crosses file systems.
pub(crate) fn temp_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(s)
}

/// A buffered file under a temporary name, removed on drop unless persisted.
pub(crate) struct TempFile {
    tmp: PathBuf,
    target: PathBuf,
    out: BufWriter<File>,
    persisted: bool,
}

impl TempFile {
    /// Creates (or truncates) the temporary file of `target`, with a write buffer of `capacity`
    /// bytes.
    pub(crate) fn create(target: &Path, capacity: usize) -> io::Result<TempFile> {
        if target.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file path",
            ));
        }
        let tmp = temp_path(target);
        let f = File::create(&tmp)?;
        Ok(TempFile {
            tmp,
            target: target.to_path_buf(),
            out: BufWriter::with_capacity(capacity, f),
            persisted: false,
        })
    }

    /// Where the data is until it is persisted.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// The file itself, with the buffer flushed first (for seeks and in-place patches).
    pub(crate) fn file_mut(&mut self) -> io::Result<&mut File> {
        self.out.flush()?;
        Ok(self.out.get_mut())
    }

    /// Flushes the buffer and fsyncs the contents: after this the data is on disk, still
    /// under the temporary name.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_all()
    }

    /// Syncs, then renames the temporary file over the target. On error the temporary file is
    /// removed (by `Drop`). The directory entry is durable only after [`sync_dir`].
    pub(crate) fn persist(&mut self) -> io::Result<()> {
        self.sync()?;
        fs::rename(&self.tmp, &self.target)?;
        self.persisted = true;
        Ok(())
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Fsyncs the directory holding `path`, so that a rename into it survives a crash. Best
/// effort: some file systems refuse to open or sync a directory, and the data itself is synced.
pub(crate) fn sync_dir(path: &Path) {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = OpenOptions::new().read(true).open(dir) {
        let _ = d.sync_all();
    }
}

/// Writes `bytes` to `path` atomically: temporary file, fsync, rename, directory fsync.
pub(crate) fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = TempFile::create(path, 0)?;
    f.write_all(bytes)?;
    f.persist()?;
    sync_dir(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tct-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn write_replaces_the_target_and_leaves_no_temp() {
        let d = scratch("write");
        let p = d.join("f.json");
        fs::write(&p, b"old").unwrap();
        write(&p, b"new contents").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new contents");
        assert_eq!(names(&d), ["f.json"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dropped_before_persist_removes_the_temp_and_keeps_the_target() {
        let d = scratch("drop");
        let p = d.join("f.bin");
        fs::write(&p, b"old").unwrap();
        {
            let mut f = TempFile::create(&p, 16).unwrap();
            f.write_all(b"half written").unwrap();
            f.sync().unwrap();
            assert_eq!(
                names(&d).len(),
                2,
                "the temporary file exists while writing"
            );
        }
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(&d), ["f.bin"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failed_rename_removes_the_temp() {
        let d = scratch("rename");
        // A non-empty directory as the target: the rename fails after the data was written.
        let p = d.join("target");
        fs::create_dir_all(p.join("inside")).unwrap();
        assert!(write(&p, b"x").is_err());
        assert_eq!(names(&d), ["target"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_directory_is_an_error_not_a_panic() {
        let d = scratch("missing");
        assert!(write(&d.join("no/such/dir/f"), b"x").is_err());
        assert!(write(&d.join(".."), b"x").is_err());
        fs::remove_dir_all(&d).unwrap();
    }
}
