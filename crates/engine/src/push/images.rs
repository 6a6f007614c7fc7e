//! The cluster's container images, pushed under their own names so containerd on the hosts
//! can pull them through a `hosts.toml` mirror: `<repo>/<registry>/<repository>:<tag>`,
//! e.g. `kiln/lab/registry.k8s.io/pause:3.10.1`, with the manifest byte for byte (the
//! digest in the bundle's `IMAGE-DIGESTS` stays valid).
//!
//! They are read from the bundles: each `images/*.tar` member (an OCI layout) is copied out
//! of the bundle stream into a temp file once, and its blobs are pushed from their byte
//! ranges there, so an interrupted upload can seek back to where the registry stands.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use kiln_image::{LayoutArchive, PushEvents, PushTarget, Pusher};

use super::{PushError, PushReport};

/// Pushes every image of the bundle at `bundle` not pushed yet in this run.
pub(crate) fn push_bundle_images(
    bundle: &Path,
    target: &PushTarget,
    pusher: &Pusher,
    events: &dyn PushEvents,
    report: &mut PushReport,
) -> Result<(), PushError> {
    let member_err = |member: &str| {
        let member = member.to_owned();
        move |source| PushError::BundleMember {
            bundle: bundle.to_owned(),
            member,
            source,
        }
    };
    let file = File::open(bundle).map_err(member_err("(the archive)"))?;
    let gz = flate2::read::MultiGzDecoder::new(BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().map_err(member_err("(the archive)"))? {
        let mut entry = entry.map_err(member_err("(the archive)"))?;
        let name = entry
            .path()
            .map_err(member_err("(a member name)"))?
            .to_string_lossy()
            .into_owned();
        let is_image = name
            .strip_prefix("images/")
            .is_some_and(|n| !n.contains('/') && n.ends_with(".tar"));
        if !is_image {
            continue;
        }
        let temp = kiln_fsio::TempFile::new_in(&std::env::temp_dir(), "kiln-push-image", 0o600)?;
        io::copy(&mut entry, &mut temp.file()).map_err(member_err(&name))?;
        let layout = LayoutArchive::open(temp.path())?;
        for image in &layout.images {
            let r = &image.reference;
            let child = target.child(&format!("{}/{}", r.registry(), r.repository()))?;
            let key = format!("{child}:{}", r.tag().unwrap_or(image.digest.as_str()));
            if report.images.get(&key) == Some(&image.digest.to_string()) {
                continue;
            }
            let pushed = pusher.push_layout_image(target, &layout, image, events)?;
            for (_, _, outcome) in &pushed.blobs {
                report.count(outcome);
            }
            report
                .images
                .insert(pushed.target, pushed.digest.to_string());
        }
    }
    Ok(())
}
