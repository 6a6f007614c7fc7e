//! kiln-image: container images for offline bundles.
//!
//! Parses and normalises image references ([`Reference`]), resolves tags to pinned
//! digests per platform ([`RegistryClient::resolve`] → [`LockedImage`], for `kiln lock`),
//! pulls locked images into the content-addressed store with the OCI distribution API
//! ([`RegistryClient::pull`]: mirrors, anonymous / basic / bearer auth, retries, resume,
//! each blob stored once), writes deterministic image tarballs that `ctr images import`,
//! `docker load` and `podman load` accept ([`write_image_archive_file`]), assembles
//! single-layer images from local files ([`assemble`]), and finds image references in
//! rendered files ([`scan_text`]). [`Pusher`] pushes blobs (skipping what the registry has,
//! mounting, resumable chunked uploads) and manifests to a [`PushTarget`], and reads them
//! back for `kiln pull`.
//!
//! This library never prints: it returns values and emits `tracing` events.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod archive;
mod assemble;
mod auth;
mod error;
mod layout;
mod manifest;
mod mirrors;
mod platform;
mod pull;
mod push;
mod reference;
mod registry;
mod resolve;
mod scan;
mod storeio;
mod upload;

pub use archive::{
    image_file_name, write_image_archive, write_image_archive_file, WrittenImageArchive,
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME,
};
pub use assemble::{assemble, rfc3339, AssembleFile, AssembleSpec, ImageConfig};
pub use auth::Credentials;
pub use error::ImageError;
pub use layout::{LayoutArchive, LayoutImage, PushedImage};
pub use manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG,
    OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
pub use mirrors::RegistryMirrors;
pub use platform::Platform;
pub use pull::{PullReport, PulledBlob};
pub use push::{
    BlobOutcome, BlobSource, BlobToPush, NoPushEvents, PushEvents, PushTarget, Pusher,
    RemoteManifest, DEFAULT_CHUNK,
};
pub use reference::{Digest, Reference, DEFAULT_REGISTRY, DEFAULT_TAG};
pub use registry::RegistryClient;
pub use resolve::{LockedImage, LockedLayer};
pub use scan::{missing_by, missing_images, scan_file, scan_text, ImageMention, MentionKind};

/// Entry points for the fuzz harness (`crates/fuzz`) into parsers that are not public; not an API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::{ImageError, Platform};

    /// The media type of a manifest document, as resolve decides it.
    pub fn media_type(bytes: &[u8], content_type: Option<&str>) -> String {
        crate::manifest::media_type_of(bytes, content_type)
    }

    /// A manifest, index or manifest list of `media_type`, parsed as resolve parses it.
    pub fn document(media_type: &str, bytes: &[u8]) -> Result<(), ImageError> {
        let reference = "registry.example/fuzz:1";
        crate::manifest::parse_document(reference, "manifest", media_type, bytes, None).map(|_| ())
    }

    /// The platform of an image config, as resolve reads it.
    pub fn config(bytes: &[u8]) -> Result<Platform, ImageError> {
        crate::manifest::config_platform("config", bytes)
    }

    /// A `WWW-Authenticate` value as the registry client parses it: the challenge's `Debug`
    /// form, `None` when kiln cannot answer it.
    pub fn challenge(header: &str) -> Option<String> {
        crate::auth::parse_challenge(header).map(|c| format!("{c:?}"))
    }
}
