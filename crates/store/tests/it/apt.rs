//! apt downloads into the store from a local file: repository: the pin is checked before
//! the .deb gets its blob name, and a superseded version is named with the command that re-pins.

use std::path::Path;
use std::process::Command;

use kiln_store::{ArchiveKind, Store};
use kiln_testkit::{dpkg_arch, is_root, ready, AptRepo, Deb};

use crate::{assert_store, sha};

const DRIVER: &str = env!("CARGO_BIN_EXE_kiln-store-fetch-test");

fn driver(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(DRIVER)
        .args(args)
        .env("APT_CONFIG", config)
        .output()
        .unwrap()
}

#[test]
fn apt_downloads_into_the_store_only_what_matches_the_pin() {
    let test = "apt_downloads_into_the_store_only_what_matches_the_pin";
    if !ready(test, is_root(), "needs root for apt-get update") {
        return;
    }
    let arch = dpkg_arch();
    let repo = AptRepo::build(
        &arch,
        &[Deb {
            name: "kiln-store-test",
            version: "1.2.3-1+b2",
            fields: "",
            files: &[("usr/bin/kiln-store-test", "#!/bin/sh\n")],
        }],
        "",
    );
    let deb = repo.deb("kiln-store-test");

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
        err.contains("sha256 mismatch") && err.contains(&sha(deb)),
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
            &sha(deb),
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

    let digest = sha(deb);
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
    assert_store(&store, &[(&digest, deb)], &[]);

    let got = store
        .extract_members(
            &digest,
            ArchiveKind::Deb,
            &["usr/bin/kiln-store-test".to_owned()],
        )
        .unwrap();
    assert_eq!(got["usr/bin/kiln-store-test"].sha256, sha(b"#!/bin/sh\n"));
}

#[test]
fn apt_refuses_to_download_another_architecture() {
    let host = dpkg_arch();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vendor");
    let out = Command::new(DRIVER)
        .args([
            "apt-fetch",
            &root.display().to_string(),
            "coreutils",
            "9.1-1",
            other,
            &"0".repeat(64),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("architecture {other} requested")) && err.contains(&host),
        "{err}"
    );
    assert_store(&Store::open(&root).unwrap(), &[], &[]);
}
