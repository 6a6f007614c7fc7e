//! The HTTP client (timeouts, user agent), how one request is sent ([`Sender`]: the hook
//! where a registry adds credentials), ranged opens of `http(s)://` and `file://` URLs,
//! and small documents read whole.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderName, CONTENT_LENGTH, CONTENT_RANGE, RANGE};

use crate::error::{Classify, ClientSetup, TransportError};
use crate::mirrors::Mirrors;
use crate::retry::{try_sources, Deadline};

/// Largest text document [`Transport::fetch_text`] accepts.
pub const MAX_TEXT_BYTES: u64 = 4 * 1024 * 1024;

/// How the transport behaves on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportOptions {
    /// Retries of one source after a transient failure (5xx, reset, broken transfer).
    pub retries: u32,
    /// Limit for establishing a connection.
    pub connect_timeout: Duration,
    /// No byte from the server for this long (waiting for the headers, or for the next
    /// body bytes) ends the try as a stall, and the next source is tried.
    pub idle_timeout: Duration,
    /// Limit for one download (or document) over all its sources, tries and backoffs.
    pub deadline: Duration,
    /// Cap of the exponential backoff between retries.
    pub max_backoff: Duration,
}

/// The HTTP client every request of one operation goes through, with its options.
/// Cheap to clone and safe to share between threads.
#[derive(Debug, Clone)]
pub struct Transport {
    client: Client,
    opts: TransportOptions,
}

/// Sends one request for a source. A registry implements it to add credentials and
/// answer authentication challenges; `build` makes the request afresh each time, since a
/// challenge answered means sending it again. Upload paths send through it too.
pub trait Sender {
    /// The error of one send: the transport's, or one wrapping it with the source's own
    /// (authentication) failures.
    type Error: From<TransportError> + Classify + std::error::Error;

    /// Sends the request `build` makes for `url`; any status but an authentication
    /// failure is the caller's to judge.
    fn send(&self, url: &str, build: &dyn Fn() -> RequestBuilder) -> Result<Response, Self::Error>;
}

/// Requests sent as they are, without credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Direct;

impl Sender for Direct {
    type Error = TransportError;

    fn send(
        &self,
        url: &str,
        build: &dyn Fn() -> RequestBuilder,
    ) -> Result<Response, TransportError> {
        Transport::execute(url, build())
    }
}

/// What a source answered to "give me the bytes from `offset` on".
pub enum Answer {
    /// A body starting at byte `start`, with `len` bytes still to come when announced.
    Body {
        /// The body.
        reader: Box<dyn Read>,
        /// Its first byte's position in the file.
        start: u64,
        /// Its length, when announced.
        len: Option<u64>,
    },
    /// The range cannot be served (416, or beyond the end of a local file).
    RangeRejected,
}

impl Transport {
    /// Builds the client: connect and idle timeouts, kiln's user agent.
    pub fn new(opts: &TransportOptions) -> Result<Transport, TransportError> {
        Ok(Transport::setup(opts)?)
    }

