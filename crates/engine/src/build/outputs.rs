//! The out folder's top-level files: install.sh, vagrant.json, MANIFEST.json (and its signature)
//! and SHA256SUMS,
//! and the record of every output's digest that MANIFEST.json lists.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use kiln_bundle::{contract, BuildManifest, OutputInfo, BUILD_MANIFEST_NAME};

use super::id::sha256_hex;
use crate::{io_err, write_atomic, Error};

/// Every output written so far (path relative to the out folder → digest and size).
///
/// A file that is another name of an output already recorded (a seed folder's hard link of a
/// bundle, install.sh or the secrets archive) takes that output's digest without being read
/// again: every host's seed would otherwise hash the same bundles once more.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    /// Path → digest and size: MANIFEST.json's `outputs` and SHA256SUMS.
    files: BTreeMap<String, OutputInfo>,
    /// Outputs recorded since the inode index was last brought up to date.
    unindexed: Vec<String>,
    /// (device, inode) → the recorded path holding it and its record.
    by_inode: HashMap<(u64, u64), (String, OutputInfo)>,
}

impl Outputs {
    /// Records an output whose digest is known.
    pub(super) fn record(&mut self, rel: &str, sha256: &str, size: u64) {
        self.files.insert(
            rel.to_string(),
            OutputInfo {
                sha256: sha256.to_string(),
                size,
            },
        );
        self.unindexed.push(rel.to_string());
    }

    /// Records `staging/rel`: a link to an output already recorded takes its digest, anything
    /// else is hashed.
    pub(super) fn record_file(&mut self, staging: &Path, rel: &str) -> Result<(), Error> {
        let full = staging.join(rel);
        let md = fs::metadata(&full).map_err(io_err(&full))?;
        if let Some(info) = self.same_file(staging, &md)? {
            self.files.insert(rel.to_string(), info);
            return Ok(());
        }
        let (sha, size) = kiln_bundle::sha256_file(&full).map_err(io_err(&full))?;
        self.record(rel, &sha, size);
        Ok(())
    }

    /// The record of the output that `md` (a file's metadata) is another name of, if any.
    fn same_file(
        &mut self,
        staging: &Path,
        md: &fs::Metadata,
    ) -> Result<Option<OutputInfo>, Error> {
        self.index(staging)?;
        let Some((rel, info)) = self.by_inode.get(&(md.dev(), md.ino())) else {
            return Ok(None);
        };
        // The recorded path must still be that inode (outputs are replaced by rename, never
        // written in place), so an inode number reused by a newer file cannot match.
        let full = staging.join(rel);
        let still = fs::metadata(&full).is_ok_and(|m| (m.dev(), m.ino()) == (md.dev(), md.ino()));
        Ok(still.then(|| info.clone()))
    }

    /// Brings the inode index up to date with the outputs recorded since.
    fn index(&mut self, staging: &Path) -> Result<(), Error> {
        for rel in std::mem::take(&mut self.unindexed) {
            let full = staging.join(&rel);
            let m = fs::metadata(&full).map_err(io_err(&full))?;
            let info = self.files[&rel].clone();
            self.by_inode.insert((m.dev(), m.ino()), (rel, info));
        }
        Ok(())
    }

    /// Empty outputs that know this one's files by inode: one host's, written on its own
    /// thread and then [merged](Outputs::merge) back.
    pub(super) fn branch(&mut self, staging: &Path) -> Result<Outputs, Error> {
        self.index(staging)?;
        Ok(self.fork())
    }

    /// Empty outputs with this one's inode index as it stands.
    pub(super) fn fork(&self) -> Outputs {
        Outputs {
            files: BTreeMap::new(),
            unindexed: Vec::new(),
            by_inode: self.by_inode.clone(),
        }
    }

    /// Takes in the outputs a [branch](Outputs::branch) recorded.
    pub(super) fn merge(&mut self, branch: Outputs) {
        self.unindexed.extend(branch.files.keys().cloned());
        self.files.extend(branch.files);
    }

    /// Every output recorded, for MANIFEST.json.
    pub(super) fn into_map(self) -> BTreeMap<String, OutputInfo> {
        self.files
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

/// MANIFEST.json and its signature, then SHA256SUMS listing every output, MANIFEST.json and
/// MANIFEST.json.sig.
pub(super) fn write_manifest_and_sums(
    staging: &Path,
    manifest: &BuildManifest,
    signer: &kiln_pki::BuildSigner,
) -> Result<(), Error> {
    let mbytes = kiln_bundle::json_bytes(manifest);
    write_atomic(&staging.join(BUILD_MANIFEST_NAME), &mbytes)?;
    let signature = super::sign::write_manifest_signature(staging, signer, &mbytes)?;
    let mut sums: Vec<(String, String)> = manifest
        .outputs
        .iter()
        .map(|(p, o)| (p.clone(), o.sha256.clone()))
        .collect();
    sums.push((BUILD_MANIFEST_NAME.into(), sha256_hex(&mbytes)));
    sums.push(signature);
    kiln_bundle::write_sha256sums(staging, &sums)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(o: &Outputs, rel: &str) -> (String, u64) {
        let i = &o.files[rel];
        (i.sha256.clone(), i.size)
    }

    #[test]
    fn links_take_the_recorded_digest_and_copies_are_hashed() {
        let t = tempfile::tempdir().unwrap();
        let staging = t.path();
        fs::create_dir_all(staging.join("bundles")).unwrap();
        fs::create_dir_all(staging.join("hosts/h1/seed/kiln")).unwrap();
        let mut o = Outputs::default();
        o.write(staging, "bundles/b.tar.gz", b"bundle bytes")
            .unwrap();
        fs::hard_link(
            staging.join("bundles/b.tar.gz"),
            staging.join("hosts/h1/seed/kiln/b.tar.gz"),
        )
        .unwrap();
        fs::copy(
            staging.join("bundles/b.tar.gz"),
            staging.join("hosts/h1/copy"),
        )
        .unwrap();
        let mut branch = o.branch(staging).unwrap().fork();
        branch
            .record_file(staging, "hosts/h1/seed/kiln/b.tar.gz")
            .unwrap();
        branch.record_file(staging, "hosts/h1/copy").unwrap();
        o.merge(branch);
        let expected = (sha256_hex(b"bundle bytes"), 12);
        assert_eq!(info(&o, "bundles/b.tar.gz"), expected);
        assert_eq!(info(&o, "hosts/h1/seed/kiln/b.tar.gz"), expected);
        assert_eq!(info(&o, "hosts/h1/copy"), expected);
    }

    #[test]
    fn a_file_replaced_after_recording_is_hashed_again() {
        let t = tempfile::tempdir().unwrap();
        let staging = t.path();
        let mut o = Outputs::default();
        o.write(staging, "a", b"first").unwrap();
        o.index(staging).unwrap();
        // Replaced by rename: a new inode, so the old record must not be taken for it.
        write_atomic(&staging.join("a"), b"second!").unwrap();
        fs::hard_link(staging.join("a"), staging.join("b")).unwrap();
        o.record_file(staging, "b").unwrap();
        assert_eq!(info(&o, "b"), (sha256_hex(b"second!"), 7));
    }
}
