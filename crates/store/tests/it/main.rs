//! Integration tests of kiln-store against real local servers, real archives and real apt
//! (downloads; resolving and solving are kiln-deb's tests).

mod apt;
mod archive;
mod fetch;
mod resume;
mod sha512;

use kiln_testkit::http as server;

use std::fs;
use std::sync::Mutex;
use std::time::Duration;

use kiln_store::{FetchOptions, Outcome, Progress, Store};

pub use kiln_testkit::{names, payload, sha};

/// Options for tests: quick backoff, short timeouts.
pub fn fast_opts() -> FetchOptions {
    FetchOptions {
        jobs: 2,
        retries: 3,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(120),
        max_backoff: Duration::from_millis(20),
        allow_network: true,
    }
}

/// Asserts `sha256/` holds exactly `blobs` (each correct) and `tmp/` holds exactly `partials`.
pub fn assert_store(store: &Store, blobs: &[(&str, &[u8])], partials: &[&str]) {
    let mut want: Vec<String> = blobs.iter().map(|(s, _)| s.to_string()).collect();
    want.sort();
    want.dedup();
    assert_eq!(
        names(&store.root().join("sha256")),
        want,
        "blobs in sha256/"
    );
    for (s, bytes) in blobs {
        assert_eq!(
            &fs::read(store.blob_path(s)).unwrap(),
            bytes,
            "content of {s}"
        );
    }
    let mut parts: Vec<String> = partials.iter().map(|s| format!("{s}.part")).collect();
    parts.sort();
    assert_eq!(names(&store.root().join("tmp")), parts, "files in tmp/");
}

/// A progress receiver that records everything.
#[derive(Default)]
pub struct Recorder {
    pub notes: Mutex<Vec<String>>,
    pub advanced: Mutex<u64>,
    pub finished: Mutex<Vec<(String, Outcome)>>,
}

impl Progress for Recorder {
    fn start(&self, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _label: &str, bytes: u64) {
        *self.advanced.lock().unwrap() += bytes;
    }
    fn finish(&self, label: &str, outcome: &Outcome) {
        self.finished
            .lock()
            .unwrap()
            .push((label.to_owned(), outcome.clone()));
    }
    fn note(&self, label: &str, msg: &str) {
        self.notes.lock().unwrap().push(format!("{label}: {msg}"));
    }
}

/// Runs `cmd`, panicking with its stderr on failure.
pub fn sh(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
