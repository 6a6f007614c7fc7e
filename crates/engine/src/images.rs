//! Container images: which each bundle needs, where they come from (registry or assembled from
//! artifacts), pinning, pulling, tarballs in bundles, and proof that nothing is left to pull.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_image::{
    AssembleFile, AssembleSpec, Credentials, ImageConfig, LockedImage, Platform, Reference,
    RegistryClient, RegistryMirrors, WrittenImageArchive,
};
use kiln_plan::{ArtifactNeed, FileSource, Plan};
use kiln_spec::images::ImageSource;
use kiln_spec::{ImageSourceKind, Project};
use kiln_store::{FetchOptions, Progress, Store};

use crate::fetch::Blob;
use crate::Error;

/// One image a bundle needs, with the source chosen for it.
#[derive(Debug, Clone)]
pub struct ImageNeed {
    /// Bundle id.
    pub bundle: String,
    /// The reference as rendered in the profile.
    pub reference: Reference,
    /// Where it comes from.
    pub source: ImageSource,
}

fn img_err(e: kiln_image::ImageError) -> Error {
    Error::Image(Box::new(e))
}

/// The images of every bundle, parsed, with their sources chosen by `image-sources`.
pub fn needs(project: &Project, plan: &Plan) -> Result<Vec<ImageNeed>, Error> {
    let mut out = Vec::new();
    for b in &plan.bundles {
        for r in &b.images {
            let reference = Reference::parse(r).map_err(|e| Error::ImageReference {
                bundle: b.id.clone(),
                image: r.clone(),
                source: Box::new(e),
            })?;
            let source = project
                .images
                .choose(&reference.name(), &project.cluster.image_sources)
                .ok_or_else(|| Error::NoImageSource {
                    image: reference.to_string(),
                    bundle: b.id.clone(),
                    sources: project.cluster.image_sources.clone(),
                })?;
            out.push(ImageNeed {
                bundle: b.id.clone(),
                reference,
                source,
            });
        }
    }
    Ok(out)
}

/// Adds the artifacts that assembled images are built from to the plan's artifact list.
pub fn add_image_artifacts(project: &Project, plan: &mut Plan) -> Result<(), Error> {
    for n in needs(project, plan)? {
        for f in &n.source.files {
            let a = project.catalog.artifact.get(&f.artifact).ok_or_else(|| {
                Error::ImageArtifactUnknown {
                    image: n.reference.to_string(),
                    artifact: f.artifact.clone(),
                }
            })?;
            let version = project.cluster.versions.get(&a.version).ok_or_else(|| {
                Error::ImageArtifactVersion {
                    image: n.reference.to_string(),
                    artifact: f.artifact.clone(),
                    key: a.version.clone(),
                }
            })?;
            let need = ArtifactNeed {
                name: f.artifact.clone(),
                version: version.clone(),
                arch: project.cluster.arch.to_string(),
            };
            if !plan.artifacts.contains(&need) {
                plan.artifacts.push(need);
            }
        }
    }
    plan.artifacts.sort();
    Ok(())
}

/// A registry client from cluster.toml's mirrors and credentials.
pub fn client(project: &Project, opts: &FetchOptions) -> Result<RegistryClient, Error> {
    let mut mirrors = RegistryMirrors::new();
    for (host, urls) in &project.cluster.registry_mirrors {
        mirrors.add(host, urls).map_err(img_err)?;
    }
    let creds = match &project.cluster.registry_credentials {
        Some(p) => Credentials::load(p).map_err(img_err)?,
        None => Credentials::none(),
    };
    RegistryClient::new(mirrors, creds, opts.clone()).map_err(img_err)
}

fn platform(project: &Project) -> Platform {
    Platform::linux(project.cluster.arch.as_str())
}

