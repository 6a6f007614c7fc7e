//! verify_bundle: corruption anywhere, removed/added entries, hostile archives.

use std::path::Path;

use kiln_bundle::{verify_bundle, write_bundle, VerifyError};

use crate::common::*;

fn written_fixture(out: &Path) -> Vec<u8> {
    let src = tempfile::tempdir().unwrap();
    let written = write_bundle(out, "master", &fixture_spec(src.path(), false, 0o644, 0)).unwrap();
    let report = verify_bundle(&written.path).unwrap();
    assert_eq!(report.files, fixture_files().len() as u64);
    assert_eq!(report.sha256, written.sha256);
    assert_eq!(report.size, written.size);
    assert_eq!(
        report.members,
        member_offsets(&std::fs::read(&written.path).unwrap()).len() as u64
    );
    std::fs::read(&written.path).unwrap()
}

#[test]
fn a_flipped_byte_anywhere_is_rejected_even_without_a_digest_in_the_name() {
    let out = tempfile::tempdir().unwrap();
    let good = written_fixture(out.path());
    // A plain name: only the gzip, tar and MANIFEST checks can catch the change.
    let plain = out.path().join("plain.tar.gz");
    std::fs::write(&plain, &good).unwrap();
    verify_bundle(&plain).unwrap();

    let mut positions: Vec<usize> = (0..good.len()).step_by(good.len() / 300 + 1).collect();
    for at in member_offsets(&good).into_iter().chain([good.len()]) {
        // Every header byte after and every trailer byte before a member boundary.
        positions.extend(at.saturating_sub(8)..(at + 10).min(good.len()));
    }
    positions.sort_unstable();
    positions.dedup();
    assert!(positions.len() > 300);
    let mut kinds = std::collections::BTreeMap::new();
    for &at in &positions {
        let mut bad = good.clone();
        bad[at] ^= 0xff;
        std::fs::write(&plain, &bad).unwrap();
        let err = verify_bundle(&plain).expect_err(&format!("flip at {at} of {}", good.len()));
        let kind = format!("{err:?}")
            .split([' ', '{', '('])
            .next()
            .unwrap()
            .to_owned();
        *kinds.entry(kind).or_insert(0) += 1;
    }
    // Most flips break the deflate stream or a CRC; header/trailer flips are named too.
    assert!(
        kinds.get("Gzip").copied().unwrap_or(0) > positions.len() / 2,
        "{kinds:?}"
    );
}

