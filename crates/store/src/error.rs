//! Errors of the store: each names the file, URL, package or command involved; the
//! transport's are wrapped, not repeated.

use std::fmt;
use std::io;
use std::path::PathBuf;

use kiln_transport::TransportError;

/// Everything that can go wrong in the store, its fetchers and extractors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A pin that is not 64 lowercase hex digits.
    #[error("`{value}` is not a sha256 (64 lowercase hex digits)")]
    InvalidSha256 {
        /// The rejected value.
        value: String,
    },
    /// A pin that is not 128 lowercase hex digits.
    #[error("`{value}` is not a sha512 (128 lowercase hex digits)")]
    InvalidSha512 {
        /// The rejected value.
        value: String,
    },
    /// A download with neither a sha256 nor a sha512 pin.
    #[error("{label}: no sha256 or sha512 pin")]
    NoPin {
        /// The download's label.
        label: String,
    },
    /// A local file could not be read, written or saved under its final name (names the
    /// operation and the file).
    #[error(transparent)]
    File(#[from] kiln_fsio::Error),
    /// Fetching, hashing or landing bytes failed (network, mirrors, pins, partials).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A download with no URL at all.
    #[error("{label}: no URL to download from")]
    NoUrls {
        /// The download's label.
        label: String,
    },
    /// Something missing from the store while the network is not allowed.
    #[error("{label} ({pin}) is not in the store and the network is not allowed")]
    Offline {
        /// The download's label.
        label: String,
        /// Its pin (`sha256:<hex>` or `sha512:<hex>`).
        pin: String,
    },
    /// A network request asked for while the network is not allowed.
    #[error("{url}: the network is not allowed")]
    NetworkDisabled {
        /// The URL.
        url: String,
    },
    /// apt could not resolve or download a package, or dpkg-deb could not read a .deb (names
    /// the package, the file or the command).
    #[error(transparent)]
    Apt(#[from] kiln_deb::DebError),
    /// The archive to extract from is not in the store (or was corrupt and removed).
    #[error("archive {sha256} is not in the store; fetch it first")]
    ArchiveMissing {
        /// Its sha256.
        sha256: String,
    },
    /// The archive could not be read as the given kind.
    #[error("cannot read archive {}", path.display())]
    Archive {
        /// The archive blob.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A requested member is not in the archive.
    #[error("archive {} has no member `{member}`{}", path.display(), NearList(near))]
    MemberNotFound {
        /// The archive blob.
        path: PathBuf,
        /// The member asked for.
        member: String,
        /// A few entries with close names.
        near: Vec<String>,
    },
    /// A member resolves to something other than a regular file.
    #[error("archive {}: member `{member}` {problem}", path.display())]
    MemberNotFile {
        /// The archive blob.
        path: PathBuf,
        /// The member asked for.
        member: String,
        /// What it is instead (a directory, a symlink loop, a link leaving the archive).
        problem: String,
    },
    /// A member name that is empty or climbs out with `..`.
    #[error("invalid archive member name `{member}`")]
    InvalidMember {
        /// The name.
        member: String,
    },
    /// The member cache could not be read or written as JSON.
    #[error("member cache {}", path.display())]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

struct NearList<'a>(&'a [String]);

impl fmt::Display for NearList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "; close names: {}", self.0.join(", "))
        }
    }
}
