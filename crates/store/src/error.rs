//! Errors of the store: each names the file, URL, package or command involved.

use std::fmt;
use std::io;
use std::path::PathBuf;

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
    /// A store folder could not be created.
    #[error("cannot create folder {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A local file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A stream being stored (e.g. an archive member) could not be read.
    #[error("cannot read {origin}")]
    ReadSource {
        /// What was being read.
        origin: String,
        /// The cause.
        source: io::Error,
    },
    /// A local file could not be written (or synced, or its mode set).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file could not be saved under its final name (temp file created, synced or renamed
    /// into place).
    #[error("cannot write {}", path.display())]
    Save {
        /// The final name (or the temp folder, when the temp file could not be created).
        path: PathBuf,
        /// What failed, on which (temp) file.
        #[source]
        source: kiln_fsio::Error,
    },
    /// A corrupt or stale file could not be removed.
    #[error("cannot remove {}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Content does not hash to its pin.
    #[error("{origin}: {algorithm} mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// URL, file or package the bytes came from.
        origin: String,
        /// `sha256` or `sha512`.
        algorithm: &'static str,
        /// The pinned digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A source sent more bytes than the pinned size.
    #[error("{origin}: more than the pinned size of {limit} bytes")]
    TooLarge {
        /// URL or file.
        origin: String,
        /// The pinned size (or the cap for text documents).
        limit: u64,
    },
    /// A source sent a complete body whose length differs from the pin.
    #[error("{url}: got {actual} bytes, the pinned size is {expected}")]
    SizeMismatch {
        /// The URL.
        url: String,
        /// The pinned size.
        expected: u64,
        /// What the server sent in full.
        actual: u64,
    },
    /// An HTTP status that is not a success.
    #[error("{url}: HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The request failed before a response arrived (connect, timeout, TLS, redirect).
    #[error("{url}: request failed")]
    Request {
        /// The URL.
        url: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// The connection broke while the body was being read.
    #[error("{url}: transfer broke after {received} bytes")]
    Body {
        /// The URL.
        url: String,
        /// Bytes of the file present when it broke.
        received: u64,
        /// The cause.
        source: io::Error,
    },
    /// The body ended before its announced length.
    #[error("{url}: body ended after {received} bytes, {expected} announced")]
    ShortBody {
        /// The URL.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// A `file://` source could not be read.
    #[error("{url}: cannot read")]
    FileSource {
        /// The URL.
        url: String,
        /// The cause.
        source: io::Error,
    },
    /// A URL with a scheme the store does not speak.
    #[error("{url}: unsupported URL scheme (http, https and file are supported)")]
    UnsupportedUrl {
        /// The URL.
        url: String,
    },
    /// A text document is not UTF-8.
    #[error("{url}: document is not UTF-8")]
    NotUtf8 {
        /// The URL.
        url: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {reason}")]
    HttpClient {
        /// Why.
        reason: String,
    },
    /// Every URL (mirrors first, then the original) failed.
    #[error("{what}: every source failed:{}", AttemptList(attempts))]
    AllSourcesFailed {
        /// What was being fetched (label and sha256, or a URL).
        what: String,
        /// The last failure of each source, in the order tried.
        attempts: Vec<Attempt>,
    },
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
    /// A command could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        source: io::Error,
    },
    /// A command exited with failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// apt could not resolve or download a package (names the package or apt's command).
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

/// One failed source of a fetch: its URL, how often it was tried and its last error.
#[derive(Debug)]
pub struct Attempt {
    /// The URL tried.
    pub url: String,
    /// How many times it was tried.
    pub tries: u32,
    /// The last error it gave.
    pub error: StoreError,
}

/// How a fetch driver should react to an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Transient: retry the same URL after a backoff.
    Retry,
    /// This URL cannot give the right bytes: move to the next one.
    NextSource,
    /// Local trouble (disk): stop this fetch.
    Fatal,
}

impl StoreError {
    /// Classifies an error met while talking to a source.
    pub(crate) fn reaction(&self) -> Reaction {
        match self {
            StoreError::HttpStatus { status, .. } => match status {
                408 | 429 | 500..=599 => Reaction::Retry,
                _ => Reaction::NextSource,
            },
            StoreError::Request { source, .. } => {
                if source.is_builder() || source.is_redirect() {
                    Reaction::NextSource
                } else {
                    Reaction::Retry
                }
            }
            StoreError::Body { .. } | StoreError::ShortBody { .. } => Reaction::Retry,
            StoreError::HashMismatch { .. }
            | StoreError::TooLarge { .. }
            | StoreError::SizeMismatch { .. }
            | StoreError::FileSource { .. }
            | StoreError::UnsupportedUrl { .. }
            | StoreError::NotUtf8 { .. } => Reaction::NextSource,
            _ => Reaction::Fatal,
        }
    }
}

/// Renders an error with its chain of causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

struct AttemptList<'a>(&'a [Attempt]);

impl fmt::Display for AttemptList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in self.0 {
            let tries = if a.tries == 1 { "try" } else { "tries" };
            write!(
                f,
                "\n  - {} ({} {tries}): {}",
                a.url,
                a.tries,
                error_chain(&a.error)
            )?;
        }
        Ok(())
    }
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
