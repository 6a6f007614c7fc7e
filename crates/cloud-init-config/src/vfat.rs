//! Reproducible VFAT seed image labelled CIDATA, written with `fatfs`.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::fat_raw;
use crate::image::{self, Entry, Source, Timestamp, VOLUME_LABEL};
use crate::model::Fnv64;
use crate::render::Seed;
use crate::sink::{self, ImageDigest};

/// Cluster size of an image with bundles in it: FAT12 below 16 MiB, FAT16 below 256 MiB,
/// FAT32 above; small enough to waste little on small files.
const CLUSTER: u64 = 4096;
/// Cluster size of a tiny seed (documents and secrets only, up to [`SMALL`]): one sector, so
/// its few small files share blocks instead of taking 4 KiB each (FAT12 up to 2 MiB).
const SMALL_CLUSTER: u64 = 512;
/// The most content an image with [`SMALL_CLUSTER`]s holds.
const SMALL: u64 = 512 << 10;
const SECTOR: u64 = 512;
/// The image grows in steps of this size: small, because every tiny seed is hashed whole (a
/// 1,000-host build hashes each of them), and enough headroom for FAT's own rounding.
const GRAIN: u64 = 64 << 10;
/// Bytes streamed per write into the image.
const COPY_BUF: usize = 1 << 20;

/// Writes `seed` and the `extra` files (path inside the image, host source)
/// as a FAT image at `path`, atomically.
///
/// The image is sized from its contents plus headroom, labelled `CIDATA` in
/// the boot sector and in the root folder, and every date in it is `time`.
/// Its volume serial is derived from the seed's instance id, so the bytes
/// depend only on the arguments: the same seed, files and time give the
/// same image. An image up to 16 MiB is built in memory and written with
/// holes for its zero blocks; a larger one (extra files such as bundles) is
/// built in the file, its extra files streamed, never held in memory.
/// Returns the image's sha256 and size, taken as it is written.
pub fn write_vfat(
    path: &Path,
    seed: &Seed,
    extra: &[(String, PathBuf)],
    time: Timestamp,
) -> Result<ImageDigest> {
    let entries = image::entries(Some(seed), extra)?;
    let serial = volume_serial(&seed.meta_data.instance_id);
    let cluster = cluster_size(&entries);
    let size = image_size(&entries, cluster);
    let label = label_bytes(VOLUME_LABEL).expect("CIDATA is a valid label");
    let volume = VolumeSpec {
        size,
        cluster,
        serial,
        label,
    };
    write_volume(path, &volume, &entries, time)
}

/// Writes the `files` (path inside the volume, host source) as a FAT volume of `size` bytes
/// at `path`, atomically: a disk image's EFI system partition, say.
///
/// Clusters are 4 KiB (FAT16 from about 16 MiB to 256 MiB, FAT32 above); a size that fits no
/// FAT type's cluster-count rules grows in 64 KiB steps until one fits. `label` is the volume
/// label (up to 11 characters: A-Z, 0-9, `_` and `-`), `serial` the volume serial, and every
/// date in it is `time`: the bytes depend on the arguments only. Returns its sha256 and size.
pub fn write_fat_volume(
    path: &Path,
    label: &str,
    serial: u32,
    size: u64,
    files: &[(String, PathBuf)],
    time: Timestamp,
) -> Result<ImageDigest> {
    let label = label_bytes(label).ok_or_else(|| Error::Invalid {
        field: "FAT volume label",
        value: label.to_owned(),
        reason: "must be 1 to 11 characters, each A-Z, 0-9, _ or -",
    })?;
    let entries = image::entries(None, files)?;
    let volume = VolumeSpec {
        size: size.max(image_size(&entries, CLUSTER)),
        cluster: CLUSTER,
        serial,
        label,
    };
    write_volume(path, &volume, &entries, time)
}

/// The shape of a FAT volume to format.
struct VolumeSpec {
    /// Its size in bytes (the least: see [`format`]).
    size: u64,
    /// Bytes per cluster.
    cluster: u64,
    serial: u32,
    /// The label, padded with spaces.
    label: [u8; 11],
}

/// Builds the volume with `entries` at `path`, atomically: in memory up to
/// [`sink::IN_MEMORY`] (written with holes for its zero blocks), else in the file.
fn write_volume(
    path: &Path,
    spec: &VolumeSpec,
    entries: &[Entry<'_>],
    time: Timestamp,
) -> Result<ImageDigest> {
    let written = Error::io("write", path.to_owned());
    write_atomic(path, |file| {
        if spec.size <= sink::IN_MEMORY {
            let mut volume = io::Cursor::new(Vec::new());
            build(path, &mut volume, spec, entries, time)?;
            sink::write_sparse(file, volume.get_ref()).map_err(written)
        } else {
            build(path, file, spec, entries, time)?;
            sink::hash_file(file).map_err(written)
        }
    })
}

/// Something a FAT volume can be built in: the image file, or memory.
trait Volume: Read + Write + Seek {
    /// Makes it `len` zero bytes.
    fn zeroed(&mut self, len: u64) -> io::Result<()>;
}

impl Volume for File {
    fn zeroed(&mut self, len: u64) -> io::Result<()> {
        self.set_len(0)?;
        self.set_len(len)
    }
}

impl Volume for io::Cursor<Vec<u8>> {
    fn zeroed(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::FileTooLarge, "image too large"))?;
        let v = self.get_mut();
        v.clear();
        v.resize(len, 0);
        Ok(())
    }
}

