//! Atomic output files: a temp file in the destination folder, fsync, rename, removed on failure.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::BundleError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn io_err<'a>(op: &'static str, file: &'a Path) -> impl FnOnce(io::Error) -> BundleError + 'a {
    move |source| BundleError::Io {
        op,
        file: file.to_owned(),
        source,
    }
}

/// A file being written under a temporary name; deleted on drop unless persisted.
pub(crate) struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    /// Creates `<dir>/.<hint>.tmp-<pid>-<n>` with exactly `mode` (umask does not apply).
    pub(crate) fn create_in(dir: &Path, hint: &str, mode: u32) -> Result<Self, BundleError> {
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(".{hint}.tmp-{}-{n}", std::process::id()));
            // Created with the final mode so a 0600 file is never readable by others.
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
            {
                Ok(file) => {
                    let temp = TempFile {
                        path,
                        file,
                        persisted: false,
                    };
                    temp.file
                        .set_permissions(Permissions::from_mode(mode))
                        .map_err(io_err("set permissions of", &temp.path))?;
                    return Ok(temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &path)(e)),
            }
        }
    }

    /// Appends bytes.
    pub(crate) fn write_all(&mut self, data: &[u8]) -> Result<(), BundleError> {
        self.file
            .write_all(data)
            .map_err(io_err("write", &self.path))
    }

    /// Path of the temporary file (for error messages).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the content, renames to `dest` (replacing it) and syncs the folder.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<(), BundleError> {
        self.file.sync_all().map_err(io_err("sync", &self.path))?;
        fs::rename(&self.path, dest).map_err(io_err("rename temp file to", dest))?;
        self.persisted = true;
        let dir = dest.parent().unwrap_or(Path::new("."));
        // Makes the rename itself durable; some filesystems refuse a directory fsync.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates `dir` and its parents if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), BundleError> {
    fs::create_dir_all(dir).map_err(io_err("create folder", dir))
}
