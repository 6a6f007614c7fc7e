//! The transport's one error type, the attempt list of a multi-source fetch, and how a
//! retrying driver classifies errors.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP client could not be set up. Cheap to clone: every download that needed the
/// one shared client reports the same failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot set up the HTTP client")]
pub struct ClientSetup(#[source] pub(crate) Arc<reqwest::Error>);

/// Everything that can go wrong talking to a source or landing its bytes; each names the
/// URL, file or pin concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The HTTP client could not be set up.
    #[error(transparent)]
    HttpClient(#[from] ClientSetup),
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
    /// No byte arrived for the idle timeout while the body was being read: the source
    /// holds the connection open but sends nothing.
    #[error("{url}: stalled: no data for {idle:?} after {received} bytes")]
    Stalled {
        /// The URL.
        url: String,
        /// How long nothing arrived.
        idle: Duration,
        /// Bytes of the file present when it stalled (kept for the next source to resume).
        received: u64,
    },
    /// The deadline of one download (all sources, tries and backoffs) passed.
    #[error("{url}: the deadline of {limit:?} for this download passed")]
    DeadlineExceeded {
        /// The URL being tried (or next in line) when it passed.
        url: String,
        /// The deadline.
        limit: Duration,
    },
    /// The body ended before its announced (or pinned) length.
    #[error("{url}: body ended after {received} bytes, {expected} announced")]
    ShortBody {
        /// The URL.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// A source sent more bytes than the pinned size.
    #[error("{url}: more than the pinned size of {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The pinned size (or the cap for documents).
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
    /// Content does not hash to its pin.
    #[error("{origin}: {algorithm} mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// URL, file or package the bytes came from.
        origin: String,
        /// `sha256` or `sha512`.
        algorithm: &'static str,
        /// The pinned digest (hex).
        expected: String,
        /// The digest of what arrived (hex).
        actual: String,
    },
    /// A `file://` source could not be read.
    #[error("{url}: cannot read")]
    FileSource {
        /// The URL.
        url: String,
        /// The cause.
        source: io::Error,
    },
    /// A URL with a scheme the transport does not speak.
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
    /// Every source (mirrors first, then the original) failed.
    #[error("{what}: every source failed:{}", AttemptList(attempts))]
    AllSourcesFailed {
        /// What was being fetched (label and pin, or a URL).
        what: String,
        /// The last failure of each source, in the order tried.
        attempts: Vec<Attempt>,
    },
    /// A stream being stored (a local file, an archive member) could not be read.
    #[error("cannot read {origin}")]
    ReadSource {
        /// What was being read.
        origin: String,
        /// The cause.
        source: io::Error,
    },
    /// A local file (partial download, temp file, blob) could not be read, written,
    /// removed or renamed into place: the error names the operation and the file.
    #[error(transparent)]
    File(#[from] kiln_fsio::Error),
}

/// How a retrying driver reacts to an error met at one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Transient: retry the same source after a backoff.
    Retry,
    /// This source cannot give the right bytes: move to the next one.
    NextSource,
    /// Local trouble (disk), or an answer no other source would change: stop.
    Fatal,
}

/// Errors a retrying driver can classify; a caller's error type wrapping
/// [`TransportError`] delegates to it and classifies its own variants.
pub trait Classify {
    /// How to react to this error.
    fn reaction(&self) -> Reaction;
}

impl Classify for TransportError {
    fn reaction(&self) -> Reaction {
        match self {
            TransportError::HttpStatus { status, .. } => match status {
                408 | 429 | 500..=599 => Reaction::Retry,
                _ => Reaction::NextSource,
            },
            // A timeout (connect, or no byte for the idle timeout) is a stall: see below.
            TransportError::Request { source, .. } => {
                if source.is_builder() || source.is_redirect() || source.is_timeout() {
                    Reaction::NextSource
                } else {
                    Reaction::Retry
                }
            }
            TransportError::Body { source, .. } if is_timeout(source) => Reaction::NextSource,
            TransportError::Body { .. } | TransportError::ShortBody { .. } => Reaction::Retry,
            // A stalled source keeps the connection open and sends nothing: retrying it
            // would most likely cost another full idle timeout for nothing. The next
            // source resumes from the bytes already kept in the partial file, and the
            // per-download deadline bounds the whole loop. A source left after its
            // deadline passed is not tried at all.
            TransportError::Stalled { .. } | TransportError::DeadlineExceeded { .. } => {
                Reaction::NextSource
            }
            TransportError::HashMismatch { .. }
            | TransportError::TooLarge { .. }
            | TransportError::SizeMismatch { .. }
            | TransportError::FileSource { .. }
            | TransportError::UnsupportedUrl { .. }
            | TransportError::NotUtf8 { .. } => Reaction::NextSource,
            TransportError::HttpClient { .. }
            | TransportError::AllSourcesFailed { .. }
            | TransportError::ReadSource { .. }
            | TransportError::File(_) => Reaction::Fatal,
        }
    }
}

/// Whether a body read failed because no byte arrived in time (the client's per-wait
/// timeout) rather than because the connection broke.
pub(crate) fn is_timeout(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::TimedOut
        || error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout)
}

/// One source given up on: its URL, how often it was tried and its last error.
#[derive(Debug)]
pub struct Attempt<E = TransportError> {
    /// The URL (or endpoint) tried.
    pub url: String,
    /// How many times it was tried.
    pub tries: u32,
    /// The last error it gave.
    pub error: E,
}

/// Maps an I/O error of `op` (`read`, `write`, `remove`) on `path` to [`TransportError::File`];
/// reusable, so one mapper serves every operation on the same file.
pub(crate) fn file_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl Fn(io::Error) -> TransportError + Copy + 'a {
    move |source| TransportError::File(kiln_fsio::Error::on(op, path)(source))
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
