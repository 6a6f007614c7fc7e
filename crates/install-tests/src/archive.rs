//! Raw tar.gz archives with any entry, including the hostile ones install.sh must refuse
//! (kiln_bundle's writer cannot produce them, by design).

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use tar::{EntryType, Header};

/// What an entry is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A regular file with this content.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A hard link to this earlier entry.
    Hardlink(String),
    /// A character device (1,3: /dev/null).
    CharDevice,
    /// A named pipe.
    Fifo,
    /// A directory.
    Dir,
}

/// One tar entry, its name stored byte for byte.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// Name exactly as written in the header (absolute, `..`, anything).
    pub name: String,
    /// Permission bits.
    pub mode: u32,
    /// Type and payload.
    pub kind: Kind,
}

impl RawEntry {
    /// A regular file.
    pub fn file(name: &str, mode: u32, content: &[u8]) -> Self {
        Self {
            name: name.into(),
            mode,
            kind: Kind::File(content.to_vec()),
        }
    }
}

/// Writes `entries` in order as a gzip-compressed tar to `path`; returns its sha256.
pub fn write_tar_gz(path: &Path, entries: &[RawEntry]) -> String {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = Header::new_gnu();
        // Header::set_path refuses `..` and absolute names: write the bytes directly.
        let gnu = h.as_gnu_mut().expect("gnu header");
        assert!(
            e.name.len() < gnu.name.len(),
            "raw entry names must be < 100 bytes: {}",
            e.name
        );
        gnu.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let empty = Vec::new();
        let data = match &e.kind {
            Kind::File(content) => {
                h.set_entry_type(EntryType::Regular);
                content
            }
            Kind::Symlink(target) | Kind::Hardlink(target) => {
                let t = if matches!(e.kind, Kind::Symlink(_)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                };
                h.set_entry_type(t);
                let link = &mut h.as_gnu_mut().expect("gnu header").linkname;
                link[..target.len()].copy_from_slice(target.as_bytes());
                &empty
            }
            Kind::CharDevice => {
                h.set_entry_type(EntryType::Char);
                h.set_device_major(1).expect("device major");
                h.set_device_minor(3).expect("device minor");
                &empty
            }
            Kind::Fifo => {
                h.set_entry_type(EntryType::Fifo);
                &empty
            }
            Kind::Dir => {
                h.set_entry_type(EntryType::Directory);
                &empty
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        builder
            .append(&h, data.as_slice())
            .expect("append tar entry");
    }
    let tar = builder.into_inner().expect("finish tar");
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&tar).expect("gzip");
    let bytes = gz.finish().expect("gzip");
    std::fs::write(path, &bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    crate::sha256_hex(&bytes)
}

/// The MANIFEST entry kiln writes for the regular files among `entries`
/// (`<sha256> <mode, 4 octal digits> <size> <path>`, sorted by path).
pub fn manifest_for(entries: &[RawEntry]) -> RawEntry {
    let mut lines: Vec<String> = entries
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::File(c) => Some(format!(
                "{} {:04o} {} {}\n",
                crate::sha256_hex(c),
                e.mode,
                c.len(),
                e.name
            )),
            _ => None,
        })
        .collect();
    lines.sort_by(|a, b| a.split(' ').nth(3).cmp(&b.split(' ').nth(3)));
    RawEntry::file("MANIFEST", 0o644, lines.concat().as_bytes())
}
