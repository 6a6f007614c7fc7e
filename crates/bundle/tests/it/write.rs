//! Writer: reproducibility, header fields, gzip members, pins, atomicity.

use std::io::Read;

use kiln_bundle::{
    write_archive, write_bundle, BundleError, BundleSpec, Entry, Source, CHUNK_SIZE,
    GZIP_MEMBER_HEADER,
};

use crate::common::*;

#[test]
fn same_spec_gives_identical_bytes_whatever_the_source_files_look_like() {
    let (src_a, src_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (out_a, out_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec_a = fixture_spec(src_a.path(), false, 0o644, 1_000);
    let spec_b = fixture_spec(src_b.path(), true, 0o751, 2_000_000);
    let a = write_bundle(out_a.path(), "master", &spec_a).unwrap();
    let b = write_bundle(&out_b.path().join("nested/bundles"), "master", &spec_b).unwrap();
    assert_eq!(a.file_name, b.file_name);
    assert_eq!(
        (&a.sha256, a.size, &a.manifest),
        (&b.sha256, b.size, &b.manifest)
    );
    let (bytes_a, bytes_b) = (
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap(),
    );
    assert_eq!(bytes_a, bytes_b);
    assert_eq!(
        a.file_name,
        format!("master-{}.tar.gz", &sha256_hex(&bytes_a)[..16])
    );
    assert_eq!(a.sha256, sha256_hex(&bytes_a));
    assert_eq!(a.size, bytes_a.len() as u64);
    assert_eq!(
        list(out_a.path()),
        vec![a.file_name.clone()],
        "no temp file left behind"
    );
}

#[test]
fn headers_are_normalised_sorted_and_manifest_first() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec = fixture_spec(src.path(), true, 0o600, 5);
    let written = write_bundle(out.path(), "node", &spec).unwrap();
    let bytes = std::fs::read(&written.path).unwrap();
    let tar_bytes = gunzip(&bytes);

    let mut expected: Vec<(String, u32, Vec<u8>)> = fixture_files()
        .into_iter()
        .map(|(p, m, c, _)| (p, stored_mode(m), c))
        .collect();
    expected.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let manifest_text: String = expected
        .iter()
        .map(|(p, m, c)| format!("{} {:04o} {} {}\n", sha256_hex(c), m, c.len(), p))
        .collect();

    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let mut seen = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        assert_eq!(h.entry_type(), tar::EntryType::Regular);
        assert_eq!(h.mtime().unwrap(), MTIME);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        assert_eq!(h.groupname_bytes(), Some(&b""[..]));
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        seen.push((path, h.mode().unwrap(), content));
    }
    assert_eq!(
        seen[0],
        ("MANIFEST".to_owned(), 0o644, manifest_text.into_bytes())
    );
    assert_eq!(seen[1..], expected[..]);
    let lines: Vec<(String, u32)> = written
        .manifest
        .iter()
        .map(|l| (l.path.clone(), l.mode))
        .collect();
    let want: Vec<(String, u32)> = expected.iter().map(|e| (e.0.clone(), e.1)).collect();
    assert_eq!(lines, want);

    // Long names use GNU long-name headers; no pax headers, no directories.
    let raw_kinds: Vec<u8> = tar::Archive::new(&tar_bytes[..])
        .entries()
        .unwrap()
        .raw(true)
        .map(|e| e.unwrap().header().as_old().linkflag[0])
        .collect();
    assert_eq!(
        raw_kinds.iter().filter(|&&k| k == b'L').count(),
        2,
        "paths of 100 and 217 bytes"
    );
    assert!(raw_kinds.iter().all(|&k| k == b'0' || k == b'L'));
    // End of archive: two zero blocks and nothing else.
    assert_eq!(tar_bytes.len() % 512, 0);
    assert!(tar_bytes[tar_bytes.len() - 1024..].iter().all(|&b| b == 0));
}

#[test]
fn gzip_members_are_canonical_and_cut_at_the_chunk_size() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec = fixture_spec(src.path(), false, 0o644, 5);
    let written = write_bundle(out.path(), "etcd", &spec).unwrap();
    let bytes = std::fs::read(&written.path).unwrap();
    assert_eq!(bytes[..10], GZIP_MEMBER_HEADER);
    assert_eq!(bytes[3], 0, "no FNAME, FEXTRA, FCOMMENT or FTEXT flag");
    assert_eq!(bytes[4..8], [0, 0, 0, 0], "mtime 0");

    let offsets = member_offsets(&bytes);
    let tar_len = gunzip(&bytes).len();
    assert!(tar_len > 2 * CHUNK_SIZE);
    assert_eq!(offsets.len(), tar_len.div_ceil(CHUNK_SIZE));
    for (i, &at) in offsets.iter().enumerate() {
        assert_eq!(bytes[at..at + 10], GZIP_MEMBER_HEADER, "member {i}");
        let end = offsets.get(i + 1).copied().unwrap_or(bytes.len());
        let isize = u32::from_le_bytes(bytes[end - 4..end].try_into().unwrap()) as usize;
        let want = if i + 1 < offsets.len() {
            CHUNK_SIZE
        } else {
            tar_len - i * CHUNK_SIZE
        };
        assert_eq!(isize, want, "member {i} holds one chunk");
    }
}

