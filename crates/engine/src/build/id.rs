//! The build id: a digest of every input, and the check that an out folder already is that build.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use sha2::{Digest, Sha256};

use kiln_bundle::BuildManifest;
use kiln_spec::Project;

use crate::{io_err, Error};

/// Lowercase hex sha256 of `b`.
pub(super) fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// `p` relative to `base`, '/'-separated.
fn relative(base: &Path, p: &Path) -> String {
    p.strip_prefix(base)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The inputs' digests and the build id derived from them.
pub fn build_id(
    project: &Project,
    lock_bytes: &[u8],
    sde: u64,
    extra: &[(&str, String)],
) -> Result<(String, BTreeMap<String, String>), Error> {
    let base = &project.cluster.paths.base;
    let mut inputs = BTreeMap::new();
    for p in &project.inputs {
        let bytes = fs::read(p).map_err(io_err(p))?;
        inputs.insert(relative(base, p), sha256_hex(&bytes));
    }
    inputs.insert(
        relative(base, &project.cluster.paths.lock),
        sha256_hex(lock_bytes),
    );
    for (k, v) in extra {
        inputs.insert(k.to_string(), v.clone());
    }
    let mut h = Sha256::new();
    h.update(format!(
        "kiln {}\nsource-date-epoch {sde}\n",
        env!("CARGO_PKG_VERSION")
    ));
    for (k, v) in &inputs {
        h.update(format!("{k} {v}\n"));
    }
    Ok((hex::encode(h.finalize()), inputs))
}

/// The manifest of `dir` when it is already build `build_id` with every output in place.
pub(super) fn up_to_date(dir: &Path, build_id: &str) -> Option<BuildManifest> {
    let m = kiln_bundle::read_build_manifest(dir)?;
    if m.build_id != build_id || !dir.join(kiln_bundle::SHA256SUMS_NAME).is_file() {
        return None;
    }
    let intact = m
        .outputs
        .iter()
        .all(|(p, o)| fs::metadata(dir.join(p)).is_ok_and(|md| md.is_file() && md.len() == o.size));
    intact.then_some(m)
}
