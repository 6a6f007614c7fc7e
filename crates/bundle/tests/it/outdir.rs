//! verify_out_dir and write_sha256sums over a realistic out folder.

use std::path::Path;

use kiln_bundle::{
    sha256_file, verify_out_dir, write_archive, write_bundle, write_sha256sums, BundleError,
    BundleSpec, Entry, Source, VerifyError,
};

use crate::common::*;

/// Lists every regular file under `dir` (except SHA256SUMS) with its sha256.
fn sums_of(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            sums_of(dir, &path, out);
        } else if path != "SHA256SUMS" {
            out.push((path.clone(), sha256_file(&dir.join(&path)).unwrap().0));
        }
    }
}

fn reseal(dir: &Path) {
    let mut sums = Vec::new();
    sums_of(dir, "", &mut sums);
    write_sha256sums(dir, &sums).unwrap();
}

/// An out folder like `kiln build` makes: two role bundles, a secrets archive, a seed, JSON.
fn build_out(dir: &Path) -> String {
    let src = tempfile::tempdir().unwrap();
    let master = write_bundle(
        &dir.join("bundles"),
        "master",
        &fixture_spec(src.path(), false, 0o644, 0),
    )
    .unwrap();
    let lb = BundleSpec {
        entries: vec![Entry {
            path: "rootfs/etc/haproxy.cfg".into(),
            mode: 0o644,
            source: Source::Bytes(data(3, 4000)),
        }],
        mtime: MTIME,
    };
    write_bundle(&dir.join("bundles"), "lb", &lb).unwrap();
    let secrets = BundleSpec {
        entries: vec![Entry {
            path: "etc/kubernetes/pki/apiserver.key".into(),
            mode: 0o600,
            source: Source::Bytes(data(4, 1700)),
        }],
        mtime: MTIME,
    };
    write_archive(&dir.join("hosts/m1/secrets.tar.gz"), 0o600, &secrets, false).unwrap();
    std::fs::create_dir_all(dir.join("hosts/m1/seed")).unwrap();
    std::fs::write(dir.join("hosts/m1/seed/user-data"), "#cloud-config\n").unwrap();
    std::fs::write(dir.join("MANIFEST.json"), "{\"generation\":1}\n").unwrap();
    reseal(dir);
    format!("bundles/{}", master.file_name)
}

fn fresh() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let master = build_out(dir.path());
    (dir, master)
}

#[test]
fn a_complete_out_folder_verifies() {
    let (dir, master) = fresh();
    let report = verify_out_dir(dir.path()).unwrap();
    assert_eq!(report.files, 5);
    assert_eq!(report.bundles.len(), 2);
    assert!(report
        .bundles
        .iter()
        .any(|b| b.path == dir.path().join(&master)));
    let sums = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    let paths: Vec<&str> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1)
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "SHA256SUMS is sorted by path");
    assert_eq!(paths.len(), 5);
}

#[test]
fn missing_file_is_named() {
    let (dir, _) = fresh();
    std::fs::remove_file(dir.path().join("hosts/m1/seed/user-data")).unwrap();
    match verify_out_dir(dir.path()) {
        Err(VerifyError::MissingFile { file }) => {
            assert_eq!(file, dir.path().join("hosts/m1/seed/user-data"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn extra_file_is_named() {
    let (dir, _) = fresh();
    std::fs::write(dir.path().join("hosts/m1/stray.txt"), "x").unwrap();
    match verify_out_dir(dir.path()) {
        Err(VerifyError::UnlistedFile { file }) => {
            assert_eq!(file, dir.path().join("hosts/m1/stray.txt"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn changed_byte_is_named() {
    let (dir, master) = fresh();
    let json = dir.path().join("MANIFEST.json");
    let mut bytes = std::fs::read(&json).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&json, &bytes).unwrap();
    match verify_out_dir(dir.path()) {
        Err(VerifyError::FileDigestMismatch { file, .. }) => assert_eq!(file, json),
        other => panic!("{other:?}"),
    }

    let (dir, _) = fresh();
    let bundle = dir.path().join(&master);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&bundle, &bytes).unwrap();
    let err = verify_out_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains(&master), "{err}");
}

#[test]
fn bundle_name_digest_must_match() {
    let (dir, master) = fresh();
    let wrong = dir.path().join("bundles/master-0000000000000000.tar.gz");
    std::fs::rename(dir.path().join(&master), &wrong).unwrap();
    reseal(dir.path());
    match verify_out_dir(dir.path()) {
        Err(VerifyError::NameDigestMismatch {
            file, name_digest, ..
        }) => {
            assert_eq!((file, name_digest.as_str()), (wrong, "0000000000000000"));
        }
        other => panic!("{other:?}"),
    }

    let (dir, master) = fresh();
    let plain = dir.path().join("bundles/master.tar.gz");
    std::fs::rename(dir.path().join(&master), &plain).unwrap();
    reseal(dir.path());
    match verify_out_dir(dir.path()) {
        Err(VerifyError::BadBundleName { file }) => assert_eq!(file, plain),
        other => panic!("{other:?}"),
    }
}

#[test]
fn symlinks_and_bad_sums_are_rejected() {
    let (dir, _) = fresh();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("hosts/m1/link")).unwrap();
    assert!(matches!(
        verify_out_dir(dir.path()),
        Err(VerifyError::NotRegular { .. })
    ));

    let (dir, _) = fresh();
    let sums = dir.path().join("SHA256SUMS");
    let text = std::fs::read_to_string(&sums)
        .unwrap()
        .replacen("  ", " ", 1);
    std::fs::write(&sums, text).unwrap();
    match verify_out_dir(dir.path()) {
        Err(VerifyError::BadSumsLine { line, .. }) => assert_eq!(line, 1),
        other => panic!("{other:?}"),
    }

    let (dir, _) = fresh();
    std::fs::remove_file(dir.path().join("SHA256SUMS")).unwrap();
    assert!(matches!(
        verify_out_dir(dir.path()),
        Err(VerifyError::Io { .. })
    ));
}

#[test]
fn write_sha256sums_rejects_bad_lists_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sha = "ab".repeat(32);
    let cases: [(&[(String, String)], &str); 4] = [
        (
            &[("a".into(), sha.clone()), ("a".into(), sha.clone())],
            "dup",
        ),
        (&[("../a".into(), sha.clone())], "dotdot"),
        (&[("SHA256SUMS".into(), sha.clone())], "self"),
        (&[("a".into(), "xyz".into())], "digest"),
    ];
    for (files, what) in cases {
        let err = write_sha256sums(dir.path(), files).expect_err(what);
        let ok = match what {
            "dup" => matches!(err, BundleError::DuplicatePath { .. }),
            "digest" => matches!(err, BundleError::InvalidDigest { .. }),
            _ => matches!(err, BundleError::InvalidPath { .. }),
        };
        assert!(ok, "{what}: {err}");
        assert!(list(dir.path()).is_empty(), "{what}");
    }
    write_sha256sums(
        dir.path(),
        &[("b".into(), sha.clone()), ("a/c".into(), sha.clone())],
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("SHA256SUMS")).unwrap();
    assert_eq!(text, format!("{sha}  a/c\n{sha}  b\n"));
}

#[test]
fn sha256_file_matches_in_memory_digest() {
    let dir = tempfile::tempdir().unwrap();
    for len in [0, 1, (1 << 20) - 1, (1 << 20) + 1, 3 << 20] {
        let bytes = data(len as u64, len);
        let path = put(dir.path(), "f", &bytes);
        assert_eq!(
            sha256_file(&path).unwrap(),
            (sha256_hex(&bytes), len as u64)
        );
    }
}
