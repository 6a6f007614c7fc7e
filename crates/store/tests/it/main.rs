//! Integration tests of kiln-store against real local servers, real archives and real apt.

mod apt;
mod archive;
mod closure;
mod fetch;
mod resume;
mod sha512;

use kiln_testkit::http as server;

use std::fs;
use std::path::Path;
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
        read_timeout: Duration::from_secs(5),
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

/// A private apt state in `d` whose only source is the flat repository `repo`, updated:
/// returns its apt.conf (for `APT_CONFIG`), or `None` when apt cannot read the repository.
pub fn private_apt(d: &Path, repo: &Path) -> Option<std::path::PathBuf> {
    for sub in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
    ] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    fs::write(
        d.join("sources.list"),
        format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )
    .unwrap();
    fs::write(d.join("status"), "").unwrap();
    let config = d.join("apt.conf");
    fs::write(
        &config,
        format!(
            "Dir::Etc::SourceList \"{0}/sources.list\";\nDir::Etc::SourceParts \"{0}/sources.list.d\";\n\
             Dir::Etc::PreferencesParts \"{0}/preferences.d\";\nDir::State::Lists \"{0}/lists\";\n\
             Dir::Cache \"{0}/cache\";\nDir::State::status \"{0}/status\";\nAPT::Sandbox::User \"root\";\n",
            d.display()
        ),
    )
    .unwrap();
    let update = std::process::Command::new("apt-get")
        .arg("update")
        .env("APT_CONFIG", &config)
        .output()
        .ok()?;
    if !update.status.success() {
        eprintln!(
            "apt-get update on a local repo failed: {}",
            String::from_utf8_lossy(&update.stderr)
        );
        return None;
    }
    Some(config)
}
