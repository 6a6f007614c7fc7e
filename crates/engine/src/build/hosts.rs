//! Per host: the secrets archive (HOST, BUNDLES, BUNDLES.sig, its own files and certificates)
//! and its seeds,
//! in `hosts/<host>/`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_bundle::contract::{self, BundleRef, HostMembers, HostMeta};
use kiln_bundle::{BundleSpec, Entry, HostInfo, Source};
use kiln_plan::HostPlan;

use super::bundles::{entries_for, Written};
use super::outputs::Outputs;
use super::{pool, Assembly};
use crate::fetch::Blob;
use crate::{io_err, seed, Error};

/// The hosts written: their MANIFEST.json entries and vagrant.json entries.
#[derive(Debug, Default)]
pub(super) struct Hosts {
    /// Host name → its MANIFEST.json entry.
    pub(super) info: BTreeMap<String, HostInfo>,
    /// vagrant.json's `hosts`, in cluster.toml's order.
    pub(super) vagrant: Vec<serde_json::Value>,
}

impl Assembly<'_> {
    /// Writes every host's secrets archive and seeds; `install_sha` is install.sh's sha256.
    pub(super) fn write_hosts(
        &self,
        blobs: &BTreeMap<String, Blob>,
        bundles: &Written,
        install_sha: &str,
        staging: &Path,
        outputs: &mut Outputs,
    ) -> Result<Hosts, Error> {
        // Hosts are written in parallel (each waits mostly on the disk), each into outputs of
        // its own, then recorded in the plan's order: the out folder is the same either way.
        let shared = outputs.branch(staging)?;
        let per_host = pool::map(&self.plan.hosts, pool::io_threads(), |h| {
            let mut outputs = shared.fork();
            let mut out = Hosts::default();
            let hdir = staging.join("hosts").join(&h.name);
            fs::create_dir_all(&hdir).map_err(io_err(&hdir))?;
            let files: Vec<String> = h
                .bundles
                .iter()
                .map(|id| bundles.files[id].0.clone())
                .collect();
            let spec = self.secrets_spec(h, blobs, bundles)?;
            let secrets_path = hdir.join(contract::SECRETS);
            let w = kiln_bundle::write_archive(&secrets_path, 0o600, &spec, true)?;
            let secrets_rel = format!("hosts/{}/{}", h.name, contract::SECRETS);
            outputs.record(&secrets_rel, &w.sha256, w.size);

            let settings = &self.project.cluster.seeds;
            let run = seed::InstallRun {
                install_sha,
                secrets_sha: &w.sha256,
                sources: &settings.bundle_sources,
                carried: settings.carry_bundles,
                rerun: self.opts.seed_rerun,
                health_wait: settings.health_wait_seconds,
            };
            let seed = seed::seed_for(h, self.build_id, &run, self.signer.public_pem());
            // Without bundles a seed is a few KiB: install.sh takes the bundles from the sources,
            // and the seed's runcmd takes install.sh itself from them.
            let mut carry: Vec<(String, PathBuf)> = Vec::new();
            if settings.carry_bundles {
                let install_sh = contract::INSTALL_SH;
                carry.push((install_sh.into(), staging.join(install_sh)));
            }
            carry.push((contract::SECRETS.into(), secrets_path.clone()));
            for f in files.iter().filter(|_| settings.carry_bundles) {
                carry.push((
                    f.trim_start_matches("bundles/").to_string(),
                    staging.join(f),
                ));
            }
            let seed_files = seed::write_seeds(&hdir, &seed, &carry, self.opts.seeds, self.sde)?;
            let mut seeds = Vec::new();
            for (rel, digest) in seed_files {
                let rel = format!("hosts/{}/{rel}", h.name);
                match digest {
                    // Images were hashed as they were written: never read back.
                    Some(d) => outputs.record(&rel, &d.sha256, d.size),
                    None => outputs.record_file(staging, &rel)?,
                }
                seeds.push(rel);
            }
            let mac = h.mac.to_string();
            // kubeadm's preflight refuses a control-plane host with fewer than 2 CPUs or about
            // 1.7 GB of memory: the layout gives kubeadm masters that much.
            let kubeadm_master = self.project.cluster.bootstrap == kiln_spec::Bootstrap::Kubeadm
                && h.roles.iter().any(|r| r == "master");
            let (memory_mb, cpus) = if kubeadm_master { (2048, 2) } else { (1024, 1) };
            out.vagrant.push(serde_json::json!({
                "name": h.name, "ip": h.ip, "mac": mac, "os": h.os, "roles": h.roles,
                "seed_iso": self.opts.seeds.iso.then(|| format!("hosts/{}/cidata.iso", h.name)),
                "seed_img": self.opts.seeds.vfat.then(|| format!("hosts/{}/cidata.img", h.name)),
                "bundle_medium": settings.wants_medium().then_some(super::medium::BUNDLE_MEDIUM),
                "memory_mb": memory_mb, "cpus": cpus,
            }));
            out.info.insert(
                h.name.clone(),
                HostInfo {
                    ip: h.ip.to_string(),
                    mac,
                    bundles: files,
                    secrets: secrets_rel,
                    seeds,
                },
            );
            Ok::<_, Error>((out, outputs))
        })?;
        let mut all = Hosts::default();
        for (out, host_outputs) in per_host {
            outputs.merge(host_outputs);
            all.info.extend(out.info);
            all.vagrant.extend(out.vagrant);
        }
        Ok(all)
    }

    /// A host's secrets archive: its own files, its certificates and keys, HOST and BUNDLES.
    fn secrets_spec(
        &self,
        h: &HostPlan,
        blobs: &BTreeMap<String, Blob>,
        bundles: &Written,
    ) -> Result<BundleSpec, Error> {
        let cluster = &self.project.cluster;
        let mut entries = entries_for(&h.files, blobs)?;
        for s in self.pki.hosts.get(&h.name).into_iter().flatten() {
            entries.push(Entry {
                path: contract::rootfs_path(&s.path),
                mode: s.mode,
                source: Source::Bytes(s.bytes.clone()),
            });
        }
        let refs: Vec<BundleRef> = h
            .bundles
            .iter()
            .map(|id| {
                let (rel, sha) = &bundles.files[id];
                BundleRef {
                    sha256: sha.clone(),
                    file: rel.trim_start_matches("bundles/").to_string(),
                }
            })
            .collect();
        let deltas: Vec<_> = h
            .bundles
            .iter()
            .filter_map(|id| bundles.deltas.refs.get(id).cloned())
            .collect();
        let members = HostMembers {
            meta: HostMeta {
                cluster: cluster.name.clone(),
                host: h.name.clone(),
                ip: h.ip.to_string(),
                build_id: self.build_id.to_string(),
                generation: self.plan.generation,
                arch: cluster.arch.to_string(),
                os: h.os.to_string(),
                family: h.os.family().to_string(),
                not_after: crate::secrets::host_not_after(self.pki, &h.name),
                not_before: crate::secrets::host_not_before(self.pki, &h.name),
                extra: Vec::new(),
            },
            bundles: &refs,
            deltas: &deltas,
        };
        entries.extend(members.entries());
        entries.push(super::sign::host_signature(self.signer, &members));
        Ok(BundleSpec {
            entries,
            mtime: self.sde,
        })
    }
}
