//! `kiln sbom`: the SBOMs of an out folder, checked against MANIFEST.json before anyone reads
//! them, and copies of them into a folder.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use kiln_bundle::{BuildManifest, BUILD_MANIFEST_NAME};

/// Why the SBOMs of an out folder cannot be read or copied.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// The folder is not what `kiln build` (or `kiln pull`) writes.
    #[error("{dir} is not an out folder of kiln build (out/CLUSTER-NAME): {reason}")]
    NotAnOutFolder {
        /// The folder given.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `--bundle` names no bundle of the build.
    #[error("{dir} has no bundle {name:?}; its bundles are: {}", known.join(", "))]
    UnknownBundle {
        /// The out folder.
        dir: PathBuf,
        /// The name asked for.
        name: String,
        /// The bundle ids MANIFEST.json lists.
        known: Vec<String>,
    },
    /// The build's MANIFEST.json records no SBOM for a bundle.
    #[error("{dir}/{BUILD_MANIFEST_NAME} records no SBOM {file} for bundle {bundle} (built by a kiln without SBOMs: `kiln build --force` writes them)")]
    NoSbom {
        /// The out folder.
        dir: PathBuf,
        /// Bundle id.
        bundle: String,
        /// The SBOM's expected name.
        file: String,
    },
    /// An SBOM differs from what MANIFEST.json recorded.
    #[error("{file}: sha256 {actual}, but {BUILD_MANIFEST_NAME} records {expected}: the SBOM was changed after the build (kiln verify checks the whole folder)")]
    Changed {
        /// The SBOM file.
        file: PathBuf,
        /// sha256 in MANIFEST.json.
        expected: String,
        /// sha256 of the file.
        actual: String,
    },
    /// An SBOM is not the JSON document kiln writes.
    #[error("{file}: not an SPDX JSON document: {reason}")]
    NotSpdx {
        /// The SBOM file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Reading an SBOM failed.
    #[error("cannot read {file}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The folder to copy into cannot be made.
    #[error("cannot create {dir}")]
    CreateDir {
        /// The folder.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing a copy failed.
    #[error("cannot write {file}")]
    Write {
        /// The file.
        file: PathBuf,
        /// Why (names the step and path).
        #[source]
        source: kiln_fsio::Error,
    },
}

/// One bundle's SBOM, read and checked.
#[derive(Debug, Clone)]
pub struct SbomFile {
    /// Bundle id.
    pub bundle: String,
    /// The file.
    pub path: PathBuf,
    /// Its bytes (the SPDX JSON document).
    pub bytes: Vec<u8>,
}

/// How many items of each kind an SBOM lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbomSummary {
    /// Artifacts placed as files.
    pub artifacts: usize,
    /// OS packages.
    pub packages: usize,
    /// Container images.
    pub images: usize,
}

impl SbomFile {
    /// Counts the document's artifacts, packages and images by their SPDX ids.
    pub fn summary(&self) -> Result<SbomSummary, SbomError> {
        let bad = |reason: String| SbomError::NotSpdx {
            file: self.path.clone(),
            reason,
        };
        let doc: serde_json::Value =
            serde_json::from_slice(&self.bytes).map_err(|e| bad(e.to_string()))?;
        let packages = doc["packages"]
            .as_array()
            .ok_or_else(|| bad("no `packages` array".to_owned()))?;
        let count = |kind: &str| {
            let prefix = format!("SPDXRef-{kind}-");
            packages
                .iter()
                .filter(|p| {
                    p["SPDXID"]
                        .as_str()
                        .is_some_and(|id| id.starts_with(&prefix))
                })
                .count()
        };
        Ok(SbomSummary {
            artifacts: count("Artifact"),
            packages: count("Package"),
            images: count("Image"),
        })
    }
}

/// The SBOMs of out folder `dir` (every bundle's, or only `bundle`'s), each checked against
/// the sha256 MANIFEST.json records for it.
pub fn read(dir: &Path, bundle: Option<&str>) -> Result<Vec<SbomFile>, SbomError> {
    let not_out = |reason: String| SbomError::NotAnOutFolder {
        dir: dir.to_owned(),
        reason,
    };
    if !dir.is_dir() {
        return Err(not_out("no such folder".to_owned()));
    }
    let mpath = dir.join(BUILD_MANIFEST_NAME);
    let text = match fs::read(&mpath) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_out(format!("it has no {BUILD_MANIFEST_NAME}")))
        }
        Err(source) => {
            return Err(SbomError::Read {
                file: mpath,
                source,
            })
        }
    };
    let m: BuildManifest = serde_json::from_slice(&text).map_err(|e| {
        not_out(format!(
            "its {BUILD_MANIFEST_NAME} is not a build manifest: {e}"
        ))
    })?;
    let ids: Vec<&String> = match bundle {
        None => m.bundles.keys().collect(),
        Some(name) => match m.bundles.get_key_value(name) {
            Some((id, _)) => vec![id],
            None => {
                return Err(SbomError::UnknownBundle {
                    dir: dir.to_owned(),
                    name: name.to_owned(),
                    known: m.bundles.keys().cloned().collect(),
                })
            }
        },
    };
    ids.into_iter().map(|id| read_one(dir, &m, id)).collect()
}

fn read_one(dir: &Path, m: &BuildManifest, id: &str) -> Result<SbomFile, SbomError> {
    let rel = super::file_name(id);
    let recorded = m.outputs.get(&rel).ok_or_else(|| SbomError::NoSbom {
        dir: dir.to_owned(),
        bundle: id.to_owned(),
        file: rel.clone(),
    })?;
    let path = dir.join(&rel);
    let bytes = fs::read(&path).map_err(|source| SbomError::Read {
        file: path.clone(),
        source,
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != recorded.sha256 {
        return Err(SbomError::Changed {
            file: path,
            expected: recorded.sha256.clone(),
            actual,
        });
    }
    Ok(SbomFile {
        bundle: id.to_owned(),
        path,
        bytes,
    })
}

/// Writes each SBOM into `to` (created when missing) under its own name; returns the paths.
pub fn export(files: &[SbomFile], to: &Path) -> Result<Vec<PathBuf>, SbomError> {
    fs::create_dir_all(to).map_err(|source| SbomError::CreateDir {
        dir: to.to_owned(),
        source,
    })?;
    files
        .iter()
        .map(|f| {
            let path = to.join(super::file_name(&f.bundle));
            kiln_fsio::write_atomic(&path, &f.bytes, 0o644).map_err(|source| SbomError::Write {
                file: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}
