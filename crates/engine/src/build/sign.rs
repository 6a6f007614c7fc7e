//! Signing a build with the cluster's key: `MANIFEST.json.sig` beside MANIFEST.json,
//! `BUNDLES.sig` in each host's secrets archive (over HOST then BUNDLES: build id, generation
//! and every bundle digest), and the public key as `signing.pub` at the top of the out folder.
//!
//! Signatures are deterministic (RFC 6979), so a rebuild writes the same bytes.

use std::path::Path;

use kiln_bundle::contract::HostMembers;
use kiln_bundle::{Entry, BUILD_MANIFEST_SIG_NAME};
use kiln_pki::BuildSigner;

use super::id::sha256_hex;
use super::outputs::Outputs;
use crate::{write_atomic, Error};

/// The out folder's copy of the public key (the one the seeds place on the hosts).
pub const SIGNING_PUB_OUT: &str = "signing.pub";

/// Writes `signing.pub` at the top of the out folder and records it as an output.
pub(super) fn write_public_key(
    staging: &Path,
    signer: &BuildSigner,
    outputs: &mut Outputs,
) -> Result<(), Error> {
    let pem = signer.public_pem();
    write_atomic(&staging.join(SIGNING_PUB_OUT), pem)?;
    outputs.record(SIGNING_PUB_OUT, &sha256_hex(pem), pem.len() as u64);
    Ok(())
}

/// The `BUNDLES.sig` entry of a host's secrets archive.
pub(super) fn host_signature(signer: &BuildSigner, members: &HostMembers<'_>) -> Entry {
    HostMembers::signature_entry(signer.sign(&members.signed_text()))
}

/// Writes `MANIFEST.json.sig` for MANIFEST.json's bytes; returns (name, sha256) for SHA256SUMS.
pub(super) fn write_manifest_signature(
    staging: &Path,
    signer: &BuildSigner,
    manifest: &[u8],
) -> Result<(String, String), Error> {
    let sig = signer.sign(manifest);
    write_atomic(&staging.join(BUILD_MANIFEST_SIG_NAME), &sig)?;
    Ok((BUILD_MANIFEST_SIG_NAME.to_string(), sha256_hex(&sig)))
}
