//! Assembling a single-layer OCI image from local files and a small config, deterministically,
//! into the store (e.g. a pause image from Debian's `catatonit`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use flate2::write::GzEncoder;
use flate2::Compression;
use kiln_fsio::tarw::TarWriter;
use kiln_store::Store;
use serde::Serialize;

use crate::error::ImageError;
use crate::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::resolve::{LockedImage, LockedLayer};
use crate::storeio::{self, BlobWriter, HashingWriter};

/// What to assemble: files placed in one layer, a config, and the name to give the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembleSpec {
    /// The name the image is imported under (e.g. `registry.k8s.io/pause:3.10.1`).
    pub reference: Reference,
    /// The platform the files are built for.
    pub platform: Platform,
    /// The files of the layer.
    pub files: Vec<AssembleFile>,
    /// Entrypoint, user, labels and the like.
    pub config: ImageConfig,
    /// Seconds since the epoch: the image's `created` time and every entry's mtime.
    pub created: u64,
}

/// One file of an assembled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembleFile {
    /// Where it goes in the image (`/catatonit`, `usr/bin/tool`); parents are created.
    pub path: String,
    /// The local file to take the bytes from (e.g. a store blob).
    pub source: PathBuf,
    /// Its mode: 0755 if any execute bit is set, else 0644.
    pub mode: u32,
}

/// The runtime part of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `ENTRYPOINT`, e.g. `["/catatonit", "-P"]`.
    pub entrypoint: Vec<String>,
    /// `CMD`.
    pub cmd: Vec<String>,
    /// `USER`, e.g. `65535:65535`.
    pub user: Option<String>,
    /// `ENV` entries, `KEY=value`.
    pub env: Vec<String>,
    /// `WORKDIR`.
    pub working_dir: Option<String>,
    /// `LABEL`s.
    pub labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct ConfigJson<'a> {
    architecture: &'a str,
    config: RuntimeJson<'a>,
    created: &'a str,
    history: [HistoryJson<'a>; 1],
    os: &'a str,
    rootfs: RootfsJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RuntimeJson<'a> {
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    env: &'a [String],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
}

#[derive(Serialize)]
struct HistoryJson<'a> {
    created: &'a str,
    created_by: &'a str,
}

