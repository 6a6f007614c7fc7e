//! A built out folder as a whole: its MANIFEST.json, and the two checks `kiln verify` runs on
//! it (full: SHA256SUMS, every bundle and MANIFEST.json agree; quick: digests only).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::outdir::SHA256SUMS_NAME;
use crate::{sha256_file, verify_out_dir, OutReport, VerifyError};

/// Name of the build's manifest at the top of an out folder.
pub const BUILD_MANIFEST_NAME: &str = "MANIFEST.json";
/// The build's signature of MANIFEST.json beside it (DER ECDSA-SHA256, `openssl dgst -verify`
/// reads it): listed in SHA256SUMS, not in MANIFEST.json, which cannot name its own signature.
pub const BUILD_MANIFEST_SIG_NAME: &str = "MANIFEST.json.sig";

/// MANIFEST.json at the top of the out folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct BuildManifest {
    /// kiln version that built it.
    pub kiln: String,
    /// Cluster name.
    pub cluster: String,
    /// Digest of every input: same inputs, same id.
    pub build_id: String,
    /// Generation from cluster.toml.
    pub generation: u64,
    /// `[seeds] health-wait-seconds`, when set: install.sh's `KILN_HEALTH_WAIT` in every seed's
    /// runcmd (and in the network seeds `kiln serve` writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_wait_seconds: Option<u64>,
    /// mtime used in archives.
    pub source_date_epoch: u64,
    /// Input files (relative to cluster.toml's folder) → sha256.
    pub inputs: BTreeMap<String, String>,
    /// Role bundles by id.
    pub bundles: BTreeMap<String, BundleInfo>,
    /// Hosts by name.
    pub hosts: BTreeMap<String, HostInfo>,
    /// Every other file of the out folder → digest and size.
    pub outputs: BTreeMap<String, OutputInfo>,
    /// Delta bundles by the id of the role bundle each rebuilds (`kiln build --delta-from`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deltas: BTreeMap<String, DeltaInfo>,
}

/// A delta bundle in MANIFEST.json: the role bundle of the same id, rebuilt from a base.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct DeltaInfo {
    /// Path of the delta relative to the out folder (`bundles/<id>-delta-<16 hex>.tar.gz`).
    pub file: String,
    /// The base bundle's file name in the base build.
    pub base_file: String,
    /// The base bundle's sha256.
    pub base_sha256: String,
    /// The base build's id.
    pub base_build_id: String,
}

/// A role bundle in MANIFEST.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct BundleInfo {
    /// Path relative to the out folder.
    pub file: String,
    /// Role.
    pub role: String,
    /// OS.
    pub os: String,
    /// Hosts that install it.
    pub hosts: Vec<String>,
}

/// A host in MANIFEST.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct HostInfo {
    /// Address.
    pub ip: String,
    /// MAC address its seed matches.
    pub mac: String,
    /// Bundle files in install order.
    pub bundles: Vec<String>,
    /// The host's secrets archive (certificates, keys, its own files).
    pub secrets: String,
    /// Seed files written for it.
    pub seeds: Vec<String>,
}

/// Digest and size of one output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputInfo {
    /// sha256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Pretty JSON with a final newline: how kiln writes the JSON files of an out folder.
pub fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("serialisable");
    b.push(b'\n');
    b
}

/// Whether `path` is MANIFEST.json or its signature: files SHA256SUMS lists that MANIFEST.json
/// cannot.
pub(crate) fn is_build_file(path: &str) -> bool {
    path == BUILD_MANIFEST_NAME || path == BUILD_MANIFEST_SIG_NAME
}

