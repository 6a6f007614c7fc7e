//! extract_members on real .deb files (built with dpkg-deb) and tarballs.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use kiln_store::{ArchiveKind, Store, StoreError};

use crate::{sh, sha};

const HELLO: &[u8] = b"#!/bin/sh\necho hello\n";

/// Builds a .deb with usr/bin/hello (0755), a relative symlink to it in usr/sbin and a doc file.
fn build_deb(dir: &Path, compression: &str) -> Vec<u8> {
    let root = dir.join(format!("pkg-{compression}"));
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/sbin")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc/hello")).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        "Package: kiln-test-hello\nVersion: 1.0-1\nArchitecture: all\nMaintainer: kiln <kiln@localhost>\nDescription: test package\n",
    )
    .unwrap();
    fs::write(root.join("usr/bin/hello"), HELLO).unwrap();
    fs::set_permissions(
        root.join("usr/bin/hello"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink("../bin/hello", root.join("usr/sbin/hello")).unwrap();
    fs::write(root.join("usr/share/doc/hello/README"), "readme\n").unwrap();
    let deb = dir.join(format!("hello-{compression}.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", &format!("-Z{compression}"), "--build"])
        .arg(&root)
        .arg(&deb));
    fs::read(deb).unwrap()
}

fn add(store: &Store, dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    let digest = sha(bytes);
    store.insert_file(&path, &digest).unwrap();
    digest
}

#[test]
fn deb_members_and_symlinks_are_extracted_once() {
    for compression in ["xz", "gzip", "zstd"] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("vendor")).unwrap();
        let deb = build_deb(dir.path(), compression);
        let deb_sha = add(&store, dir.path(), "hello.deb", &deb);

        let members = vec!["usr/bin/hello".to_owned(), "./usr/sbin/hello".to_owned()];
        let got = store
            .extract_members(&deb_sha, ArchiveKind::Deb, &members)
            .unwrap();
        assert_eq!(got.len(), 2);
        for m in &members {
            let info = &got[m];
            assert_eq!(info.sha256, sha(HELLO), "{compression} {m}");
            assert_eq!(info.size, HELLO.len() as u64);
            assert_eq!(info.mode, 0o755);
            assert_eq!(fs::read(store.blob_path(&info.sha256)).unwrap(), HELLO);
        }
        let cache = store.root().join("members").join(format!("{deb_sha}.json"));
        let json: serde_json::Value = serde_json::from_slice(&fs::read(&cache).unwrap()).unwrap();
        assert_eq!(json["usr/bin/hello"]["sha256"], sha(HELLO));
        assert_eq!(json["usr/sbin/hello"]["size"], HELLO.len());

        // Second call: answered from the cache, so it works even without the archive.
        let cached = fs::read(&cache).unwrap();
        fs::remove_file(store.blob_path(&deb_sha)).unwrap();
        let again = store
            .extract_members(&deb_sha, ArchiveKind::Deb, &members)
            .unwrap();
        assert_eq!(again, got);
        assert_eq!(fs::read(&cache).unwrap(), cached, "cache untouched");
        assert!(fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none());
    }
}

#[test]
fn a_missing_member_names_the_archive_and_close_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vendor")).unwrap();
    let deb_sha = add(
        &store,
        dir.path(),
        "hello.deb",
        &build_deb(dir.path(), "xz"),
    );
    let err = store
        .extract_members(&deb_sha, ArchiveKind::Deb, &["usr/bin/helo".to_owned()])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::MemberNotFound { .. }), "{msg}");
    assert!(
        msg.contains(&deb_sha) && msg.contains("usr/bin/helo"),
        "{msg}"
    );
    assert!(msg.contains("close names: usr/bin/hello"), "{msg}");
    let err = store
        .extract_members(
            &deb_sha,
            ArchiveKind::Deb,
            &["usr/share/doc/hello".to_owned()],
        )
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    // Nothing was cached or stored for the failed calls.
    assert!(!store
        .root()
        .join("members")
        .join(format!("{deb_sha}.json"))
        .exists());
}

#[test]
fn not_a_deb_reports_dpkg_deb_and_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vendor")).unwrap();
    let bogus = add(&store, dir.path(), "bogus.deb", b"not an ar archive");
    let err = store
        .extract_members(&bogus, ArchiveKind::Deb, &["usr/bin/x".to_owned()])
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("dpkg-deb --fsys-tarfile") && msg.contains("failed"),
        "{msg}"
    );
}

#[test]
fn tar_gz_members_without_folder_entries_and_through_links() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vendor")).unwrap();
    let etcd = b"etcd binary".to_vec();
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(etcd.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder
        .append_data(&mut header, "etcd-v3.5.16-linux-amd64/etcd", &etcd[..])
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder
        .append_link(&mut link, "etcd-v3.5.16-linux-amd64/bin/etcd", "../etcd")
        .unwrap();
    let tgz = builder.into_inner().unwrap().finish().unwrap();
    let tgz_sha = add(&store, dir.path(), "etcd.tar.gz", &tgz);

    let members = vec![
        "etcd-v3.5.16-linux-amd64/etcd".to_owned(),
        "etcd-v3.5.16-linux-amd64/bin/etcd".to_owned(),
    ];
    let got = store
        .extract_members(&tgz_sha, ArchiveKind::TarGz, &members)
        .unwrap();
    for m in &members {
        assert_eq!(got[m].sha256, sha(&etcd));
        assert_eq!(got[m].mode, 0o755);
    }
    assert_eq!(fs::read(store.blob_path(&sha(&etcd))).unwrap(), etcd);

    // A member asked for later is extracted and added to the existing cache.
    let tar_sha = {
        let mut plain = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        plain.append_data(&mut h, "./a", &b"aaa"[..]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(3);
        h.set_mode(0o600);
        h.set_cksum();
        plain.append_data(&mut h, "./b", &b"bbb"[..]).unwrap();
        add(
            &store,
            dir.path(),
            "plain.tar",
            &plain.into_inner().unwrap(),
        )
    };
    store
        .extract_members(&tar_sha, ArchiveKind::Tar, &["a".to_owned()])
        .unwrap();
    let got = store
        .extract_members(&tar_sha, ArchiveKind::Tar, &["b".to_owned()])
        .unwrap();
    assert_eq!(got["b"].mode, 0o600);
    let cache = store.root().join("members").join(format!("{tar_sha}.json"));
    let json: serde_json::Value = serde_json::from_slice(&fs::read(cache).unwrap()).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 2);
}

#[test]
fn a_corrupt_archive_blob_is_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vendor")).unwrap();
    let deb_sha = add(
        &store,
        dir.path(),
        "hello.deb",
        &build_deb(dir.path(), "xz"),
    );
    fs::write(store.blob_path(&deb_sha), b"bitrot").unwrap();
    let err = store
        .extract_members(&deb_sha, ArchiveKind::Deb, &["usr/bin/hello".to_owned()])
        .unwrap_err();
    assert!(matches!(err, StoreError::ArchiveMissing { .. }), "{err}");
    assert!(!store.blob_path(&deb_sha).exists());
}
