//! `kiln build`: assemble role bundles, host archives, MANIFEST.json and SHA256SUMS.
//!
//! Assembly reads only the lock, the store and the inputs; it writes into a staging folder
//! beside the final one and swaps it in when everything is complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use kiln_bundle::{BundleSpec, Entry, Source};
use kiln_plan::{FileSource, Plan, PlannedFile};
use kiln_spec::Project;
use kiln_store::{FetchOptions, FetchReport, Progress};

use crate::fetch::{self, Blob};
use crate::seed::{self, SeedKinds};
use crate::{io_err, lock, write_atomic, Error};

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Out folder; results go to `<out>/<cluster>/`.
    pub out: PathBuf,
    /// Fail instead of fetching what the store lacks.
    pub offline: bool,
    /// Fetch settings.
    pub fetch: FetchOptions,
    /// mtime of bundle entries (SOURCE_DATE_EPOCH); default: the lock's.
    pub source_date_epoch: Option<u64>,
    /// Rebuild even when the out folder is up to date.
    pub force: bool,
    /// Seed forms to write per host.
    pub seeds: SeedKinds,
    /// Test aid: the seed runs install.sh twice (the second run must report `unchanged`).
    pub seed_rerun: bool,
    /// Allow the PKI to create a new CA where issued certificates exist.
    pub rotate_ca: bool,
    /// How each bundle carries its images.
    pub images: crate::images::ImageArchives,
}

/// What a build did.
#[derive(Debug)]
pub struct BuildOutcome {
    /// `<out>/<cluster>`.
    pub dir: PathBuf,
    /// The build id.
    pub build_id: String,
    /// Nothing changed: the out folder was already this build.
    pub up_to_date: bool,
    /// The manifest written (or found).
    pub manifest: BuildManifest,
    /// What fetching did, when anything was missing.
    pub fetched: Option<FetchReport>,
}

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

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

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

fn up_to_date(dir: &Path, build_id: &str) -> Option<BuildManifest> {
    let text = fs::read(dir.join("MANIFEST.json")).ok()?;
    let m: BuildManifest = serde_json::from_slice(&text).ok()?;
    if m.build_id != build_id || !dir.join(kiln_bundle::SHA256SUMS_NAME).is_file() {
        return None;
    }
    let intact = m
        .outputs
        .iter()
        .all(|(p, o)| fs::metadata(dir.join(p)).is_ok_and(|md| md.is_file() && md.len() == o.size));
    intact.then_some(m)
}

fn entries_for(files: &[PlannedFile], blobs: &BTreeMap<String, Blob>) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for f in files {
        let path = format!("rootfs{}", f.path);
        let source = match &f.source {
            FileSource::Artifact { name, .. } => {
                let b = blobs
                    .get(name)
                    .ok_or_else(|| Error::Lock(format!("artifact {name} has no blob")))?;
                Source::File {
                    path: b.path.clone(),
                    sha256: b.sha256.clone(),
                    size: b.size,
                }
            }
            FileSource::Content { bytes, .. } => Source::Bytes(bytes.clone()),
            FileSource::Local { path: p, .. } => Source::Bytes(fs::read(p).map_err(io_err(p))?),
        };
        out.push(Entry {
            path,
            mode: f.mode,
            source,
        });
    }
    Ok(out)
}

fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(v).expect("serialisable");
    b.push(b'\n');
    b
}

