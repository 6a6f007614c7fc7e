//! The staging folder beside the final one, and the swap that puts a complete build in place.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{io_err, Error};

/// The staging folder for `dir`: a hidden sibling named after this process (created fresh).
pub(super) fn staging_for(dir: &Path) -> Result<PathBuf, Error> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("cluster");
    let staging = parent.join(format!(".{name}.build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    Ok(staging)
}

/// Replaces `dir` with `staging` (two renames; the old tree is removed afterwards).
pub(super) fn swap_in(staging: &Path, dir: &Path) -> Result<(), Error> {
    let old = dir.with_file_name(format!(
        ".{}.old-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let had_old = dir.exists();
    if had_old {
        fs::rename(dir, &old).map_err(io_err(dir))?;
    }
    if let Err(e) = fs::rename(staging, dir) {
        if had_old {
            let _ = fs::rename(&old, dir);
        }
        return Err(Error::Io {
            path: dir.to_path_buf(),
            source: e,
        });
    }
    if had_old {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_in_replaces_the_old_tree_and_leaves_no_sibling() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("lab");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("old"), "old").unwrap();
        let staging = staging_for(&dir).unwrap();
        fs::create_dir_all(&staging).unwrap();
        fs::write(staging.join("new"), "new").unwrap();
        swap_in(&staging, &dir).unwrap();
        assert!(dir.join("new").is_file() && !dir.join("old").exists());
        let names: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["lab"]);
    }
}
