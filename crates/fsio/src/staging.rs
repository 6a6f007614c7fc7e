//! A staging folder whose whole tree is made durable once, before it is swapped into place,
//! rather than file by file.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use crate::atomic::Error;

/// The staging folders alive in this process.
static STAGING: RwLock<Vec<PathBuf>> = RwLock::new(Vec::new());

/// A folder being filled with a tree of outputs that only becomes visible by a rename.
///
/// While it exists, files committed under it skip their own fsyncs (thousands of them for a
/// large cluster, each waiting for the disk); [`Staging::sync`] flushes the folder's filesystem
/// in one call instead, before the caller renames the tree into place.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
}

impl Staging {
    /// Starts deferring the fsyncs of files committed under `dir`.
    pub fn begin(dir: &Path) -> Staging {
        let dir = dir.to_path_buf();
        STAGING
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(dir.clone());
        Staging { dir }
    }

    /// Makes everything written under the folder durable (one `syncfs` of its filesystem).
    pub fn sync(&self) -> Result<(), Error> {
        let dir = File::open(&self.dir).map_err(Error::on("open", &self.dir))?;
        // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(Error::on("sync the filesystem of", &self.dir)(
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let mut dirs = STAGING.write().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = dirs.iter().position(|d| *d == self.dir) {
            dirs.swap_remove(i);
        }
    }
}

/// Whether `dest` lies in a staging folder, so its fsyncs are left to [`Staging::sync`].
pub(crate) fn deferred(dest: &Path) -> bool {
    STAGING
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|d| dest.starts_with(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_under_a_live_staging_folder_are_deferred() {
        let t = tempfile::tempdir().unwrap();
        let staging = t.path().join(".lab.build-1");
        std::fs::create_dir(&staging).unwrap();
        assert!(!deferred(&staging.join("a")));
        let s = Staging::begin(&staging);
        assert!(deferred(&staging.join("hosts/h1/secrets.tar.gz")));
        assert!(!deferred(&t.path().join("lab/a")));
        crate::write_atomic(&staging.join("a"), b"a", 0o644).unwrap();
        s.sync().unwrap();
        drop(s);
        assert!(!deferred(&staging.join("a")));
        assert_eq!(std::fs::read(staging.join("a")).unwrap(), b"a");
    }
}