/// Runs the build.
pub fn build(
    project: &Project,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildOutcome, Error> {
    let plan = crate::images::full_plan(project)?;
    let lock_path = &project.cluster.paths.lock;
    let Some(kiln_load::LoadedLock {
        bytes: lock_bytes,
        lock,
    }) = lock::read_lock_file(lock_path)?
    else {
        return Err(Error::Lock(format!(
            "{} not found: run `kiln lock` first (builds use only pinned artifacts)",
            lock_path.display()
        )));
    };
    let entries = lock::locked_entries(project, &plan, &lock)?;
    let sde = opts.source_date_epoch.unwrap_or(lock.source_date_epoch);

    let vendor = &project.cluster.paths.vendor;
    if opts.offline && !vendor.exists() {
        // Opening the store would create it; an offline build that cannot succeed writes nothing.
        let all = fetch::downloads(&entries, &project.cluster.paths.catalog)
            .into_iter()
            .map(|d| format!("{} ({})", d.label, d.pin()))
            .collect();
        return Err(Error::Missing {
            store: vendor.clone(),
            missing: all,
        });
    }
    let store = fetch::open_store(project)?;
    let missing = fetch::missing(&store, &entries);
    let locked_images = crate::images::from_lock(&lock)?;
    let missing_images = crate::images::missing(project, &plan, &store, &locked_images)?;
    if opts.offline && !(missing.is_empty() && missing_images.is_empty()) {
        let mut all = missing;
        all.extend(
            missing_images
                .iter()
                .map(|i| format!("image {} ({})", i.reference, i.manifest_digest.as_str())),
        );
        return Err(Error::Missing {
            store: vendor.clone(),
            missing: all,
        });
    }

    // The PKI is state beside cluster.toml: created once, reused, and part of the build's inputs.
    let pki = crate::secrets::ensure_pki(project, opts.rotate_ca)?;
    let pki_digest = crate::secrets::state_digest(&project.cluster.paths.pki)?;
    let seeds = format!(
        "dir={} iso={} vfat={} rerun={}",
        opts.seeds.dir, opts.seeds.iso, opts.seeds.vfat, opts.seed_rerun
    );
    let (build_id, inputs) = build_id(
        project,
        &lock_bytes,
        sde,
        &[
            ("(pki state)", pki_digest),
            ("(seed options)", sha256_hex(seeds.as_bytes())),
            (
                "(image archives)",
                sha256_hex(opts.images.as_str().as_bytes()),
            ),
            ("(install.sh)", sha256_hex(crate::INSTALL_SH.as_bytes())),
        ],
    )?;
    let dir = opts.out.join(&project.cluster.name);
    if !opts.force {
        if let Some(manifest) = up_to_date(&dir, &build_id) {
            tracing::info!(dir = %dir.display(), "up to date");
            return Ok(BuildOutcome {
                dir,
                build_id,
                up_to_date: true,
                manifest,
                fetched: None,
            });
        }
    }
    let fetched = if missing.is_empty() {
        None
    } else {
        Some(fetch::fetch(
            project,
            &store,
            &entries,
            &opts.fetch,
            progress,
        )?)
    };
    crate::images::pull(project, &store, &missing_images, &opts.fetch, progress)?;

    let ctx = Assembly {
        project,
        plan: &plan,
        store: &store,
        entries: &entries,
        images: &locked_images,
        dir: &dir,
        build_id: &build_id,
        inputs: &inputs,
        sde,
        pki: &pki,
        opts,
    };
    // A store entry that fails its hash while being bundled is removed and the assembly retried once.
    let manifest = match ctx.assemble() {
        Err(Error::Bundle(kiln_bundle::BundleError::PinMismatch { expected, .. })) => {
            tracing::warn!(sha256 = %expected, "store entry corrupt; removing it and retrying");
            store.verify_blob(&expected)?;
            if !fetch::missing(&store, &entries).is_empty() {
                if opts.offline {
                    return Err(Error::Missing {
                        store: vendor.clone(),
                        missing: fetch::missing(&store, &entries),
                    });
                }
                fetch::fetch(project, &store, &entries, &opts.fetch, progress)?;
            }
            ctx.assemble()?
        }
        other => other?,
    };
    Ok(BuildOutcome {
        dir,
        build_id,
        up_to_date: false,
        manifest,
        fetched,
    })
}

/// Everything assembly reads.
struct Assembly<'a> {
    project: &'a Project,
    plan: &'a Plan,
    store: &'a kiln_store::Store,
    entries: &'a fetch::Pinned,
    images: &'a [kiln_image::LockedImage],
    dir: &'a Path,
    build_id: &'a str,
    inputs: &'a BTreeMap<String, String>,
    sde: u64,
    pki: &'a kiln_pki::PkiOutput,
    opts: &'a BuildOptions,
}