/// Formats `volume` (at least `size` bytes), labels it and copies the entries in.
fn build(
    path: &Path,
    volume: &mut impl Volume,
    spec: &VolumeSpec,
    entries: &[Entry<'_>],
    time: Timestamp,
) -> Result<()> {
    let fat_err = |action: &'static str, inner: Option<&str>| {
        let image = path.to_owned();
        let inner = inner.map(str::to_owned);
        move |source| Error::Fat {
            action,
            inner,
            image,
            source,
        }
    };
    let size = format(volume, spec).map_err(fat_err("format the volume", None))?;
    let (date, clock) = dos_date_time(time);
    fat_raw::write_label(volume, &spec.label, date, clock)
        .map_err(fat_err("write the volume label", None))?;
    volume
        .seek(SeekFrom::Start(0))
        .map_err(fat_err("rewind", None))?;
    FIXED_NOW.with(|now| now.set(fat_time(time)));
    let options = fatfs::FsOptions::new()
        .update_accessed_date(false)
        .time_provider(&FIXED_TIME);
    let fs = fatfs::FileSystem::new(&mut *volume, options)
        .map_err(fat_err("open the new volume", None))?;
    for entry in entries {
        copy_entry(&fs, entry).map_err(|source| match source {
            CopyError::Image(source) => fat_err("write", Some(&entry.path))(source),
            CopyError::Host(path, source) => Error::io("read", path)(source),
        })?;
    }
    fs.unmount().map_err(fat_err("finish the volume", None))?;
    fat_raw::fix_dot_entries(volume).map_err(fat_err("repair folder records", None))?;
    fat_raw::write_fs_info(volume).map_err(fat_err("write FSInfo", None))?;
    debug_assert_eq!(volume.seek(SeekFrom::End(0)).ok(), Some(size));
    Ok(())
}

/// The volume serial: a hash of the instance id, so two hosts' seeds differ
/// in `blkid`'s UUID while each stays reproducible.
fn volume_serial(instance_id: &str) -> u32 {
    let mut hash = Fnv64::new();
    hash.write(b"kiln-cidata\0");
    hash.write(instance_id.as_bytes());
    let h = hash.finish();
    (h ^ (h >> 32)) as u32
}

