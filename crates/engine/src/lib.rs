//! kiln-engine: the steps of the flow — lock, fetch, build, verify — wired from the
//! single-concern crates (spec, plan, store, bundle). The CLI is a thin layer over this.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod build;
pub mod fetch;
pub mod images;
pub mod lock;
pub mod packages;
pub mod secrets;
pub mod seed;

/// The on-host installer shipped in every role bundle and seed.
pub const INSTALL_SH: &str = include_str!("../assets/install.sh");

use std::path::PathBuf;

/// A step failed; the message names the file, artifact, URL or command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input (cluster.toml, profiles, overlays, catalog, lock).
    #[error("{0}")]
    Input(#[from] kiln_spec::Diagnostics),
    /// A template failed or paths conflict.
    #[error(transparent)]
    Plan(#[from] kiln_plan::PlanError),
    /// The lock is missing, stale or incomplete.
    #[error("{0}")]
    Lock(String),
    /// Artifacts are not in the store and the network may not be used.
    #[error("{} artifact(s) missing from the store {} and --offline forbids fetching:\n{}", .missing.len(), .store.display(), .missing.join("\n"))]
    Missing {
        /// The store folder.
        store: PathBuf,
        /// Labels of what is missing.
        missing: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    /// Downloads failed.
    #[error(transparent)]
    Fetch(#[from] kiln_store::FetchErrors),
    /// Writing a bundle failed.
    #[error(transparent)]
    Bundle(#[from] kiln_bundle::BundleError),
    /// The PKI failed (a CA would be replaced, state unreadable, …).
    #[error(transparent)]
    Pki(#[from] kiln_pki::PkiError),
    /// A seed could not be written.
    #[error("seed: {0}")]
    Seed(cloud_init_config::Error),
    /// Verification failed.
    #[error(transparent)]
    Verify(#[from] kiln_bundle::VerifyError),
    /// An output file could not be written (created, synced or renamed into place).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What failed, on which (temp) file.
        #[source]
        source: kiln_fsio::Error,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error is the user's input (exit 1) rather than the environment.
    pub fn is_input(&self) -> bool {
        matches!(self, Error::Input(_) | Error::Plan(_) | Error::Lock(_))
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

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
