//! Fixtures shared by the tests: deterministic data, specs, archive crafting.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use kiln_bundle::{BundleSpec, Entry, Source, GZIP_MEMBER_HEADER};
use sha2::{Digest, Sha256};

/// Fixed mtime used by the fixtures.
pub const MTIME: u64 = 1_700_000_000;

/// Deterministic bytes, part incompressible and part text, so deflate does real work.
pub fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x >> 60) < 6 {
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            out.extend_from_slice(b"kubelet --config=/etc/kubernetes/kubelet.yaml\n");
        }
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A path of exactly `len` bytes under `rootfs/`.
pub fn path_of_len(len: usize) -> String {
    let prefix = "rootfs/deep/";
    format!("{prefix}{}", "p".repeat(len - prefix.len()))
}

/// The files of the standard fixture: (entry path, requested mode, content, on disk?).
pub fn fixture_files() -> Vec<(String, u32, Vec<u8>, bool)> {
    vec![
        (
            "rootfs/usr/local/bin/kubelet".into(),
            0o775,
            data(1, 2 * 1024 * 1024 + 300_000),
            true,
        ),
        (
            "rootfs/etc/kubernetes/kubelet.yaml".into(),
            0o664,
            b"kind: KubeletConfiguration\n".to_vec(),
            false,
        ),
        ("rootfs/etc/kiln/empty".into(), 0o644, Vec::new(), true),
        (
            "install.sh".into(),
            0o700,
            b"#!/bin/sh\nset -eu\n".to_vec(),
            false,
        ),
        ("rootfs/etc/kiln/private".into(), 0o640, data(2, 700), true),
        ("rootfs/opt/tool".into(), 0o4755, data(3, 5000), true),
        (
            "rootfs/var/lib/kiln/secret-ish".into(),
            0o600,
            data(4, 10),
            false,
        ),
        (path_of_len(99), 0o644, data(5, 99), true),
        (path_of_len(100), 0o644, data(6, 100), true),
        (
            format!("rootfs/{}/{}", "d".repeat(120), "f".repeat(90)),
            0o750,
            data(7, 1234),
            true,
        ),
        ("images/pause.tar".into(), 0o644, data(8, 512), true),
    ]
}

/// Expected stored mode of each fixture file.
pub fn stored_mode(requested: u32) -> u32 {
    match requested & 0o777 {
        m @ (0o600 | 0o640 | 0o700 | 0o750) => m,
        m if m & 0o111 != 0 => 0o755,
        _ => 0o644,
    }
}

/// Creates the fixture's on-disk sources under `src` (in the given order, with the given
/// disk mode and mtime, which must not matter) and returns the spec listing `entries` in
/// the given order.
pub fn fixture_spec(src: &Path, reverse: bool, disk_mode: u32, disk_mtime: u64) -> BundleSpec {
    use std::os::unix::fs::PermissionsExt;
    let mut files = fixture_files();
    if reverse {
        files.reverse();
    }
    let mut entries = Vec::new();
    for (i, (path, mode, content, on_disk)) in files.into_iter().enumerate() {
        let source = if on_disk {
            let file = src.join(format!("src-{}", sha256_hex(path.as_bytes())));
            std::fs::write(&file, &content).unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(disk_mode)).unwrap();
            let f = std::fs::File::options().write(true).open(&file).unwrap();
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(disk_mtime + i as u64);
            f.set_modified(t).unwrap();
            Source::File {
                path: file,
                sha256: sha256_hex(&content),
                size: content.len() as u64,
            }
        } else {
            Source::Bytes(content)
        };
        entries.push(Entry { path, mode, source });
    }
    BundleSpec {
        entries,
        mtime: MTIME,
    }
}

/// Gzips bytes as one member with the canonical header (flate2 at level 6 writes it).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(6));
    enc.write_all(bytes).unwrap();
    let out = enc.finish().unwrap();
    assert_eq!(
        out[..10],
        GZIP_MEMBER_HEADER,
        "flate2 header changed; fixture needs updating"
    );
    out
}

/// Decompresses any gzip stream (all members).
pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Byte offsets where each gzip member starts, found with flate2's single-member decoder.
pub fn member_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        offsets.push(bytes.len() - rest.len());
        let mut dec = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut dec, &mut std::io::sink()).unwrap();
        rest = dec.into_inner();
    }
    offsets
}

/// One raw entry of a hand-made tar: type flag, path bytes, content, mode, uid.
pub struct Raw {
    pub kind: u8,
    pub path: Vec<u8>,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub link: Option<&'static str>,
}

impl Raw {
    pub fn file(path: &str, data: &[u8]) -> Raw {
        Raw {
            kind: b'0',
            path: path.as_bytes().to_vec(),
            data: data.to_vec(),
            mode: 0o644,
            uid: 0,
            link: None,
        }
    }
}

/// A MANIFEST entry listing `(path, mode, content)`.
pub fn manifest_entry(lines: &[(&str, u32, &[u8])]) -> Raw {
    let mut lines: Vec<_> = lines.to_vec();
    lines.sort_by(|a, b| a.0.cmp(b.0));
    let text: String = lines
        .iter()
        .map(|(p, m, c)| format!("{} {:04o} {} {}\n", sha256_hex(c), m, c.len(), p))
        .collect();
    Raw::file("MANIFEST", text.as_bytes())
}

/// Builds a tar by hand from raw headers (no path checks) and gzips it canonically.
pub fn craft(entries: &[Raw]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = if e.path.len() > 100 {
            tar::Header::new_ustar()
        } else {
            tar::Header::new_gnu()
        };
        if e.path.len() > 100 {
            // ustar prefix/name split at the last '/'.
            let cut = e.path.iter().rposition(|&b| b == b'/').unwrap();
            let ustar = h.as_ustar_mut().unwrap();
            ustar.prefix[..cut].copy_from_slice(&e.path[..cut]);
            ustar.name[..e.path.len() - cut - 1].copy_from_slice(&e.path[cut + 1..]);
        } else {
            h.as_old_mut().name[..e.path.len()].copy_from_slice(&e.path);
        }
        h.set_size(e.data.len() as u64);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.as_old_mut().linkflag = [e.kind];
        if let Some(link) = e.link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        builder.append(&h, &e.data[..]).unwrap();
    }
    gzip(&builder.into_inner().unwrap())
}

/// Writes bytes to `<dir>/<name>` and returns the path.
pub fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Sorted names in a folder.
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
