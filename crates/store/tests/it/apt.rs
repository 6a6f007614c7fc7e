//! apt_resolve against the machine's apt lists, and apt downloads from a local file: repository.

use std::fs;
use std::path::Path;
use std::process::Command;

use kiln_store::{apt_resolve, host_arch, is_sha256, ArchiveKind, Store, StoreError};

use crate::{assert_store, sh, sha};

const DRIVER: &str = env!("CARGO_BIN_EXE_kiln-store-fetch-test");

/// Whether apt's lists know coreutils with a sha256 (i.e. `apt-get update` has run).
fn apt_lists_ready() -> bool {
    Command::new("apt-cache")
        .args(["show", "coreutils"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\nSHA256: "))
        .unwrap_or(false)
}

#[test]
fn apt_resolve_coreutils_from_the_system_lists() {
    if !apt_lists_ready() {
        eprintln!("SKIPPED apt_resolve_coreutils_from_the_system_lists: apt lists are empty (run `apt-get update`)");
        return;
    }
    let arch = host_arch().unwrap();
    let candidate = apt_resolve("coreutils", "", &arch).unwrap();
    assert!(is_sha256(&candidate.sha256), "{candidate:?}");
    assert!(candidate.size > 0);
    assert!(
        candidate.filename.starts_with("pool/") && candidate.filename.ends_with(".deb"),
        "{candidate:?}"
    );
    assert_eq!(candidate.arch, arch);

    let upstream = candidate.version.split(['-', '+', '~']).next().unwrap();
    let by_prefix = apt_resolve("coreutils", upstream, &arch).unwrap();
    assert!(by_prefix.version.starts_with(upstream), "{by_prefix:?}");
    assert!(is_sha256(&by_prefix.sha256) && by_prefix.size > 0);

    let err = apt_resolve("coreutils", "0.0.0.0.1", &arch).unwrap_err();
    assert!(matches!(err, StoreError::AptNoVersion { .. }), "{err}");
    assert!(err.to_string().contains(&candidate.version), "{err}");
}

#[test]
fn apt_refuses_another_architecture() {
    let host = host_arch().unwrap();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let err = apt_resolve("coreutils", "", other).unwrap_err();
    assert!(matches!(err, StoreError::AptArch { .. }), "{err}");
    assert!(
        err.to_string().contains(other) && err.to_string().contains(&host),
        "{err}"
    );
}

/// A file: apt repository with one package, and an apt configuration that uses only it.
struct LocalRepo {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    deb: Vec<u8>,
}

fn local_repo(arch: &str) -> Option<LocalRepo> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pkg = d.join("pkg");
    fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    fs::create_dir_all(pkg.join("usr/bin")).unwrap();
    fs::write(
        pkg.join("DEBIAN/control"),
        format!("Package: kiln-store-test\nVersion: 1.2.3-1+b2\nArchitecture: {arch}\nMaintainer: kiln <kiln@localhost>\nDescription: test\n"),
    )
    .unwrap();
    fs::write(pkg.join("usr/bin/kiln-store-test"), "#!/bin/sh\n").unwrap();
    let repo = d.join("repo");
    fs::create_dir_all(&repo).unwrap();
    let file = "kiln-store-test_1.2.3-1+b2.deb";
    sh(Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("--build")
        .arg(&pkg)
        .arg(repo.join(file)));
    let deb = fs::read(repo.join(file)).unwrap();
    let control = sh(Command::new("dpkg-deb").arg("-f").arg(repo.join(file)));
    // An older version too, so the prefix has something to choose between.
    let packages = format!(
        "{control}Filename: ./{file}\nSize: {}\nSHA256: {}\n\nPackage: kiln-store-test\nVersion: 1.2.0-1\nArchitecture: {arch}\nFilename: ./old.deb\nSize: 10\nSHA256: {}\nDescription: old\n\n",
        deb.len(),
        sha(&deb),
        "0".repeat(64),
    );
    fs::write(repo.join("Packages"), packages).unwrap();
    let config = crate::private_apt(d, &repo)?;
    Some(LocalRepo {
        _dir: dir,
        config,
        deb,
    })
}

fn driver(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(DRIVER)
        .args(args)
        .env("APT_CONFIG", config)
        .output()
        .unwrap()
}

#[test]
fn apt_resolves_downloads_and_extracts_from_a_local_repository() {
    let uid = sh(Command::new("id").arg("-u"));
    if uid.trim() != "0" {
        eprintln!("SKIPPED apt_resolves_downloads_and_extracts_from_a_local_repository: needs root for apt-get update");
        return;
    }
    let arch = host_arch().unwrap();
    let repo = local_repo(&arch).expect("a local apt repository works as root");

    let out = driver(
        &repo.config,
        &["apt-resolve", "kiln-store-test", "1.2", &arch],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("version=1.2.3-1+b2\n"),
        "newest 1.2.x: {text}"
    );
    assert!(
        text.contains(&format!("sha256={}\n", sha(&repo.deb))),
        "{text}"
    );
    assert!(
        text.contains(&format!("size={}\n", repo.deb.len())),
        "{text}"
    );

    let out = driver(
        &repo.config,
        &["apt-resolve", "kiln-store-test", "1.2.0", &arch],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("version=1.2.0-1\n"));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vendor");
    let root_s = root.display().to_string();
    let wrong = "0".repeat(64);
    let out = driver(
        &repo.config,
        &[
            "apt-fetch",
            &root_s,
            "kiln-store-test",
            "1.2.3-1+b2",
            &arch,
            &wrong,
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sha256 mismatch") && err.contains(&sha(&repo.deb)),
        "{err}"
    );
    let store = Store::open(&root).unwrap();
    assert_store(&store, &[], &[]);

    // A pinned version the repository no longer has (an update superseded it): named, with the
    // command that re-pins, and nothing lands.
    let out = driver(
        &repo.config,
        &[
            "apt-fetch",
            &root_s,
            "kiln-store-test",
            "1.2.3-1+b1",
            &arch,
            &sha(&repo.deb),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kiln-store-test 1.2.3-1+b1")
            && err.contains("no longer offer")
            && err.contains("kiln lock --repin-packages"),
        "{err}"
    );
    assert_store(&store, &[], &[]);

    let digest = sha(&repo.deb);
    let out = driver(
        &repo.config,
        &[
            "apt-fetch",
            &root_s,
            "kiln-store-test",
            "1.2.3-1+b2",
            &arch,
            &digest,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_store(&store, &[(&digest, &repo.deb)], &[]);

    let got = store
        .extract_members(
            &digest,
            ArchiveKind::Deb,
            &["usr/bin/kiln-store-test".to_owned()],
        )
        .unwrap();
    assert_eq!(got["usr/bin/kiln-store-test"].sha256, sha(b"#!/bin/sh\n"));
}
