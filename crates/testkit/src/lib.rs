//! kiln-testkit: support for tests that run real components — Debian's docker-registry
//! seeded with images built offline (umoci) and pushed with skopeo, and containerd run as a
//! test process — shared by kiln-image's tests and the kiln CLI's.
//!
//! Tests needing a missing tool print `SKIPPED …` and pass, unless `KILN_REQUIRE_TOOLS=1`
//! is set, which turns a missing tool into a failure (CI sets it).
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

mod components;
mod fixtures;

use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest as _, Sha256};

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
    let msg = format!(
        "{test}: needs {} (apt-get install docker-registry skopeo umoci containerd catatonit apache2-utils openssl)",
        missing.join(", ")
    );
    if std::env::var_os("KILN_REQUIRE_TOOLS").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {msg}");
    false
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