    /// [`Transport::new`] with its one possible failure as a cloneable error, for callers
    /// that share one client between many downloads and report its failure on each.
    pub fn setup(opts: &TransportOptions) -> Result<Transport, ClientSetup> {
        let client = Client::builder()
            .connect_timeout(opts.connect_timeout)
            // For the blocking client this bounds each wait (headers, every body read),
            // not the whole transfer: exactly an idle timeout. Downloads shorten it per
            // request when their deadline is nearer.
            .timeout(opts.idle_timeout)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientSetup(Arc::new(e)))?;
        Ok(Transport {
            client,
            opts: opts.clone(),
        })
    }

    /// The options this transport was made with.
    pub fn options(&self) -> &TransportOptions {
        &self.opts
    }

    /// The underlying client, to build requests with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends a built request; a failure before any response names `url`.
    pub fn execute(url: &str, request: RequestBuilder) -> Result<Response, TransportError> {
        request.send().map_err(|source| TransportError::Request {
            url: url.to_owned(),
            source,
        })
    }

    /// Opens `url` at byte `offset` (a `Range` request when non-zero) through `sender`;
    /// `file://` URLs are read directly. No wait on the server (headers, each body read)
    /// lasts longer than `wait`.
    pub fn open<S: Sender>(
        &self,
        sender: &S,
        url: &str,
        offset: u64,
        wait: Duration,
    ) -> Result<Answer, S::Error> {
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(open_file(url, Path::new(path), offset)?);
        }
        check_scheme(url)?;
        let response = sender.send(url, &|| {
            let request = self.client.get(url).timeout(wait);
            if offset > 0 {
                request.header(RANGE, format!("bytes={offset}-"))
            } else {
                request
            }
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
                return Err(TransportError::HttpStatus {
                    url: url.to_owned(),
                    status,
                }
                .into())
            }
        };
        Ok(Answer::Body {
            reader: Box::new(response),
            start,
            len,
        })
    }

    /// GETs a small text document (e.g. an upstream checksum file) through mirrors and
    /// retries, refusing more than [`MAX_TEXT_BYTES`].
    pub fn fetch_text(&self, url: &str, mirrors: &Mirrors) -> Result<String, TransportError> {
        self.first_answer(url, mirrors, |candidate, deadline| {
            let wait = deadline.wait(self.opts.idle_timeout);
            let Answer::Body { reader, .. } = self.open(&Direct, candidate, 0, wait)? else {
                unreachable!("only a range request can be rejected, and none was made")
            };
            let bytes = read_capped(reader, candidate, MAX_TEXT_BYTES)?;
            String::from_utf8(bytes).map_err(|_| TransportError::NotUtf8 {
                url: candidate.to_owned(),
            })
        })
    }

    /// The first value `attempt` gets from `url`'s mirrors, then `url`, with retries.
    fn first_answer<T>(
        &self,
        url: &str,
        mirrors: &Mirrors,
        attempt: impl FnMut(&String, &Deadline) -> Result<T, TransportError>,
    ) -> Result<T, TransportError> {
        let urls = mirrors.candidates(url);
        try_sources(url, &urls, &self.opts, Clone::clone, |_, _| {}, attempt)
            .map(|success| success.value)
            .map_err(|e| e.into_error(url))
    }

    /// The size of the document at `url` from its `Content-Length` (HEAD, then GET
    /// headers when HEAD gives none); `None` when the server does not say.
    pub fn remote_size(&self, url: &str, mirrors: &Mirrors) -> Result<Option<u64>, TransportError> {
        self.first_answer(url, mirrors, |candidate, deadline| {
            let wait = deadline.wait(self.opts.idle_timeout);
            if let Some(path) = candidate.strip_prefix("file://") {
                let meta = fs::metadata(path).map_err(|source| TransportError::FileSource {
                    url: candidate.to_owned(),
                    source,
                })?;
                return Ok(Some(meta.len()));
            }
            check_scheme(candidate)?;
            let head = Transport::execute(candidate, self.client.head(candidate).timeout(wait))?;
            let status = head.status().as_u16();
            if head.status().is_success() {
                // Read the header itself: a HEAD response's body length is always 0.
                if let Some(len) = header_u64(&head, CONTENT_LENGTH) {
                    return Ok(Some(len));
                }
            } else if !matches!(status, 405 | 501) {
                return Err(TransportError::HttpStatus {
                    url: candidate.to_owned(),
                    status,
                });
            }
            // The body is never read: dropping the response closes the connection.
            let get = Transport::execute(candidate, self.client.get(candidate).timeout(wait))?;
            if !get.status().is_success() {
                return Err(TransportError::HttpStatus {
                    url: candidate.to_owned(),
                    status: get.status().as_u16(),
                });
            }
            Ok(header_u64(&get, CONTENT_LENGTH))
        })
    }
}

/// Reads a whole body of at most `limit` bytes from `url`.
pub fn read_capped(reader: impl Read, url: &str, limit: u64) -> Result<Vec<u8>, TransportError> {
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| TransportError::Body {
            url: url.to_owned(),
            received: bytes.len() as u64,
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(TransportError::TooLarge {
            url: url.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// A value of a header as a number.
pub fn header_u64(response: &Response, name: HeaderName) -> Option<u64> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn check_scheme(url: &str) -> Result<(), TransportError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(TransportError::UnsupportedUrl {
            url: url.to_owned(),
        })
    }
}

fn open_file(url: &str, path: &Path, offset: u64) -> Result<Answer, TransportError> {
    let err = |source| TransportError::FileSource {
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

/// The first byte position of a `Content-Range: bytes N-M/T` value.
fn parse_content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
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
}