impl Assembly<'_> {
    fn assemble(&self) -> Result<BuildManifest, Error> {
        let blobs = fetch::materialize(self.store, self.entries)?;
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let name = self
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("cluster");
        let staging = parent.join(format!(".{name}.build-{}", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        let result = self.write_outputs(&blobs, &staging).and_then(|m| {
            swap_in(&staging, self.dir)?;
            Ok(m)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }
}

fn lines(items: &[String]) -> Vec<u8> {
    items
        .iter()
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

fn text_entry(path: &str, mode: u32, text: impl Into<Vec<u8>>) -> Entry {
    Entry {
        path: path.into(),
        mode,
        source: Source::Bytes(text.into()),
    }
}

impl Assembly<'_> {
    fn write_outputs(
        &self,
        blobs: &BTreeMap<String, Blob>,
        staging: &Path,
    ) -> Result<BuildManifest, Error> {
        let (project, plan, sde) = (self.project, self.plan, self.sde);
        let cluster = &project.cluster;
        let bundles_dir = staging.join("bundles");
        fs::create_dir_all(&bundles_dir).map_err(io_err(&bundles_dir))?;
        let mut outputs = BTreeMap::new();
        let mut bundles = BTreeMap::new();
        // bundle id -> (relative path, sha256)
        let mut written: BTreeMap<String, (String, String)> = BTreeMap::new();
        // Images: registry ones from the lock, assembled ones built now; nothing a rendered file
        // names may be left to pull on the host.
        let by_bundle =
            crate::images::resolve_for_build(project, plan, self.store, self.images, blobs, sde)?;
        let incomplete = crate::images::check_complete(plan, &by_bundle);
        if !incomplete.is_empty() {
            return Err(Error::Lock(format!(
                "the build is incomplete:\n  {}",
                incomplete.join("\n  ")
            )));
        }
        let image_tmp = staging.join(".images");
        for b in &plan.bundles {
            tracing::info!(bundle = %b.id, files = b.files.len(), "writing bundle");
            let mut entries = entries_for(&b.files, blobs)?;
            let meta = format!(
                "KILN_ROLE={}\nKILN_OS={}\nKILN_OS_FAMILY={}\nKILN_ARCH={}\n",
                b.role,
                b.os,
                b.os.family(),
                cluster.arch
            );
            entries.push(text_entry("BUNDLE", 0o644, meta));
            entries.push(text_entry("UNITS", 0o644, lines(&b.units)));
            let tarballs = crate::images::write_tarballs(
                self.store,
                by_bundle.get(&b.id).map(Vec::as_slice).unwrap_or(&[]),
                self.opts.images,
                &b.role,
                sde,
                &image_tmp.join(&b.id),
            )?;
            let digests: Vec<String> = tarballs.iter().flat_map(|t| t.digest_lines()).collect();
            entries.push(text_entry(
                "IMAGES",
                0o644,
                lines(&tarballs.iter().map(|t| t.path.clone()).collect::<Vec<_>>()),
            ));
            entries.push(text_entry("IMAGE-DIGESTS", 0o644, lines(&digests)));
            entries.extend(tarballs.into_iter().map(|t| Entry {
                path: t.path,
                mode: 0o644,
                source: Source::File {
                    path: t.written.path,
                    sha256: t.written.sha256,
                    size: t.written.size,
                },
            }));
            // OS packages in install order, as `packages/<file>` beside their list.
            let packages = fetch::bundle_packages(self.store, self.entries, &b.id)?;
            entries.push(text_entry(
                "PACKAGES",
                0o644,
                lines(&packages.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>()),
            ));
            entries.extend(packages.into_iter().map(|(path, b)| Entry {
                path,
                mode: 0o644,
                source: Source::File {
                    path: b.path,
                    sha256: b.sha256,
                    size: b.size,
                },
            }));
            entries.push(text_entry(
                "HEALTH",
                0o644,
                b.health
                    .as_ref()
                    .map(|h| format!("{h}\n"))
                    .unwrap_or_default(),
            ));
            entries.push(text_entry("install.sh", 0o755, crate::INSTALL_SH));
            let w = kiln_bundle::write_bundle(
                &bundles_dir,
                &b.id,
                &BundleSpec {
                    entries,
                    mtime: sde,
                },
            )?;
            let rel = format!("bundles/{}", w.file_name);
            outputs.insert(
                rel.clone(),
                OutputInfo {
                    sha256: w.sha256.clone(),
                    size: w.size,
                },
            );
            written.insert(b.id.clone(), (rel.clone(), w.sha256.clone()));
            bundles.insert(
                b.id.clone(),
                BundleInfo {
                    file: rel,
                    role: b.role.clone(),
                    os: b.os.to_string(),
                    hosts: b.hosts.clone(),
                },
            );
        }
        let _ = fs::remove_dir_all(&image_tmp);
        let install_sha = sha256_hex(crate::INSTALL_SH.as_bytes());
        let install_path = staging.join("install.sh");
        write_atomic(&install_path, crate::INSTALL_SH.as_bytes())?;
        outputs.insert(
            "install.sh".into(),
            OutputInfo {
                sha256: install_sha.clone(),
                size: crate::INSTALL_SH.len() as u64,
            },
        );

        let mut hosts = BTreeMap::new();
        let mut vagrant_hosts = Vec::new();
        for (h, host) in plan.hosts.iter().zip(&cluster.hosts) {
            let hdir = staging.join("hosts").join(&h.name);
            fs::create_dir_all(&hdir).map_err(io_err(&hdir))?;
            let files: Vec<String> = h.bundles.iter().map(|id| written[id].0.clone()).collect();
            let mut entries = entries_for(&h.files, blobs)?;
            for s in self.pki.hosts.get(&h.name).into_iter().flatten() {
                entries.push(Entry {
                    path: format!("rootfs{}", s.path),
                    mode: s.mode,
                    source: Source::Bytes(s.bytes.clone()),
                });
            }
            let host_env = format!(
                "KILN_CLUSTER={}\nKILN_HOST={}\nKILN_IP={}\nKILN_BUILD_ID={}\nKILN_GENERATION={}\nKILN_ARCH={}\nKILN_OS={}\nKILN_OS_FAMILY={}\n",
                cluster.name, h.name, h.ip, self.build_id, plan.generation, cluster.arch, h.os, h.os.family()
            );
            let host_env = match crate::secrets::host_not_after(self.pki, &h.name) {
                Some(t) => format!("{host_env}KILN_NOT_AFTER={t}\n"),
                None => host_env,
            };
            entries.push(text_entry("HOST", 0o644, host_env));
            let bundle_lines: Vec<String> = h
                .bundles
                .iter()
                .map(|id| {
                    let (rel, sha) = &written[id];
                    format!("{sha} {}", rel.trim_start_matches("bundles/"))
                })
                .collect();
            entries.push(text_entry("BUNDLES", 0o644, lines(&bundle_lines)));
            let secrets_path = hdir.join("secrets.tar.gz");
            let w = kiln_bundle::write_archive(
                &secrets_path,
                0o600,
                &BundleSpec {
                    entries,
                    mtime: sde,
                },
                true,
            )?;
            let secrets_rel = format!("hosts/{}/secrets.tar.gz", h.name);
            outputs.insert(
                secrets_rel.clone(),
                OutputInfo {
                    sha256: w.sha256.clone(),
                    size: w.size,
                },
            );

            let seed = seed::seed_for(
                project,
                host,
                self.build_id,
                &install_sha,
                &w.sha256,
                self.opts.seed_rerun,
            );
            let mut carry: Vec<(String, std::path::PathBuf)> = vec![
                ("install.sh".into(), install_path.clone()),
                ("secrets.tar.gz".into(), secrets_path.clone()),
            ];
            for f in &files {
                carry.push((
                    f.trim_start_matches("bundles/").to_string(),
                    staging.join(f),
                ));
            }
            let seed_files = seed::write_seeds(&hdir, &seed, &carry, self.opts.seeds, sde)?;
            let mut seeds = Vec::new();
            for rel in seed_files {
                let full = hdir.join(&rel);
                let (sha, size) = kiln_bundle::sha256_file(&full).map_err(io_err(&full))?;
                let rel = format!("hosts/{}/{rel}", h.name);
                outputs.insert(rel.clone(), OutputInfo { sha256: sha, size });
                seeds.push(rel);
            }
            let mac = seed::host_mac(&cluster.name, host);
            vagrant_hosts.push(serde_json::json!({
                "name": h.name, "ip": h.ip, "mac": mac, "os": h.os, "roles": h.roles,
                "seed_iso": self.opts.seeds.iso.then(|| format!("hosts/{}/cidata.iso", h.name)),
                "seed_img": self.opts.seeds.vfat.then(|| format!("hosts/{}/cidata.img", h.name)),
                "memory_mb": 1024, "cpus": 1,
            }));
            hosts.insert(
                h.name.clone(),
                HostInfo {
                    ip: h.ip.clone(),
                    mac,
                    bundles: files,
                    secrets: secrets_rel,
                    seeds,
                },
            );
        }
        let net = cluster.network.host_cidrs.first().map(|c| c.to_string());
        let vagrant = serde_json::json!({
            "cluster": cluster.name,
            "network": {"cidr": net, "gateway": cluster.network.gateway.map(|g| g.to_string())},
            "hosts": vagrant_hosts,
        });
        let vbytes = json_bytes(&vagrant);
        write_atomic(&staging.join("vagrant.json"), &vbytes)?;
        outputs.insert(
            "vagrant.json".into(),
            OutputInfo {
                sha256: sha256_hex(&vbytes),
                size: vbytes.len() as u64,
            },
        );

        let manifest = BuildManifest {
            kiln: env!("CARGO_PKG_VERSION").to_string(),
            cluster: plan.cluster.clone(),
            build_id: self.build_id.to_string(),
            generation: cluster.generation,
            source_date_epoch: sde,
            inputs: self.inputs.clone(),
            bundles,
            hosts,
            outputs,
        };
        let mbytes = json_bytes(&manifest);
        write_atomic(&staging.join("MANIFEST.json"), &mbytes)?;
        let mut sums: Vec<(String, String)> = manifest
            .outputs
            .iter()
            .map(|(p, o)| (p.clone(), o.sha256.clone()))
            .collect();
        sums.push(("MANIFEST.json".into(), sha256_hex(&mbytes)));
        kiln_bundle::write_sha256sums(staging, &sums)?;
        Ok(manifest)
    }
}

/// Replaces `dir` with `staging` (two renames; the old tree is removed afterwards).
fn swap_in(staging: &Path, dir: &Path) -> Result<(), Error> {
    let old = dir.with_file_name(format!(
        ".{}.old-{}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("out"),
        std::process::id()
    ));
    let had_old = dir.exists();
    if had_old {
        fs::rename(dir, &old).map_err(io_err(dir))?;
    }
    if let Err(e) = fs::rename(staging, dir) {
        if had_old {
            let _ = fs::rename(&old, dir);
        }
        return Err(Error::Io {
            path: dir.to_path_buf(),
            source: e,
        });
    }
    if had_old {
        fs::remove_dir_all(&old).map_err(io_err(&old))?;
    }
    Ok(())
}

/// Checks every file of an out folder against SHA256SUMS (no missing or extra file) by digest
/// only, hashing in parallel: the quick check after copying an out folder around.
pub fn verify_digests(dir: &Path) -> Result<String, Error> {
    let sums_path = dir.join(kiln_bundle::SHA256SUMS_NAME);
    let text = fs::read_to_string(&sums_path).map_err(io_err(&sums_path))?;
    let mut want: BTreeMap<String, String> = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let (h, p) = l.split_once("  ").ok_or_else(|| {
            Error::Lock(format!(
                "{}:{}: not a `<sha256>  <path>` line",
                sums_path.display(),
                i + 1
            ))
        })?;
        want.insert(p.to_string(), h.to_string());
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io_err(&d))? {
            let e = e.map_err(io_err(&d))?;
            let ft = e.file_type().map_err(io_err(e.path()))?;
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                let rel = relative(dir, &e.path());
                if rel != kiln_bundle::SHA256SUMS_NAME {
                    found.push(rel);
                }
            }
        }
    }
    found.sort();
    if let Some(extra) = found.iter().find(|f| !want.contains_key(*f)) {
        return Err(Error::Lock(format!(
            "{}: {extra} is not listed in SHA256SUMS",
            dir.display()
        )));
    }
    if let Some(missing) = want.keys().find(|w| found.binary_search(w).is_err()) {
        return Err(Error::Lock(format!(
            "{}: {missing} is listed in SHA256SUMS but missing",
            dir.display()
        )));
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
                let ok = kiln_bundle::sha256_file(&dir.join(rel))
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
        return Err(Error::Lock(format!(
            "{}: digest mismatch: {}",
            dir.display(),
            bad.join(", ")
        )));
    }
    let bytes: u64 = jobs.iter().map(|j| j.0).sum();
    Ok(format!(
        "{}: {} files, {bytes} bytes match SHA256SUMS",
        dir.display(),
        found.len()
    ))
}

