//! `kiln render`: every generated file of a plan written out for review (artifacts are listed
//! in the plan, not copied).

use std::fs;
use std::path::{Path, PathBuf};

use kiln_plan::{FileSource, Plan, PlannedFile};

use crate::{io_err, Error};

/// Writes each bundle's files under `out/<bundle>/rootfs/` and each host's under
/// `out/hosts/<host>/rootfs/`; returns how many files were written.
pub fn render_tree(plan: &Plan, out: &Path) -> Result<usize, Error> {
    let mut n = 0;
    let mut write = |dir: PathBuf, f: &PlannedFile| -> Result<(), Error> {
        let bytes = match &f.source {
            FileSource::Content { bytes, .. } => bytes.clone(),
            FileSource::Local { path, .. } => fs::read(path).map_err(io_err(path))?,
            FileSource::Artifact { .. } => return Ok(()),
        };
        let dest = dir.join("rootfs").join(f.path.trim_start_matches('/'));
        let parent = dest.parent().expect("has parent");
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        fs::write(&dest, bytes).map_err(io_err(&dest))?;
        n += 1;
        Ok(())
    };
    for b in &plan.bundles {
        for f in &b.files {
            write(out.join(&b.id), f)?;
        }
    }
    for h in &plan.hosts {
        for f in &h.files {
            write(out.join("hosts").join(&h.name), f)?;
        }
    }
    Ok(n)
}
