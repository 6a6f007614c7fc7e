//! Image tarballs from store blobs: an OCI layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) that also carries a docker-archive `manifest.json`, as `docker save`
//! writes since Docker 25 — importable by `ctr images import`, `docker load` and
//! `podman load`. Bytes are deterministic.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use kiln_fsio::tarw::TarWriter;
use kiln_fsio::TempFile;
use kiln_store::Store;
use serde::Serialize;

use crate::error::ImageError;
use crate::manifest::OCI_INDEX;
use crate::reference::{Digest, Reference};
use crate::resolve::LockedImage;
use crate::storeio::{HashingReader, HashingWriter};

/// Annotation containerd names an imported image by.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// The OCI annotation for an image's reference name.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Mode of files in the archive.
const FILE_MODE: u32 = 0o644;

/// Mode of folders in the archive.
const DIR_MODE: u32 = 0o755;

/// An image archive written to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImageArchive {
    /// The file.
    pub path: PathBuf,
    /// sha256 of the file (hex).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'a str,
    manifests: Vec<IndexEntry<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry<'a> {
    media_type: &'a str,
    digest: &'a str,
    size: u64,
    annotations: BTreeMap<&'static str, String>,
    platform: PlatformJson<'a>,
}

#[derive(Serialize)]
struct PlatformJson<'a> {
    architecture: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// The file name for an image's tarball: the reference with `/`, `:` and `@` made `_`
/// (e.g. `registry.k8s.io_pause_3.10.1.tar`).
pub fn image_file_name(reference: &Reference) -> String {
    let base = reference.without_digest().to_string();
    let safe: String = base
        .chars()
        .map(|c| match c {
            '/' | ':' | '@' => '_',
            c => c,
        })
        .collect();
    format!("{safe}.tar")
}

