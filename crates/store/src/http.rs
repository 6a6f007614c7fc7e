//! HTTP (and `file://`) transport: retries with backoff, mirrors, resumable hashed downloads.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::thread;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};

use crate::error::{Attempt, Reaction, StoreError};
use crate::fetch::FetchOptions;
use crate::mirrors::Mirrors;
use crate::progress::Meter;
use crate::store::{check_pins, remove_if_present, Hasher, Store, BUF_SIZE};

/// Largest document [`fetch_text`] accepts.
pub const MAX_TEXT_BYTES: u64 = 4 * 1024 * 1024;

/// First backoff delay; doubled on each retry up to `FetchOptions::max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Builds the HTTP client used for every request of one operation.
pub(crate) fn client(opts: &FetchOptions) -> Result<Client, StoreError> {
    Client::builder()
        .connect_timeout(opts.connect_timeout)
        // For the blocking client this bounds each wait (headers, every body read),
        // not the whole transfer: exactly a read timeout.
        .timeout(opts.read_timeout)
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| StoreError::HttpClient {
            reason: crate::error::error_chain(&e),
        })
}

/// Delay before retry number `retry` (0-based).
fn backoff(retry: u32, max: Duration) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << retry.min(16)).min(max)
}

/// A source that worked, its value, and the sources given up on before it.
pub(crate) struct Success<T> {
    pub(crate) url: String,
    pub(crate) value: T,
    pub(crate) skipped: Vec<Attempt>,
}

/// Tries each URL in turn, retrying transient failures with capped exponential
/// backoff; `on_fail` hears about every URL given up on as it happens. Returns
/// the URL that worked, or every URL's last error.
pub(crate) fn try_sources<T>(
    what: &str,
    urls: &[String],
    opts: &FetchOptions,
    on_fail: impl Fn(&str, &StoreError),
    mut attempt: impl FnMut(&str) -> Result<T, StoreError>,
) -> Result<Success<T>, StoreError> {
    let mut attempts = Vec::new();
    for url in urls {
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match attempt(url) {
                Ok(value) => {
                    return Ok(Success {
                        url: url.clone(),
                        value,
                        skipped: attempts,
                    })
                }
                Err(e) => e,
            };
            match error.reaction() {
                Reaction::Fatal => return Err(error),
                Reaction::Retry if tries <= opts.retries => {
                    let delay = backoff(tries - 1, opts.max_backoff);
                    tracing::warn!(
                        url = %url,
                        tries,
                        delay_ms = delay.as_millis() as u64,
                        error = %crate::error::error_chain(&error),
                        "transient failure, retrying"
                    );
                    thread::sleep(delay);
                }
                _ => {
                    on_fail(url, &error);
                    attempts.push(Attempt {
                        url: url.clone(),
                        tries,
                        error,
                    });
                    break;
                }
            }
        }
    }
    Err(StoreError::AllSourcesFailed {
        what: what.to_owned(),
        attempts,
    })
}

/// What a source answered to "give me the bytes from `offset` on".
enum Answer {
    /// A body starting at `start` with `len` bytes still to come when announced.
    Body {
        reader: Box<dyn Read>,
        start: u64,
        len: Option<u64>,
    },
    /// The range cannot be served (416, or beyond the end of a local file).
    RangeRejected,
}

/// Opens `url` at `offset` (a `Range` request when non-zero).
fn open(client: &Client, url: &str, offset: u64) -> Result<Answer, StoreError> {
    if let Some(path) = url.strip_prefix("file://") {
        return open_file(url, Path::new(path), offset);
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(StoreError::UnsupportedUrl {
            url: url.to_owned(),
        });
    }
    let mut request = client.get(url);
    if offset > 0 {
        request = request.header(RANGE, format!("bytes={offset}-"));
    }
    let response = request.send().map_err(|source| StoreError::Request {
        url: url.to_owned(),
        source,
    })?;
    let status = response.status().as_u16();
    let len = header_u64(&response, CONTENT_LENGTH);
    let start = match status {
        200 => 0,
        206 => {
            let value = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            // An unreadable Content-Range is treated like a wrong start: restart.
            parse_content_range_start(value).unwrap_or(u64::MAX)
        }
        416 if offset > 0 => return Ok(Answer::RangeRejected),
        _ => {
            return Err(StoreError::HttpStatus {
                url: url.to_owned(),
                status,
            })
        }
    };
    Ok(Answer::Body {
        reader: Box::new(response),
        start,
        len,
    })
}

