//! Image archives as bundles carry them (an OCI layout in a tar: `blobs/sha256/…`,
//! `index.json`), read in place for pushing: where each blob lies in the file, and which
//! images `index.json` names. Blobs are pushed straight from their byte range.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::archive::ANNOTATION_REF_NAME;
use crate::error::ImageError;
use crate::manifest::{self, MAX_DOCUMENT};
use crate::push::{BlobOutcome, BlobSource, BlobToPush, PushEvents, PushTarget, Pusher};
use crate::reference::{Digest, Reference};

/// An image archive file, indexed.
#[derive(Debug, Clone)]
pub struct LayoutArchive {
    path: PathBuf,
    /// Blob → (offset of its bytes in the file, size).
    blobs: BTreeMap<Digest, (u64, u64)>,
    /// The images `index.json` names.
    pub images: Vec<LayoutImage>,
}

/// One image of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutImage {
    /// Its name (`org.opencontainers.image.ref.name`).
    pub reference: Reference,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's media type.
    pub media_type: String,
}

/// What pushing one image did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// Where it went (`<repo>/<registry>/<repository>`) and the tag.
    pub target: String,
    /// Its manifest digest (the one the bundle's `IMAGE-DIGESTS` names).
    pub digest: Digest,
    /// Each blob's outcome (config and layers).
    pub blobs: Vec<(Digest, u64, BlobOutcome)>,
}

#[derive(Deserialize)]
struct IndexJson {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl LayoutArchive {
    /// Reads the tar headers of `path` (never its blobs) and its `index.json`.
    pub fn open(path: &Path) -> Result<LayoutArchive, ImageError> {
        let label = path.display().to_string();
        let bad = |reason: String| ImageError::BadManifest {
            what: label.clone(),
            kind: "image archive",
            reason,
        };
        let read_err = |source| ImageError::File(kiln_fsio::Error::on("read", path)(source));
        let file = File::open(path).map_err(read_err)?;
        let mut archive = tar::Archive::new(file);
        let mut blobs = BTreeMap::new();
        let mut index = None;
        for entry in archive.entries().map_err(read_err)? {
            let mut entry = entry.map_err(read_err)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = entry
                .path()
                .map_err(read_err)?
                .to_string_lossy()
                .into_owned();
            let name = name.trim_start_matches("./");
            if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                let digest = Digest::parse(&format!("sha256:{hex}"))
                    .map_err(|_| bad(format!("member {name} is not named by a sha256")))?;
                blobs.insert(digest, (entry.raw_file_position(), entry.size()));
            } else if name == "index.json" {
                let mut text = Vec::new();
                (&mut entry)
                    .take(MAX_DOCUMENT + 1)
                    .read_to_end(&mut text)
                    .map_err(read_err)?;
                index = Some(text);
            }
        }
        let index = index.ok_or_else(|| bad("no index.json".to_owned()))?;
        let index: IndexJson =
            serde_json::from_slice(&index).map_err(|e| bad(format!("index.json: {e}")))?;
        let mut images = Vec::new();
        for m in index.manifests {
            let name = m
                .annotations
                .get(ANNOTATION_REF_NAME)
                .ok_or_else(|| bad(format!("index.json: {} has no name", m.digest)))?;
            let digest = Digest::parse(&m.digest)?;
            if !blobs.contains_key(&digest) {
                return Err(bad(format!(
                    "index.json names {digest}, which is not in the archive"
                )));
            }
            images.push(LayoutImage {
                reference: Reference::parse(name)?,
                digest,
                media_type: m.media_type,
            });
        }
        Ok(LayoutArchive {
            path: path.to_owned(),
            blobs,
            images,
        })
    }

    /// The blob as something to push.
    fn blob(&self, digest: &Digest, label: &str) -> Result<BlobToPush, ImageError> {
        let (offset, size) = *self
            .blobs
            .get(digest)
            .ok_or_else(|| ImageError::MissingBlob {
                reference: format!("{label} in {}", self.path.display()),
                digest: digest.to_string(),
            })?;
        Ok(BlobToPush {
            digest: digest.clone(),
            size,
            source: BlobSource::File {
                path: self.path.clone(),
                offset,
            },
            label: format!("{label}@{}", &digest.hex()[..12]),
        })
    }

    /// Reads a small blob (a manifest) whole, checking its digest.
    fn read_small(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        let (offset, size) = self.blobs[digest];
        if size > MAX_DOCUMENT {
            return Err(ImageError::BadManifest {
                what: format!("{digest} in {}", self.path.display()),
                kind: "manifest",
                reason: format!("{size} bytes, more than {MAX_DOCUMENT}"),
            });
        }
        let read_err =
            |source| ImageError::File(kiln_fsio::Error::on("read", self.path.clone())(source));
        let mut file = File::open(&self.path).map_err(read_err)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(offset)).map_err(read_err)?;
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(size).read_to_end(&mut bytes).map_err(read_err)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::DigestMismatch {
                what: "manifest in an image archive".to_owned(),
                url: self.path.display().to_string(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }
}

impl Pusher {
    /// Pushes one image of `archive` to `<base>/<registry>/<repository>` under its tag
    /// (or only by digest when it has none): config and layers by digest, then its
    /// manifest byte for byte, so the digest hosts pin stays the same.
    pub fn push_layout_image(
        &self,
        base: &PushTarget,
        archive: &LayoutArchive,
        image: &LayoutImage,
        events: &dyn PushEvents,
    ) -> Result<PushedImage, ImageError> {
        let reference = &image.reference;
        let target = base.child(&format!(
            "{}/{}",
            reference.registry(),
            reference.repository()
        ))?;
        let bytes = archive.read_small(&image.digest)?;
        let what = format!("{reference} ({})", image.digest);
        if !manifest::is_manifest(&image.media_type) {
            return Err(ImageError::UnsupportedMediaType {
                reference: reference.to_string(),
                what: format!("the manifest of {what}"),
                media_type: image.media_type.clone(),
                url: None,
            });
        }
        let document = manifest::parse_manifest(&reference.to_string(), &what, &bytes)?;
        let name = reference.without_digest().to_string();
        let mut wanted = Vec::new();
        for d in std::iter::once(&document.config).chain(&document.layers) {
            wanted.push(archive.blob(&Digest::parse(&d.digest)?, &name)?);
        }
        // Config and layers go up side by side (up to `jobs`), the manifest after them all.
        let outcomes = self.push_blobs(&target, &wanted, events)?;
        let blobs = wanted
            .into_iter()
            .zip(outcomes)
            .map(|(b, o)| (b.digest, b.size, o))
            .collect();
        let tag = reference.tag().unwrap_or(image.digest.as_str());
        let pushed = self.push_manifest(&target, tag, &image.media_type, &bytes)?;
        if pushed != image.digest {
            return Err(ImageError::DigestMismatch {
                what,
                url: target.manifest_url(tag),
                expected: image.digest.to_string(),
                actual: pushed.to_string(),
            });
        }
        Ok(PushedImage {
            target: format!("{target}:{tag}"),
            digest: image.digest.clone(),
            blobs,
        })
    }
}
