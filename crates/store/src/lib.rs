//! kiln-store: the content-addressed `vendor/` store (blobs by sha256), its fetchers
//! (HTTP with mirrors, retries and resume through kiln-transport; local files; apt, through
//! kiln-deb), and archive member extraction.
//!
//! Nothing lands under a final name until it is complete and hashed against its pin:
//! downloads go to `<root>/tmp/`, are fsynced, then renamed into `<root>/sha256/`.
//! This library never prints: it emits `tracing` events and calls [`Progress`].
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod apt;
mod archive;
mod error;
mod fetch;
mod progress;
mod store;

pub use archive::{ArchiveKind, MemberInfo, UnknownArchiveKind};
pub use error::StoreError;
pub use fetch::{
    fetch_all, fetch_text, remote_size, Download, DownloadSource, FetchErrors, FetchFailure,
    FetchOptions, FetchReport, FetchedItem, SourceProblem, DEFAULT_DEADLINE, DEFAULT_IDLE_TIMEOUT,
};
// The transport's names the store's callers meet in its API.
pub use kiln_transport::{error_chain, Attempt, Mirrors, TransportError, MAX_TEXT_BYTES};
pub use progress::{Meter, NoProgress, Outcome, Progress};
pub use store::{hash_file, is_sha256, is_sha512, Store};
