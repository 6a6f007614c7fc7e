//! Targets over kiln-image: registry documents and the `WWW-Authenticate` parser.

use kiln_image::{fuzzing, Digest, Reference};
use kiln_image::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};

use super::{text, Ctx};

/// Challenge schemes, parameters and quoting.
pub(super) const AUTH_TOKENS: &[&[u8]] = &[
    b"Bearer ",
    b"Basic ",
    b"bearer",
    b"realm=",
    b"service=",
    b"scope=",
    b"\"",
    b"\\\"",
    b"\\",
    b",",
    b"=",
    b" ",
    b"\t",
    b"https://auth.example/token",
    b"repository:library/pause:pull",
    b"\xc3\xa9",
    b"\xf0\x9f\x92\xa9",
];

/// The input as a manifest, index and manifest list (whatever its own media type says, and
/// as each kind), as an image config, and (when short) as an image reference and digest.
pub(super) fn documents(_ctx: &Ctx, data: &[u8]) {
    let own = fuzzing::media_type(data, Some("application/json; charset=utf-8"));
    for media_type in [
        own.as_str(),
        OCI_INDEX,
        OCI_MANIFEST,
        DOCKER_LIST,
        DOCKER_MANIFEST,
    ] {
        if let Err(e) = fuzzing::document(media_type, data) {
            drop(e.to_string());
        }
    }
    match fuzzing::config(data) {
        Ok(platform) => drop(format!("{platform:?}")),
        Err(e) => drop(e.to_string()),
    }
    if let Some(s) = text(data).filter(|s| s.len() <= 512) {
        match Reference::parse(s.trim()) {
            Ok(r) => drop(r.to_string()),
            Err(e) => drop(e.to_string()),
        }
        if let Err(e) = Digest::parse(s.trim()) {
            drop(e.to_string());
        }
    }
}

/// The input as a `WWW-Authenticate` header value (HTTP header values kiln reads are text).
pub(super) fn www_authenticate(_ctx: &Ctx, data: &[u8]) {
    if let Some(header) = text(data) {
        let _ = fuzzing::challenge(header);
    }
}