/// The cluster size for `entries`: [`SMALL_CLUSTER`] when their content fits [`SMALL`].
fn cluster_size(entries: &[Entry<'_>]) -> u64 {
    match entries.iter().map(|e| e.len).sum::<u64>() <= SMALL {
        true => SMALL_CLUSTER,
        false => CLUSTER,
    }
}

/// An image size that holds `entries` in clusters of `cluster` bytes: their clusters, their
/// folders, two FATs, a reserved area, plus 1/64 and [`GRAIN`] of headroom, in whole grains.
fn image_size(entries: &[Entry<'_>], cluster: u64) -> u64 {
    let round = |n: u64, to: u64| n.div_ceil(to) * to;
    // Each (folder, name) pair once: a short entry plus one long-name entry
    // per 13 characters; each folder also holds `.` and `..`.
    let mut names = std::collections::BTreeSet::new();
    let mut data = 0;
    for entry in entries {
        data += round(entry.len, cluster);
        let parts: Vec<&str> = entry.path.split('/').collect();
        for i in 0..parts.len() {
            names.insert((parts[..i].join("/"), parts[i]));
        }
    }
    let mut dirs = std::collections::BTreeMap::from([(String::new(), 2u64)]);
    for (parent, name) in names {
        *dirs.entry(parent).or_insert(2) += 1 + (name.chars().count() as u64).div_ceil(13);
    }
    data += dirs.values().map(|n| round(n * 32, cluster)).sum::<u64>();
    let fats = 2 * 4 * (data / cluster + 2);
    let fixed = 64 * SECTOR + 512 * 32; // reserved sectors and a FAT12/16 root folder
    round(data + fats + fixed + data / 64 + GRAIN, GRAIN)
}

/// Formats `file` as FAT of at least `spec.size` bytes, and returns the final size. Some sizes
/// fit no FAT type's cluster-count rules; those grow by [`GRAIN`] until one fits.
fn format(file: &mut impl Volume, spec: &VolumeSpec) -> io::Result<u64> {
    let mut size = spec.size;
    let mut last = None;
    for _ in 0..256 {
        let sectors = u32::try_from(size / SECTOR)
            .map_err(|_| io::Error::new(io::ErrorKind::FileTooLarge, "image over 2 TiB"))?;
        file.zeroed(size)?;
        file.seek(SeekFrom::Start(0))?;
        let options = fatfs::FormatVolumeOptions::new()
            .bytes_per_cluster(spec.cluster as u32)
            .total_sectors(sectors)
            .volume_id(spec.serial)
            .volume_label(spec.label);
        match fatfs::format_volume(&mut *file, options) {
            Ok(()) => return Ok(size),
            Err(err) => last = Some(err),
        }
        size += GRAIN;
    }
    Err(last.expect("loop ran"))
}

/// `text` padded to a FAT label's 11 bytes, if it is 1 to 11 of A-Z, 0-9, `_` and `-`.
fn label_bytes(text: &str) -> Option<[u8; 11]> {
    let ok = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-');
    if text.is_empty() || text.len() > 11 || !text.bytes().all(|b| ok(&b)) {
        return None;
    }
    let mut label = [b' '; 11];
    label[..text.len()].copy_from_slice(text.as_bytes());
    Some(label)
}

/// DOS (date, time) words of `time`, two-second resolution.
fn dos_date_time(time: Timestamp) -> (u16, u16) {
    let (y, mo, d, h, mi, s) = time.civil();
    let date = ((y - 1980) << 9) | (u16::from(mo) << 5) | u16::from(d);
    let clock = (u16::from(h) << 11) | (u16::from(mi) << 5) | u16::from(s / 2);
    (date, clock)
}

fn fat_time(time: Timestamp) -> fatfs::DateTime {
    let (year, month, day, hour, min, sec) = time.civil();
    fatfs::DateTime {
        date: fatfs::Date {
            year,
            month: month.into(),
            day: day.into(),
        },
        time: fatfs::Time {
            hour: hour.into(),
            min: min.into(),
            sec: sec.into(),
            millis: 0,
        },
    }
}

thread_local! {
    /// The time `FIXED_TIME` reports; set by `write_vfat` before mounting
    /// (fatfs wants a `&'static` provider and calls it on this thread).
    static FIXED_NOW: Cell<fatfs::DateTime> = Cell::new(fat_time(Timestamp::DOS_EPOCH));
}

/// A fatfs clock that always reads the image's timestamp.
#[derive(Debug)]
struct FixedTime;

static FIXED_TIME: FixedTime = FixedTime;

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        FIXED_NOW.with(|now| now.get().date)
    }

    fn get_current_date_time(&self) -> fatfs::DateTime {
        FIXED_NOW.with(Cell::get)
    }
}

/// Which side of a copy failed.
enum CopyError {
    Image(io::Error),
    Host(PathBuf, io::Error),
}

/// Creates the entry's parent folders and the file, and streams its bytes.
fn copy_entry<V: Volume>(
    fs: &fatfs::FileSystem<&mut V>,
    entry: &Entry<'_>,
) -> Result<(), CopyError> {
    let root = fs.root_dir();
    if let Some((parent, _)) = entry.path.rsplit_once('/') {
        let mut at = 0;
        for part in parent.split('/') {
            at += part.len();
            root.create_dir(&parent[..at]).map_err(CopyError::Image)?;
            at += 1;
        }
    }
    let mut out = root.create_file(&entry.path).map_err(CopyError::Image)?;
    match &entry.source {
        Source::Bytes(bytes) => out.write_all(bytes).map_err(CopyError::Image)?,
        Source::Host(src) => {
            let host = |err| CopyError::Host(src.to_path_buf(), err);
            let mut input = File::open(src).map_err(host)?;
            let mut buf = vec![0u8; COPY_BUF];
            let mut copied = 0u64;
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Err(err) => return Err(host(err)),
                };
                out.write_all(&buf[..n]).map_err(CopyError::Image)?;
                copied += n as u64;
            }
            if copied != entry.len {
                return Err(host(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "changed size while being copied ({} then {copied} bytes)",
                        entry.len
                    ),
                )));
            }
        }
    }
    out.flush().map_err(CopyError::Image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_words_match_the_fat_encoding() {
        let t = Timestamp::from_unix(1_700_000_000).unwrap(); // 2023-11-14 22:13:20
        assert_eq!(
            dos_date_time(t),
            ((43 << 9) | (11 << 5) | 14, (22 << 11) | (13 << 5) | 10)
        );
    }

    #[test]
    fn labels_are_checked_and_padded() {
        assert_eq!(label_bytes("ESP"), Some(*b"ESP        "));
        assert_eq!(label_bytes("CIDATA"), Some(*b"CIDATA     "));
        for bad in ["", "esp", "TWELVE_CHARS", "A B", "É"] {
            assert_eq!(label_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn serial_depends_on_instance_id_only() {
        assert_eq!(volume_serial("a"), volume_serial("a"));
        assert_ne!(volume_serial("a"), volume_serial("b"));
    }
}
