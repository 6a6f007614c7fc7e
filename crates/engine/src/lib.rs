//! kiln-engine: the steps of the flow — lock, fetch, build, render — wired from the
//! single-concern crates (spec, plan, store, bundle). The CLI is a thin layer over this.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod build;
pub mod diff;
mod error;
pub mod fetch;
pub mod golden;
pub mod images;
pub mod lock;
pub mod packages;
pub mod pins;
pub mod push;
pub mod render;
pub mod sbom;
pub mod secrets;
pub mod seed;
pub mod signatures;

/// The on-host installer shipped in every role bundle and seed.
pub const INSTALL_SH: &str = include_str!("../assets/install.sh");

pub(crate) use error::io_err;
pub use error::{Error, LockProblem};

/// Mode of the files kiln writes for people to read (kiln.lock, MANIFEST.json, install.sh).
const PUBLIC_FILE_MODE: u32 = 0o644;

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename, folder
/// fsync) with mode 0644.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<(), Error> {
    kiln_fsio::write_atomic(path, bytes, PUBLIC_FILE_MODE).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}