/// Pins registry images: reuses `existing` entries for the same reference and platform,
/// resolves the rest unless offline. Returns the pinned entries and what could not be pinned.
pub fn lock(
    project: &Project,
    plan: &Plan,
    existing: &[LockedImage],
    offline: bool,
    opts: &FetchOptions,
) -> Result<(Vec<LockedImage>, Vec<String>), Error> {
    let plat = platform(project);
    let mut pinned: Vec<LockedImage> = Vec::new();
    let mut unpinned = Vec::new();
    let mut client_cache = None;
    for n in needs(project, plan)? {
        if n.source.kind != ImageSourceKind::Registry
            || pinned.iter().any(|p| p.reference == n.reference)
        {
            continue;
        }
        if let Some(old) = existing
            .iter()
            .find(|e| e.reference == n.reference && e.platform == plat)
        {
            pinned.push(old.clone());
            continue;
        }
        if offline {
            unpinned.push(format!(
                "image {} ({}): needs a registry look-up on a connected machine",
                n.reference, plat
            ));
            continue;
        }
        if client_cache.is_none() {
            client_cache = Some(client(project, opts)?);
        }
        match client_cache
            .as_ref()
            .expect("set")
            .resolve(&n.reference, &plat)
        {
            Ok(l) => pinned.push(l),
            Err(e) => unpinned.push(format!(
                "image {}: {}",
                n.reference,
                kiln_store::error_chain(&e)
            )),
        }
    }
    pinned.sort_by_key(|a| a.reference.to_string());
    Ok((pinned, unpinned))
}

/// The locked registry image for a need; fails closed when the lock lacks it.
fn locked<'a>(
    n: &ImageNeed,
    lock: &'a [LockedImage],
    lock_path: &Path,
) -> Result<&'a LockedImage, Error> {
    lock.iter()
        .find(|l| l.reference == n.reference)
        .ok_or_else(|| Error::ImageNotPinned {
            image: n.reference.to_string(),
            bundle: n.bundle.clone(),
            lock: lock_path.to_owned(),
        })
}

/// Registry images whose blobs are not all in the store.
pub fn missing(
    project: &Project,
    plan: &Plan,
    store: &Store,
    lock: &[LockedImage],
) -> Result<Vec<LockedImage>, Error> {
    let mut out: Vec<LockedImage> = Vec::new();
    for n in needs(project, plan)?
        .iter()
        .filter(|n| n.source.kind == ImageSourceKind::Registry)
    {
        let l = locked(n, lock, &project.cluster.paths.lock)?;
        let mut blobs = l.blobs().into_iter().map(|(d, _)| d.hex().to_string());
        if blobs.any(|h| !store.contains(&h)) && !out.iter().any(|o| o.reference == l.reference) {
            out.push(l.clone());
        }
    }
    Ok(out)
}

/// Pulls registry images into the store.
pub fn pull(
    project: &Project,
    store: &Store,
    images: &[LockedImage],
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<(), Error> {
    if images.is_empty() {
        return Ok(());
    }
    client(project, opts)?
        .pull(store, images, progress)
        .map_err(img_err)?;
    Ok(())
}

/// The images of every bundle, ready to write: registry ones from the lock, assembled ones built
/// now (deterministically) from their artifacts' blobs.
pub fn resolve_for_build(
    project: &Project,
    plan: &Plan,
    store: &Store,
    lock: &[LockedImage],
    blobs: &BTreeMap<String, Blob>,
    mtime: u64,
) -> Result<BTreeMap<String, Vec<LockedImage>>, Error> {
    let mut out: BTreeMap<String, Vec<LockedImage>> = BTreeMap::new();
    let mut assembled: BTreeMap<String, LockedImage> = BTreeMap::new();
    for n in needs(project, plan)? {
        let img = match n.source.kind {
            ImageSourceKind::Registry => locked(&n, lock, &project.cluster.paths.lock)?.clone(),
            ImageSourceKind::Assemble => {
                let key = n.reference.to_string();
                if let Some(a) = assembled.get(&key) {
                    a.clone()
                } else {
                    let files = n
                        .source
                        .files
                        .iter()
                        .map(|f| {
                            let b = blobs.get(&f.artifact).ok_or_else(|| {
                                Error::ImageArtifactNoBlob {
                                    image: n.reference.to_string(),
                                    artifact: f.artifact.clone(),
                                }
                            })?;
                            Ok(AssembleFile {
                                path: f.path.clone(),
                                source: b.path.clone(),
                                mode: f.mode(),
                            })
                        })
                        .collect::<Result<Vec<_>, Error>>()?;
                    let config = ImageConfig {
                        entrypoint: n.source.entrypoint.clone(),
                        user: n.source.user.clone(),
                        labels: n.source.labels.clone(),
                        ..ImageConfig::default()
                    };
                    let spec = AssembleSpec {
                        reference: n.reference.clone(),
                        platform: platform(project),
                        files,
                        config,
                        created: mtime,
                    };
                    let a = kiln_image::assemble(store, &spec).map_err(img_err)?;
                    assembled.insert(key, a.clone());
                    a
                }
            }
        };
        out.entry(n.bundle.clone()).or_default().push(img);
    }
    Ok(out)
}

/// How a role bundle carries its images (`kiln build --images`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ImageArchives {
    /// `images/<name>.tar` per image, named by its reference.
    #[default]
    PerImage,
    /// One `images/<role>.tar` holding all the bundle's images, each shared blob once.
    Combined,
}

