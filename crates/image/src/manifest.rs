//! Manifest, index and config documents (OCI and Docker v2 schema 2) and their media types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::platform::Platform;
use crate::reference::Digest;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Docker manifest list (v2 schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (v2 schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The `Accept` header for manifest requests: every kind kiln can use.
pub(crate) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest, index or config accepted (registries cap manifests at 4 MiB too).
pub(crate) const MAX_DOCUMENT: u64 = 4 * 1024 * 1024;

/// Whether a media type is a single-image manifest kiln handles.
pub(crate) fn is_manifest(media_type: &str) -> bool {
    matches!(media_type, OCI_MANIFEST | DOCKER_MANIFEST)
}

/// Whether a media type is an index / manifest list kiln handles.
pub(crate) fn is_index(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_LIST)
}

/// Whether a media type is an image config kiln handles.
pub(crate) fn is_config(media_type: &str) -> bool {
    matches!(media_type, OCI_CONFIG | DOCKER_CONFIG)
}

/// Whether a media type is a layer every supported runtime can import.
pub(crate) fn is_layer(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER_TAR | OCI_LAYER_GZIP | OCI_LAYER_ZSTD | DOCKER_LAYER_GZIP | DOCKER_LAYER_TAR
    )
}

/// A content descriptor as manifests and indexes carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) platform: Option<RawPlatform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) annotations: BTreeMap<String, String>,
}

/// A platform as written in index entries and configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RawPlatform {
    #[serde(default)]
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) variant: Option<String>,
}

impl RawPlatform {
    pub(crate) fn to_platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

/// An image manifest (OCI or Docker v2 schema 2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageManifest {
    pub(crate) schema_version: u32,
    pub(crate) config: Descriptor,
    pub(crate) layers: Vec<Descriptor>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageIndex {
    pub(crate) schema_version: u32,
    pub(crate) manifests: Vec<Descriptor>,
}

/// What a fetched manifest document turned out to be.
#[derive(Debug, Clone)]
pub(crate) enum Document {
    /// A multi-platform index.
    Index(ImageIndex),
    /// A single-image manifest.
    Manifest(ImageManifest),
}

/// The media type of a manifest document: its own `mediaType` field, else the
/// `Content-Type` the registry sent (without parameters).
pub(crate) fn media_type_of(bytes: &[u8], content_type: Option<&str>) -> String {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
    }
    let own = serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.media_type);
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or(c).trim().to_owned())
        .filter(|c| !c.is_empty());
    own.or(header).unwrap_or_default()
}

/// Parses a manifest document of `media_type`, rejecting kinds kiln does not handle.
pub(crate) fn parse_document(
    reference: &str,
    what: &str,
    media_type: &str,
    bytes: &[u8],
    url: Option<&str>,
) -> Result<Document, ImageError> {
    let bad = |kind, e: serde_json::Error| ImageError::BadManifest {
        what: what.to_owned(),
        kind,
        reason: e.to_string(),
    };
    if is_index(media_type) {
        let index: ImageIndex = serde_json::from_slice(bytes).map_err(|e| bad("index", e))?;
        check_schema(what, "index", index.schema_version)?;
        Ok(Document::Index(index))
    } else if is_manifest(media_type) {
        let manifest = parse_manifest(reference, what, bytes)?;
        Ok(Document::Manifest(manifest))
    } else {
        Err(ImageError::UnsupportedMediaType {
            reference: reference.to_owned(),
            what: what.to_owned(),
            media_type: media_type.to_owned(),
            url: url.map(str::to_owned),
        })
    }
}

/// Parses an image manifest and checks its config and layer media types.
pub(crate) fn parse_manifest(
    reference: &str,
    what: &str,
    bytes: &[u8],
) -> Result<ImageManifest, ImageError> {
    let manifest: ImageManifest =
        serde_json::from_slice(bytes).map_err(|e| ImageError::BadManifest {
            what: what.to_owned(),
            kind: "manifest",
            reason: e.to_string(),
        })?;
    check_schema(what, "manifest", manifest.schema_version)?;
    let unsupported = |what: String, media_type: &str| ImageError::UnsupportedMediaType {
        reference: reference.to_owned(),
        what,
        media_type: media_type.to_owned(),
        url: None,
    };
    if !is_config(&manifest.config.media_type) {
        return Err(unsupported(
            format!("the config of {what} (not a container image)"),
            &manifest.config.media_type,
        ));
    }
    for layer in &manifest.layers {
        if !is_layer(&layer.media_type) {
            return Err(unsupported(
                format!("layer {} of {what}", layer.digest),
                &layer.media_type,
            ));
        }
    }
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        Digest::parse(&d.digest)?;
    }
    Ok(manifest)
}

fn check_schema(what: &str, kind: &'static str, version: u32) -> Result<(), ImageError> {
    if version == 2 {
        Ok(())
    } else {
        Err(ImageError::BadManifest {
            what: what.to_owned(),
            kind,
            reason: format!("schemaVersion {version}, expected 2"),
        })
    }
}

/// The platform fields of an image config.
pub(crate) fn config_platform(what: &str, bytes: &[u8]) -> Result<Platform, ImageError> {
    let raw: RawPlatform = serde_json::from_slice(bytes).map_err(|e| ImageError::BadManifest {
        what: what.to_owned(),
        kind: "config",
        reason: e.to_string(),
    })?;
    Ok(raw.to_platform())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_comes_from_the_document_then_the_header() {
        let doc = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert_eq!(media_type_of(doc, Some("application/json")), OCI_INDEX);
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            media_type_of(
                bare,
                Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8")
            ),
            DOCKER_LIST
        );
        assert_eq!(media_type_of(b"not json", None), "");
    }

    #[test]
    fn schema1_and_artifacts_are_refused_by_name() {
        let err = parse_document(
            "docker.io/library/old:1",
            "manifest of docker.io/library/old:1",
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            b"{}",
            Some("https://r.example/v2/library/old/manifests/1"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("v1+prettyjws"), "{err}");
        assert!(
            err.contains("https://r.example/v2/library/old/manifests/1"),
            "{err}"
        );

        let helm = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:{0}","size":1}},"layers":[]}}"#,
            "0".repeat(64)
        );
        let err = parse_manifest("r.example/chart:1", "manifest", helm.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("helm.config") && err.contains("not a container image"),
            "{err}"
        );
    }
}