#[test]
fn pin_mismatch_leaves_nothing_in_the_folder() {
    let src = tempfile::tempdir().unwrap();
    let content = data(9, 3 * CHUNK_SIZE);
    let file = put(src.path(), "kubelet", &content);
    let good = sha256_hex(&content);
    let cases = [
        ("other bytes", sha256_hex(b"other"), content.len() as u64),
        ("shorter pin", good.clone(), content.len() as u64 - 1),
        ("longer pin", good.clone(), content.len() as u64 + 1),
    ];
    for (what, sha256, size) in cases {
        let out = tempfile::tempdir().unwrap();
        let spec = BundleSpec {
            entries: vec![
                Entry {
                    path: "a".into(),
                    mode: 0o644,
                    source: Source::Bytes(b"x".to_vec()),
                },
                Entry {
                    path: "rootfs/kubelet".into(),
                    mode: 0o755,
                    source: Source::File {
                        path: file.clone(),
                        sha256: sha256.clone(),
                        size,
                    },
                },
            ],
            mtime: MTIME,
        };
        match write_bundle(out.path(), "master", &spec) {
            Err(BundleError::PinMismatch {
                path,
                file: f,
                expected,
                actual,
                expected_size,
                actual_size,
            }) => {
                assert_eq!((path.as_str(), &f), ("rootfs/kubelet", &file), "{what}");
                assert_eq!((expected, expected_size), (sha256, size), "{what}");
                assert_eq!(
                    (actual, actual_size),
                    (good.clone(), content.len() as u64),
                    "{what}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            list(out.path()).is_empty(),
            "{what}: {:?}",
            list(out.path())
        );
        let exact = out.path().join("secrets.tar.gz");
        assert!(matches!(
            write_archive(&exact, 0o600, &spec, false),
            Err(BundleError::PinMismatch { .. })
        ));
        assert!(
            list(out.path()).is_empty(),
            "{what}: {:?}",
            list(out.path())
        );
    }
}

#[test]
fn missing_source_file_is_named_and_leaves_nothing() {
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("nope");
    let spec = BundleSpec {
        entries: vec![Entry {
            path: "bin/x".into(),
            mode: 0o755,
            source: Source::File {
                path: missing.clone(),
                sha256: "0".repeat(64),
                size: 1,
            },
        }],
        mtime: 0,
    };
    match write_bundle(out.path(), "x", &spec) {
        Err(BundleError::ReadSource { path, file, .. }) => {
            assert_eq!((path.as_str(), file), ("bin/x", missing))
        }
        other => panic!("{other:?}"),
    }
    assert!(list(out.path()).is_empty());
}

#[test]
fn bad_input_is_rejected_before_anything_is_created() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bundles");
    let bad = |path: &str| BundleSpec {
        entries: vec![Entry {
            path: path.into(),
            mode: 0o644,
            source: Source::Bytes(vec![]),
        }],
        mtime: 0,
    };
    for path in ["../etc/passwd", "/abs", "a/./b", "a b", "MANIFEST"] {
        match write_bundle(&dir, "master", &bad(path)) {
            Err(BundleError::InvalidPath { path: p, .. }) => assert_eq!(p, path),
            other => panic!("{path}: {other:?}"),
        }
    }
    let pin = BundleSpec {
        entries: vec![Entry {
            path: "f".into(),
            mode: 0o644,
            source: Source::File {
                path: "/dev/null".into(),
                sha256: "ABC".into(),
                size: 0,
            },
        }],
        mtime: 0,
    };
    assert!(matches!(
        write_bundle(&dir, "master", &pin),
        Err(BundleError::InvalidDigest { .. })
    ));
    assert!(matches!(
        write_bundle(&dir, "../x", &bad("ok")),
        Err(BundleError::InvalidStem { .. })
    ));
    assert!(!dir.exists(), "nothing created for bad input");
}

#[test]
fn write_archive_uses_the_exact_name_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("hosts/h1/secrets.tar.gz");
    let spec = BundleSpec {
        entries: vec![Entry {
            path: "etc/kubernetes/pki/ca.key".into(),
            mode: 0o600,
            source: Source::Bytes(data(1, 300)),
        }],
        mtime: 7,
    };
    let written = write_archive(&path, 0o600, &spec, false).unwrap();
    assert_eq!(written.path, path);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(written.manifest.len(), 1);
    let names: Vec<String> = tar::Archive::new(&gunzip(&std::fs::read(&path).unwrap())[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        ["etc/kubernetes/pki/ca.key"],
        "no MANIFEST without with_manifest"
    );
    assert_eq!(list(path.parent().unwrap()), ["secrets.tar.gz"]);
    // Overwriting keeps the mode and the single file.
    write_archive(&path, 0o600, &spec, true).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(list(path.parent().unwrap()), ["secrets.tar.gz"]);
}

#[test]
fn empty_spec_gives_a_valid_bundle() {
    let out = tempfile::tempdir().unwrap();
    let written = write_bundle(
        out.path(),
        "lb",
        &BundleSpec {
            entries: vec![],
            mtime: 0,
        },
    )
    .unwrap();
    let report = kiln_bundle::verify_bundle(&written.path).unwrap();
    assert_eq!(
        (report.files, report.content_bytes, report.members),
        (0, 0, 1)
    );
}
