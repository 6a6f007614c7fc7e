//! `kiln pull`: a build pushed by `kiln push` back into `<out>/<cluster>/`: its bundles
//! (each verified by digest while it downloads) and top-level files, `PULLED.json` naming
//! where it came from and which host files are absent, and a new SHA256SUMS over it all.
//! Assembled beside the destination and swapped in only when complete.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_bundle::{BuildManifest, PulledMarker, BUILD_MANIFEST_NAME, SHA256SUMS_NAME};
use kiln_image::{Digest, PushTarget, Pusher};
use kiln_store::{Meter, Progress};
use serde_json::Value;

use super::error::io_err;
use super::{
    PushError, A_BUILD_ID, A_CLUSTER, BUILD_ARTIFACT, BUNDLE_ARTIFACT, INDEX_ARTIFACT, OCI_INDEX,
    OCI_MANIFEST, PULLED_NAME, TITLE,
};

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PullReport {
    /// The folder written (`<out>/<cluster>`).
    pub dir: PathBuf,
    /// The reference pulled.
    pub source: String,
    /// The index's digest.
    pub index: String,
    /// Files written (bundles and top-level files, without SHA256SUMS and the marker).
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Outputs of the build left behind on the build machine (under `hosts/`).
    pub absent: u64,
}

/// One file to fetch: its name in the folder, digest and size.
struct Wanted {
    path: String,
    digest: Digest,
    size: u64,
}

