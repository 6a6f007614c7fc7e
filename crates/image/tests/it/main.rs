//! Integration tests of kiln-image against real components: Debian's docker-registry
//! (Distribution 2.8), skopeo and umoci to seed it, and containerd to import tarballs.
//!
//! Tests needing a missing tool print `SKIPPED …` and pass, unless `KILN_REQUIRE_TOOLS=1`
//! is set, which turns a missing tool into a failure (CI sets it).

mod archive;
mod assemble;
mod auth;
mod proxy;
mod pull;
mod push;
mod scan;
mod token;

/// The registry, containerd and test images, shared with the kiln CLI's tests.
use kiln_testkit as fixtures;
pub use kiln_testkit::{have_tools, names, run, sha};

use std::time::Duration;

use kiln_store::FetchOptions;

/// Options for tests: quick backoff, short timeouts.
pub fn fast_opts() -> FetchOptions {
    FetchOptions {
        jobs: 2,
        retries: 2,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(10),
        deadline: Duration::from_secs(120),
        max_backoff: Duration::from_millis(20),
        allow_network: true,
    }
}
