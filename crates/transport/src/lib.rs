//! kiln-transport: the one way kiln talks to the network, shared by artifact fetch
//! (kiln-store) and registry pulls (kiln-image).
//!
//! It owns the HTTP client ([`Transport`]: timeouts, user agent), URL mirrors
//! ([`Mirrors`]), the try-each-source loop with capped exponential backoff
//! ([`try_sources`], steered by [`Classify`]), resumable ranged downloads of pinned blobs
//! ([`Transport::download`]), the hashing sink that caps at the declared size and verifies
//! digests before anything gets its final name ([`Sink`]), and one typed error
//! ([`TransportError`]). A source's own request needs (a registry's credentials and
//! challenges) plug in per request through [`Sender`].
//!
//! Every wait on a server is bounded by the idle timeout (a stall moves to the next
//! source) and every download by its [`Deadline`]. Seams for what comes next: an upload (registry push,
//! `kiln serve`'s client side) builds its `PUT`/`POST` from [`Transport::client`] and sends
//! it through the same [`Sender`] (credentials) and [`try_sources`] (retries).
//!
//! This library never prints: it emits `tracing` events and reports through [`Watch`].
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod client;
mod download;
mod error;
mod mirrors;
mod retry;
mod sink;

pub use client::{
    header_u64, read_capped, Answer, Direct, Sender, Transport, TransportOptions, MAX_TEXT_BYTES,
};
pub use download::{remove_if_present, BlobTarget, Done, Watch};
pub use error::{error_chain, Attempt, Classify, ClientSetup, Reaction, TransportError};
pub use mirrors::Mirrors;
pub use retry::{backoff, try_sources, Deadline, Exhausted, Success};
pub use sink::{hash_file, Digests, Hasher, Pins, Sink, BLOB_MODE, BUF_SIZE};
