//! The state folder on disk: private folders, reads, and atomic writes with exact modes.

use std::fs::{self, DirBuilder};
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use kiln_pki_layout::ISSUED;

use crate::error::{PkiError, Result};

/// Mode of the state folder and its subfolders.
const MODE_DIR: u32 = 0o700;

/// The PKI state folder.
#[derive(Debug)]
pub(crate) struct State {
    root: PathBuf,
}

impl State {
    /// Opens the state folder, creating it with mode 0700 if needed.
    pub(crate) fn create(root: &Path) -> Result<State> {
        create_private_dir(root)?;
        Ok(State {
            root: root.to_path_buf(),
        })
    }

    /// Opens an existing state folder without changing anything.
    pub(crate) fn existing(root: &Path) -> Result<State> {
        fs::metadata(root).map_err(|e| PkiError::io("open state folder", root, e))?;
        Ok(State {
            root: root.to_path_buf(),
        })
    }

    /// Absolute path of a state-relative path.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The contents of `rel`, or `None` if it does not exist.
    pub(crate) fn read(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(rel);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PkiError::io("read", path, e)),
        }
    }

    /// Atomically replaces `rel` with `bytes` at exactly `mode`, creating parent folders 0700.
    pub(crate) fn write(&self, rel: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        write_atomic(&path, bytes, mode)
    }

    /// Whether any certificate has been issued into the state.
    pub(crate) fn has_issued(&self) -> Result<bool> {
        fn any_file(dir: &Path) -> Result<bool> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(PkiError::io("list", dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| PkiError::io("list", dir, e))?;
                let path = entry.path();
                let ty = entry
                    .file_type()
                    .map_err(|e| PkiError::io("stat", &path, e))?;
                if ty.is_dir() {
                    if any_file(&path)? {
                        return Ok(true);
                    }
                } else if path.extension().is_some_and(|x| x == "crt") {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        any_file(&self.path(ISSUED))
    }
}

/// Creates `dir` (and missing parents) with mode 0700.
fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(MODE_DIR)
        .create(dir)
        .map_err(|e| PkiError::io("create folder", dir, e))
}

/// Writes `bytes` to `path` atomically with exactly `mode`, whatever the umask (a secret is
/// never readable by others, not even while written).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    kiln_fsio::write_atomic(path, bytes, mode).map_err(|source| PkiError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_pki_layout::{MODE_PUBLIC, MODE_SECRET};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_replaces_atomically_with_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::create(&dir.path().join("pki")).unwrap();
        state.write("a/b/key", b"one", MODE_SECRET).unwrap();
        state.write("a/b/key", b"two", MODE_PUBLIC).unwrap();
        let path = state.path("a/b/key");
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            MODE_PUBLIC
        );
        let dir_mode = fs::metadata(state.path("a")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700 & dir_mode);
        // No temp file left behind.
        let left: Vec<_> = fs::read_dir(state.path("a/b")).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn has_issued_only_counts_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::create(dir.path()).unwrap();
        assert!(!state.has_issued().unwrap());
        state.write("issued/h/x.key", b"k", MODE_SECRET).unwrap();
        assert!(!state.has_issued().unwrap());
        state
            .write("issued/h/etcd/x.crt", b"c", MODE_PUBLIC)
            .unwrap();
        assert!(state.has_issued().unwrap());
    }
}
