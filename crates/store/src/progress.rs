//! Progress reporting: the trait the CLI implements, and what a fetch ended in.

use std::path::PathBuf;

/// Receives fetch progress; the CLI renders it (libraries never print).
pub trait Progress: Sync {
    /// A download starts; `total` is its size when known.
    fn start(&self, label: &str, total: Option<u64>);
    /// `bytes` more bytes of the download are in (never counts a byte twice).
    fn advance(&self, label: &str, bytes: u64);
    /// The download ended.
    fn finish(&self, label: &str, outcome: &Outcome);
    /// Something worth telling (a mirror skipped, a retry, a restart from zero).
    fn note(&self, label: &str, msg: &str);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _label: &str, _bytes: u64) {}
    fn finish(&self, _label: &str, _outcome: &Outcome) {}
    fn note(&self, _label: &str, _msg: &str) {}
}

/// How one download ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Already in the store and verified: nothing fetched.
    Present,
    /// Downloaded from `url`; `resumed_from` bytes came from an earlier partial.
    Downloaded {
        /// The URL that gave the right bytes.
        url: String,
        /// Size of the blob.
        bytes: u64,
        /// Bytes reused from a partial download.
        resumed_from: u64,
    },
    /// Copied in from a local file.
    Copied {
        /// The file.
        path: PathBuf,
    },
    /// Downloaded with the system's apt client.
    Apt {
        /// The package.
        package: String,
        /// Its exact version.
        version: String,
    },
    /// Failed; the full error is in [`crate::FetchErrors`].
    Failed {
        /// The error, on one line.
        error: String,
    },
}

/// Reports byte progress of one download without ever counting a byte twice,
/// even when an attempt restarts from zero or resumes a partial.
/// Image pulls use it too.
pub struct Meter<'a> {
    progress: &'a dyn Progress,
    label: &'a str,
    reported: u64,
    /// Whether notes reach the progress receiver, not only the log.
    forward_notes: bool,
}

impl<'a> Meter<'a> {
    /// A meter for `label` that has reported nothing yet.
    pub fn new(progress: &'a dyn Progress, label: &'a str) -> Self {
        Meter {
            progress,
            label,
            reported: 0,
            forward_notes: true,
        }
    }

    /// Keeps the transport's notes (restarts) in the log, out of the progress display.
    pub fn notes_to_log_only(mut self) -> Self {
        self.forward_notes = false;
        self
    }
}

impl kiln_transport::Watch for Meter<'_> {
    /// The file now has `position` bytes: report what is new.
    fn at(&mut self, position: u64) {
        if position > self.reported {
            self.progress.advance(self.label, position - self.reported);
            self.reported = position;
        }
    }

    /// Logs a note and passes it on to the progress receiver.
    fn note(&mut self, msg: &str) {
        tracing::info!(label = self.label, "{msg}");
        if self.forward_notes {
            self.progress.note(self.label, msg);
        }
    }
}
