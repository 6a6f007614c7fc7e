//! Resolving a tag to pinned digests for `kiln lock`: [`LockedImage`].

use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use kiln_store::Store;

use crate::manifest::{self, Document, ImageManifest};
use crate::platform::Platform;
use crate::reference::{Digest, Reference};
use crate::registry::RegistryClient;
use crate::storeio;

/// One image pinned for one platform, as `kiln.lock` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LockedImage {
    /// The reference as the catalog names it (normalised, tag kept; the name it is imported under).
    pub reference: Reference,
    /// The multi-platform index (manifest list) the tag pointed to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    /// Size of the index in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_size: Option<u64>,
    /// The platform's image manifest: the digest the image is imported and verified by.
    pub manifest_digest: Digest,
    /// Size of the manifest in bytes.
    pub manifest_size: u64,
    /// Media type of the manifest (OCI or Docker v2 schema 2).
    pub media_type: String,
    /// The image config blob.
    pub config_digest: Digest,
    /// Size of the config in bytes.
    pub config_size: u64,
    /// The layers, in order.
    pub layers: Vec<LockedLayer>,
    /// The platform the manifest is for.
    pub platform: Platform,
}

/// One layer of a [`LockedImage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LockedLayer {
    /// The layer blob (compressed as stored in the registry).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

impl LockedImage {
    /// The reference pinned to the manifest digest (`name:tag@sha256:…`).
    pub fn pinned(&self) -> Reference {
        self.reference.with_digest(self.manifest_digest.clone())
    }

    /// Every blob of the image: manifest, config, layers (the index is not included).
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        let mut out = vec![
            (self.manifest_digest.clone(), self.manifest_size),
            (self.config_digest.clone(), self.config_size),
        ];
        out.extend(self.layers.iter().map(|l| (l.digest.clone(), l.size)));
        out
    }

    /// Total bytes of manifest, config and layers.
    pub fn total_size(&self) -> u64 {
        self.blobs().iter().map(|(_, s)| s).sum()
    }

    /// Reads the manifest from the store (verified against its digest) and checks that
    /// it has the lock's media type and lists exactly the lock's config and layers.
    pub(crate) fn check_stored_manifest(&self, store: &Store) -> Result<(), ImageError> {
        let name = self.reference.to_string();
        let bytes = storeio::read_blob(store, &name, &self.manifest_digest)?;
        let what = format!("manifest {} of {name}", self.manifest_digest);
        let m = manifest::parse_manifest(&name, &what, &bytes)?;
        let mismatch = |reason: String| ImageError::LockMismatch {
            reference: name.clone(),
            digest: self.manifest_digest.to_string(),
            reason,
        };
        let own_type = manifest::media_type_of(&bytes, None);
        if !own_type.is_empty() && own_type != self.media_type {
            return Err(mismatch(format!(
                "its media type is {own_type}, the lock says {}",
                self.media_type
            )));
        }
        if m.config.digest != self.config_digest.as_str() || m.config.size != self.config_size {
            return Err(mismatch(format!(
                "config is {} ({} bytes), the lock says {} ({} bytes)",
                m.config.digest, m.config.size, self.config_digest, self.config_size
            )));
        }
        let got: Vec<(&str, u64, &str)> = m
            .layers
            .iter()
            .map(|l| (l.digest.as_str(), l.size, l.media_type.as_str()))
            .collect();
        let want: Vec<(&str, u64, &str)> = self
            .layers
            .iter()
            .map(|l| (l.digest.as_str(), l.size, l.media_type.as_str()))
            .collect();
        if got != want {
            return Err(mismatch(format!(
                "{} layers listed, the lock has {} (or they differ in digest, size or media type)",
                got.len(),
                want.len()
            )));
        }
        Ok(())
    }
}

impl RegistryClient {
    /// Resolves `reference` (tag or digest) for `platform`: the index digest when the
    /// reference points to a multi-platform index, the platform's manifest, its config
    /// and layers. A single-platform image must be for `platform` (its config says).
    pub fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<LockedImage, ImageError> {
        let mut all = self.resolve_all(reference, std::slice::from_ref(platform))?;
        Ok(all.remove(0))
    }

