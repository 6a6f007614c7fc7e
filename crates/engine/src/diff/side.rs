//! One side of a comparison: an out folder verified as `kiln verify` does, its MANIFEST.json,
//! and what its archives hold (MANIFEST lines, contract members, small files).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_bundle::{ArchiveContents, BuildManifest, ManifestLine};

use super::DiffError;

/// Largest member whose contents are kept: unit files and the configuration they name are
/// small; binaries, packages and images are compared by digest only.
const KEEP_MAX: u64 = 256 << 10;

/// A verified out folder and the contents of its archives.
pub(crate) struct Side {
    /// The folder.
    pub dir: PathBuf,
    /// Its MANIFEST.json.
    pub manifest: BuildManifest,
    /// A `kiln pull` folder (no `hosts/`).
    pub pulled: bool,
    /// Role bundles and secrets archives by path relative to the folder.
    pub archives: BTreeMap<String, Arc<ArchiveContents>>,
}

impl Side {
    /// The archive at `rel`, which MANIFEST.json names.
    pub fn archive(&self, rel: &str) -> Result<&ArchiveContents, DiffError> {
        self.archives
            .get(rel)
            .map(|a| a.as_ref())
            .ok_or_else(|| DiffError::Unlisted {
                dir: self.dir.clone(),
                path: rel.to_owned(),
            })
    }
}

/// Whether a member's contents are kept: everything small but packages and images.
fn keep(line: &ManifestLine) -> bool {
    line.size <= KEEP_MAX
        && !line.path.starts_with("packages/")
        && !line.path.starts_with("images/")
}

/// Checks `dir` as `kiln verify` does (a pulled folder by its marker) and reads its MANIFEST.json.
pub(crate) fn verified(dir: &Path) -> Result<(BuildManifest, bool), DiffError> {
    if !dir.is_dir() {
        return Err(DiffError::NotAFolder {
            dir: dir.to_owned(),
        });
    }
    if !dir.join(kiln_bundle::BUILD_MANIFEST_NAME).is_file() {
        return Err(DiffError::NotOutFolder {
            dir: dir.to_owned(),
        });
    }
    let verify = |source| DiffError::Verify {
        dir: dir.to_owned(),
        source,
    };
    let pulled = kiln_bundle::is_pulled(dir);
    if pulled {
        kiln_bundle::verify_pulled(dir).map_err(verify)?;
    } else {
        kiln_bundle::verify_folder(dir).map_err(verify)?;
    }
    // verify_folder parsed it already; it cannot fail now unless the folder changed meanwhile.
    let manifest =
        kiln_bundle::read_build_manifest(dir).ok_or_else(|| DiffError::NotOutFolder {
            dir: dir.to_owned(),
        })?;
    Ok((manifest, pulled))
}

/// Verifies both folders, refuses builds of different clusters, and reads every archive
/// once (an archive with the same digest on both sides is read once for both).
pub(crate) fn load_pair(old: &Path, new: &Path) -> Result<(Side, Side), DiffError> {
    let (old_m, old_pulled) = verified(old)?;
    // The same folder twice (by its real path) is verified once.
    let same = matches!((old.canonicalize(), new.canonicalize()), (Ok(a), Ok(b)) if a == b);
    let (new_m, new_pulled) = if same {
        (old_m.clone(), old_pulled)
    } else {
        verified(new)?
    };
    if old_m.cluster != new_m.cluster {
        return Err(DiffError::OtherCluster {
            old: old.to_owned(),
            old_cluster: old_m.cluster,
            new: new.to_owned(),
            new_cluster: new_m.cluster,
        });
    }
    // (side, relative path, sha256) of every archive, one job per distinct digest.
    let mut wanted: Vec<(usize, String, String)> = Vec::new();
    for (i, (m, pulled)) in [(&old_m, old_pulled), (&new_m, new_pulled)]
        .iter()
        .enumerate()
    {
        for b in m.bundles.values() {
            wanted.push((i, b.file.clone(), digest_of(m, &b.file)));
        }
        if !pulled {
            for h in m.hosts.values() {
                wanted.push((i, h.secrets.clone(), digest_of(m, &h.secrets)));
            }
        }
    }
    let mut jobs: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (i, rel, sha) in &wanted {
        let dir = if *i == 0 { old } else { new };
        jobs.entry(sha.clone()).or_insert_with(|| dir.join(rel));
    }
    let jobs: Vec<(String, PathBuf)> = jobs.into_iter().collect();
    let read = kiln_fsio::pool::run(&jobs, kiln_fsio::pool::cores(), |(_, file)| {
        kiln_bundle::read_archive(file, &keep).map_err(|source| DiffError::Archive {
            file: file.clone(),
            source,
        })
    });
    let mut by_sha: BTreeMap<String, Arc<ArchiveContents>> = BTreeMap::new();
    for ((sha, _), r) in jobs.iter().zip(read) {
        match r {
            Some(Ok(c)) => {
                by_sha.insert(sha.clone(), Arc::new(c));
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    let mut archives = [BTreeMap::new(), BTreeMap::new()];
    for (i, rel, sha) in wanted {
        if let Some(c) = by_sha.get(&sha) {
            archives[i].insert(rel, Arc::clone(c));
        }
    }
    let [old_a, new_a] = archives;
    Ok((
        Side {
            dir: old.to_owned(),
            manifest: old_m,
            pulled: old_pulled,
            archives: old_a,
        },
        Side {
            dir: new.to_owned(),
            manifest: new_m,
            pulled: new_pulled,
            archives: new_a,
        },
    ))
}

/// The sha256 MANIFEST.json records for `rel` (verified against SHA256SUMS and the file).
fn digest_of(m: &BuildManifest, rel: &str) -> String {
    m.outputs
        .get(rel)
        .map(|o| o.sha256.clone())
        // Not recorded: key by path so it is read on its own (and reported as unlisted later).
        .unwrap_or_else(|| format!("path:{rel}"))
}