fn open_file(url: &str, path: &Path, offset: u64) -> Result<Answer, StoreError> {
    let err = |source| StoreError::FileSource {
        url: url.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(err)?;
    let total = file.metadata().map_err(err)?.len();
    if offset > total {
        return Ok(Answer::RangeRejected);
    }
    file.seek(SeekFrom::Start(offset)).map_err(err)?;
    Ok(Answer::Body {
        reader: Box::new(file),
        start: offset,
        len: Some(total - offset),
    })
}

fn header_u64(
    response: &reqwest::blocking::Response,
    name: reqwest::header::HeaderName,
) -> Option<u64> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The first byte position of a `Content-Range: bytes N-M/T` value.
fn parse_content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

/// One blob to download: its pins (at least one) and where its partial lives.
pub(crate) struct Target<'a> {
    pub(crate) store: &'a Store,
    pub(crate) sha256: Option<&'a str>,
    pub(crate) sha512: Option<&'a str>,
    pub(crate) size: Option<u64>,
}

impl Target<'_> {
    /// The partial file, named by whichever digest is known (sha256 first).
    fn partial(&self) -> std::path::PathBuf {
        match (self.sha256, self.sha512) {
            (Some(h), _) => self.store.partial_path(h),
            (None, Some(h)) => self.store.partial_path_sha512(h),
            (None, None) => unreachable!("a download has a pin"),
        }
    }

    /// Checks a complete file's digests against the pins and moves it to its blob name;
    /// a sha512 pin is recorded with the sha256 computed from the same bytes.
    fn finish(
        &self,
        part: &Path,
        origin: &str,
        sha256: &str,
        sha512: Option<&str>,
    ) -> Result<String, StoreError> {
        if let Err(e) = check_pins(origin, (sha256, self.sha256), (sha512, self.sha512)) {
            remove_if_present(part)?;
            return Err(e);
        }
        self.store.commit(part, sha256)?;
        if let Some(h) = self.sha512 {
            self.store.record_sha512(h, sha256)?;
        }
        Ok(sha256.to_owned())
    }
}

/// Result of a successful attempt: bytes in the blob and bytes reused from a partial.
pub(crate) struct Done {
    pub(crate) bytes: u64,
    pub(crate) resumed_from: u64,
    /// The blob's sha256.
    pub(crate) sha256: String,
}

/// Length of the partial file, 0 when there is none.
fn partial_len(part: &Path) -> Result<u64, StoreError> {
    match fs::metadata(part) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(StoreError::Read {
            path: part.to_owned(),
            source,
        }),
    }
}

/// One attempt at one URL: resume the partial if any, stream through the hasher
/// into it, and on a full match rename it to its blob name.
pub(crate) fn download_once(
    client: &Client,
    target: &Target<'_>,
    url: &str,
    meter: &mut Meter<'_>,
) -> Result<Done, StoreError> {
    let part = target.partial();
    let mut have = partial_len(&part)?;
    if let Some(size) = target.size {
        if have > size {
            remove_if_present(&part)?;
            have = 0;
        } else if have == size && have > 0 {
            // Complete partial from a run killed before its rename: the hashes decide.
            let (sha256, sha512, _) = crate::store::hash_file_with(&part, target.sha512.is_some())?;
            let origin = part.display().to_string();
            if let Ok(sha256) = target.finish(&part, &origin, &sha256, sha512.as_deref()) {
                meter.at(have);
                return Ok(Done {
                    bytes: have,
                    resumed_from: have,
                    sha256,
                });
            }
            have = 0;
        }
    }
    match transfer(client, target, url, have, meter) {
        // A resumed file that does not match may owe its fault to the partial
        // (from another source or an older run), not to this URL: retry it whole.
        Err(StoreError::HashMismatch { .. }) if have > 0 => {
            meter.note(&format!(
                "{url}: resumed file did not match its pin; downloading it whole"
            ));
            transfer(client, target, url, 0, meter)
        }
        other => other,
    }
}

