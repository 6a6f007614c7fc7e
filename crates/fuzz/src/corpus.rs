//! The committed seed corpus: `corpus/<target>/`, one input per file.

use std::path::{Path, PathBuf};

/// The files of `dir` (not recursive), sorted by name so runs are repeatable; inputs longer
/// than `max_len` are cut.
pub fn load(dir: &Path, max_len: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|p| {
            let mut data = std::fs::read(&p).ok()?;
            data.truncate(max_len);
            Some((p, data))
        })
        .collect()
}