/// Writes one archive holding `images` (one image, or several with shared blobs once)
/// from the store to `out`, every entry with `mtime`. Every blob is hashed while it is
/// copied; a missing or corrupt blob is an error. Returns the bytes written.
pub fn write_image_archive(
    store: &Store,
    images: &[LockedImage],
    mtime: u64,
    out: &mut dyn Write,
) -> Result<u64, ImageError> {
    let images = unique_images(images)?;
    let mut blobs: BTreeMap<Digest, (u64, String)> = BTreeMap::new();
    for image in &images {
        image.check_stored_manifest(store)?;
        // The index is left out: it names other platforms' blobs, which are not here.
        let name = image.reference.to_string();
        for (digest, size) in image.blobs() {
            blobs.entry(digest).or_insert((size, name.clone()));
        }
    }
    let index = index_json(&images);
    let docker = docker_manifest_json(&images);

    let write_err = |source| {
        ImageError::File(kiln_fsio::Error::on(
            "write",
            PathBuf::from("<image archive>"),
        )(source))
    };
    let mut tar = TarWriter::new(out, mtime);
    tar.dir("blobs", DIR_MODE).map_err(write_err)?;
    tar.dir("blobs/sha256", DIR_MODE).map_err(write_err)?;
    for (digest, (size, reference)) in &blobs {
        let path = store.blob_path(digest.hex());
        let missing = || ImageError::MissingBlob {
            reference: reference.clone(),
            digest: digest.to_string(),
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(source) => {
                return Err(ImageError::File(kiln_fsio::Error::on("read", path)(source)))
            }
        };
        let len = file
            .metadata()
            .map_err(kiln_fsio::Error::on("read", path.clone()))?
            .len();
        if len != *size {
            store.verify_blob(digest.hex())?;
            return Err(missing());
        }
        let mut reader = HashingReader::new(file);
        let entry = format!("blobs/sha256/{}", digest.hex());
        if let Err(source) = tar.stream(&entry, FILE_MODE, *size, &mut reader) {
            return Err(if reader.failed() {
                ImageError::File(kiln_fsio::Error::on("read", path)(source))
            } else {
                write_err(source)
            });
        }
        let (actual, _) = reader.finish();
        if &actual != digest {
            // The store drops the corrupt copy; the caller's temp output is discarded.
            store.verify_blob(digest.hex())?;
            return Err(ImageError::DigestMismatch {
                what: format!("blob of {reference}"),
                url: path.display().to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    tar.bytes("index.json", FILE_MODE, &index)
        .map_err(write_err)?;
    tar.bytes("manifest.json", FILE_MODE, &docker)
        .map_err(write_err)?;
    tar.bytes(
        "oci-layout",
        FILE_MODE,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .map_err(write_err)?;
    let (_, written) = tar.finish().map_err(write_err)?;
    Ok(written)
}

/// Writes [`write_image_archive`]'s bytes to `path` atomically (temp file in the same
/// folder, fsync, rename), creating the folder if needed.
pub fn write_image_archive_file(
    store: &Store,
    images: &[LockedImage],
    mtime: u64,
    path: &Path,
) -> Result<WrittenImageArchive, ImageError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(kiln_fsio::Error::on("write", dir.to_owned()))?;
    let save_err = ImageError::File;
    let temp = TempFile::beside(path, FILE_MODE).map_err(save_err)?;
    let temp_path = temp.path().to_owned();
    let werr = |source| ImageError::File(kiln_fsio::Error::on("write", temp_path.clone())(source));
    let mut hashing = HashingWriter::new(BufWriter::new(temp.file()));
    let size = match write_image_archive(store, images, mtime, &mut hashing) {
        Ok(size) => size,
        Err(ImageError::File(kiln_fsio::Error {
            op: "write",
            source,
            ..
        })) => return Err(werr(source)),
        Err(e) => return Err(e),
    };
    let (digest, _, mut inner) = hashing.into_parts();
    inner.flush().map_err(werr)?;
    drop(inner);
    temp.commit(path).map_err(save_err)?;
    Ok(WrittenImageArchive {
        path: path.to_owned(),
        sha256: digest.hex().to_owned(),
        size,
    })
}

/// Drops exact duplicates and refuses one name for two different images.
fn unique_images(images: &[LockedImage]) -> Result<Vec<&LockedImage>, ImageError> {
    if images.is_empty() {
        return Err(ImageError::NoImages);
    }
    let mut seen: BTreeMap<String, &LockedImage> = BTreeMap::new();
    let mut out = Vec::new();
    for image in images {
        let name = image.reference.to_string();
        match seen.get(&name) {
            Some(prev) if prev.manifest_digest == image.manifest_digest => continue,
            Some(_) => return Err(ImageError::DuplicateImage { reference: name }),
            None => {
                seen.insert(name, image);
                out.push(image);
            }
        }
    }
    Ok(out)
}

/// `index.json`: one entry per image, named by both annotations.
fn index_json(images: &[&LockedImage]) -> Vec<u8> {
    let manifests = images
        .iter()
        .map(|image| {
            let name = image.reference.to_string();
            IndexEntry {
                media_type: &image.media_type,
                digest: image.manifest_digest.as_str(),
                size: image.manifest_size,
                annotations: BTreeMap::from([
                    (ANNOTATION_CONTAINERD_NAME, name.clone()),
                    (ANNOTATION_REF_NAME, name),
                ]),
                platform: PlatformJson {
                    architecture: &image.platform.architecture,
                    os: &image.platform.os,
                    variant: image.platform.variant.as_deref(),
                },
            }
        })
        .collect();
    let index = Index {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests,
    };
    serde_json::to_vec(&index).expect("index.json serialises")
}

/// `manifest.json` of a docker archive, with paths into `blobs/sha256/`.
fn docker_manifest_json(images: &[&LockedImage]) -> Vec<u8> {
    let blob = |d: &Digest| format!("blobs/sha256/{}", d.hex());
    let mut tags_seen = BTreeSet::new();
    let entries: Vec<DockerEntry> = images
        .iter()
        .map(|image| {
            // docker cannot tag by digest: a digest-only reference loads untagged.
            let repo_tags = match image.reference.tag() {
                Some(_) => {
                    let tag = image.reference.without_digest().to_string();
                    tags_seen
                        .insert(tag.clone())
                        .then_some(tag)
                        .into_iter()
                        .collect()
                }
                None => Vec::new(),
            };
            DockerEntry {
                config: blob(&image.config_digest),
                repo_tags,
                layers: image.layers.iter().map(|l| blob(&l.digest)).collect(),
            }
        })
        .collect();
    serde_json::to_vec(&entries).expect("manifest.json serialises")
}
