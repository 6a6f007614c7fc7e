//! Errors of the PKI crate; each names the file, field or certificate involved.

use std::path::PathBuf;

/// Everything that can go wrong while building or reading the PKI state.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The caller's input cannot produce a valid PKI (bad host name, SAN, lifetime, ...).
    #[error("invalid PKI input: {field}: {reason}")]
    InvalidInput {
        /// Which input field is wrong, e.g. `hosts[2].name`.
        field: String,
        /// Why it is wrong.
        reason: String,
    },

    /// A filesystem operation on the state folder failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create folder`, ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A state file could not be written (created, synced or renamed into place).
    #[error("cannot write {}", path.display())]
    Write {
        /// The state file.
        path: PathBuf,
        /// What failed, on which (temp) file.
        #[source]
        source: kiln_fsio::Error,
    },

    /// A CA (or the service-account key) would have to be created anew while
    /// certificates it signed are still in the state; refused unless `rotate_ca`.
    #[error(
        "refusing to create a new {what} while issued certificates exist in {}: {reason}; \
         restore the file from a backup, or pass rotate_ca to replace it and re-issue \
         every certificate it signed",
        path.display()
    )]
    CaReplacementRefused {
        /// Which key material (`cluster CA`, `etcd CA`, `front-proxy CA`, `service-account key`).
        what: &'static str,
        /// The state folder's issued certificates.
        path: PathBuf,
        /// What is wrong with the existing files.
        reason: String,
    },

    /// A state file exists but cannot be used and kiln will not overwrite it silently.
    #[error("corrupt PKI state file {}: {reason}", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// [`crate::table`] found a certificate the input needs that was never issued.
    #[error("{} has not been issued yet (needed by host {host}); run a build first", path.display())]
    NotIssued {
        /// The host that needs it.
        host: String,
        /// Where it would be in the state folder.
        path: PathBuf,
    },

    /// Key generation or signing failed in the crypto backend.
    #[error("{what}: {source}")]
    Crypto {
        /// What was being generated or signed.
        what: String,
        /// The backend's error.
        #[source]
        source: rcgen::Error,
    },
}

impl From<kiln_pki_layout::InvalidInput> for PkiError {
    fn from(e: kiln_pki_layout::InvalidInput) -> Self {
        PkiError::InvalidInput {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

impl PkiError {
    /// An [`PkiError::Io`] for `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A [`PkiError::Crypto`].
    pub(crate) fn crypto(what: impl Into<String>, source: rcgen::Error) -> Self {
        PkiError::Crypto {
            what: what.into(),
            source,
        }
    }
}
