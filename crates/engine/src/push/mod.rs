//! `kiln push` and `kiln pull`: an out folder to and from an existing OCI registry.
//!
//! What goes where, in `<registry>/<repo>`:
//! - each role bundle as an OCI artifact: an image manifest with `artifactType`
//!   [`BUNDLE_ARTIFACT`], the empty config, and one layer ([`BUNDLE_LAYER`]) that is the
//!   bundle file byte for byte, so `/v2/<repo>/blobs/sha256:<bundle sha256>` serves it;
//! - the build's top-level files (MANIFEST.json, install.sh, SHA256SUMS, vagrant.json) as one
//!   [`BUILD_ARTIFACT`], a layer ([`FILE_LAYER`]) per file;
//! - an index ([`INDEX_ARTIFACT`]) listing them, tagged `<cluster>-g<generation>-<build id:12>`
//!   and `<cluster>` (or the tag the target names);
//! - every image the bundles carry under `<repo>/<registry>/<repository>:<tag>` (see
//!   `images.rs`).
//!
//! Host secrets and seeds (`hosts/`) never leave the build machine.

mod error;
mod images;
mod pull;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_bundle::{BuildManifest, BUILD_MANIFEST_NAME, BUILD_MANIFEST_SIG_NAME, SHA256SUMS_NAME};
use kiln_image::{BlobOutcome, BlobSource, BlobToPush, Digest, PushEvents, PushTarget, Pusher};
use serde_json::{json, Value};

use error::io_err;
pub use error::PushError;
pub use pull::{pull, PullReport};

/// `artifactType` of a role bundle's manifest.
pub const BUNDLE_ARTIFACT: &str = "application/vnd.kiln.bundle.v1";
/// Media type of the bundle layer: the `.tar.gz` file itself.
pub const BUNDLE_LAYER: &str = "application/vnd.kiln.bundle.v1.tar+gzip";
/// `artifactType` of the manifest holding the build's top-level files.
pub const BUILD_ARTIFACT: &str = "application/vnd.kiln.build.v1";
/// Media type of one top-level file of the build.
pub const FILE_LAYER: &str = "application/vnd.kiln.file.v1";
/// `artifactType` of the index naming a build.
pub const INDEX_ARTIFACT: &str = "application/vnd.kiln.index.v1";

/// OCI media types used.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// Annotation keys.
pub(crate) const TITLE: &str = "org.opencontainers.image.title";
pub(crate) const A_CLUSTER: &str = "dev.kiln.cluster";
pub(crate) const A_BUILD_ID: &str = "dev.kiln.build-id";
pub(crate) const A_GENERATION: &str = "dev.kiln.generation";
const A_ROLE: &str = "dev.kiln.role";
const A_OS: &str = "dev.kiln.os";

/// The marker of a pulled folder.
pub(crate) use kiln_bundle::PULLED_NAME;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PushReport {
    /// Where it went.
    pub target: String,
    /// The index's digest.
    pub index: String,
    /// Tags set on the index.
    pub tags: Vec<String>,
    /// Bundle file → its manifest's digest.
    pub bundles: BTreeMap<String, String>,
    /// Images pushed: `<target>/<name>:<tag>` → manifest digest.
    pub images: BTreeMap<String, String>,
    /// Blobs uploaded.
    pub blobs_pushed: u64,
    /// Blobs the registry had already (skipped after `HEAD`).
    pub blobs_present: u64,
    /// Blobs mounted from another repository pushed in this run.
    pub blobs_mounted: u64,
    /// Bytes sent in blob uploads (counting resent bytes).
    pub bytes_sent: u64,
    /// Images the registry already served under their tags with their digests: their
    /// bundles' image archives were not read.
    pub images_present: u64,
}

impl PushReport {
    fn count(&mut self, outcome: &BlobOutcome) {
        match outcome {
            BlobOutcome::Present => self.blobs_present += 1,
            BlobOutcome::Mounted { .. } => self.blobs_mounted += 1,
            BlobOutcome::Uploaded { sent, .. } => {
                self.blobs_pushed += 1;
                self.bytes_sent += sent;
            }
        }
    }
}

/// A role bundle of the folder, as pushed.
struct Bundle {
    /// Path relative to the folder (`bundles/<name>.tar.gz`).
    file: String,
    role: String,
    os: String,
    digest: Digest,
    size: u64,
    /// A delta bundle (`kiln build --delta-from`): pushed like a bundle, holds no image to push.
    delta: bool,
}

/// A built out folder as read for pushing: its MANIFEST.json and the files that leave it.
struct OutFolder {
    dir: PathBuf,
    manifest: BuildManifest,
    /// Top-level files pushed as the build artifact: (name, sha256, size).
    top: Vec<(String, Digest, u64)>,
}