#[derive(Serialize)]
struct RootfsJson {
    diff_ids: Vec<String>,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: DescriptorJson<'a>,
    layers: [DescriptorJson<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorJson<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
}

/// What the layer holds, by path in the image.
enum Item<'a> {
    Dir,
    File(&'a AssembleFile),
}

/// Builds the image into the store (layer, config, manifest) and returns it as a
/// [`LockedImage`] without index. Same spec and file bytes, same digests.
pub fn assemble(store: &Store, spec: &AssembleSpec) -> Result<LockedImage, ImageError> {
    let items = plan_items(spec)?;

    // tar → (hash for the diff_id) → gzip → (hash, temp file in the store).
    let blob = BlobWriter::new(store)?;
    let gz = GzEncoder::new(blob, Compression::best());
    let mut tar = TarWriter::new(HashingWriter::new(gz), spec.created);
    let write_err = |source| {
        ImageError::File(kiln_fsio::Error::on("write", storeio::tmp_dir(store))(
            source,
        ))
    };
    for (path, item) in &items {
        match item {
            Item::Dir => tar.dir(path, 0o755).map_err(write_err)?,
            Item::File(f) => {
                let read_err = |source| {
                    ImageError::File(kiln_fsio::Error::on("read", f.source.clone())(source))
                };
                let file = File::open(&f.source).map_err(read_err)?;
                let size = file.metadata().map_err(read_err)?.len();
                let mode = if f.mode & 0o111 != 0 { 0o755 } else { 0o644 };
                let mut reader = storeio::HashingReader::new(BufReader::new(file));
                if let Err(e) = tar.stream(path, mode, size, &mut reader) {
                    // A short or long file (changed while read) is a read problem too.
                    let changed = matches!(
                        e.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                    );
                    return Err(if reader.failed() || changed {
                        read_err(e)
                    } else {
                        write_err(e)
                    });
                }
            }
        }
    }
    let (hashing, _) = tar.finish().map_err(write_err)?;
    let (diff_id, _, gz) = hashing.into_parts();
    let blob = gz.finish().map_err(write_err)?;
    let (layer_digest, layer_size) = blob.finish(store)?;

    let created = rfc3339(spec.created);
    let p = &spec.platform;
    let config = ConfigJson {
        architecture: &p.architecture,
        config: RuntimeJson {
            cmd: &spec.config.cmd,
            entrypoint: &spec.config.entrypoint,
            env: &spec.config.env,
            labels: &spec.config.labels,
            user: spec.config.user.as_deref(),
            working_dir: spec.config.working_dir.as_deref(),
        },
        created: &created,
        history: [HistoryJson {
            created: &created,
            created_by: "kiln assemble",
        }],
        os: &p.os,
        rootfs: RootfsJson {
            diff_ids: vec![diff_id.to_string()],
            kind: "layers",
        },
        variant: p.variant.as_deref(),
    };
    let config_bytes = serde_json::to_vec(&config).expect("config serialises");
    let config_digest = storeio::put_bytes(store, &config_bytes, None)?;
    let manifest = ManifestJson {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        config: DescriptorJson {
            media_type: OCI_CONFIG,
            digest: config_digest.as_str(),
            size: config_bytes.len() as u64,
        },
        layers: [DescriptorJson {
            media_type: OCI_LAYER_GZIP,
            digest: layer_digest.as_str(),
            size: layer_size,
        }],
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest serialises");
    let manifest_digest = storeio::put_bytes(store, &manifest_bytes, None)?;
    tracing::info!(
        reference = %spec.reference,
        manifest = %manifest_digest,
        layer = %layer_digest,
        "image assembled"
    );
    Ok(LockedImage {
        reference: spec.reference.clone(),
        index_digest: None,
        index_size: None,
        manifest_digest,
        manifest_size: manifest_bytes.len() as u64,
        media_type: OCI_MANIFEST.to_owned(),
        config_digest,
        config_size: config_bytes.len() as u64,
        layers: vec![LockedLayer {
            digest: layer_digest,
            size: layer_size,
            media_type: OCI_LAYER_GZIP.to_owned(),
        }],
        platform: spec.platform.clone(),
    })
}

/// Validates the paths and adds parent folders; sorted by path.
fn plan_items(spec: &AssembleSpec) -> Result<BTreeMap<String, Item<'_>>, ImageError> {
    let mut items: BTreeMap<String, Item<'_>> = BTreeMap::new();
    for f in &spec.files {
        let bad = |reason: &str| ImageError::InvalidImagePath {
            reference: spec.reference.to_string(),
            path: f.path.clone(),
            reason: reason.to_owned(),
        };
        let path = f.path.strip_prefix('/').unwrap_or(&f.path);
        if path.is_empty() {
            return Err(bad("empty"));
        }
        if path.contains('\\') || path.chars().any(char::is_control) {
            return Err(bad("backslashes and control characters are not allowed"));
        }
        let parts: Vec<&str> = path.split('/').collect();
        if parts
            .iter()
            .any(|c| c.is_empty() || *c == "." || *c == "..")
        {
            return Err(bad("empty, `.` and `..` components are not allowed"));
        }
        for end in 1..parts.len() {
            let dir = parts[..end].join("/");
            if let Some(Item::File(_)) = items.get(&dir) {
                return Err(bad("a parent folder is also a file"));
            }
            items.insert(dir, Item::Dir);
        }
        match items.get(path) {
            Some(Item::File(_)) => return Err(bad("given twice")),
            Some(Item::Dir) => return Err(bad("also a parent folder of another file")),
            None => {}
        }
        items.insert(path.to_owned(), Item::File(f));
    }
    Ok(items)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_825_599), "2000-02-29T11:59:59Z");
        assert_eq!(rfc3339(1_795_305_576), "2026-11-21T23:59:36Z");
    }

    #[test]
    fn hostile_paths_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let spec = |path: &str| AssembleSpec {
            reference: Reference::parse("kiln.local/x:1").unwrap(),
            platform: Platform::linux("amd64"),
            files: vec![AssembleFile {
                path: path.to_owned(),
                source: dir.path().join("nothing"),
                mode: 0o644,
            }],
            config: ImageConfig::default(),
            created: 0,
        };
        for bad in ["", "/", "../etc/passwd", "a/../../b", "a//b", "a\\b", "./a"] {
            let err = assemble(&store, &spec(bad)).unwrap_err().to_string();
            assert!(err.contains("invalid path"), "{bad}: {err}");
        }
    }
}
