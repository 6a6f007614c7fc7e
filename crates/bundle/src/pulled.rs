//! Out folders made by `kiln pull`: the build's bundles and top-level files without
//! `hosts/` (host secrets and seeds never leave the build machine), recognised by their
//! marker `PULLED.json`, and how `kiln verify` checks them.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::folder::{is_build_file, BuildManifest, BUILD_MANIFEST_NAME};
use crate::outdir::{parse_sums, verify_out_dir, SHA256SUMS_NAME};
use crate::{OutReport, VerifyError};

/// The marker at the top of a pulled folder.
pub const PULLED_NAME: &str = "PULLED.json";

/// What `PULLED.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PulledMarker {
    /// The registry repository and tag it came from.
    pub source: String,
    /// The digest of the index pulled.
    pub index: String,
    /// Cluster name (as MANIFEST.json says).
    pub cluster: String,
    /// Build id (as MANIFEST.json says).
    pub build_id: String,
    /// Generation (as MANIFEST.json says).
    pub generation: u64,
    /// Outputs of the build that are not here: every one under `hosts/`.
    pub absent: Vec<String>,
}

/// What [`verify_pulled`] checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledReport {
    /// The files, bundles and bytes verified.
    pub out: OutReport,
    /// The marker.
    pub marker: PulledMarker,
}

/// Whether `dir` is a pulled folder (has the marker).
pub fn is_pulled(dir: &Path) -> bool {
    dir.join(PULLED_NAME).is_file()
}

/// Verifies a pulled folder: SHA256SUMS against the files and every bundle (as for a
/// build), the marker against MANIFEST.json, every output MANIFEST.json records either
/// present with its digest or a `hosts/` file the marker lists as absent.
pub fn verify_pulled(dir: &Path) -> Result<PulledReport, VerifyError> {
    let out = verify_out_dir(dir)?;
    let read = |name: &str| {
        let file = dir.join(name);
        fs::read(&file).map_err(|source| VerifyError::Io {
            op: "read",
            file,
            source,
        })
    };
    let marker_file = dir.join(PULLED_NAME);
    let bad = |reason: String| VerifyError::PulledMarker {
        file: marker_file.clone(),
        reason,
    };
    let marker: PulledMarker =
        serde_json::from_slice(&read(PULLED_NAME)?).map_err(|e| bad(e.to_string()))?;
    let m: BuildManifest =
        serde_json::from_slice(&read(BUILD_MANIFEST_NAME)?).map_err(|source| {
            VerifyError::NotBuildManifest {
                file: dir.join(BUILD_MANIFEST_NAME),
                source,
            }
        })?;
    if (&marker.cluster, &marker.build_id, marker.generation)
        != (&m.cluster, &m.build_id, m.generation)
    {
        return Err(bad(format!(
            "names cluster {} build {} generation {}, MANIFEST.json cluster {} build {} generation {}",
            marker.cluster, marker.build_id, marker.generation, m.cluster, m.build_id, m.generation
        )));
    }
    let sums_path = dir.join(SHA256SUMS_NAME);
    let sums: BTreeMap<String, String> = parse_sums(&sums_path, &read(SHA256SUMS_NAME)?)?;
    for (path, o) in &m.outputs {
        match sums.get(path) {
            Some(sha) if *sha == o.sha256 => {}
            Some(_) => {
                return Err(VerifyError::ManifestDisagrees {
                    path: path.clone(),
                    sha256: o.sha256.clone(),
                })
            }
            None if path.starts_with("hosts/") && marker.absent.contains(path) => {}
            None => {
                return Err(VerifyError::PulledMissing {
                    dir: dir.to_owned(),
                    path: path.clone(),
                })
            }
        }
    }
    if let Some(p) = marker
        .absent
        .iter()
        .find(|p| !p.starts_with("hosts/") || !m.outputs.contains_key(*p))
    {
        return Err(bad(format!(
            "lists {p} as absent, which is not a host file of the build"
        )));
    }
    if let Some(extra) = sums
        .keys()
        .find(|p| !is_build_file(p) && *p != PULLED_NAME && !m.outputs.contains_key(*p))
    {
        return Err(VerifyError::NotInBuildManifest {
            path: extra.clone(),
        });
    }
    Ok(PulledReport { out, marker })
}
