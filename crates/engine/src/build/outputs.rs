//! The out folder's top-level files: install.sh, vagrant.json, MANIFEST.json and SHA256SUMS,
//! and the record of every output's digest that MANIFEST.json lists.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_bundle::{contract, BuildManifest, OutputInfo, BUILD_MANIFEST_NAME};

use super::id::sha256_hex;
use crate::{io_err, write_atomic, Error};

/// Every output written so far (path relative to the out folder → digest and size).
#[derive(Debug, Default)]
pub(super) struct Outputs(pub(super) BTreeMap<String, OutputInfo>);

impl Outputs {
    /// Records an output whose digest is known.
    pub(super) fn record(&mut self, rel: &str, sha256: &str, size: u64) {
        self.0.insert(
            rel.to_string(),
            OutputInfo {
                sha256: sha256.to_string(),
                size,
            },
        );
    }

    /// Records `staging/rel`, hashing it.
    pub(super) fn record_file(&mut self, staging: &Path, rel: &str) -> Result<(), Error> {
        let full = staging.join(rel);
        let (sha, size) = kiln_bundle::sha256_file(&full).map_err(io_err(&full))?;
        self.record(rel, &sha, size);
        Ok(())
    }

    /// Writes `staging/rel` and records it.
    fn write(&mut self, staging: &Path, rel: &str, bytes: &[u8]) -> Result<String, Error> {
        write_atomic(&staging.join(rel), bytes)?;
        let sha = sha256_hex(bytes);
        self.record(rel, &sha, bytes.len() as u64);
        Ok(sha)
    }
}

/// install.sh at the top of the out folder; returns its sha256 (the seeds pin it).
pub(super) fn write_install_sh(staging: &Path, outputs: &mut Outputs) -> Result<String, Error> {
    outputs.write(staging, contract::INSTALL_SH, crate::INSTALL_SH.as_bytes())
}

/// vagrant.json: the cluster's network and one entry per host, for test VMs.
pub(super) fn write_vagrant(
    staging: &Path,
    cluster: &kiln_spec::Cluster,
    hosts: Vec<serde_json::Value>,
    outputs: &mut Outputs,
) -> Result<(), Error> {
    let net = cluster.network.host_cidrs.first().map(|c| c.to_string());
    let vagrant = serde_json::json!({
        "cluster": cluster.name,
        "network": {"cidr": net, "gateway": cluster.network.gateway.map(|g| g.to_string())},
        "hosts": hosts,
    });
    outputs.write(staging, "vagrant.json", &kiln_bundle::json_bytes(&vagrant))?;
    Ok(())
}

/// MANIFEST.json, then SHA256SUMS listing every output and MANIFEST.json.
pub(super) fn write_manifest_and_sums(
    staging: &Path,
    manifest: &BuildManifest,
) -> Result<(), Error> {
    let mbytes = kiln_bundle::json_bytes(manifest);
    write_atomic(&staging.join(BUILD_MANIFEST_NAME), &mbytes)?;
    let mut sums: Vec<(String, String)> = manifest
        .outputs
        .iter()
        .map(|(p, o)| (p.clone(), o.sha256.clone()))
        .collect();
    sums.push((BUILD_MANIFEST_NAME.into(), sha256_hex(&mbytes)));
    kiln_bundle::write_sha256sums(staging, &sums)?;
    Ok(())
}