/// Verifies an out folder or a single bundle; never touches the network.
pub fn verify(path: &Path) -> Result<String, Error> {
    if path.is_dir() {
        let r = kiln_bundle::verify_out_dir(path)?;
        let mtext =
            fs::read(path.join("MANIFEST.json")).map_err(io_err(path.join("MANIFEST.json")))?;
        let m: BuildManifest = serde_json::from_slice(&mtext).map_err(|e| {
            Error::Lock(format!(
                "{}: not a kiln MANIFEST.json: {e}",
                path.join("MANIFEST.json").display()
            ))
        })?;
        // SHA256SUMS was just checked against the files; MANIFEST.json must agree with it.
        let sums_path = path.join(kiln_bundle::SHA256SUMS_NAME);
        let sums_text = fs::read_to_string(&sums_path).map_err(io_err(&sums_path))?;
        let sums: BTreeMap<&str, &str> = sums_text
            .lines()
            .filter_map(|l| l.split_once("  "))
            .map(|(h, p)| (p, h))
            .collect();
        for (p, o) in &m.outputs {
            if sums.get(p.as_str()) != Some(&o.sha256.as_str()) {
                return Err(Error::Lock(format!(
                    "{p}: MANIFEST.json records sha256 {} but SHA256SUMS does not agree",
                    o.sha256
                )));
            }
        }
        if let Some(extra) = sums
            .keys()
            .find(|p| **p != "MANIFEST.json" && !m.outputs.contains_key(**p))
        {
            return Err(Error::Lock(format!(
                "{extra}: listed in SHA256SUMS but not in MANIFEST.json"
            )));
        }
        Ok(format!(
            "{}: {} files, {} bundles, {} bytes verified",
            path.display(),
            r.files,
            r.bundles.len(),
            r.bytes
        ))
    } else {
        let r = kiln_bundle::verify_bundle(path)?;
        Ok(format!(
            "{}: {} files, {} content bytes verified (sha256 {})",
            path.display(),
            r.files,
            r.content_bytes,
            r.sha256
        ))
    }
}
