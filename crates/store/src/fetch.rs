//! Fetching pinned downloads into the store, in parallel, from HTTP, local files or apt.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use reqwest::blocking::Client;

use crate::error::{error_chain, StoreError};
use crate::http::{self, Target};
use crate::mirrors::Mirrors;
use crate::progress::{Meter, Outcome, Progress};
use crate::store::{check_sha256, Store};

/// One pinned file to bring into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Human name for progress and errors (e.g. `etcd-v3.5.16-linux-amd64.tar.gz`).
    pub label: String,
    /// The pin: the blob's name once fetched.
    pub sha256: String,
    /// The pinned size, when known: more bytes than this is an error at once.
    pub size: Option<u64>,
    /// Where the bytes come from.
    pub source: DownloadSource,
}

/// Where a download's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadSource {
    /// `http(s)://` or `file://` URLs, tried in order after their mirrors.
    Http {
        /// The original URLs.
        urls: Vec<String>,
    },
    /// A local file copied in.
    File {
        /// The file.
        path: PathBuf,
    },
    /// A Debian package fetched with the system's apt client (host architecture only).
    Apt {
        /// The package name.
        package: String,
        /// Its exact version.
        version: String,
        /// Its architecture (must be the host's).
        arch: String,
    },
}

/// How fetching behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Downloads run at once (at least 1).
    pub jobs: usize,
    /// Retries of one URL after a transient failure (5xx, timeout, broken transfer).
    pub retries: u32,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// Limit for any single wait on the server (headers, each body read).
    pub read_timeout: Duration,
    /// Cap of the exponential backoff between retries.
    pub max_backoff: Duration,
    /// When false nothing is downloaded: what is missing is reported instead.
    pub allow_network: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            jobs: 4,
            retries: 4,
            connect_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
            allow_network: true,
        }
    }
}

/// What a fetch did, download by download, in input order.
#[derive(Debug, Default)]
pub struct FetchReport {
    /// One entry per download given.
    pub items: Vec<FetchedItem>,
    /// Sources given up on along the way (wrong bytes, 404, retries exhausted),
    /// including those of downloads that succeeded from another source.
    pub problems: Vec<SourceProblem>,
}

/// The outcome of one download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedItem {
    /// The download's label.
    pub label: String,
    /// Its pin.
    pub sha256: String,
    /// What happened.
    pub outcome: Outcome,
}

/// A source skipped for one download, and why.
#[derive(Debug)]
pub struct SourceProblem {
    /// The download's label.
    pub label: String,
    /// The URL skipped.
    pub url: String,
    /// How many times it was tried.
    pub tries: u32,
    /// Why it was skipped (its last error).
    pub error: StoreError,
}

/// The downloads that failed, with the report of everything that was done.
#[derive(Debug)]
pub struct FetchErrors {
    /// Each failed download with its error, in input order.
    pub failures: Vec<FetchFailure>,
    /// The full report (failed items have [`Outcome::Failed`]).
    pub report: FetchReport,
}

/// One failed download.
#[derive(Debug)]
pub struct FetchFailure {
    /// The download's label.
    pub label: String,
    /// Its pin.
    pub sha256: String,
    /// Why it failed.
    pub error: StoreError,
}

impl fmt::Display for FetchErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} downloads failed:",
            self.failures.len(),
            self.report.items.len()
        )?;
        for failure in &self.failures {
            let chain = error_chain(&failure.error);
            // Most errors already name the download; do not say it twice.
            if chain.contains(&failure.sha256) {
                write!(f, "\n- {chain}")?;
            } else {
                write!(f, "\n- {} ({}): {chain}", failure.label, failure.sha256)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for FetchErrors {}

/// Brings every download into `store`, `opts.jobs` at a time. Blobs already present
/// and verified are skipped; a download with the same sha256 as an earlier one is
/// done once. With `allow_network == false` nothing is downloaded and every missing
/// download is reported.
pub fn fetch_all(
    store: &Store,
    downloads: &[Download],
    mirrors: &Mirrors,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<FetchReport, FetchErrors> {
    // Deduplicate by pin: two workers must never share one partial file.
    let mut first_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unique = Vec::new();
    for (i, d) in downloads.iter().enumerate() {
        if !first_of.contains_key(d.sha256.as_str()) {
            first_of.insert(&d.sha256, i);
            unique.push(i);
        }
    }
    let needs_client = opts.allow_network
        && unique
            .iter()
            .any(|&i| matches!(downloads[i].source, DownloadSource::Http { .. }));
    let client = if needs_client {
        Some(http::client(opts).map_err(|e| e.to_string()))
    } else {
        None
    };
    let ctx = Ctx {
        store,
        mirrors,
        opts,
        progress,
        client: client.as_ref(),
        problems: Mutex::new(Vec::new()),
    };

    let results: Vec<Mutex<Option<Result<Outcome, StoreError>>>> =
        unique.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let workers = opts.jobs.clamp(1, unique.len().max(1));
    thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = unique.get(k) else { break };
                let result = ctx.one(i, &downloads[i]);
                *results[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            });
        }
    });
    let mut results: BTreeMap<usize, Result<Outcome, StoreError>> = unique
        .iter()
        .zip(results)
        .map(|(&i, slot)| {
            let result = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            (i, result.expect("every unique download was processed"))
        })
        .collect();

    let mut problems = ctx.problems.into_inner().unwrap_or_else(|e| e.into_inner());
    problems.sort_by_key(|(index, _)| *index);
    let mut report = FetchReport {
        items: Vec::with_capacity(downloads.len()),
        problems: problems.into_iter().map(|(_, p)| p).collect(),
    };
    let mut failures = Vec::new();
    for (i, d) in downloads.iter().enumerate() {
        let first = first_of[d.sha256.as_str()];
        let outcome = if first != i {
            report.items[first].outcome.clone()
        } else {
            match results.remove(&i).expect("a result per unique download") {
                Ok(outcome) => outcome,
                Err(error) => {
                    let outcome = Outcome::Failed {
                        error: error_chain(&error),
                    };
                    failures.push(FetchFailure {
                        label: d.label.clone(),
                        sha256: d.sha256.clone(),
                        error,
                    });
                    outcome
                }
            }
        };
        report.items.push(FetchedItem {
            label: d.label.clone(),
            sha256: d.sha256.clone(),
            outcome,
        });
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(FetchErrors { failures, report })
    }
}

