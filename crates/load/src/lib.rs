//! kiln-load: reads a project's files from disk — cluster.toml, the profiles, overlays,
//! catalog, pins and kiln.lock — and hands their text to kiln-spec, which validates it.
//!
//! kiln-spec makes no syscalls; everything that touches the filesystem to read the inputs
//! people write is here.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use kiln_spec::project::OverlayFile;
use kiln_spec::{Diagnostic, Diagnostics, Files, Lock, NotUtf8, Project};

/// Reading kiln.lock failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file exists but could not be read as text.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is not a valid lock.
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
}

/// kiln.lock as read: its bytes (the build id hashes them) and what they say.
#[derive(Debug, Clone)]
pub struct LoadedLock {
    /// The file's bytes, exactly.
    pub bytes: Vec<u8>,
    /// The parsed, checked lock.
    pub lock: Lock,
}

/// The filesystem as kiln-spec's [`Files`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

/// Reads and validates cluster.toml and everything it refers to.
pub fn project(cluster_file: &Path) -> Result<Project, Diagnostics> {
    kiln_spec::project::validate(cluster_file, &Disk)
}

/// Reads kiln.lock; `None` when it does not exist.
pub fn lock(path: &Path) -> Result<Option<LoadedLock>, LoadError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(LoadError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let text = NotUtf8::check(&bytes).map_err(|n| Diagnostics::from(n.diagnostic(path)))?;
    let lock = Lock::parse(path, text).map_err(Diagnostics::from)?;
    Ok(Some(LoadedLock { bytes, lock }))
}

/// The text of a file; bytes that are not UTF-8 are an [`io::ErrorKind::InvalidData`] error
/// carrying a [`NotUtf8`] (line, column and byte offset of the first bad byte).
pub fn read_text(path: &Path) -> io::Result<String> {
    NotUtf8::into_string(fs::read(path)?).map_err(NotUtf8::into_io)
}

impl Files for Disk {
    fn read(&self, path: &Path) -> io::Result<String> {
        read_text(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn subdirs_with(&self, dir: &Path, file: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.path().join(file).is_file() {
                    if let Some(n) = e.file_name().to_str() {
                        out.insert(n.to_string());
                    }
                }
            }
        }
        out
    }

    fn overlay_files(&self, root: &Path) -> Result<Vec<OverlayFile>, Diagnostic> {
        overlay_files(root)
    }
}

/// Lists an overlay's `files/` tree: (relative path, mode, source path), sorted. Links are refused.
fn overlay_files(root: &Path) -> Result<Vec<OverlayFile>, Diagnostic> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    if !root.exists() {
        return Ok(out);
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = fs::read_dir(&dir)
            .map_err(|e| Diagnostic::error(&dir, "", None).msg(format!("cannot list: {e}")))?;
        for e in rd {
            let e =
                e.map_err(|e| Diagnostic::error(&dir, "", None).msg(format!("cannot list: {e}")))?;
            let path = e.path();
            let meta = fs::symlink_metadata(&path)
                .map_err(|e| Diagnostic::error(&path, "", None).msg(format!("cannot stat: {e}")))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let rel = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_str()
                    .ok_or_else(|| {
                        Diagnostic::error(&path, "", None).msg("file name is not UTF-8")
                    })?
                    .to_string();
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                out.push((rel, mode, path));
            } else {
                return Err(Diagnostic::error(&path, "", None)
                    .msg("overlay files must be regular files (no links or devices)"));
            }
        }
    }
    out.sort();
    Ok(out)
}
