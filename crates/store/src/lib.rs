//! kiln-store: the content-addressed `vendor/` store (blobs by sha256), its fetchers
//! (HTTP with mirrors, retries and resume; local files; apt, through kiln-deb), and archive
//! member extraction.
//!
//! Nothing lands under a final name until it is complete and hashed against its pin:
//! downloads go to `<root>/tmp/`, are fsynced, then renamed into `<root>/sha256/`.
//! This library never prints: it emits `tracing` events and calls [`Progress`].
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod apt;
mod archive;
mod error;
mod fetch;
mod http;
mod mirrors;
mod progress;
mod store;

pub use archive::{ArchiveKind, MemberInfo};
pub use error::{error_chain, Attempt, StoreError};
pub use fetch::{
    fetch_all, Download, DownloadSource, FetchErrors, FetchFailure, FetchOptions, FetchReport,
    FetchedItem, SourceProblem,
};
pub use http::{fetch_text, remote_size, MAX_TEXT_BYTES};
pub use mirrors::Mirrors;
pub use progress::{NoProgress, Outcome, Progress};
pub use store::{hash_file, is_sha256, is_sha512, Store};
