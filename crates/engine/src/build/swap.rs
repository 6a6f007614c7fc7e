//! The staging folder beside the final one, and the swap that puts a complete build in place.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{io_err, Error};

/// The staging folder for `dir`: a hidden sibling named after this process (created fresh).
pub(crate) fn staging_for(dir: &Path) -> Result<PathBuf, Error> {
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
pub(crate) fn swap_in(staging: &Path, dir: &Path) -> Result<(), Error> {
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
        remove_tree(&old)?;
    }
    Ok(())
}

/// Removes a whole out folder: its entries two levels down (each host's folder, each bundle)
/// in parallel, as each unlink mostly waits on the disk, then what is left.
fn remove_tree(dir: &Path) -> Result<(), Error> {
    let mut entries = Vec::new();
    for top in fs::read_dir(dir).map_err(io_err(dir))? {
        let top = top.map_err(io_err(dir))?;
        let path = top.path();
        if top.file_type().map_err(io_err(&path))?.is_dir() {
            for e in fs::read_dir(&path).map_err(io_err(&path))? {
                entries.push(e.map_err(io_err(&path))?.path());
            }
        }
    }
    super::pool::map(&entries, super::pool::io_threads(), |p| {
        let md = fs::symlink_metadata(p).map_err(io_err(p))?;
        if md.is_dir() {
            fs::remove_dir_all(p).map_err(io_err(p))
        } else {
            fs::remove_file(p).map_err(io_err(p))
        }
    })?;
    fs::remove_dir_all(dir).map_err(io_err(dir))
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

    #[test]
    fn remove_tree_removes_nested_folders_files_and_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("old");
        fs::create_dir_all(dir.join("hosts/h1/seed/kiln")).unwrap();
        fs::write(dir.join("hosts/h1/seed/kiln/a"), "a").unwrap();
        fs::write(dir.join("hosts/h1/b"), "b").unwrap();
        fs::write(dir.join("top"), "t").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.join("hosts/link")).unwrap();
        remove_tree(&dir).unwrap();
        assert!(!dir.exists());
    }
}
