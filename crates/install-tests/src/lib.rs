//! Test support for install.sh (crates/engine/assets/install.sh): fixture builds in kiln's
//! bundle format, raw (hostile) archives, runs under a temporary root, and systemd-nspawn
//! guests booting the image of tests/e2e/guest-image.sh.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod archive;
pub mod fixture;
pub mod guest;
pub mod run;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The installer under test.
pub fn install_sh() -> PathBuf {
    repo_root().join("crates/engine/assets/install.sh")
}

/// The checkout this crate lives in.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fails the test with the apt package to install when `tool` is not on PATH: a test that
/// needs a tool must not pass silently without it.
pub fn require_tool(tool: &str, apt_package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is required by this test: apt-get install {apt_package}"
    );
}

/// Fails the test when not running as root (nspawn, chroot-like roots with device checks).
pub fn require_root() {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "this test must run as root (CI does)"
    );
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