/// What every worker shares.
struct Ctx<'a> {
    store: &'a Store,
    mirrors: &'a Mirrors,
    opts: &'a FetchOptions,
    progress: &'a dyn Progress,
    client: Option<&'a Result<Client, String>>,
    /// Skipped sources with the index of their download, for a stable report order.
    problems: Mutex<Vec<(usize, SourceProblem)>>,
}

impl Ctx<'_> {
    /// Fetches one download, reporting its start and finish to the progress receiver.
    fn one(&self, index: usize, d: &Download) -> Result<Outcome, StoreError> {
        self.progress.start(&d.label, d.size);
        let result = self.fetch(index, d);
        let outcome = match &result {
            Ok(outcome) => outcome.clone(),
            Err(e) => Outcome::Failed {
                error: error_chain(e),
            },
        };
        match &result {
            Ok(_) => tracing::info!(label = %d.label, sha256 = %d.sha256, ?outcome, "fetched"),
            Err(e) => {
                tracing::warn!(label = %d.label, sha256 = %d.sha256, error = %error_chain(e), "fetch failed")
            }
        }
        self.progress.finish(&d.label, &outcome);
        result
    }

    fn fetch(&self, index: usize, d: &Download) -> Result<Outcome, StoreError> {
        check_sha256(&d.sha256)?;
        if self.store.verify_blob(&d.sha256)? {
            return Ok(Outcome::Present);
        }
        let offline = || StoreError::Offline {
            label: d.label.clone(),
            sha256: d.sha256.clone(),
        };
        match &d.source {
            DownloadSource::File { path } => {
                self.store.insert_file(path, &d.sha256)?;
                Ok(Outcome::Copied { path: path.clone() })
            }
            DownloadSource::Http { .. } | DownloadSource::Apt { .. }
                if !self.opts.allow_network =>
            {
                Err(offline())
            }
            DownloadSource::Http { urls } => self.http(index, d, urls),
            DownloadSource::Apt {
                package,
                version,
                arch,
            } => {
                crate::apt::download(self.store, package, version, arch, &d.sha256)?;
                Ok(Outcome::Apt {
                    package: package.clone(),
                    version: version.clone(),
                })
            }
        }
    }

    fn http(&self, index: usize, d: &Download, urls: &[String]) -> Result<Outcome, StoreError> {
        if urls.is_empty() {
            return Err(StoreError::NoUrls {
                label: d.label.clone(),
            });
        }
        let client = match self.client {
            Some(Ok(client)) => client,
            Some(Err(reason)) => {
                return Err(StoreError::HttpClient {
                    reason: reason.clone(),
                })
            }
            None => unreachable!("a client is built whenever an http download may run"),
        };
        let candidates = self.mirrors.candidates_all(urls);
        let target = Target {
            store: self.store,
            sha256: &d.sha256,
            size: d.size,
        };
        let mut meter = Meter::new(self.progress, &d.label);
        let what = format!("{} ({})", d.label, d.sha256);
        let success = http::try_sources(
            &what,
            &candidates,
            self.opts,
            |url, error| {
                let msg = format!("skipping {url}: {}", error_chain(error));
                tracing::warn!(label = %d.label, "{msg}");
                self.progress.note(&d.label, &msg);
            },
            |url| http::download_once(client, &target, url, &mut meter),
        )?;
        let done = success.value;
        self.problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(success.skipped.into_iter().map(|a| {
                let problem = SourceProblem {
                    label: d.label.clone(),
                    url: a.url,
                    tries: a.tries,
                    error: a.error,
                };
                (index, problem)
            }));
        Ok(Outcome::Downloaded {
            url: success.url,
            bytes: done.bytes,
            resumed_from: done.resumed_from,
        })
    }
}
