//! kiln-deb: Debian packages through the system's own apt — resolving a package to the exact
//! build its index pins (sha256, size), computing what installing packages brings onto a host
//! against a private dpkg status, downloading a pinned build, a .deb's data tarball, and dpkg's version order.
//!
//! It knows nothing of kiln's store: [`download`] leaves the .deb in a folder the caller gives
//! (`kiln-store` hashes it against its pin and moves it in), so the dependency runs one way.
//! This library never prints and never touches the machine's dpkg status or apt cache files.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod apt;
mod closure;
mod data;
mod debversion;
mod error;

pub use apt::{apt_resolve, download, host_arch, AptPin};
pub use closure::AptIndex;
pub use data::with_data_tar;
pub use debversion::{compare_versions, version_matches};
pub use error::DebError;

/// Whether `s` is a sha256 as apt's index gives it once lowercased (64 lowercase hex digits).
fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
