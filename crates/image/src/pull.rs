//! Pulling locked images into the store: manifests byte-exact, every blob streamed through
//! sha256 into the store once, interrupted blobs resumed with `Range`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;

use kiln_store::{Meter, Outcome, Progress, Store};
use kiln_transport::{error_chain, BlobTarget, Pins, TransportError};

use crate::error::ImageError;
use crate::manifest::MAX_DOCUMENT;
use crate::reference::{Digest, Reference};
use crate::registry::RegistryClient;
use crate::resolve::LockedImage;
use crate::storeio;

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

    /// Downloads one blob through the image's endpoints (resuming an interrupted
    /// transfer), reporting progress.
    fn pull_blob(
        &self,
        store: &Store,
        w: &Wanted<'_>,
        progress: &dyn Progress,
    ) -> Result<PulledBlob, ImageError> {
        progress.start(&w.label, Some(w.size));
        let what = format!("blob {} of {}", w.digest, w.image.reference);
        let target = BlobTarget {
            partial: store.partial_path(w.digest.hex()),
            blob_dir: store.blob_dir(),
            pins: Pins {
                sha256: Some(w.digest.hex()),
                sha512: None,
            },
            size: Some(w.size),
        };
        // Image pulls have always kept restarts in the log only.
        let mut watch = Meter::new(progress, &w.label).notes_to_log_only();
        let reference = &w.image.reference;
        let repository = reference.repository();
        let result = self.on_endpoints(reference.registry(), &what, |endpoint, deadline| {
            let url = endpoint.url(repository, "blobs", w.digest.as_str());
            let sender = self.authorized(endpoint, repository);
            let done = self
                .transport()
                .download(&sender, &target, &url, deadline, &mut watch)
                .map_err(|e| digest_mismatch(e, &what))?;
            tracing::info!(digest = %w.digest, url = %url, bytes = done.bytes, resumed_from = done.resumed_from, "blob stored");
            Ok(PulledBlob {
                digest: w.digest.clone(),
                bytes: done.bytes,
                resumed_from: done.resumed_from,
                url,
            })
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
}

/// A blob's wrong bytes said in the registry's terms: which blob of which image, with
/// `sha256:` digests.
fn digest_mismatch(error: ImageError, what: &str) -> ImageError {
    match error {
        ImageError::Transport(TransportError::HashMismatch {
            origin,
            expected,
            actual,
            ..
        }) => ImageError::DigestMismatch {
            what: what.to_owned(),
            url: origin,
            expected: format!("sha256:{expected}"),
            actual: format!("sha256:{actual}"),
        },
        other => other,
    }
}

/// `sha256:0123456789ab` for labels.
fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}
