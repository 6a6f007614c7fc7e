//! Blob uploads: `POST` (or a cross-repository mount), then the bytes in one `PUT` (small
//! blobs) or in `PATCH` chunks with `Content-Range` and a final `PUT ?digest=`. A chunk
//! whose request breaks (connection reset, stall) is resumed from where the registry says
//! the upload stands (`GET` of the upload's location → `Range: 0-N`, go on at N+1); an
//! upload the registry dropped starts again. Resumes count against the fetch options'
//! retries and all of it runs within their deadline.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::thread;

use kiln_transport::{backoff, error_chain, Deadline, TransportError};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};

use crate::error::ImageError;
use crate::mirrors::Endpoint;
use crate::push::{
    check_announced, error_detail, BlobOutcome, BlobSource, BlobToPush, PushEvents, PushTarget,
    Pusher,
};
use crate::registry::PULL_PUSH;

/// `Content-Type` of uploaded bytes.
const OCTET_STREAM: &str = "application/octet-stream";

/// How an upload session began.
enum Started {
    /// The registry mounted the blob from the other repository: nothing to send.
    Mounted,
    /// An upload session at this location.
    Upload(String),
}

/// One blob's upload against one endpoint.
struct Session<'a> {
    pusher: &'a Pusher,
    target: &'a PushTarget,
    blob: &'a BlobToPush,
    endpoint: &'a Endpoint,
    deadline: &'a Deadline,
    events: &'a dyn PushEvents,
    what: &'a str,
}

impl Pusher {
    /// Uploads `blob` to `target` (mounting it from `from` when given and allowed).
    pub(crate) fn upload(
        &self,
        target: &PushTarget,
        blob: &BlobToPush,
        from: Option<&str>,
        events: &dyn PushEvents,
    ) -> Result<BlobOutcome, ImageError> {
        let what = format!("blob {} ({}) to {target}", blob.digest, blob.label);
        self.on_target(target, &what, |endpoint, deadline| {
            Session {
                pusher: self,
                target,
                blob,
                endpoint,
                deadline,
                events,
                what: &what,
            }
            .run(from)
        })
    }
}

