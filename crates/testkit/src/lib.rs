//! kiln-testkit: support for tests that run real components — Debian's docker-registry
//! seeded with images built offline (umoci) and pushed with skopeo, and containerd run as a
//! test process — shared by kiln-image's tests and the kiln CLI's; and a scriptable HTTP
//! server on 127.0.0.1 for fault injection ([`http::Server`]), used by kiln-transport's and
//! kiln-store's tests.
//!
//! Also: small local apt repositories ([`AptRepo`]) for the Debian package tests.
//!
//! Tests needing a missing tool, root or data print `SKIPPED …` and pass, unless
//! `KILN_REQUIRE_TOOLS=1` is set, which turns what is missing into a failure (CI sets it):
//! every such test decides through [`ready`].
//!
//! Tests read files from outside the repository only through [`Fixture`]: each kind has one
//! folder, which an environment variable overrides.
//!
//! | fixture | variable | default |
//! |---|---|---|
//! | upstream checksum tables (`upstream-checksums.yml`, `kubernetes-release-sha512.tsv`) | `KILN_UPSTREAM_TABLES` | `../shared/data` beside the repository |
//! | the `debs` test's Debian 12 root and `.deb` cache | `KILN_DEBS_CACHE` | `/var/tmp/kiln-debs` |
//!
//! (The VM tier's guest image comes from `KILN_GUEST` or `tests/e2e/guest-image.sh`; the
//! Kubernetes binaries are read from `catalog/files/`, inside the repository.)
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod apt;
mod components;
mod fixtures;
pub mod http;
pub mod token;

use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest as _, Sha256};

pub use apt::{private_apt, AptRepo, Deb};
pub use components::{
    build_images, free_port, push, remote_digest, Containerd, Images, Proc, Registry, RegistryAuth,
};
pub use fixtures::{repo_root, Fixture};

/// Whether every tool is on PATH; otherwise prints why the test is skipped (or fails
/// when `KILN_REQUIRE_TOOLS` is set).
pub fn have_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    ready(
        test,
        false,
        &format!(
            "needs {} (apt-get install docker-registry skopeo umoci containerd catatonit apache2-utils openssl)",
            missing.join(", ")
        ),
    )
}

/// Whether a test can run: `true` when `ok`; otherwise prints `SKIPPED {test}: {why}` and
/// returns `false`, or fails the test when `KILN_REQUIRE_TOOLS` is set (so CI never passes a
/// test that did not run).
pub fn ready(test: &str, ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("KILN_REQUIRE_TOOLS").is_some() {
        panic!("{test}: {why} (KILN_REQUIRE_TOOLS is set, so this is a failure, not a skip)");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Whether the test runs as root (uid 0).
pub fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

/// The architecture dpkg installs for on this machine (`amd64`, ...), read by the test itself
/// rather than by the code under test.
pub fn dpkg_arch() -> String {
    run(Command::new("dpkg").arg("--print-architecture"))
        .trim()
        .to_owned()
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Runs a command, panicking with its stderr when it fails; returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The names in a folder, sorted.
pub fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// sha256 hex of bytes.
pub fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic bytes that do not compress.
pub fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
