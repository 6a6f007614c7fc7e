//! Atomic file replacement for seed files and images, through [`kiln_fsio::TempFile`].

use std::fs::File;
use std::path::Path;

use kiln_fsio::TempFile;

use crate::error::{Error, Result};

/// Mode of every seed file and image: user-data may carry secrets.
const SEED_FILE_MODE: u32 = 0o600;

/// Writes `path` through `fill`, so that `path` is either absent/unchanged
/// or complete: `fill` writes a temporary file next to it (mode 0600), which
/// is synced and renamed over `path`, and the folder is synced. On error the
/// temporary file is removed and `path` is left as it was. Returns what `fill` returned.
pub(crate) fn write_atomic<T>(path: &Path, fill: impl FnOnce(&mut File) -> Result<T>) -> Result<T> {
    let write_err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let mut temp = TempFile::beside(path, SEED_FILE_MODE).map_err(write_err)?;
    let out = fill(temp.file_mut())?;
    temp.commit(path).map_err(write_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn failure_leaves_target_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        std::fs::write(&target, b"old").unwrap();
        let err = write_atomic(&target, |f| {
            f.write_all(b"partial").unwrap();
            Err::<(), _>(Error::io("write", "/x")(std::io::Error::other("boom")))
        })
        .unwrap_err();
        assert!(err.to_string().contains("/x"), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn success_replaces_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        std::fs::write(&target, b"old").unwrap();
        write_atomic(&target, |f| {
            f.write_all(b"new").map_err(Error::io("write", "/x"))
        })
        .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }
}