#[test]
fn name_digest_must_match_content() {
    let out = tempfile::tempdir().unwrap();
    let good = written_fixture(out.path());
    let renamed = put(out.path(), "master-0123456789abcdef.tar.gz", &good);
    match verify_bundle(&renamed) {
        Err(VerifyError::NameDigestMismatch {
            file,
            name_digest,
            actual,
        }) => {
            assert_eq!((file, name_digest.as_str()), (renamed, "0123456789abcdef"));
            assert_eq!(actual, sha256_hex(&good));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn trailing_garbage_and_truncation_are_rejected() {
    let out = tempfile::tempdir().unwrap();
    let good = written_fixture(out.path());
    for (what, bytes) in [
        (
            "garbage after last member",
            [good.clone(), b"junk".to_vec()].concat(),
        ),
        (
            "zeros after last member",
            [good.clone(), vec![0; 512]].concat(),
        ),
        (
            "second copy appended",
            [good.clone(), good.clone()].concat(),
        ),
        ("truncated", good[..good.len() - 3].to_vec()),
        ("empty", Vec::new()),
    ] {
        let path = put(out.path(), "x.tar.gz", &bytes);
        let err = verify_bundle(&path).expect_err(what);
        let ok = match what {
            "second copy appended" => matches!(err, VerifyError::TrailingData { .. }),
            _ => matches!(err, VerifyError::Gzip { .. }),
        };
        assert!(ok, "{what}: {err}");
    }
}

/// Re-reads a written bundle's entries as raw (path, content, mode) for re-crafting.
fn entries_of(bytes: &[u8]) -> Vec<(String, Vec<u8>, u32)> {
    use std::io::Read;
    let tar_bytes = gunzip(bytes);
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
            (path, content, e.header().mode().unwrap())
        })
        .collect()
}

fn raw_entries(entries: &[(String, Vec<u8>, u32)]) -> Vec<Raw> {
    entries
        .iter()
        .map(|(p, c, m)| Raw {
            mode: *m,
            ..Raw::file(p, c)
        })
        .collect()
}

#[test]
fn removed_and_added_entries_are_rejected() {
    let out = tempfile::tempdir().unwrap();
    let good = written_fixture(out.path());
    let entries = entries_of(&good);
    assert_eq!(entries[0].0, "MANIFEST");

    // Re-crafting the same entries by hand passes, so the failures below are the edits.
    let same = put(out.path(), "same.tar.gz", &craft(&raw_entries(&entries)));
    verify_bundle(&same).unwrap();

    let mut removed = entries.clone();
    let gone = removed.remove(3);
    let path = put(out.path(), "removed.tar.gz", &craft(&raw_entries(&removed)));
    match verify_bundle(&path) {
        Err(VerifyError::MissingEntry { file, entry }) => assert_eq!((file, entry), (path, gone.0)),
        other => panic!("{other:?}"),
    }

    let mut added = entries.clone();
    added.push((
        "rootfs/usr/bin/backdoor".into(),
        b"#!/bin/sh\n".to_vec(),
        0o755,
    ));
    let path = put(out.path(), "added.tar.gz", &craft(&raw_entries(&added)));
    match verify_bundle(&path) {
        Err(VerifyError::NotInManifest { file, entry }) => {
            assert_eq!((file, entry.as_str()), (path, "rootfs/usr/bin/backdoor"))
        }
        other => panic!("{other:?}"),
    }

    let mut changed = entries.clone();
    changed[2].1[0] ^= 1;
    let path = put(out.path(), "changed.tar.gz", &craft(&raw_entries(&changed)));
    match verify_bundle(&path) {
        Err(VerifyError::DigestMismatch { entry, .. }) => assert_eq!(entry, changed[2].0),
        other => panic!("{other:?}"),
    }

    let mut grown = entries.clone();
    grown[2].1.push(b'!');
    let path = put(out.path(), "grown.tar.gz", &craft(&raw_entries(&grown)));
    match verify_bundle(&path) {
        Err(VerifyError::SizeMismatch { entry, .. }) => assert_eq!(entry, grown[2].0),
        other => panic!("{other:?}"),
    }

    let mut chmod = entries.clone();
    chmod[2].2 = if chmod[2].2 == 0o755 { 0o644 } else { 0o755 };
    let path = put(out.path(), "chmod.tar.gz", &craft(&raw_entries(&chmod)));
    assert!(matches!(
        verify_bundle(&path),
        Err(VerifyError::ModeMismatch { .. })
    ));
}

/// Asserts that an archive of MANIFEST (listing `listed`) plus `hostile` is rejected as
/// unsafe, naming the entry, with a reason containing `reason`.
fn assert_unsafe(name: &str, hostile: Raw, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let entry_name = String::from_utf8_lossy(&hostile.path).into_owned();
    let manifest = manifest_entry(&[("ok", 0o644, b"fine")]);
    let archive = craft(&[manifest, Raw::file("ok", b"fine"), hostile]);
    let path = put(dir.path(), "hostile.tar.gz", &archive);
    match verify_bundle(&path) {
        Err(VerifyError::UnsafeEntry {
            file,
            entry,
            reason: r,
        }) => {
            assert_eq!((file, entry), (path, entry_name), "{name}");
            assert!(r.contains(reason), "{name}: {r}");
        }
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn hostile_entries_are_rejected() {
    let kind = |kind: u8, path: &str, link: Option<&'static str>| Raw {
        kind,
        link,
        ..Raw::file(path, b"")
    };
    assert_unsafe(
        "absolute",
        Raw::file("/etc/cron.d/x", b"* * * * * root sh"),
        "absolute path",
    );
    assert_unsafe(
        "dotdot",
        Raw::file("../../etc/passwd", b"x"),
        "`..` component",
    );
    assert_unsafe(
        "inner dotdot",
        Raw::file("rootfs/../../x", b"x"),
        "`..` component",
    );
    assert_unsafe("dot", Raw::file("./x", b"x"), "`.` component");
    let prefix_abs = Raw::file(&format!("/etc/{}/passwd", "e".repeat(100)), b"x");
    assert_unsafe("absolute ustar prefix", prefix_abs, "absolute path");
    assert_unsafe(
        "symlink",
        kind(b'2', "rootfs/etc/shadow", Some("/etc/shadow")),
        "symbolic link",
    );
    assert_unsafe(
        "symlink escape",
        kind(b'2', "rootfs/up", Some("../../..")),
        "symbolic link",
    );
    assert_unsafe(
        "hardlink",
        kind(b'1', "rootfs/passwd", Some("/etc/passwd")),
        "hard link",
    );
    assert_unsafe(
        "char device",
        kind(b'3', "rootfs/dev/mem", None),
        "character device",
    );
    assert_unsafe(
        "block device",
        kind(b'4', "rootfs/dev/sda", None),
        "block device",
    );
    assert_unsafe("fifo", kind(b'6', "rootfs/fifo", None), "fifo");
    assert_unsafe("directory", kind(b'5', "rootfs/dir", None), "directory");
    let pax = Raw {
        kind: b'x',
        ..Raw::file("PaxHeaders/x", b"24 path=../../etc/passwd\n")
    };
    assert_unsafe("pax path override", pax, "pax extended header");
    assert_unsafe(
        "owner",
        Raw {
            uid: 1000,
            ..Raw::file("rootfs/x", b"")
        },
        "not root",
    );
    assert_unsafe(
        "setuid",
        Raw {
            mode: 0o4755,
            ..Raw::file("rootfs/su", b"")
        },
        "mode 4755",
    );
}

#[test]
fn gnu_long_name_with_dotdot_is_rejected() {
    // A `././@LongLink` entry whose data is the real (hostile) path.
    let long = format!("{}/../../../../etc/passwd", "a".repeat(110));
    let mut data = long.as_bytes().to_vec();
    data.push(0);
    let link = Raw {
        kind: b'L',
        ..Raw::file("././@LongLink", &data)
    };
    let manifest = manifest_entry(&[]);
    let archive = craft(&[manifest, link, Raw::file("truncated", b"x")]);
    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "long.tar.gz", &archive);
    match verify_bundle(&path) {
        Err(VerifyError::UnsafeEntry { entry, reason, .. }) => {
            assert_eq!(entry, long);
            assert_eq!(reason, "`..` component");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn manifest_problems_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let check =
        |name: &str, entries: &[Raw]| verify_bundle(&put(dir.path(), name, &craft(entries)));

    let dup = [
        manifest_entry(&[("a", 0o644, b"1")]),
        Raw::file("a", b"1"),
        Raw::file("a", b"1"),
    ];
    match check("dup.tar.gz", &dup) {
        Err(VerifyError::DuplicateEntry { entry, .. }) => assert_eq!(entry, "a"),
        other => panic!("{other:?}"),
    }
    let no_manifest = [Raw::file("a", b"1")];
    assert!(matches!(
        check("none.tar.gz", &no_manifest),
        Err(VerifyError::MissingManifest { .. })
    ));
    let manifest_later = [Raw::file("a", b"1"), manifest_entry(&[("a", 0o644, b"1")])];
    assert!(matches!(
        check("later.tar.gz", &manifest_later),
        Err(VerifyError::MissingManifest { .. })
    ));
    let two_manifests = [
        manifest_entry(&[("a", 0o644, b"1")]),
        manifest_entry(&[("a", 0o644, b"1")]),
    ];
    match check("two.tar.gz", &two_manifests) {
        Err(VerifyError::DuplicateEntry { entry, .. }) => assert_eq!(entry, "MANIFEST"),
        other => panic!("{other:?}"),
    }
    let bad_line = [Raw::file("MANIFEST", b"not a manifest line\n")];
    match check("badline.tar.gz", &bad_line) {
        Err(VerifyError::BadManifest { line, .. }) => assert_eq!(line, 1),
        other => panic!("{other:?}"),
    }
    let empty_archive: [Raw; 0] = [];
    assert!(matches!(
        check("empty.tar.gz", &empty_archive),
        Err(VerifyError::MissingManifest { .. })
    ));
}

#[test]
fn data_after_the_tar_end_marker_is_rejected() {
    let mut builder = tar::Builder::new(Vec::new());
    let text = format!("{} 0644 1 a\n", sha256_hex(b"1"));
    for (path, data) in [("MANIFEST", text.as_bytes()), ("a", &b"1"[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        builder.append(&h, data).unwrap();
    }
    let mut tar_bytes = builder.into_inner().unwrap();
    tar_bytes.extend_from_slice(&[0; 1024]);
    let dir = tempfile::tempdir().unwrap();
    let clean = put(dir.path(), "clean.tar.gz", &gzip(&tar_bytes));
    verify_bundle(&clean).unwrap();
    tar_bytes.extend_from_slice(b"hidden payload");
    let path = put(dir.path(), "tail.tar.gz", &gzip(&tar_bytes));
    assert!(matches!(
        verify_bundle(&path),
        Err(VerifyError::TrailingData { .. })
    ));
}

#[test]
fn an_entry_larger_than_its_manifest_size_is_refused_before_its_content_is_read() {
    // MANIFEST says 1 byte; the header says 2 GiB, and only 1 KiB follows. Were the content
    // read first, verify would report the truncation (after inflating what there is); it must
    // stop at the header.
    let text = format!("{} 0644 1 big\n", sha256_hex(b"x"));
    let mut tar = Vec::new();
    for (path, size, data) in [
        ("MANIFEST", text.len() as u64, text.as_bytes().to_vec()),
        ("big", 2u64 << 30, vec![0u8; 1024]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_path(path).unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(&data);
        tar.resize(tar.len().next_multiple_of(512), 0);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = put(dir.path(), "big.tar.gz", &gzip(&tar));
    match verify_bundle(&path) {
        Err(VerifyError::SizeMismatch {
            entry,
            expected,
            actual,
            ..
        }) => {
            assert_eq!(entry, "big");
            assert_eq!(expected, 1);
            assert_eq!(actual, 2 << 30);
        }
        other => panic!("{other:?}"),
    }
    // A MANIFEST size that is not canonical decimal is a bad line.
    let text = format!("{} 0644 01 a\n", sha256_hex(b"1"));
    let crafted = craft(&[Raw::file("MANIFEST", text.as_bytes()), Raw::file("a", b"1")]);
    let path = put(dir.path(), "zero.tar.gz", &crafted);
    match verify_bundle(&path) {
        Err(e @ VerifyError::BadManifest { line: 1, .. }) => {
            assert!(e.to_string().contains("size \"01\""), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
