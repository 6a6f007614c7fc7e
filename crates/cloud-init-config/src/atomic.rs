//! Atomic file replacement: temporary file in the same folder, fsync, rename.

use std::fs::File;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `path` through `fill`, so that `path` is either absent/unchanged
/// or complete: `fill` writes a temporary file next to it, which is synced
/// and renamed over `path`, and the folder is synced. On error the
/// temporary file is removed and `path` is left as it was.
pub(crate) fn write_atomic(path: &Path, fill: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Io {
            action: "write to",
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"),
        })?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(Error::io("create a temporary file in", dir))?;
    fill(tmp.as_file_mut())?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("sync", tmp.path().to_owned()))?;
    tmp.persist(path)
        .map_err(|err| Error::io("rename a temporary file onto", path)(err.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync directory", dir))?;
    Ok(())
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
            Err(Error::io("write", "/x")(std::io::Error::other("boom")))
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
