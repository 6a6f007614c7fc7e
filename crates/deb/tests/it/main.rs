//! Integration tests of kiln-deb against real apt: the machine's own lists, and local
//! repositories of packages built on the spot (root needed for their `apt-get update`).

mod apt;
mod closure;

use std::process::Command;

/// Whether apt's lists know `package` with a sha256 (i.e. `apt-get update` has run).
pub fn lists_know(package: &str) -> bool {
    Command::new("apt-cache")
        .args(["show", package])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\nSHA256: "))
        .unwrap_or(false)
}

/// Whether `s` is 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
