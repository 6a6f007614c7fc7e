//! The cluster's container images, pushed under their own names so containerd on the hosts
//! can pull them through a `hosts.toml` mirror: `<repo>/<registry>/<repository>:<tag>`,
//! e.g. `kiln/lab/registry.k8s.io/pause:3.10.1`, with the manifest byte for byte (the
//! digest in the bundle's `IMAGE-DIGESTS` stays valid).
//!
//! They are read from the bundles: unless the registry already serves every image of a
//! bundle's `IMAGE-DIGESTS` under its tag with its digest, each `images/*.tar` member (an OCI layout) is copied out
//! of the bundle stream into a temp file once, and its blobs are pushed from their byte
//! ranges there, so an interrupted upload can seek back to where the registry stands.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;

use kiln_image::{Digest, LayoutArchive, PushEvents, PushTarget, Pusher, Reference};

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
        // IMAGE-DIGESTS sorts before images/: when the registry already serves every image
        // it names under its tag with its digest, the rest of the bundle is not even read.
        if name == kiln_bundle::contract::IMAGE_DIGESTS {
            let mut text = String::new();
            io::Read::read_to_string(&mut entry, &mut text).map_err(member_err(&name))?;
            if missing_images(&text, target, pusher, report)? == 0 {
                return Ok(());
            }
            continue;
        }
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

/// How many images of an `IMAGE-DIGESTS` text (`<path> <reference> <digest>` lines) the
/// registry does not serve yet under their tags with their digests; those it does are
/// counted as present in `report`.
fn missing_images(
    text: &str,
    target: &PushTarget,
    pusher: &Pusher,
    report: &mut PushReport,
) -> Result<usize, PushError> {
    let mut missing = 0;
    for line in text.lines() {
        let mut fields = line.split(' ');
        let (Some(_), Some(reference), Some(digest)) =
            (fields.next(), fields.next(), fields.next())
        else {
            missing += 1;
            continue;
        };
        let (Ok(r), Ok(digest)) = (Reference::parse(reference), Digest::parse(digest)) else {
            missing += 1;
            continue;
        };
        let child = target.child(&format!("{}/{}", r.registry(), r.repository()))?;
        let tag = r.tag().unwrap_or(digest.as_str());
        if pusher.manifest_digest(&child, tag)? == Some(digest.clone()) {
            report.images_present += 1;
            report
                .images
                .insert(format!("{child}:{tag}"), digest.to_string());
        } else {
            missing += 1;
        }
    }
    Ok(missing)
}
