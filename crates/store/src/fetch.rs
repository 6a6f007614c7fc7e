//! Fetching pinned downloads into the store, in parallel, from HTTP, local files or apt.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use kiln_transport::{
    error_chain, try_sources, BlobTarget, ClientSetup, Direct, Mirrors, Pins, Transport,
    TransportError, TransportOptions,
};

use crate::error::StoreError;
use crate::progress::{Meter, Outcome, Progress};
use crate::store::{check_sha256, check_sha512, Store};

/// One pinned file to bring into the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Human name for progress and errors (e.g. `etcd-v3.5.16-linux-amd64.tar.gz`).
    pub label: String,
    /// The sha256 pin: the blob's name once fetched. `None` when only a sha512 is known.
    pub sha256: Option<String>,
    /// A sha512 pin, checked too when given. The blob's sha256 is computed from the same
    /// bytes and recorded in the store (see [`Store::sha256_of_sha512`]).
    pub sha512: Option<String>,
    /// The pinned size, when known: more bytes than this is an error at once.
    pub size: Option<u64>,
    /// Where the bytes come from.
    pub source: DownloadSource,
}

impl Download {
    /// The pin as one string, `sha256:<hex>` or else `sha512:<hex>`: it names the download
    /// in messages and makes two downloads the same one.
    pub fn pin(&self) -> String {
        match (&self.sha256, &self.sha512) {
            (Some(h), _) => format!("sha256:{h}"),
            (None, Some(h)) => format!("sha512:{h}"),
            (None, None) => "(no pin)".to_owned(),
        }
    }
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
        /// An apt configuration file (`APT_CONFIG`) for a release other than the machine's.
        apt_config: Option<PathBuf>,
    },
}

/// How fetching behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Downloads run at once (at least 1).
    pub jobs: usize,
    /// Retries of one URL after a transient failure (5xx, reset, broken transfer).
    pub retries: u32,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// No byte from a server for this long (headers, or the next body bytes) ends the
    /// try as a stall and moves to the next source.
    pub idle_timeout: Duration,
    /// Limit for one download over all its sources, tries and backoffs.
    pub deadline: Duration,
    /// Cap of the exponential backoff between retries.
    pub max_backoff: Duration,
    /// When false nothing is downloaded: what is missing is reported instead.
    pub allow_network: bool,
}

impl FetchOptions {
    /// The options of the transport every download goes through.
    pub fn transport(&self) -> TransportOptions {
        TransportOptions {
            retries: self.retries,
            connect_timeout: self.connect_timeout,
            idle_timeout: self.idle_timeout,
            deadline: self.deadline,
            max_backoff: self.max_backoff,
        }
    }
}

/// Default of [`FetchOptions::idle_timeout`]: long enough for a slow server's first
/// byte, short enough that a stall costs little before the next source is tried.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of [`FetchOptions::deadline`]: a large artifact at a slow but steady rate still
/// fits (the ~400 MB Kubernetes server tarball at 1 Mbit/s); a source trickling just under
/// the idle timeout does not hold a fetch for ever.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(3_600);

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            jobs: 4,
            retries: 4,
            connect_timeout: Duration::from_secs(15),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
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
    /// Its pin (see [`Download::pin`]).
    pub pin: String,
    /// The blob's sha256, once it is in the store.
    pub sha256: Option<String>,
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
    pub error: TransportError,
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
    /// Its pin (see [`Download::pin`]).
    pub pin: String,
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
            let hex = failure
                .pin
                .split_once(':')
                .map_or(failure.pin.as_str(), |p| p.1);
            if chain.contains(hex) {
                write!(f, "\n- {chain}")?;
            } else {
                write!(f, "\n- {} ({}): {chain}", failure.label, failure.pin)?;
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
    let pins: Vec<String> = downloads.iter().map(Download::pin).collect();
    let mut first_of: BTreeMap<&str, usize> = BTreeMap::new();
    let mut unique = Vec::new();
    for (i, pin) in pins.iter().enumerate() {
        if !first_of.contains_key(pin.as_str()) {
            first_of.insert(pin, i);
            unique.push(i);
        }
    }
    let needs_client = opts.allow_network
        && unique
            .iter()
            .any(|&i| matches!(downloads[i].source, DownloadSource::Http { .. }));
    // A client that cannot be set up is reported by each download that needs it.
    let client = needs_client.then(|| Transport::setup(&opts.transport()));
    let ctx = Ctx {
        store,
        mirrors,
        opts,
        progress,
        client: client.as_ref(),
        problems: Mutex::new(Vec::new()),
    };

    let results: Vec<Mutex<Option<FetchResult>>> =
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
    let mut results: BTreeMap<usize, FetchResult> = unique
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
        let first = first_of[pins[i].as_str()];
        let (outcome, sha256) = if first != i {
            let earlier = &report.items[first];
            (earlier.outcome.clone(), earlier.sha256.clone())
        } else {
            match results.remove(&i).expect("a result per unique download") {
                Ok((outcome, sha256)) => (outcome, Some(sha256)),
                Err(error) => {
                    let outcome = Outcome::Failed {
                        error: error_chain(&error),
                    };
                    failures.push(FetchFailure {
                        label: d.label.clone(),
                        pin: pins[i].clone(),
                        error,
                    });
                    (outcome, None)
                }
            }
        };
        report.items.push(FetchedItem {
            label: d.label.clone(),
            pin: pins[i].clone(),
            sha256,
            outcome,
        });
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(FetchErrors { failures, report })
    }
}