impl ImageArchives {
    /// The option's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageArchives::PerImage => "per-image",
            ImageArchives::Combined => "combined",
        }
    }
}

/// An image archive written for a bundle.
#[derive(Debug, Clone)]
pub struct Tarball {
    /// Its path in the bundle (`images/….tar`).
    pub path: String,
    /// The file written, its sha256 and size.
    pub written: WrittenImageArchive,
    /// The images it holds, in the bundle's order.
    pub images: Vec<LockedImage>,
}

impl Tarball {
    /// Its `IMAGE-DIGESTS` lines: `<path> <reference> <manifest digest>` per image.
    pub fn digest_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.images.iter().map(|i| {
            format!(
                "{} {} {}",
                self.path,
                i.reference,
                i.manifest_digest.as_str()
            )
        })
    }
}

/// Writes a bundle's image archives into `dir` in the form asked for: one per image
/// (`images/<name>.tar`), or one for all of them (`images/<role>.tar`; role names have no
/// `_`, image file names always do, so the two never collide). No images, no archive.
pub fn write_tarballs(
    store: &Store,
    images: &[LockedImage],
    form: ImageArchives,
    role: &str,
    mtime: u64,
    dir: &Path,
) -> Result<Vec<Tarball>, Error> {
    let mut unique: Vec<LockedImage> = Vec::new();
    for i in images {
        if !unique.iter().any(|u| u.reference == i.reference) {
            unique.push(i.clone());
        }
    }
    let groups: Vec<(String, Vec<LockedImage>)> = match form {
        ImageArchives::PerImage => unique
            .into_iter()
            .map(|i| (kiln_image::image_file_name(&i.reference), vec![i]))
            .collect(),
        ImageArchives::Combined if unique.is_empty() => Vec::new(),
        ImageArchives::Combined => vec![(format!("{role}.tar"), unique)],
    };
    std::fs::create_dir_all(dir).map_err(crate::io_err(dir))?;
    groups
        .into_iter()
        .map(|(name, images)| {
            let written =
                kiln_image::write_image_archive_file(store, &images, mtime, &dir.join(&name))
                    .map_err(img_err)?;
            Ok(Tarball {
                path: format!("images/{name}"),
                written,
                images,
            })
        })
        .collect()
}

/// Every image a rendered file of a host's bundles names must be in those bundles; an add-on
/// manifest (`/etc/kubernetes/addons/`, applied to the cluster from the masters) names images
/// whose pods run on every host with a container runtime, so it must be in each of theirs.
/// At build time, against the images resolved for each bundle (by name and tag or digest).
pub fn check_complete(plan: &Plan, by_bundle: &BTreeMap<String, Vec<LockedImage>>) -> Vec<String> {
    check_with(plan, |h, r| {
        h.bundles
            .iter()
            .flat_map(|id| by_bundle.get(id).into_iter().flatten())
            .any(|img| img.pinned().matches(r))
    })
}

