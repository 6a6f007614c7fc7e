//! Standard tools accept the output: gzip, GNU tar, sha256sum, awk (install.sh's toolset).

use std::path::Path;
use std::process::Command;

use kiln_bundle::{sha256_file, write_bundle, write_sha256sums};

use crate::common::*;

/// Runs a shell command in `dir`; fails the test with its output if it fails.
fn sh(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run sh: {e}"));
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn gzip_tar_and_sha256sum_accept_the_output() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let written = write_bundle(
        out.path(),
        "master",
        &fixture_spec(src.path(), false, 0o644, 0),
    )
    .unwrap();
    let name = &written.file_name;

    sh(out.path(), &format!("gzip -t {name}"));
    let listing = sh(out.path(), &format!("tar tzf {name}"));
    let mut expected: Vec<String> = fixture_files().into_iter().map(|f| f.0).collect();
    expected.sort();
    expected.insert(0, "MANIFEST".into());
    assert_eq!(listing.lines().collect::<Vec<_>>(), expected);

    // install.sh's check: extract, then verify every file against MANIFEST.
    sh(out.path(), &format!("mkdir x && tar xzf {name} -C x"));
    let checked = sh(
        &out.path().join("x"),
        "awk '{print $1\"  \"$4}' MANIFEST | sha256sum -c",
    );
    assert_eq!(
        checked.lines().filter(|l| l.ends_with(": OK")).count(),
        expected.len() - 1
    );
    let mode = sh(
        &out.path().join("x"),
        "stat -c %a rootfs/etc/kiln/private install.sh rootfs/opt/tool",
    );
    assert_eq!(
        mode.split_whitespace().collect::<Vec<_>>(),
        ["640", "700", "755"]
    );

    std::fs::remove_dir_all(out.path().join("x")).unwrap();
    let sums = vec![(format!("bundles/{name}"), written.sha256.clone())];
    std::fs::create_dir(out.path().join("bundles")).unwrap();
    std::fs::rename(&written.path, out.path().join("bundles").join(name)).unwrap();
    write_sha256sums(out.path(), &sums).unwrap();
    sh(out.path(), "sha256sum -c --strict SHA256SUMS");
    let (digest, _) = sha256_file(&out.path().join("bundles").join(name)).unwrap();
    assert_eq!(digest, written.sha256);
}

#[test]
fn gzip_detects_a_corrupted_member_too() {
    let (src, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let written = write_bundle(
        out.path(),
        "node",
        &fixture_spec(src.path(), false, 0o644, 0),
    )
    .unwrap();
    let mut bytes = std::fs::read(&written.path).unwrap();
    let at = member_offsets(&bytes)[1] - 6; // inside the first member's CRC32
    bytes[at] ^= 0xff;
    std::fs::write(out.path().join("bad.tar.gz"), &bytes).unwrap();
    let status = Command::new("gzip")
        .args(["-t", "bad.tar.gz"])
        .current_dir(out.path())
        .status()
        .unwrap();
    assert!(!status.success());
}
