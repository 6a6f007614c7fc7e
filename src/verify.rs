//! `kiln verify`: an out folder (fully, or by digests only) or a single bundle, then the out
//! folder's signatures; never touches the network.

use anyhow::{bail, Result};

use kiln_engine::signatures::{self, KeySource, Signatures};

use crate::{cli::VerifyArgs, push};

/// Runs the checks `a` asks for; returns the lines to print.
pub fn run(a: &VerifyArgs) -> Result<String> {
    let path = &a.path;
    if a.key.is_some() && !path.is_dir() {
        bail!(
            "--key checks an out folder's signatures; {} is not a folder (a bundle is signed \
             through its build's MANIFEST.json and its hosts' BUNDLES)",
            path.display()
        );
    }
    let digests = if let Some(pulled) = push::verify_pulled(path, a.digests) {
        pulled?
    } else if a.digests {
        let r = kiln_bundle::verify_digests(path)?;
        format!(
            "{}: {} files, {} bytes match SHA256SUMS",
            path.display(),
            r.files,
            r.bytes
        )
    } else if path.is_dir() {
        let r = kiln_bundle::verify_folder(path)?;
        format!(
            "{}: {} files, {} bundles, {} bytes verified",
            path.display(),
            r.files,
            r.bundles.len(),
            r.bytes
        )
    } else {
        let r = kiln_bundle::verify_bundle(path)?;
        return Ok(format!(
            "{}: {} files, {} content bytes verified (sha256 {})",
            path.display(),
            r.files,
            r.content_bytes,
            r.sha256
        ));
    };
    let signed = match signatures::check(path, a.key.as_deref())? {
        Signatures::Unsigned => {
            "not signed: no signing.pub in the folder (pass --key to require signatures)".into()
        }
        Signatures::Verified {
            key,
            fingerprint,
            hosts,
        } => {
            let what = if hosts > 0 {
                format!("MANIFEST.json and {hosts} hosts' BUNDLES")
            } else {
                "MANIFEST.json".to_string()
            };
            match key {
                KeySource::Given(k) => format!(
                    "signatures verified: {what} signed by {} (sha256 {fingerprint})",
                    k.display()
                ),
                KeySource::OutFolder(k) => format!(
                    "signatures match the folder's own {} (sha256 {fingerprint}): this shows \
                     its files agree, not who built them; pass --key with the cluster's public \
                     key to prove origin",
                    k.display()
                ),
            }
        }
    };
    Ok(format!("{digests}\n{signed}"))
}