/// Pulls the build `target` names (its tag; without one, the tag named like the
/// repository's last component, which `kiln push` sets to the cluster name) into
/// `<out>/<cluster>/`.
pub fn pull(
    target: &PushTarget,
    out: &Path,
    pusher: &Pusher,
    progress: &dyn Progress,
) -> Result<PullReport, PushError> {
    let last = target.repository().rsplit('/').next().unwrap_or_default();
    let tag = target.tag().unwrap_or(last);
    let source = match target.tag() {
        Some(_) => target.to_string(),
        None => format!("{target}:{tag}"),
    };
    let not_kiln = |reason: String| PushError::NotPushedByKiln {
        reference: source.clone(),
        reason,
    };
    let index = pusher.get_manifest(target, tag, OCI_INDEX)?;
    let doc: Value =
        serde_json::from_slice(&index.bytes).map_err(|e| not_kiln(format!("not JSON: {e}")))?;
    if doc["artifactType"] != INDEX_ARTIFACT {
        return Err(not_kiln(format!(
            "artifactType {}, expected {INDEX_ARTIFACT}",
            doc["artifactType"]
        )));
    }
    let cluster = doc["annotations"][A_CLUSTER].as_str().unwrap_or_default();
    if cluster.is_empty()
        || !cluster
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(not_kiln(format!(
            "its {A_CLUSTER} annotation {cluster:?} is not a cluster name"
        )));
    }
    let mut wanted = Vec::new();
    for d in doc["manifests"].as_array().into_iter().flatten() {
        let digest = d["digest"].as_str().unwrap_or_default();
        let m = pusher.get_manifest(target, digest, OCI_MANIFEST)?;
        let m: Value = serde_json::from_slice(&m.bytes)
            .map_err(|e| not_kiln(format!("manifest {digest}: {e}")))?;
        let folder = match m["artifactType"].as_str() {
            Some(BUNDLE_ARTIFACT) => "bundles/",
            Some(BUILD_ARTIFACT) => "",
            other => {
                return Err(not_kiln(format!(
                    "manifest {digest} has artifactType {other:?}"
                )))
            }
        };
        for layer in m["layers"].as_array().into_iter().flatten() {
            let title = layer["annotations"][TITLE].as_str().unwrap_or_default();
            let safe = !title.is_empty()
                && !title.starts_with('.')
                && title
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !safe || title == PULLED_NAME {
                return Err(not_kiln(format!(
                    "manifest {digest} names a file {title:?}"
                )));
            }
            // The folder's own SHA256SUMS covers what is pulled; the build's is not restored.
            if title == SHA256SUMS_NAME {
                continue;
            }
            let layer_digest = layer["digest"].as_str().unwrap_or_default();
            wanted.push(Wanted {
                path: format!("{folder}{title}"),
                digest: Digest::parse(layer_digest)?,
                size: layer["size"].as_u64().unwrap_or_default(),
            });
        }
    }
    if !wanted.iter().any(|w| w.path == BUILD_MANIFEST_NAME) {
        return Err(not_kiln(format!("no {BUILD_MANIFEST_NAME}")));
    }

    let dest = out.join(cluster);
    if dest.exists() && !kiln_bundle::is_pulled(&dest) {
        return Err(PushError::WouldReplaceBuild { dir: dest });
    }
    // Downloads resume from `.kiln-pull-<cluster>/blobs` on a later run.
    let work = out.join(format!(".kiln-pull-{cluster}"));
    let blobs = work.join("blobs");
    let tree = work.join("tree");
    if tree.exists() {
        fs::remove_dir_all(&tree).map_err(io_err("remove", &tree))?;
    }
    fs::create_dir_all(tree.join("bundles")).map_err(io_err("create", tree.join("bundles")))?;
    fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
    let mut sums = Vec::new();
    let mut bytes = 0;
    for w in &wanted {
        let mut meter = Meter::new(progress, &w.path);
        progress.start(&w.path, Some(w.size));
        let blob = pusher.download_blob(target, &w.digest, w.size, &blobs, &mut meter)?;
        progress.finish(
            &w.path,
            &kiln_store::Outcome::Downloaded {
                url: target.blob_url(&w.digest),
                bytes: w.size,
                resumed_from: 0,
            },
        );
        let at = tree.join(&w.path);
        fs::rename(&blob, &at).map_err(io_err("move into place", &at))?;
        sums.push((w.path.clone(), w.digest.hex().to_owned()));
        bytes += w.size;
    }

    let manifest_path = tree.join(BUILD_MANIFEST_NAME);
    let text = fs::read(&manifest_path).map_err(io_err("read", &manifest_path))?;
    let m: BuildManifest = serde_json::from_slice(&text)
        .map_err(|e| not_kiln(format!("its {BUILD_MANIFEST_NAME}: {e}")))?;
    let index_id = doc["annotations"][A_BUILD_ID].as_str().unwrap_or_default();
    if m.cluster != cluster || m.build_id != index_id {
        return Err(not_kiln(format!(
            "the index names cluster {cluster} build {index_id}, its {BUILD_MANIFEST_NAME} cluster {} build {}",
            m.cluster, m.build_id
        )));
    }
    let pulled: BTreeMap<&str, &str> = sums.iter().map(|(p, d)| (p.as_str(), d.as_str())).collect();
    let mut absent = Vec::new();
    for (path, o) in &m.outputs {
        match pulled.get(path.as_str()) {
            Some(d) if *d == o.sha256 => {}
            Some(d) => {
                return Err(not_kiln(format!(
                    "{path} has sha256 {d}, its {BUILD_MANIFEST_NAME} says {}",
                    o.sha256
                )))
            }
            None if path.starts_with("hosts/") => absent.push(path.clone()),
            None => {
                return Err(not_kiln(format!(
                    "{path} of its {BUILD_MANIFEST_NAME} was not pushed"
                )))
            }
        }
    }
    let marker = PulledMarker {
        source: source.clone(),
        index: index.digest.to_string(),
        cluster: m.cluster.clone(),
        build_id: m.build_id.clone(),
        generation: m.generation,
        absent,
    };
    let marker_bytes = kiln_bundle::json_bytes(&marker);
    kiln_fsio::write_atomic(&tree.join(PULLED_NAME), &marker_bytes, 0o644)?;
    sums.push((
        PULLED_NAME.to_owned(),
        Digest::of(&marker_bytes).hex().to_owned(),
    ));
    kiln_bundle::write_sha256sums(&tree, &sums)?;
    kiln_bundle::verify_pulled(&tree)?;

    // Swap in: the old pulled folder (if any) goes only once the new one is complete.
    let old = work.join("old");
    if dest.exists() {
        fs::rename(&dest, &old).map_err(io_err("move aside", &dest))?;
    }
    fs::rename(&tree, &dest).map_err(io_err("move into place", &dest))?;
    fs::remove_dir_all(&work).map_err(io_err("remove", &work))?;
    Ok(PullReport {
        dir: dest,
        source,
        index: index.digest.to_string(),
        files: wanted.len() as u64,
        bytes,
        absent: marker.absent.len() as u64,
    })
}