impl OutFolder {
    fn open(dir: &Path) -> Result<OutFolder, PushError> {
        let not_build = |reason: String| PushError::NotABuild {
            dir: dir.to_owned(),
            reason,
        };
        if !dir.is_dir() {
            return Err(not_build("no such folder".to_owned()));
        }
        let path = dir.join(BUILD_MANIFEST_NAME);
        let text = fs::read(&path)
            .map_err(|e| not_build(format!("cannot read {BUILD_MANIFEST_NAME}: {e}")))?;
        let manifest: BuildManifest = serde_json::from_slice(&text).map_err(|e| {
            not_build(format!(
                "{BUILD_MANIFEST_NAME} is not a build manifest: {e}"
            ))
        })?;
        if !dir.join(SHA256SUMS_NAME).is_file() {
            return Err(not_build(format!("no {SHA256SUMS_NAME}")));
        }
        // Top-level files only: everything host-specific lives under hosts/.
        let mut top = Vec::new();
        let mut names: Vec<&str> = manifest
            .outputs
            .keys()
            .map(String::as_str)
            .filter(|p| !p.contains('/'))
            .collect();
        names.extend([BUILD_MANIFEST_NAME, SHA256SUMS_NAME]);
        // The build's signature travels with it (a build by an older kiln has none).
        if dir.join(BUILD_MANIFEST_SIG_NAME).is_file() {
            names.push(BUILD_MANIFEST_SIG_NAME);
        }
        names.sort_unstable();
        names.dedup();
        for name in names {
            let file = dir.join(name);
            let bytes = fs::read(&file).map_err(io_err("read", &file))?;
            if let Some(o) = manifest.outputs.get(name) {
                let actual = Digest::of(&bytes);
                if actual.hex() != o.sha256 {
                    return Err(PushError::OutputMismatch {
                        file,
                        reason: format!(
                            "sha256 {} but {BUILD_MANIFEST_NAME} says {}",
                            actual.hex(),
                            o.sha256
                        ),
                    });
                }
            }
            top.push((name.to_owned(), Digest::of(&bytes), bytes.len() as u64));
        }
        Ok(OutFolder {
            dir: dir.to_owned(),
            manifest,
            top,
        })
    }

    /// Each bundle, checked to be there with its size.
    fn bundles(&self) -> Result<Vec<Bundle>, PushError> {
        let mut out = Vec::new();
        // A delta goes as its bundle's role and OS, so a host can fetch it by digest too.
        let deltas = self.manifest.deltas.iter().filter_map(|(id, d)| {
            let b = self.manifest.bundles.get(id)?;
            Some((d.file.clone(), b, true))
        });
        let full = self
            .manifest
            .bundles
            .values()
            .map(|b| (b.file.clone(), b, false));
        for (rel, b, delta) in full.chain(deltas) {
            let file = self.dir.join(&rel);
            let o = self
                .manifest
                .outputs
                .get(&rel)
                .ok_or_else(|| PushError::NotABuild {
                    dir: self.dir.clone(),
                    reason: format!(
                        "{BUILD_MANIFEST_NAME} lists bundle {} without its digest",
                        rel
                    ),
                })?;
            let meta = fs::metadata(&file).map_err(|e| PushError::OutputMismatch {
                file: file.clone(),
                reason: format!("cannot read it: {e}"),
            })?;
            if meta.len() != o.size {
                return Err(PushError::OutputMismatch {
                    file,
                    reason: format!(
                        "{} bytes but {BUILD_MANIFEST_NAME} says {}",
                        meta.len(),
                        o.size
                    ),
                });
            }
            let digest = Digest::parse(&format!("sha256:{}", o.sha256))?;
            out.push(Bundle {
                file: rel.clone(),
                role: b.role.clone(),
                os: b.os.clone(),
                digest,
                size: o.size,
                delta,
            });
        }
        Ok(out)
    }

    /// Annotations every kiln manifest of this build carries.
    fn annotations(&self) -> BTreeMap<String, String> {
        let m = &self.manifest;
        BTreeMap::from([
            (A_CLUSTER.to_owned(), m.cluster.clone()),
            (A_BUILD_ID.to_owned(), m.build_id.clone()),
            (A_GENERATION.to_owned(), m.generation.to_string()),
        ])
    }
}

/// The empty config every kiln artifact names.
fn empty_config() -> Value {
    json!({"mediaType": OCI_EMPTY, "digest": Digest::of(b"{}").to_string(), "size": 2, "data": "e30="})
}