/// One download's outcome and blob sha256, or its error.
type FetchResult = Result<(Outcome, String), StoreError>;

/// What every worker shares.
struct Ctx<'a> {
    store: &'a Store,
    mirrors: &'a Mirrors,
    opts: &'a FetchOptions,
    progress: &'a dyn Progress,
    client: Option<&'a Result<Transport, ClientSetup>>,
    /// Skipped sources with the index of their download, for a stable report order.
    problems: Mutex<Vec<(usize, SourceProblem)>>,
}

impl Ctx<'_> {
    /// Fetches one download, reporting its start and finish to the progress receiver.
    /// Returns the outcome and the blob's sha256.
    fn one(&self, index: usize, d: &Download) -> Result<(Outcome, String), StoreError> {
        self.progress.start(&d.label, d.size);
        let result = self.fetch(index, d);
        let outcome = match &result {
            Ok((outcome, _)) => outcome.clone(),
            Err(e) => Outcome::Failed {
                error: error_chain(e),
            },
        };
        match &result {
            Ok(_) => tracing::info!(label = %d.label, pin = %d.pin(), ?outcome, "fetched"),
            Err(e) => {
                tracing::warn!(label = %d.label, pin = %d.pin(), error = %error_chain(e), "fetch failed")
            }
        }
        self.progress.finish(&d.label, &outcome);
        result
    }

    /// The blob already in the store for `d`, checked against every pin it has.
    fn present(&self, d: &Download) -> Result<Option<String>, StoreError> {
        let sha256 = match (&d.sha256, &d.sha512) {
            (Some(h), _) => h.clone(),
            (None, Some(h)) => match self.store.sha256_of_sha512(h)? {
                Some(known) => known,
                None => return Ok(None),
            },
            (None, None) => return Ok(None),
        };
        let Some(sha512) = &d.sha512 else {
            return Ok(self.store.verify_blob(&sha256)?.then_some(sha256));
        };
        // Blobs are named by sha256 only: the sha512 pin is checked on the bytes too.
        match self.store.verify_blob_sha512(&sha256, sha512)? {
            None => Ok(None),
            Some(false) => {
                tracing::warn!(label = %d.label, sha256 = %sha256, "blob does not have the pinned sha512");
                self.store.forget_sha512(sha512)?;
                Ok(None)
            }
            Some(true) => {
                if self.store.sha256_of_sha512(sha512)?.as_deref() != Some(sha256.as_str()) {
                    self.store.record_sha512(sha512, &sha256)?;
                }
                Ok(Some(sha256))
            }
        }
    }

    fn fetch(&self, index: usize, d: &Download) -> Result<(Outcome, String), StoreError> {
        if let Some(h) = &d.sha256 {
            check_sha256(h)?;
        }
        if let Some(h) = &d.sha512 {
            check_sha512(h)?;
        }
        if d.sha256.is_none() && d.sha512.is_none() {
            return Err(StoreError::NoPin {
                label: d.label.clone(),
            });
        }
        if let Some(sha256) = self.present(d)? {
            return Ok((Outcome::Present, sha256));
        }
        let offline = || StoreError::Offline {
            label: d.label.clone(),
            pin: d.pin(),
        };
        match &d.source {
            DownloadSource::File { path } => {
                let sha256 = self.store.insert_file_pinned(
                    path,
                    d.sha256.as_deref(),
                    d.sha512.as_deref(),
                )?;
                Ok((Outcome::Copied { path: path.clone() }, sha256))
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
                apt_config,
            } => {
                // apt's index gives sha256: an apt download always has one.
                let sha256 = d.sha256.as_deref().ok_or_else(|| StoreError::NoPin {
                    label: d.label.clone(),
                })?;
                crate::apt::download(
                    self.store,
                    package,
                    version,
                    arch,
                    apt_config.as_deref(),
                    sha256,
                )?;
                let outcome = Outcome::Apt {
                    package: package.clone(),
                    version: version.clone(),
                };
                Ok((outcome, sha256.to_owned()))
            }
        }
    }

    fn http(
        &self,
        index: usize,
        d: &Download,
        urls: &[String],
    ) -> Result<(Outcome, String), StoreError> {
        if urls.is_empty() {
            return Err(StoreError::NoUrls {
                label: d.label.clone(),
            });
        }
        let transport = match self.client {
            Some(Ok(transport)) => transport,
            Some(Err(setup)) => return Err(TransportError::from(setup.clone()).into()),
            None => unreachable!("a client is built whenever an http download may run"),
        };
        let candidates = self.mirrors.candidates_all(urls);
        let target = BlobTarget {
            // Named by whichever digest is known (sha256 first).
            partial: match (&d.sha256, &d.sha512) {
                (Some(h), _) => self.store.partial_path(h),
                (_, Some(h)) => self.store.partial_path_sha512(h),
                (None, None) => unreachable!("a download has a pin"),
            },
            blob_dir: self.store.blob_dir(),
            pins: Pins {
                sha256: d.sha256.as_deref(),
                sha512: d.sha512.as_deref(),
            },
            size: d.size,
        };
        let mut meter = Meter::new(self.progress, &d.label);
        let what = format!("{} ({})", d.label, d.pin());
        let success = try_sources(
            &what,
            &candidates,
            transport.options(),
            Clone::clone,
            |url, error| {
                let msg = format!("skipping {url}: {}", error_chain(error));
                self.progress.note(&d.label, &msg);
            },
            |url, deadline| transport.download(&Direct, &target, url, deadline, &mut meter),
        )
        .map_err(|e| e.into_error(&what))?;
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
        if let Some(h) = &d.sha512 {
            // Blobs are named by sha256: the sha512 pin is recorded beside.
            self.store.record_sha512(h, &done.digests.sha256)?;
        }
        let outcome = Outcome::Downloaded {
            url: success.source,
            bytes: done.bytes,
            resumed_from: done.resumed_from,
        };
        Ok((outcome, done.digests.sha256))
    }
}

/// GETs a small text document (e.g. an upstream checksum file), through mirrors and
/// retries, refusing more than [`MAX_TEXT_BYTES`](kiln_transport::MAX_TEXT_BYTES).
pub fn fetch_text(url: &str, mirrors: &Mirrors, opts: &FetchOptions) -> Result<String, StoreError> {
    online(url, opts)?;
    Ok(Transport::new(&opts.transport())?.fetch_text(url, mirrors)?)
}

/// The size of the document at `url` from its `Content-Length` (HEAD, then GET
/// headers when HEAD gives none); `None` when the server does not say.
pub fn remote_size(
    url: &str,
    mirrors: &Mirrors,
    opts: &FetchOptions,
) -> Result<Option<u64>, StoreError> {
    online(url, opts)?;
    Ok(Transport::new(&opts.transport())?.remote_size(url, mirrors)?)
}

/// Refuses a network request while the network is not allowed.
fn online(url: &str, opts: &FetchOptions) -> Result<(), StoreError> {
    if opts.allow_network {
        Ok(())
    } else {
        Err(StoreError::NetworkDisabled {
            url: url.to_owned(),
        })
    }
}