/// Reads `<dir>/MANIFEST.json`, or `None` when it is missing or not a build manifest.
pub fn read_build_manifest(dir: &Path) -> Option<BuildManifest> {
    let text = fs::read(dir.join(BUILD_MANIFEST_NAME)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn read_err(file: &Path) -> impl FnOnce(std::io::Error) -> VerifyError + '_ {
    move |source| VerifyError::Io {
        op: "read",
        file: file.to_owned(),
        source,
    }
}

/// Verifies an out folder fully: SHA256SUMS against the files, every bundle, and MANIFEST.json
/// against SHA256SUMS. Never touches the network.
pub fn verify_folder(dir: &Path) -> Result<OutReport, VerifyError> {
    let report = verify_out_dir(dir)?;
    let mpath = dir.join(BUILD_MANIFEST_NAME);
    let mtext = fs::read(&mpath).map_err(read_err(&mpath))?;
    let m: BuildManifest =
        serde_json::from_slice(&mtext).map_err(|source| VerifyError::NotBuildManifest {
            file: mpath.clone(),
            source,
        })?;
    // SHA256SUMS was just checked against the files; MANIFEST.json must agree with it.
    let sums_path = dir.join(SHA256SUMS_NAME);
    let sums_text = fs::read_to_string(&sums_path).map_err(read_err(&sums_path))?;
    let sums: BTreeMap<&str, &str> = sums_text
        .lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(h, p)| (p, h))
        .collect();
    for (p, o) in &m.outputs {
        if sums.get(p.as_str()) != Some(&o.sha256.as_str()) {
            return Err(VerifyError::ManifestDisagrees {
                path: p.clone(),
                sha256: o.sha256.clone(),
            });
        }
    }
    if let Some(extra) = sums
        .keys()
        .find(|p| !is_build_file(p) && !m.outputs.contains_key(**p))
    {
        return Err(VerifyError::NotInBuildManifest {
            path: extra.to_string(),
        });
    }
    Ok(report)
}

/// What [`verify_digests`] checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestReport {
    /// Files checked (all but SHA256SUMS).
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

fn relative(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Checks every file of an out folder against SHA256SUMS (no missing or extra file) by digest
/// only, hashing in parallel: the quick check after copying an out folder around.
pub fn verify_digests(dir: &Path) -> Result<DigestReport, VerifyError> {
    let sums_path = dir.join(SHA256SUMS_NAME);
    let text = fs::read_to_string(&sums_path).map_err(read_err(&sums_path))?;
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let (h, p) = l
            .split_once("  ")
            .ok_or_else(|| VerifyError::NotASumsLine {
                file: sums_path.clone(),
                line: i + 1,
            })?;
        want.insert(p.to_string(), h.to_string());
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let list = |source| VerifyError::Io {
            op: "list",
            file: d.clone(),
            source,
        };
        for e in fs::read_dir(&d).map_err(list)? {
            let e = e.map_err(list)?;
            let ft = e.file_type().map_err(|source| VerifyError::Io {
                op: "stat",
                file: e.path(),
                source,
            })?;
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                let rel = relative(dir, &e.path());
                if rel != SHA256SUMS_NAME {
                    found.push(rel);
                }
            }
        }
    }
    found.sort();
    if let Some(extra) = found.iter().find(|f| !want.contains_key(*f)) {
        return Err(VerifyError::DigestsUnlisted {
            dir: dir.to_owned(),
            path: extra.clone(),
        });
    }
    if let Some(missing) = want.keys().find(|w| found.binary_search(w).is_err()) {
        return Err(VerifyError::DigestsMissing {
            dir: dir.to_owned(),
            path: missing.clone(),
        });
    }
    // Largest first, spread over the cores.
    let mut jobs: Vec<(u64, &String)> = found
        .iter()
        .map(|f| (fs::metadata(dir.join(f)).map(|m| m.len()).unwrap_or(0), f))
        .collect();
    jobs.sort_by_key(|j| std::cmp::Reverse(j.0));
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let bad: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((_, rel)) = jobs.get(i) else { break };
                let ok = sha256_file(&dir.join(rel))
                    .map(|(h, _)| &h == want.get(*rel).expect("listed"))
                    .unwrap_or(false);
                if !ok {
                    bad.lock().expect("lock").push((*rel).clone());
                }
            });
        }
    });
    let bad = bad.into_inner().expect("lock");
    if !bad.is_empty() {
        return Err(VerifyError::DigestsMismatch {
            dir: dir.to_owned(),
            paths: bad,
        });
    }
    Ok(DigestReport {
        files: found.len() as u64,
        bytes: jobs.iter().map(|j| j.0).sum(),
    })
}
