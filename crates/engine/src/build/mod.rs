//! `kiln build`: assemble role bundles, host archives, MANIFEST.json and SHA256SUMS.
//!
//! Assembly reads only the lock, the store and the inputs; it writes into a staging folder
//! beside the final one and swaps it in when everything is complete.

mod bundles;
mod delta;
mod hosts;
mod id;
mod medium;
mod outputs;
mod pool;
mod sbom;
mod sign;
pub(crate) mod swap;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_plan::Plan;
use kiln_spec::Project;
use kiln_store::{FetchOptions, FetchReport, Progress};

use crate::fetch::{self, Blob};
use crate::seed::SeedKinds;
use crate::{lock, Error};
use id::{sha256_hex, up_to_date};
use outputs::Outputs;

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
    /// A base build (`out/<cluster>` or a `kiln pull` folder): write a delta bundle beside
    /// each role bundle that changed since it.
    pub delta_from: Option<PathBuf>,
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

pub use delta::DeltaError;
pub use id::build_id;
pub use kiln_bundle::{BuildManifest, BundleInfo, HostInfo, OutputInfo};
pub use sign::SIGNING_PUB_OUT;

/// Runs the build.
pub fn build(
    project: &Project,
    opts: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuildOutcome, Error> {
    let plan = timed("plan", || crate::images::full_plan(project))?;
    let lock_path = &project.cluster.paths.lock;
    let Some(kiln_load::LoadedLock {
        bytes: lock_bytes,
        lock,
    }) = lock::read_lock_file(lock_path)?
    else {
        return Err(Error::NoLock {
            lock: lock_path.clone(),
        });
    };
    let entries = lock::locked_entries(project, &plan, &lock)?;
    // The base is verified before anything is written (the store, the PKI, the out folder).
    let base = match &opts.delta_from {
        Some(dir) => Some(timed("delta base", || {
            delta::load_base(dir, &project.cluster.name)
        })?),
        None => None,
    };
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
    let missing = timed("store check", || fetch::missing(&store, &entries));
    let locked_images = crate::images::from_lock(&lock)?;
    let missing_images = timed("image check", || {
        crate::images::missing(project, &plan, &store, &locked_images)
    })?;
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
    let pki = timed("pki", || {
        crate::secrets::ensure_planned(&plan, &project.cluster.paths.pki, opts.rotate_ca)
    })?;
    // The signing key is PKI state too: made once, and part of the build id through the digest.
    let signer = timed("signing key", || {
        kiln_pki::ensure_signing_key(&project.cluster.paths.pki)
    })?;
    let pki_digest = timed("pki digest", || {
        crate::secrets::state_digest(&project.cluster.paths.pki)
    })?;
    let seeds = format!(
        "dir={} iso={} vfat={} rerun={}",
        opts.seeds.dir, opts.seeds.iso, opts.seeds.vfat, opts.seed_rerun
    );
    // Deltas change the outputs (and each host's BUNDLES): their base is an input.
    let delta_input = base.as_ref().map(|b| ("(delta base)", b.build_id.clone()));
    let (build_id, inputs) = timed("build id", || {
        build_id(
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
            ]
            .into_iter()
            .chain(delta_input)
            .collect::<Vec<_>>(),
        )
    })?;
    let dir = opts.out.join(&project.cluster.name);
    if !opts.force {
        if let Some(manifest) = timed("up to date", || up_to_date(&dir, &build_id)) {
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
        signer: &signer,
        opts,
        base: base.as_ref(),
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

/// Runs one build step, logging its wall time at debug level (`scripts/bench` reads these).
fn timed<T>(step: &str, f: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let out = f();
    tracing::debug!(step, ms = start.elapsed().as_secs_f64() * 1e3, "build step");
    out
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
    signer: &'a kiln_pki::BuildSigner,
    opts: &'a BuildOptions,
    /// The base build of `--delta-from`.
    base: Option<&'a delta::Base>,
}

impl Assembly<'_> {
    /// Writes the whole build into a staging folder and swaps it in; nothing is left behind
    /// on failure.
    fn assemble(&self) -> Result<BuildManifest, Error> {
        let blobs = timed("materialize", || {
            fetch::materialize(self.store, self.entries)
        })?;
        let staging = swap::staging_for(self.dir)?;
        // Nothing in the staging folder is visible before the swap: it is made durable once,
        // as a whole, rather than by an fsync per file.
        let staged = kiln_fsio::Staging::begin(&staging);
        let result = self.write_outputs(&blobs, &staging).and_then(|m| {
            timed("sync", || staged.sync()).map_err(|source| Error::Write {
                path: staging.clone(),
                source,
            })?;
            drop(staged);
            timed("swap", || swap::swap_in(&staging, self.dir))?;
            Ok(m)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    /// Every output, in order: bundles, their SBOMs, signing.pub, install.sh, hosts (secrets and
    /// seeds), vagrant.json, then MANIFEST.json, its signature and SHA256SUMS over all of them.
    fn write_outputs(
        &self,
        blobs: &BTreeMap<String, Blob>,
        staging: &Path,
    ) -> Result<BuildManifest, Error> {
        let mut outputs = Outputs::default();
        let images = timed("images", || self.images(blobs))?;
        let bundles = timed("bundles", || {
            self.write_bundles(blobs, &images, staging, &mut outputs)
        })?;
        timed("sbom", || {
            self.write_sboms(blobs, &bundles, &images, staging, &mut outputs)
        })?;
        // Before the medium: a seed without install.sh takes it from there too.
        let install_sha = outputs::write_install_sh(staging, &mut outputs)?;
        if self.project.cluster.seeds.wants_medium() {
            timed("bundle medium", || {
                medium::write_bundle_medium(staging, &bundles, self.sde, &mut outputs)
            })?;
        }
        sign::write_public_key(staging, self.signer, &mut outputs)?;
        let hosts = timed("hosts", || -> Result<_, Error> {
            let hosts = self.write_hosts(blobs, &bundles, &install_sha, staging, &mut outputs)?;
            outputs::write_vagrant(staging, &self.project.cluster, hosts.vagrant, &mut outputs)?;
            Ok(hosts.info)
        })?;
        let manifest = BuildManifest {
            kiln: env!("CARGO_PKG_VERSION").to_string(),
            cluster: self.plan.cluster.clone(),
            build_id: self.build_id.to_string(),
            generation: self.project.cluster.generation,
            health_wait_seconds: self.project.cluster.seeds.health_wait_seconds,
            source_date_epoch: self.sde,
            inputs: self.inputs.clone(),
            bundles: bundles.info,
            deltas: bundles.deltas.info,
            hosts,
            outputs: outputs.into_map(),
        };
        timed("manifest", || {
            outputs::write_manifest_and_sums(staging, &manifest, self.signer)
        })?;
        Ok(manifest)
    }

    /// Each bundle's images: registry ones from the lock, assembled ones built now; nothing a
    /// rendered file names may be left to pull on the host.
    fn images(
        &self,
        blobs: &BTreeMap<String, Blob>,
    ) -> Result<BTreeMap<String, Vec<kiln_image::LockedImage>>, Error> {
        let by_bundle = crate::images::resolve_for_build(
            self.project,
            self.plan,
            self.store,
            self.images,
            blobs,
            self.sde,
        )?;
        let missing = crate::images::check_complete(self.plan, &by_bundle);
        if !missing.is_empty() {
            return Err(Error::Incomplete { missing });
        }
        Ok(by_bundle)
    }
}