    /// Like [`resolve`](Self::resolve) for several platforms, fetching the index once.
    /// Results are in the order of `platforms`.
    pub fn resolve_all(
        &self,
        reference: &Reference,
        platforms: &[Platform],
    ) -> Result<Vec<LockedImage>, ImageError> {
        let top = self.fetch_manifest(reference, None)?;
        let what = format!("{} of {reference}", top.digest);
        let doc = manifest::parse_document(
            &reference.to_string(),
            &what,
            &top.media_type,
            &top.bytes,
            Some(&top.url),
        )?;
        let name = reference.without_digest();
        let mut out = Vec::with_capacity(platforms.len());
        match doc {
            Document::Manifest(m) => {
                let config_what = format!("config {} of {reference}", m.config.digest);
                let config_digest = Digest::parse(&m.config.digest)?;
                let config =
                    self.fetch_small_blob(reference, &config_digest, m.config.size, &config_what)?;
                let actual = manifest::config_platform(&config_what, &config)?;
                for platform in platforms {
                    if !platform.accepts(&actual) {
                        return Err(ImageError::NoPlatform {
                            reference: reference.to_string(),
                            platform: platform.to_string(),
                            available: vec![actual.to_string()],
                        });
                    }
                    let size = top.bytes.len() as u64;
                    out.push(locked(
                        &name,
                        None,
                        &top.digest,
                        size,
                        &top.media_type,
                        &m,
                        actual.clone(),
                    )?);
                }
            }
            Document::Index(index) => {
                let candidates: Vec<_> = index
                    .manifests
                    .iter()
                    .filter(|d| manifest::is_manifest(&d.media_type))
                    .filter_map(|d| d.platform.as_ref().map(|p| (d, p.to_platform())))
                    .filter(|(_, p)| p.os != "unknown")
                    .collect();
                for platform in platforms {
                    let Some((entry, actual)) =
                        candidates.iter().find(|(_, p)| platform.accepts(p))
                    else {
                        return Err(ImageError::NoPlatform {
                            reference: reference.to_string(),
                            platform: platform.to_string(),
                            available: candidates.iter().map(|(_, p)| p.to_string()).collect(),
                        });
                    };
                    let digest = Digest::parse(&entry.digest)?;
                    let fetched = self.fetch_manifest(reference, Some((&digest, entry.size)))?;
                    if !manifest::is_manifest(&fetched.media_type) {
                        return Err(ImageError::UnsupportedMediaType {
                            reference: reference.to_string(),
                            what: format!("manifest {digest} for {platform}"),
                            media_type: fetched.media_type,
                            url: Some(fetched.url),
                        });
                    }
                    let what = format!("manifest {digest} of {reference}");
                    let m =
                        manifest::parse_manifest(&reference.to_string(), &what, &fetched.bytes)?;
                    let image = locked(
                        &name,
                        Some((&top.digest, top.bytes.len() as u64)),
                        &digest,
                        entry.size,
                        &fetched.media_type,
                        &m,
                        actual.clone(),
                    )?;
                    out.push(image);
                }
            }
        }
        for image in &out {
            tracing::info!(
                reference = %image.reference,
                platform = %image.platform,
                manifest = %image.manifest_digest,
                index = ?image.index_digest.as_ref().map(Digest::as_str),
                "resolved"
            );
        }
        Ok(out)
    }
}

fn locked(
    reference: &Reference,
    index: Option<(&Digest, u64)>,
    manifest_digest: &Digest,
    manifest_size: u64,
    media_type: &str,
    m: &ImageManifest,
    platform: Platform,
) -> Result<LockedImage, ImageError> {
    Ok(LockedImage {
        reference: reference.clone(),
        index_digest: index.map(|(d, _)| d.clone()),
        index_size: index.map(|(_, s)| s),
        manifest_digest: manifest_digest.clone(),
        manifest_size,
        media_type: media_type.to_owned(),
        config_digest: Digest::parse(&m.config.digest)?,
        config_size: m.config.size,
        layers: m
            .layers
            .iter()
            .map(|l| {
                Ok(LockedLayer {
                    digest: Digest::parse(&l.digest)?,
                    size: l.size,
                    media_type: l.media_type.clone(),
                })
            })
            .collect::<Result<_, ImageError>>()?,
        platform,
    })
}
