//! Atomic replacement of a file: a temp file with an exact mode, written, fsynced, renamed
//! over the destination, and the folder fsynced; removed if anything fails first.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file operation failed: what was being done, to which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", path.display())]
pub struct Error {
    /// What was being done (`create`, `write`, `fsync`, `rename onto`, ...).
    pub op: &'static str,
    /// The file or folder it was done to.
    pub path: PathBuf,
    /// The cause.
    #[source]
    pub source: io::Error,
}

impl Error {
    /// Wraps an I/O error of `op` (`read`, `write`, `create folder`, ...) on `path`; for
    /// `map_err` on the file operations other crates do themselves.
    pub fn on(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error { op, path, source }
    }
}

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    Error::on(op, path)
}

/// Distinguishes the temp files one process creates.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A file being written under a temporary name; removed on drop unless committed.
///
/// It is created with exactly its mode, whatever the umask, before any byte is written,
/// so a secret is never readable by others, not even while it is being written.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl TempFile {
    /// A temp file in `dest`'s folder (so the rename onto `dest` is atomic), with `mode`.
    pub fn beside(dest: &Path, mode: u32) -> Result<Self, Error> {
        let hint = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_owned());
        Self::new_in(folder_of(dest), &hint, mode)
    }

    /// Creates `<dir>/.<hint>.tmp-<pid>-<n>` with exactly `mode` (the umask does not apply).
    ///
    /// `dir` must be on the filesystem of the destination given to [`TempFile::commit`].
    pub fn new_in(dir: &Path, hint: &str, mode: u32) -> Result<Self, Error> {
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{hint}.tmp-{}-{n}", std::process::id()));
            // Created with the final mode, so it is never more open than that; readable too,
            // for writers that read back what they wrote (disk images).
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
            {
                Ok(file) => {
                    let temp = TempFile {
                        path,
                        file,
                        committed: false,
                    };
                    // The umask may have cleared bits of `mode`: set it exactly.
                    temp.file
                        .set_permissions(Permissions::from_mode(mode))
                        .map_err(err("set the mode of", &temp.path))?;
                    return Ok(temp);
                }
                // A stale file of an earlier process with the same id: take the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err("create", &path)(e)),
            }
        }
    }

    /// The temp file's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (for writers that take a `&File`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The open file, for writers that also seek or read back (disk images).
    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// Appends `bytes`; the error names the temp file.
    pub fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.file.write_all(bytes).map_err(err("write", &self.path))
    }

    /// Fsyncs the content, renames the file onto `dest` (replacing it) and fsyncs `dest`'s
    /// folder so the rename survives a crash.
    ///
    /// A folder fsync the filesystem does not support (`EINVAL`, `ENOTSUP`) is skipped. Under a
    /// [`Staging`](crate::Staging) folder both fsyncs are left to its one final sync.
    pub fn commit(mut self, dest: &Path) -> Result<(), Error> {
        let deferred = crate::staging::deferred(dest);
        if !deferred {
            self.file.sync_all().map_err(err("fsync", &self.path))?;
        }
        fs::rename(&self.path, dest).map_err(err("rename a temp file onto", dest))?;
        self.committed = true;
        if deferred {
            return Ok(());
        }
        sync_folder(folder_of(dest))
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` atomically with exactly `mode`: `path` is either unchanged or
/// complete, and no temp file is left behind on failure.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let mut temp = TempFile::beside(path, mode)?;
    temp.write_bytes(bytes)?;
    temp.commit(path)
}

/// Moves a complete file `from` (written elsewhere, e.g. a resumable download) onto `dest`
/// durably: sets exactly `mode`, fsyncs, renames, fsyncs `dest`'s folder.
///
/// `from` must be on `dest`'s filesystem. On failure `from` is left in place.
pub fn rename_into(from: &Path, dest: &Path, mode: u32) -> Result<(), Error> {
    let file = File::open(from).map_err(err("open", from))?;
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(err("set the mode of", from))?;
    file.sync_all().map_err(err("fsync", from))?;
    fs::rename(from, dest).map_err(err("rename a file onto", dest))?;
    sync_folder(folder_of(dest))
}

/// The folder a path is in (`.` for a bare name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a folder, so renames into it are durable.
fn sync_folder(dir: &Path) -> Result<(), Error> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
            ) =>
        {
            Ok(())
        }
        other => other.map_err(err("fsync the folder", dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn success_replaces_the_target_with_the_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        fs::write(&target, b"old").unwrap();
        write_atomic(&target, b"new", 0o640).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(mode_of(&target), 0o640);
        assert_eq!(names(dir.path()), ["out"]);
    }

    #[test]
    fn failure_leaves_the_target_unchanged_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        fs::write(&target, b"old").unwrap();
        // The rename fails: a non-empty folder cannot be replaced by a file.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"").unwrap();
        let mut temp = TempFile::beside(&target, 0o644).unwrap();
        temp.write_all(b"partial").unwrap();
        let e = temp.commit(&blocked).unwrap_err();
        assert_eq!(
            (e.op, e.path.as_path()),
            ("rename a temp file onto", &*blocked)
        );
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["blocked", "out"]);

        // Creating in a missing folder fails before anything exists.
        let e = write_atomic(&dir.path().join("missing/out"), b"x", 0o644).unwrap_err();
        assert_eq!(e.op, "create");
        assert_eq!(names(dir.path()), ["blocked", "out"]);
    }

    #[test]
    fn temp_file_reads_back_what_was_written() {
        use std::io::{Read, Seek, SeekFrom};
        let dir = tempfile::tempdir().unwrap();
        let mut temp = TempFile::new_in(dir.path(), "img", 0o600).unwrap();
        temp.write_all(b"label").unwrap();
        let file = temp.file_mut();
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = String::new();
        file.read_to_string(&mut back).unwrap();
        assert_eq!(back, "label");
    }

    #[test]
    fn drop_without_commit_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut temp = TempFile::new_in(dir.path(), "x", 0o600).unwrap();
        temp.write_bytes(b"abc").unwrap();
        let path = temp.path().to_owned();
        assert!(path.is_file());
        assert!(path.starts_with(dir.path()));
        drop(temp);
        assert!(!path.exists());
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn mode_is_exact_under_a_permissive_and_a_strict_umask() {
        let dir = tempfile::tempdir().unwrap();
        // The umask is per process: both cases in one test so no other test races this one
        // (the others only use exact modes, which the umask cannot change).
        for (umask, name) in [(0o000, "open"), (0o077, "strict")] {
            // SAFETY: umask only swaps the process's file-creation mask.
            let old = unsafe { libc::umask(umask) };
            let secret = dir.path().join(format!("{name}-secret"));
            let public = dir.path().join(format!("{name}-public"));
            let temp = TempFile::beside(&secret, 0o600).unwrap();
            // Exact from creation, not only after the commit.
            assert_eq!(mode_of(temp.path()), 0o600, "umask {umask:o}");
            temp.commit(&secret).unwrap();
            write_atomic(&public, b"p", 0o755).unwrap();
            unsafe { libc::umask(old) };
            assert_eq!(mode_of(&secret), 0o600, "umask {umask:o}");
            assert_eq!(mode_of(&public), 0o755, "umask {umask:o}");
        }
    }

    #[test]
    fn rename_into_sets_the_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("part");
        let dest = dir.path().join("blob");
        fs::write(&from, b"data").unwrap();
        fs::write(&dest, b"old").unwrap();
        rename_into(&from, &dest, 0o644).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"data");
        assert_eq!(mode_of(&dest), 0o644);
        assert_eq!(names(dir.path()), ["blob"]);
        let e = rename_into(&from, &dest, 0o644).unwrap_err();
        assert_eq!((e.op, e.path.as_path()), ("open", &*from));
    }
}