/// Pushes the out folder `dir` to `target` (see the module documentation).
pub fn push(
    dir: &Path,
    target: &PushTarget,
    pusher: &Pusher,
    events: &dyn PushEvents,
) -> Result<PushReport, PushError> {
    let out = OutFolder::open(dir)?;
    let bundles = out.bundles()?;
    let mut report = PushReport {
        target: target.to_string(),
        ..PushReport::default()
    };
    // Every blob of the build's own artifacts first, side by side (up to the pusher's `jobs`),
    // then their manifests in a fixed order: the registry ends up the same either way.
    let mut blobs = vec![BlobToPush {
        digest: Digest::of(b"{}"),
        size: 2,
        source: BlobSource::Bytes(b"{}".to_vec()),
        label: "empty config".to_owned(),
    }];
    let file_blob = |rel: &str, digest: &Digest, size: u64| BlobToPush {
        digest: digest.clone(),
        size,
        source: BlobSource::File {
            path: dir.join(rel),
            offset: 0,
        },
        label: rel.rsplit('/').next().unwrap_or(rel).to_owned(),
    };
    blobs.extend(
        bundles
            .iter()
            .map(|b| file_blob(&b.file, &b.digest, b.size)),
    );
    blobs.extend(out.top.iter().map(|(n, d, s)| file_blob(n, d, *s)));
    for outcome in pusher.push_blobs(target, &blobs, events)? {
        report.count(&outcome);
    }

    let mut descriptors = Vec::new();
    for Bundle {
        file,
        role,
        os,
        digest,
        size,
        ..
    } in &bundles
    {
        let name = file.rsplit('/').next().unwrap_or(file).to_owned();
        let mut annotations = out.annotations();
        annotations.insert(A_ROLE.to_owned(), role.clone());
        annotations.insert(A_OS.to_owned(), os.clone());
        annotations.insert(TITLE.to_owned(), name.clone());
        let layer = json!({"mediaType": BUNDLE_LAYER, "digest": digest.to_string(), "size": size, "annotations": {TITLE: name}});
        let (d, len) = put_artifact(pusher, target, BUNDLE_ARTIFACT, vec![layer], &annotations)?;
        report.bundles.insert(file.clone(), d.to_string());
        descriptors.push(json!({"mediaType": OCI_MANIFEST, "artifactType": BUNDLE_ARTIFACT, "digest": d.to_string(), "size": len, "annotations": annotations}));
    }

    let layers = out
        .top
        .iter()
        .map(|(name, digest, size)| json!({"mediaType": FILE_LAYER, "digest": digest.to_string(), "size": size, "annotations": {TITLE: name}}))
        .collect();
    let (d, len) = put_artifact(pusher, target, BUILD_ARTIFACT, layers, &out.annotations())?;
    descriptors.push(json!({"mediaType": OCI_MANIFEST, "artifactType": BUILD_ARTIFACT, "digest": d.to_string(), "size": len, "annotations": out.annotations()}));

    for b in bundles.iter().filter(|b| !b.delta) {
        images::push_bundle_images(&dir.join(&b.file), target, pusher, events, &mut report)?;
    }

    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": INDEX_ARTIFACT,
        "manifests": descriptors,
        "annotations": out.annotations(),
    });
    let bytes = serde_json::to_vec(&index).expect("JSON values serialise");
    let m = &out.manifest;
    let id = &m.build_id[..m.build_id.len().min(12)];
    let pinned = format!("{}-g{}-{id}", m.cluster, m.generation);
    let moving = target.tag().unwrap_or(&m.cluster).to_owned();
    for tag in [&pinned, &moving] {
        let d = pusher.push_manifest(target, tag, OCI_INDEX, &bytes)?;
        report.index = d.to_string();
        if !report.tags.contains(tag) {
            report.tags.push(tag.clone());
        }
    }
    tracing::info!(target = %target, index = %report.index, "pushed");
    Ok(report)
}

/// Puts an artifact manifest (empty config, `layers`) by digest; returns its digest and size.
fn put_artifact(
    pusher: &Pusher,
    target: &PushTarget,
    artifact_type: &str,
    layers: Vec<Value>,
    annotations: &BTreeMap<String, String>,
) -> Result<(Digest, usize), PushError> {
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty_config(),
        "layers": layers,
        "annotations": annotations,
    });
    let bytes = serde_json::to_vec(&manifest).expect("JSON values serialise");
    let digest = Digest::of(&bytes);
    pusher.push_manifest(target, digest.as_str(), OCI_MANIFEST, &bytes)?;
    Ok((digest, bytes.len()))
}
