//! Pulling locked images into the store: manifests byte-exact, every blob streamed through
//! sha256 into the store once, interrupted blobs resumed with `Range`.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use kiln_store::{error_chain, Outcome, Progress, Store};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;
use crate::manifest::MAX_DOCUMENT;
use crate::mirrors::Endpoint;
use crate::reference::{Digest, Reference};
use crate::registry::RegistryClient;
use crate::resolve::LockedImage;
use crate::storeio::{self, BUF_SIZE};

/// What a pull did, blob by blob.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// Blobs fetched from a registry, in the order they were planned.
    pub downloaded: Vec<PulledBlob>,
    /// Blobs already in the store and verified: nothing fetched.
    pub present: Vec<Digest>,
}

/// One blob fetched from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledBlob {
    /// The blob.
    pub digest: Digest,
    /// Its size.
    pub bytes: u64,
    /// Bytes reused from an interrupted earlier transfer.
    pub resumed_from: u64,
    /// The URL that gave it.
    pub url: String,
}

/// One blob to bring in, and the image it is fetched through.
struct Wanted<'a> {
    image: &'a LockedImage,
    digest: Digest,
    size: u64,
    label: String,
}

impl RegistryClient {
    /// Brings every blob of `images` into `store`: index and manifest (byte-exact, checked
    /// against the lock), config and layers. Blobs already present and verified are not
    /// fetched; a blob shared by several images is fetched once. Blobs are fetched
    /// `jobs` at a time; with the network disallowed, anything missing is an error.
    pub fn pull(
        &self,
        store: &Store,
        images: &[LockedImage],
        progress: &dyn Progress,
    ) -> Result<PullReport, ImageError> {
        let mut report = PullReport::default();
        let mut wanted: BTreeMap<Digest, Wanted<'_>> = BTreeMap::new();
        let mut order = Vec::new();
        for image in images {
            if let Some(index) = &image.index_digest {
                let size = image.index_size;
                self.pull_document(store, &image.reference, index, size, &mut report)?;
            }
            let reference = image.pinned();
            self.pull_document(
                store,
                &reference,
                &image.manifest_digest,
                Some(image.manifest_size),
                &mut report,
            )?;
            image.check_stored_manifest(store)?;
            for (digest, size) in image.blobs().into_iter().skip(1) {
                if wanted.contains_key(&digest) || report.present.contains(&digest) {
                    continue;
                }
                if store.verify_blob(digest.hex())? {
                    report.present.push(digest);
                    continue;
                }
                let label = format!("{}@{}", image.reference.name(), short(&digest));
                order.push(digest.clone());
                wanted.insert(
                    digest.clone(),
                    Wanted {
                        image,
                        digest,
                        size,
                        label,
                    },
                );
            }
        }
        let todo: Vec<&Wanted<'_>> = order.iter().map(|d| &wanted[d]).collect();
        let results: Vec<Mutex<Option<Result<PulledBlob, ImageError>>>> =
            todo.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let workers = self.options().jobs.clamp(1, todo.len().max(1));
        thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(w) = todo.get(k) else { break };
                    let result = self.pull_blob(store, w, progress);
                    *results[k].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                });
            }
        });
        let mut errors = Vec::new();
        for slot in results {
            match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(Ok(blob)) => report.downloaded.push(blob),
                Some(Err(e)) => errors.push(e),
                None => unreachable!("every planned blob is processed"),
            }
        }
        match errors.len() {
            0 => Ok(report),
            1 => Err(errors.remove(0)),
            _ => Err(ImageError::PullFailed { errors }),
        }
    }

    /// Fetches a manifest or index by digest into the store unless already there.
    fn pull_document(
        &self,
        store: &Store,
        reference: &Reference,
        digest: &Digest,
        size: Option<u64>,
        report: &mut PullReport,
    ) -> Result<(), ImageError> {
        if store.verify_blob(digest.hex())? {
            if !report.present.contains(digest) {
                report.present.push(digest.clone());
            }
            return Ok(());
        }
        let fetched =
            self.fetch_manifest(reference, Some((digest, size.unwrap_or(MAX_DOCUMENT))))?;
        storeio::put_bytes(store, &fetched.bytes, Some(digest))?;
        report.downloaded.push(PulledBlob {
            digest: digest.clone(),
            bytes: fetched.bytes.len() as u64,
            resumed_from: 0,
            url: fetched.url,
        });
        Ok(())
    }

    /// Downloads one blob through the image's endpoints, reporting progress.
    fn pull_blob(
        &self,
        store: &Store,
        w: &Wanted<'_>,
        progress: &dyn Progress,
    ) -> Result<PulledBlob, ImageError> {
        progress.start(&w.label, Some(w.size));
        let what = format!("blob {} of {}", w.digest, w.image.reference);
        let reported = Mutex::new(0u64);
        let advance = |position: u64| {
            let mut r = reported.lock().unwrap_or_else(|e| e.into_inner());
            if position > *r {
                progress.advance(&w.label, position - *r);
                *r = position;
            }
        };
        let reference = &w.image.reference;
        let result = self.on_endpoints(reference.registry(), &what, |endpoint| {
            self.blob_once(store, endpoint, w, &what, true, &advance)
        });
        let outcome = match &result {
            Ok(b) => Outcome::Downloaded {
                url: b.url.clone(),
                bytes: b.bytes,
                resumed_from: b.resumed_from,
            },
            Err(e) => Outcome::Failed {
                error: error_chain(e),
            },
        };
        progress.finish(&w.label, &outcome);
        result
    }

    /// One attempt at one endpoint: resume the partial (when `resume`), stream through
    /// sha256 into it, and on a match rename it to its blob name.
    fn blob_once(
        &self,
        store: &Store,
        endpoint: &Endpoint,
        w: &Wanted<'_>,
        what: &str,
        resume: bool,
        advance: &dyn Fn(u64),
    ) -> Result<PulledBlob, ImageError> {
        let part = store.partial_path(w.digest.hex());
        let mut have = if resume { partial_len(&part)? } else { 0 };
        if have > w.size {
            have = 0;
        }
        if have == 0 {
            remove_if_present(&part)?;
        }
        let repository = w.image.reference.repository();
        let url = endpoint.url(repository, "blobs", w.digest.as_str());
        let mut headers = Vec::new();
        if have > 0 && have < w.size {
            headers.push((RANGE, format!("bytes={have}-")));
        }
        let response = if have == w.size {
            None
        } else {
            Some(self.get(endpoint, repository, &url, &headers)?)
        };
        let mut body: Option<(Box<dyn Read>, Option<u64>)> = None;
        if let Some(response) = response {
            let status = response.status().as_u16();
            let start = match status {
                200 => 0,
                206 => response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range_start)
                    .unwrap_or(u64::MAX),
                416 => u64::MAX,
                _ => return Err(self.status_error(endpoint, &url, status)),
            };
            if start != have && have == 0 {
                return Err(ImageError::HttpStatus { url, status });
            }
            if start != have {
                // The registry did not resume where asked: start again from zero.
                tracing::info!(url = %url, have, "registry did not resume; restarting from zero");
                drop(response);
                remove_if_present(&part)?;
                return self.blob_once(store, endpoint, w, what, false, advance);
            }
            let len = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(len) = len {
                if have + len > w.size {
                    return Err(ImageError::TooLarge { url, limit: w.size });
                }
            }
            body = Some((Box::new(response), len));
        }

        let write_err = |source| ImageError::Write {
            path: part.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(write_err)?;
        // A partial is never trusted: its bytes go through the hasher like new ones.
        let mut hasher = Sha256::new();
        if have > 0 {
            let mut prefix = File::open(&part).map_err(write_err)?.take(have);
            let mut buf = vec![0u8; BUF_SIZE];
            loop {
                let n = prefix.read(&mut buf).map_err(write_err)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
        }
        let resumed_from = have;
        let mut total = have;
        advance(total);
        if let Some((mut reader, len)) = body {
            let mut buf = vec![0u8; BUF_SIZE];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => {
                        // Keep what arrived so the next attempt (or run) resumes from it.
                        file.sync_all().map_err(write_err)?;
                        return Err(ImageError::Body {
                            url,
                            received: total,
                            source,
                        });
                    }
                };
                if total + n as u64 > w.size {
                    drop(file);
                    remove_if_present(&part)?;
                    return Err(ImageError::TooLarge { url, limit: w.size });
                }
                file.write_all(&buf[..n]).map_err(write_err)?;
                hasher.update(&buf[..n]);
                total += n as u64;
                advance(total);
            }
            if total < w.size {
                file.sync_all().map_err(write_err)?;
                let announced_all = len.is_some_and(|len| resumed_from + len == total);
                if announced_all {
                    drop(file);
                    remove_if_present(&part)?;
                    return Err(ImageError::SizeMismatch {
                        url,
                        expected: w.size,
                        actual: total,
                    });
                }
                return Err(ImageError::Body {
                    url,
                    received: total,
                    source: io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed early"),
                });
            }
        }
        drop(file);
        let actual = Digest::from_hex(&hex::encode(hasher.finalize()));
        if actual != w.digest {
            remove_if_present(&part)?;
            if resumed_from > 0 {
                // The fault may lie with the partial (another endpoint, an older run): once more whole.
                tracing::info!(url = %url, "resumed blob did not match; downloading it whole");
                return self.blob_once(store, endpoint, w, what, false, advance);
            }
            return Err(ImageError::DigestMismatch {
                what: what.to_owned(),
                url,
                expected: w.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        storeio::commit(store, &part, &w.digest)?;
        tracing::info!(digest = %w.digest, url = %url, bytes = total, resumed_from, "blob stored");
        Ok(PulledBlob {
            digest: w.digest.clone(),
            bytes: total,
            resumed_from,
            url,
        })
    }
}

/// The first byte position of a `Content-Range: bytes N-M/T` value.
fn content_range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (start, _) = rest.split_once('-')?;
    start.trim().parse().ok()
}

/// Length of the partial file, 0 when there is none.
fn partial_len(part: &Path) -> Result<u64, ImageError> {
    match fs::metadata(part) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(ImageError::Read {
            path: part.to_owned(),
            source,
        }),
    }
}

fn remove_if_present(path: &Path) -> Result<(), ImageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ImageError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `sha256:0123456789ab` for labels.
fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start_is_parsed() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
