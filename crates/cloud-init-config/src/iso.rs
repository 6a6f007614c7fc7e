//! Reproducible ISO 9660 seed image with volume id CIDATA, written with `hadris-iso`.
//!
//! Plain ISO 9660 names are uppercase 8.3 or 30-character d-characters, so
//! `user-data` cannot be stored as such. The image carries Rock Ridge (which
//! Linux's isofs prefers) and Joliet (which other readers use) over a level 2
//! primary tree, as `genisoimage -J -r` does for cloud-init seeds.

use std::path::{Path, PathBuf};

use hadris_fs::{Content, Node, Tree, WarningKind};
use hadris_iso::{IsoId, IsoLevel, IsoOptions};
use hadris_storage::host::FileDevice;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::image::{self, Source, Timestamp, VOLUME_LABEL};
use crate::render::Seed;
use crate::sink::{self, ImageDigest};

/// The application id recorded in the volume descriptor.
const APPLICATION: &str = "KILN CLOUD-INIT-CONFIG";

/// Writes `seed` and the `extra` files (path inside the image, host source)
/// as an ISO 9660 image at `path`, atomically.
///
/// The volume id is `CIDATA`; every volume and record date is `time`; Rock
/// Ridge records mode 0644 for files, 0755 for folders and owner 0, whatever
/// the host files have. The same seed, files and time give the same bytes.
/// An image of up to 8 MiB of files is built in memory and written with holes
/// for its zero blocks; a larger one streams its extra files into the file,
/// never holding them in memory. Returns the image's sha256 and size, taken
/// as it is written.
pub fn write_iso(
    path: &Path,
    seed: &Seed,
    extra: &[(String, PathBuf)],
    time: Timestamp,
) -> Result<ImageDigest> {
    write_volume(path, VOLUME_LABEL, Some(seed), extra, time)
}

/// Writes the `files` (path inside the image, host source) as an ISO 9660 image
/// with volume id `label` (at most 32 of `A-Z`, `0-9`, `_`) at `path`,
/// atomically, with the same layout and reproducibility as [`write_iso`]: a
/// data medium that is not a seed, such as kiln's shared bundle medium.
pub fn write_data_iso(
    path: &Path,
    label: &str,
    files: &[(String, PathBuf)],
    time: Timestamp,
) -> Result<ImageDigest> {
    let ok = !label.is_empty()
        && label.len() <= 32
        && label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return Err(Error::Invalid {
            field: "ISO volume label",
            value: label.to_owned(),
            reason: "must be 1 to 32 of A-Z, 0-9 and _",
        });
    }
    write_volume(path, label, None, files, time)
}

fn write_volume(
    path: &Path,
    label: &str,
    seed: Option<&Seed>,
    extra: &[(String, PathBuf)],
    time: Timestamp,
) -> Result<ImageDigest> {
    let iso_err = |source| Error::Iso {
        image: path.to_owned(),
        source: Box::new(source),
    };
    let mut tree = Tree::new();
    let mut content_len = 0;
    for entry in image::entries(seed, extra)? {
        content_len += entry.len;
        let content = match entry.source {
            Source::Bytes(bytes) => Content::bytes(bytes),
            Source::Host(src) => hadris_fs::host::file(src).map_err(iso_err)?,
        };
        // A length that moved since `entries` measured it is caught by the
        // writer, which names both paths.
        tree.insert(entry.path.as_bytes(), Node::file(content))
            .map_err(iso_err)?;
    }
    let options = options(label, time);
    write_atomic(path, |file| {
        // The volume's own records are a few KiB per file and folder.
        if content_len <= sink::IN_MEMORY / 2 {
            let mut device: Vec<u8> = Vec::new();
            let report = hadris_iso::sync::write(&mut device, &tree, &options).map_err(iso_err)?;
            check_report(&report).map_err(iso_err)?;
            return sink::write_sparse(file, &device).map_err(Error::io("write", path.to_owned()));
        }
        let handle = file
            .try_clone()
            .map_err(Error::io("reopen", path.to_owned()))?;
        let mut device =
            FileDevice::new(handle).map_err(Error::io("open as a device", path.to_owned()))?;
        let report = hadris_iso::sync::write(&mut device, &tree, &options).map_err(iso_err)?;
        check_report(&report).map_err(iso_err)?;
        sink::hash_file(file).map_err(Error::io("write", path.to_owned()))
    })
}

/// Names are checked up front to fit Joliet and Rock Ridge unchanged; only the primary
/// tree's 8.3-style names may be mapped, so a file skipped or dropped is an error.
fn check_report(report: &hadris_fs::Report) -> Result<(), hadris_fs::PathError> {
    match report
        .warnings()
        .iter()
        .find(|w| matches!(w.kind(), WarningKind::Skipped | WarningKind::Dropped(_)))
    {
        Some(warning) => Err(hadris_fs::PathError::new(
            hadris_fs::ErrorKind::Unsupported,
            warning.message(),
        )
        .with_path(warning.path().unwrap_or_default())),
        None => Ok(()),
    }
}

/// The image options: volume id `label`, level 2 primary names, Rock Ridge
/// and Joliet, every date `time`.
fn options(label: &str, time: Timestamp) -> IsoOptions {
    IsoOptions::new()
        .with_id(IsoId::Volume, label)
        .with_id(IsoId::Application, APPLICATION)
        .with_level(IsoLevel::L2)
        .with_rock_ridge()
        .with_joliet()
        .with_time(time.to_hadris())
}