fn transfer(
    client: &Client,
    target: &Target<'_>,
    url: &str,
    mut have: u64,
    meter: &mut Meter<'_>,
) -> Result<Done, StoreError> {
    let part = target.partial();
    if have == 0 {
        remove_if_present(&part)?;
    }
    let mut answer = open(client, url, have)?;
    let restart = match &answer {
        Answer::RangeRejected => true,
        Answer::Body { start, .. } => *start != have,
    };
    if restart {
        meter.note(&format!(
            "{url}: server did not resume at byte {have}; restarting from zero"
        ));
        remove_if_present(&part)?;
        have = 0;
        if !matches!(&answer, Answer::Body { start: 0, .. }) {
            answer = open(client, url, 0)?;
        }
    }
    let Answer::Body {
        mut reader, len, ..
    } = answer
    else {
        return Err(StoreError::HttpStatus {
            url: url.to_owned(),
            status: 416,
        });
    };
    if let (Some(size), Some(len)) = (target.size, len) {
        if have + len > size {
            return Err(StoreError::TooLarge {
                origin: url.to_owned(),
                limit: size,
            });
        }
    }

    let write_err = |source| StoreError::Write {
        path: part.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .map_err(write_err)?;
    // Partials are never trusted: their bytes go through the hasher like new ones.
    let mut hasher = Hasher::new(target.sha512.is_some());
    if have > 0 {
        let mut prefix = File::open(&part).map_err(write_err)?.take(have);
        io::copy(&mut prefix, &mut hasher).map_err(write_err)?;
    }
    let resumed_from = have;
    let mut got = 0u64;
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                // Keep what arrived so the next attempt (or run) resumes from it.
                file.sync_all().map_err(write_err)?;
                return Err(StoreError::Body {
                    url: url.to_owned(),
                    received: have + got,
                    source,
                });
            }
        };
        if let Some(size) = target.size {
            if have + got + n as u64 > size {
                drop(file);
                remove_if_present(&part)?;
                return Err(StoreError::TooLarge {
                    origin: url.to_owned(),
                    limit: size,
                });
            }
        }
        file.write_all(&buf[..n]).map_err(write_err)?;
        hasher.update(&buf[..n]);
        got += n as u64;
        meter.at(have + got);
    }
    file.sync_all().map_err(write_err)?;
    drop(file);
    let total = have + got;
    if let Some(len) = len {
        if got < len {
            return Err(StoreError::ShortBody {
                url: url.to_owned(),
                received: total,
                expected: have + len,
            });
        }
    }
    if let Some(size) = target.size {
        if total < size {
            if len.is_none() {
                // Unannounced length: the connection may just have closed early.
                return Err(StoreError::ShortBody {
                    url: url.to_owned(),
                    received: total,
                    expected: size,
                });
            }
            remove_if_present(&part)?;
            return Err(StoreError::SizeMismatch {
                url: url.to_owned(),
                expected: size,
                actual: total,
            });
        }
    }
    let (sha256, sha512) = hasher.finish();
    let sha256 = target.finish(&part, url, &sha256, sha512.as_deref())?;
    Ok(Done {
        bytes: total,
        resumed_from,
        sha256,
    })
}

