//! `kiln build --delta-from <old out>`: beside each role bundle that changed since the base
//! build, a delta bundle (changed and added files, a removal list and the new MANIFEST) pinned
//! to the base bundle's sha256, and a line for it in each host's BUNDLES.
//!
//! The base is verified exactly as `kiln diff` verifies a side (a build or a `kiln pull`
//! folder), and read before anything is written: a delta needs only the base's MANIFEST lines,
//! so the base may be the very folder this build replaces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_bundle::contract::DeltaRef;
use kiln_bundle::{DeltaBase, DeltaInfo, Entry, ManifestLine, WrittenBundle};

use super::outputs::Outputs;
use crate::diff::DiffError;
use crate::Error;

/// Why a base build cannot be used for deltas; each names the folder.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The folder is not a verified out folder (see [`DiffError`]).
    #[error("--delta-from {}: not a base for deltas", dir.display())]
    Base {
        /// The folder given.
        dir: PathBuf,
        /// What the verification found (boxed: it is large, and rare).
        #[source]
        source: Box<DiffError>,
    },
    /// The folder is a build of another cluster.
    #[error("--delta-from {}: a build of cluster {found:?}, but cluster.toml builds {expected:?}: a delta applies only to a build of the same cluster", dir.display())]
    OtherCluster {
        /// The folder given.
        dir: PathBuf,
        /// Its cluster.
        found: String,
        /// cluster.toml's cluster.
        expected: String,
    },
}

/// One role bundle of the base build.
#[derive(Debug)]
struct BaseBundle {
    /// File name (no folder).
    file: String,
    /// sha256 of the file.
    sha256: String,
    /// Its MANIFEST lines.
    manifest: Vec<ManifestLine>,
}

/// A verified base build: its id and its role bundles' MANIFESTs by bundle id.
#[derive(Debug)]
pub(crate) struct Base {
    /// MANIFEST.json's build id.
    pub(crate) build_id: String,
    bundles: BTreeMap<String, BaseBundle>,
}

/// Verifies `dir` as `kiln diff` does and reads its role bundles' MANIFESTs.
pub(crate) fn load_base(dir: &Path, cluster: &str) -> Result<Base, DeltaError> {
    let base = |source| DeltaError::Base {
        dir: dir.to_owned(),
        source: Box::new(source),
    };
    let (manifest, _pulled) = crate::diff::verified(dir).map_err(base)?;
    if manifest.cluster != cluster {
        return Err(DeltaError::OtherCluster {
            dir: dir.to_owned(),
            found: manifest.cluster,
            expected: cluster.to_owned(),
        });
    }
    let mut bundles = BTreeMap::new();
    for (id, b) in &manifest.bundles {
        let file = dir.join(&b.file);
        let read = kiln_bundle::read_archive(&file, &|_| false).map_err(|source| {
            base(DiffError::Archive {
                file: file.clone(),
                source,
            })
        })?;
        let name = b.file.rsplit('/').next().unwrap_or(&b.file).to_owned();
        bundles.insert(
            id.clone(),
            BaseBundle {
                file: name,
                sha256: read.report.sha256,
                manifest: read.manifest,
            },
        );
    }
    Ok(Base {
        build_id: manifest.build_id,
        bundles,
    })
}

/// The deltas written, by the id of the bundle each rebuilds.
#[derive(Debug, Default)]
pub(super) struct Deltas {
    /// Bundle id → its MANIFEST.json entry.
    pub(super) info: BTreeMap<String, DeltaInfo>,
    /// Bundle id → its BUNDLES line.
    pub(super) refs: BTreeMap<String, DeltaRef>,
}

impl Deltas {
    /// Writes the delta from the base's bundle `id` to `new` (whose entries are `entries`)
    /// into `bundles_dir`, unless the base has no such bundle or it did not change.
    #[allow(clippy::too_many_arguments)] // one call site, each argument a different thing
    pub(super) fn write(
        &mut self,
        base: &Base,
        bundles_dir: &Path,
        id: &str,
        new: &WrittenBundle,
        entries: &[Entry],
        mtime: u64,
        outputs: &mut Outputs,
    ) -> Result<(), Error> {
        let Some(old) = base.bundles.get(id) else {
            return Ok(());
        };
        let from = DeltaBase {
            file: &old.file,
            sha256: &old.sha256,
            manifest: &old.manifest,
        };
        let Some(w) = kiln_bundle::write_delta(bundles_dir, id, &from, new, entries, mtime)? else {
            return Ok(());
        };
        tracing::info!(
            bundle = id,
            changed = w.plan.changed.len(),
            removed = w.plan.removed.len(),
            size = w.size,
            full = new.size,
            "wrote delta"
        );
        let rel = format!("bundles/{}", w.file_name);
        outputs.record(&rel, &w.sha256, w.size);
        self.info.insert(
            id.to_owned(),
            DeltaInfo {
                file: rel,
                base_file: old.file.clone(),
                base_sha256: old.sha256.clone(),
                base_build_id: base.build_id.clone(),
            },
        );
        self.refs.insert(
            id.to_owned(),
            DeltaRef {
                for_sha256: new.sha256.clone(),
                sha256: w.sha256,
                file: w.file_name,
                base_sha256: old.sha256.clone(),
            },
        );
        Ok(())
    }
}