impl Session<'_> {
    fn run(&self, from: Option<&str>) -> Result<BlobOutcome, ImageError> {
        let mut location = match self.start(from)? {
            Started::Mounted => {
                return Ok(BlobOutcome::Mounted {
                    from: from.unwrap_or_default().to_owned(),
                })
            }
            Started::Upload(location) => location,
        };
        let size = self.blob.size;
        let chunk = self.pusher.chunk;
        if size <= chunk {
            let bytes = self.read(0, size)?;
            self.finish(&location, bytes)?;
            self.events.advance(&self.blob.label, size);
            return Ok(BlobOutcome::Uploaded {
                sent: size,
                resumes: 0,
            });
        }
        let retries = self.pusher.client.options().retries;
        let max_backoff = self.pusher.client.options().max_backoff;
        let (mut offset, mut sent, mut resumes, mut reported) = (0u64, 0u64, 0u32, 0u64);
        while offset < size {
            let n = chunk.min(size - offset);
            let bytes = self.read(offset, n)?;
            match self.patch(&location, offset, bytes) {
                Ok(next) => {
                    location = next;
                    offset += n;
                    sent += n;
                }
                Err(e) if resumable(&e) && resumes < retries && !self.deadline.passed() => {
                    sent += n;
                    resumes += 1;
                    thread::sleep(backoff(resumes - 1, max_backoff).min(self.deadline.remaining()));
                    match self.status(&location, offset)? {
                        Some((next, have)) => {
                            self.note(format!(
                                "chunk at byte {offset} broke ({}); the registry has {have} bytes, resuming there",
                                error_chain(&e)
                            ));
                            location = next;
                            offset = have;
                        }
                        None => {
                            self.note(format!(
                                "chunk at byte {offset} broke ({}) and the registry dropped the upload; starting it again",
                                error_chain(&e)
                            ));
                            location = match self.start(None)? {
                                Started::Upload(l) => l,
                                Started::Mounted => unreachable!("no mount was asked for"),
                            };
                            offset = 0;
                        }
                    }
                }
                Err(e) => return Err(e),
            }
            if offset > reported {
                self.events.advance(&self.blob.label, offset - reported);
                reported = offset;
            }
        }
        self.finish(&location, Vec::new())?;
        Ok(BlobOutcome::Uploaded { sent, resumes })
    }

    /// Sends the request `build` makes to `url`, authenticated for pushing.
    fn send(
        &self,
        url: &str,
        build: &dyn Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, ImageError> {
        self.pusher.send(
            self.endpoint,
            self.target,
            PULL_PUSH,
            self.deadline,
            url,
            build,
        )
    }

    fn note(&self, msg: String) {
        tracing::warn!(blob = %self.blob.digest, "{}: {msg}", self.what);
        self.events.note(&self.blob.label, &msg);
    }

    /// `POST` to the uploads URL, with `mount`/`from` when `from` is given.
    fn start(&self, from: Option<&str>) -> Result<Started, ImageError> {
        let mut url = self.target.uploads_url();
        if let Some(from) = from {
            url = format!("{url}?mount={}&from={from}", self.blob.digest);
        }
        let response = self.send(&url, &|c| c.post(&url).header(CONTENT_LENGTH, 0))?;
        match response.status().as_u16() {
            201 if from.is_some() => Ok(Started::Mounted),
            202 => Ok(Started::Upload(self.location(&response, &url)?)),
            status => Err(self.refused(url, status, response)),
        }
    }

    /// Sends `bytes` as the chunk at `offset`; returns the upload's next location.
    fn patch(&self, location: &str, offset: u64, bytes: Vec<u8>) -> Result<String, ImageError> {
        let end = offset + bytes.len() as u64 - 1;
        let response = self.send(location, &|c| {
            c.patch(location)
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header("content-range", format!("{offset}-{end}"))
                .header(CONTENT_LENGTH, bytes.len())
                .body(bytes.clone())
        })?;
        match response.status().as_u16() {
            202 | 204 => self.location(&response, location),
            status => Err(self.refused(location.to_owned(), status, response)),
        }
    }

    /// Where the upload at `location` stands: its next location and how many bytes the
    /// registry holds, or `None` when it no longer knows the upload. `acked` is what it
    /// acknowledged before (its `Range: 0-0` means 0 or 1 byte).
    fn status(&self, location: &str, acked: u64) -> Result<Option<(String, u64)>, ImageError> {
        let response = self.send(location, &|c| c.get(location))?;
        match response.status().as_u16() {
            200 | 204 => {}
            400..=499 => return Ok(None),
            status => {
                return Err(TransportError::HttpStatus {
                    url: location.to_owned(),
                    status,
                }
                .into())
            }
        }
        let range = response
            .headers()
            .get("range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let end = range
            .trim()
            .trim_start_matches("bytes=")
            .strip_prefix("0-")
            .and_then(|n| n.parse::<u64>().ok());
        let Some(end) = end else {
            return Err(ImageError::UploadLost {
                url: location.to_owned(),
                repository: self.target.repository().to_owned(),
                digest: self.blob.digest.to_string(),
                reason: format!("its status has no usable Range header (`{range}`)"),
            });
        };
        let have = if end == 0 && acked == 0 { 0 } else { end + 1 };
        if have > self.blob.size {
            return Ok(None);
        }
        Ok(Some((self.location(&response, location)?, have)))
    }

    /// The final `PUT ?digest=` (with the whole blob for a monolithic upload).
    fn finish(&self, location: &str, bytes: Vec<u8>) -> Result<(), ImageError> {
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", self.blob.digest);
        let response = self.send(&url, &|c| {
            c.put(&url)
                .header(CONTENT_TYPE, OCTET_STREAM)
                .header(CONTENT_LENGTH, bytes.len())
                .body(bytes.clone())
        })?;
        match response.status().as_u16() {
            201 | 204 => check_announced(&response, &self.blob.digest, self.what, &url),
            status => Err(self.refused(url, status, response)),
        }
    }

    /// The `Location` of a response, made absolute against the endpoint.
    fn location(&self, response: &Response, url: &str) -> Result<String, ImageError> {
        let value = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ImageError::UploadLost {
                url: url.to_owned(),
                repository: self.target.repository().to_owned(),
                digest: self.blob.digest.to_string(),
                reason: "the registry sent no Location for the upload".to_owned(),
            })?;
        Ok(
            if value.starts_with("http://") || value.starts_with("https://") {
                value.to_owned()
            } else {
                format!("{}/{}", self.target.base(), value.trim_start_matches('/'))
            },
        )
    }

    fn refused(&self, url: String, status: u16, response: Response) -> ImageError {
        // 5xx and 429 stay transient: the retry loop starts the upload again.
        if status >= 500 || status == 429 || status == 408 {
            return TransportError::HttpStatus { url, status }.into();
        }
        ImageError::UploadRefused {
            url,
            repository: self.target.repository().to_owned(),
            digest: self.blob.digest.to_string(),
            status,
            detail: error_detail(response),
        }
    }

    /// `len` bytes of the blob from `offset`.
    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, ImageError> {
        match &self.blob.source {
            BlobSource::Bytes(bytes) => {
                let start = offset as usize;
                Ok(bytes[start..start + len as usize].to_vec())
            }
            BlobSource::File { path, offset: base } => {
                let err = |source| ImageError::File(kiln_fsio::Error::on("read", path)(source));
                let mut file = File::open(path).map_err(err)?;
                file.seek(SeekFrom::Start(base + offset)).map_err(err)?;
                let mut bytes = Vec::with_capacity(len as usize);
                file.take(len).read_to_end(&mut bytes).map_err(err)?;
                if (bytes.len() as u64) < len {
                    return Err(err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("blob {} ends early", self.blob.digest),
                    )));
                }
                Ok(bytes)
            }
        }
    }
}

/// Whether a chunk's failure is the connection's (reset, stall, broken body), which a
/// status query and a resume can get past.
fn resumable(error: &ImageError) -> bool {
    matches!(
        error,
        ImageError::Transport(
            TransportError::Request { .. }
                | TransportError::Body { .. }
                | TransportError::Stalled { .. }
                | TransportError::ShortBody { .. }
        )
    ) || matches!(
        error,
        ImageError::Transport(TransportError::HttpStatus { status, .. }) if *status >= 500
    )
}