/// GETs a small text document (e.g. an upstream checksum file), through mirrors and
/// retries, refusing more than [`MAX_TEXT_BYTES`].
pub fn fetch_text(url: &str, mirrors: &Mirrors, opts: &FetchOptions) -> Result<String, StoreError> {
    if !opts.allow_network {
        return Err(StoreError::NetworkDisabled {
            url: url.to_owned(),
        });
    }
    let client = client(opts)?;
    let urls = mirrors.candidates(url);
    let text = try_sources(
        url,
        &urls,
        opts,
        |_, _| {},
        |candidate| {
            let Answer::Body { reader, .. } = open(&client, candidate, 0)? else {
                // Only a range request can be rejected, and none was made.
                return Err(StoreError::HttpStatus {
                    url: candidate.to_owned(),
                    status: 416,
                });
            };
            let mut bytes = Vec::new();
            reader
                .take(MAX_TEXT_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|source| StoreError::Body {
                    url: candidate.to_owned(),
                    received: bytes.len() as u64,
                    source,
                })?;
            if bytes.len() as u64 > MAX_TEXT_BYTES {
                return Err(StoreError::TooLarge {
                    origin: candidate.to_owned(),
                    limit: MAX_TEXT_BYTES,
                });
            }
            String::from_utf8(bytes).map_err(|_| StoreError::NotUtf8 {
                url: candidate.to_owned(),
            })
        },
    )?;
    Ok(text.value)
}

/// The size of the document at `url` from its `Content-Length` (HEAD, then GET
/// headers when HEAD gives none); `None` when the server does not say.
pub fn remote_size(
    url: &str,
    mirrors: &Mirrors,
    opts: &FetchOptions,
) -> Result<Option<u64>, StoreError> {
    if !opts.allow_network {
        return Err(StoreError::NetworkDisabled {
            url: url.to_owned(),
        });
    }
    let client = client(opts)?;
    let urls = mirrors.candidates(url);
    let size = try_sources(
        url,
        &urls,
        opts,
        |_, _| {},
        |candidate| {
            if let Some(path) = candidate.strip_prefix("file://") {
                let meta = fs::metadata(path).map_err(|source| StoreError::FileSource {
                    url: candidate.to_owned(),
                    source,
                })?;
                return Ok(Some(meta.len()));
            }
            if !(candidate.starts_with("http://") || candidate.starts_with("https://")) {
                return Err(StoreError::UnsupportedUrl {
                    url: candidate.to_owned(),
                });
            }
            let request_err = |source| StoreError::Request {
                url: candidate.to_owned(),
                source,
            };
            let head = client.head(candidate).send().map_err(request_err)?;
            let status = head.status().as_u16();
            if head.status().is_success() {
                // Read the header itself: a HEAD response's body length is always 0.
                if let Some(len) = header_u64(&head, CONTENT_LENGTH) {
                    return Ok(Some(len));
                }
            } else if !matches!(status, 405 | 501) {
                return Err(StoreError::HttpStatus {
                    url: candidate.to_owned(),
                    status,
                });
            }
            // The body is never read: dropping the response closes the connection.
            let get = client.get(candidate).send().map_err(request_err)?;
            if !get.status().is_success() {
                return Err(StoreError::HttpStatus {
                    url: candidate.to_owned(),
                    status: get.status().as_u16(),
                });
            }
            Ok(header_u64(&get, CONTENT_LENGTH))
        },
    )?;
    Ok(size.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_is_parsed() {
        assert_eq!(parse_content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(parse_content_range_start("bytes 0-0/*"), Some(0));
        assert_eq!(parse_content_range_start("items 1-2/3"), None);
        assert_eq!(parse_content_range_start("bytes */200"), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(1);
        assert_eq!(backoff(0, max), Duration::from_millis(250));
        assert_eq!(backoff(1, max), Duration::from_millis(500));
        assert_eq!(backoff(2, max), max);
        assert_eq!(backoff(40, max), max);
    }
}