/// [`check_complete`] before anything is locked or fetched (`kiln plan`, `lock`, `build`),
/// against the references the plan gives each bundle. A mention by digest alone is left to the
/// build-time check, which knows the locked digests.
pub fn check_planned(plan: &Plan) -> Vec<String> {
    check_with(plan, |h, r| {
        r.tag().is_none()
            || h.bundles
                .iter()
                .filter_map(|id| plan.bundles.iter().find(|b| &b.id == id))
                .flat_map(|b| &b.images)
                .filter_map(|i| kiln_image::Reference::parse(i).ok())
                .any(|i| i.matches(r))
    })
}

/// The completeness check, with `has(host, image)` telling whether a host's bundles carry one.
fn check_with(
    plan: &Plan,
    has: impl Fn(&kiln_plan::HostPlan, &kiln_image::Reference) -> bool,
) -> Vec<String> {
    // The hosts with a container runtime.
    let runtimes: Vec<&kiln_plan::HostPlan> = plan
        .hosts
        .iter()
        .filter(|h| {
            h.bundles.iter().any(|id| {
                plan.bundles
                    .iter()
                    .any(|b| &b.id == id && b.role == "runtime")
            })
        })
        .collect();
    let mut misses = Vec::new();
    let mut miss = |line: String| {
        if !misses.contains(&line) {
            misses.push(line);
        }
    };
    for h in &plan.hosts {
        for id in &h.bundles {
            let Some(b) = plan.bundles.iter().find(|b| &b.id == id) else {
                continue;
            };
            for f in &b.files {
                let FileSource::Content { bytes, .. } = &f.source else {
                    continue;
                };
                let Ok(text) = std::str::from_utf8(bytes) else {
                    continue;
                };
                let mentions = kiln_image::scan_text(text);
                if mentions.is_empty() {
                    continue;
                }
                if f.path.starts_with(ADDONS_DIR) {
                    if runtimes.is_empty() {
                        for m in &mentions {
                            miss(format!(
                                "image {} named at {}:{} (in {id}, an add-on applied to the cluster) has no host to run on: no host has a container runtime",
                                m.text, f.path, m.line
                            ));
                        }
                    }
                    for r in &runtimes {
                        for m in kiln_image::missing_by(&mentions, |i| has(r, i)) {
                            miss(format!(
                                "{}: image {} named at {}:{} (in {id}, an add-on applied to the cluster) is in none of the host's bundles",
                                r.name, m.text, f.path, m.line
                            ));
                        }
                    }
                    continue;
                }
                for m in kiln_image::missing_by(&mentions, |i| has(h, i)) {
                    miss(format!(
                        "{}: image {} named at {}:{} (in {id}) is in none of the host's bundles",
                        h.name, m.text, f.path, m.line
                    ));
                }
            }
        }
    }
    misses
}

/// Where the master profile's add-on manifests live: their pods run on the runtime hosts.
const ADDONS_DIR: &str = "/etc/kubernetes/addons/";

/// The registry images recorded in kiln.lock.
pub fn from_lock(lock: &kiln_spec::Lock) -> Result<Vec<LockedImage>, Error> {
    lock.images
        .iter()
        .enumerate()
        .map(|(i, t)| {
            toml::Value::Table(t.clone())
                .try_into()
                .map_err(|e: toml::de::Error| Error::LockedImage {
                    index: i,
                    reason: e.message().to_string(),
                })
        })
        .collect()
}

/// Registry images as kiln.lock tables.
pub fn to_lock(images: &[LockedImage]) -> Result<Vec<toml::Table>, Error> {
    images
        .iter()
        .map(|i| match toml::Value::try_from(i) {
            Ok(toml::Value::Table(t)) => Ok(t),
            Ok(_) => Err(Error::ImageToLock {
                image: i.reference.to_string(),
                source: None,
            }),
            Err(e) => Err(Error::ImageToLock {
                image: i.reference.to_string(),
                source: Some(e),
            }),
        })
        .collect()
}

/// The plan with the artifacts of assembled images added: what lock, fetch and build work from.
pub fn full_plan(project: &Project) -> Result<Plan, Error> {
    let mut plan = kiln_plan::plan(project)?;
    let missing = check_planned(&plan);
    if !missing.is_empty() {
        return Err(Error::Incomplete { missing });
    }
    add_image_artifacts(project, &mut plan)?;
    Ok(plan)
}
