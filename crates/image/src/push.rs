//! Pushing to a registry: where to ([`PushTarget`]), blobs by digest (`HEAD` first, a
//! cross-repository mount when this run already pushed the blob elsewhere, else an
//! upload: see `upload.rs`), and manifests by tag or digest, checked against the
//! `Docker-Content-Digest` the registry announces. Also the reads `kiln pull` needs.
//!
//! Everything goes through the registry client's transport and its authentication flow,
//! with tokens scoped `repository:<repo>:pull,push`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use kiln_store::FetchOptions;
use kiln_transport::{read_capped, BlobTarget, Deadline, Pins, Sender, TransportError, Watch};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};

use crate::auth::Credentials;
use crate::error::ImageError;
use crate::manifest::MAX_DOCUMENT;
use crate::mirrors::{Endpoint, RegistryMirrors};
use crate::reference::{check_registry, check_repository, check_tag, Digest};
use crate::registry::{RegistryClient, PULL, PULL_PUSH};

/// Default upload chunk: blobs up to this size go in one `PUT`, larger ones in `PATCH`es
/// of this size, each a point an interrupted upload resumes from.
pub const DEFAULT_CHUNK: u64 = 8 * 1024 * 1024;

/// Longest registry error body quoted in a message.
const MAX_ERROR_BODY: u64 = 4096;

/// A repository on a registry to push to or pull from: `[http://|https://]host[:port]/repo[:tag]`.
/// HTTPS unless `http://` is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    endpoint: Endpoint,
    repository: String,
    tag: Option<String>,
}

impl PushTarget {
    /// Parses a target; the first path component must be a registry host (a name with a
    /// dot, a `:port`, or `localhost`) so a target never silently means Docker Hub.
    pub fn parse(input: &str) -> Result<PushTarget, ImageError> {
        let bad = |reason: &str| ImageError::InvalidPushTarget {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = match input.split_once("://") {
            Some(("http", rest)) => ("http", rest),
            Some(("https", rest)) => ("https", rest),
            Some((other, _)) => {
                return Err(bad(&format!(
                    "unknown scheme `{other}://` (http:// for a plain-HTTP registry, else none or https://)"
                )))
            }
            None => ("https", input),
        };
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected REGISTRY/REPOSITORY, e.g. harbor.example/kiln/lab"))?;
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad(
                "the first component must be a registry host (with a dot or a :port, or localhost)",
            ));
        }
        check_registry(host).map_err(bad)?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(bad)?;
        }
        if repository.is_empty() {
            return Err(bad("the repository is empty"));
        }
        check_repository(repository).map_err(bad)?;
        Ok(PushTarget {
            endpoint: Endpoint {
                base: format!("{scheme}://{host}"),
                prefix: String::new(),
                host: host.to_owned(),
            },
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
        })
    }

    /// The registry host (with port), as credentials are looked up.
    pub fn registry(&self) -> &str {
        &self.endpoint.host
    }

    /// The repository path on the registry.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when the target names one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The same registry, repository `<repository>/<sub>`, no tag (images are pushed
    /// under the build's repository by their own names).
    pub fn child(&self, sub: &str) -> Result<PushTarget, ImageError> {
        let repository = format!("{}/{sub}", self.repository);
        check_repository(&repository).map_err(|reason| ImageError::InvalidPushTarget {
            input: format!("{}/{repository}", self.endpoint.base),
            reason: reason.to_owned(),
        })?;
        Ok(PushTarget {
            endpoint: self.endpoint.clone(),
            repository,
            tag: None,
        })
    }

    /// The URL of a blob (`…/v2/<repo>/blobs/<digest>`), as hosts fetch bundles.
    pub fn blob_url(&self, digest: &Digest) -> String {
        self.endpoint
            .url(&self.repository, "blobs", digest.as_str())
    }

    /// The URL of a manifest by tag or digest.
    pub fn manifest_url(&self, reference: &str) -> String {
        self.endpoint.url(&self.repository, "manifests", reference)
    }

    /// `…/v2/<repo>/blobs/uploads/`.
    pub(crate) fn uploads_url(&self) -> String {
        format!(
            "{}/v2/{}/blobs/uploads/",
            self.endpoint.base, self.repository
        )
    }

    /// The endpoint's `scheme://host[:port]`, against which relative `Location`s resolve.
    pub(crate) fn base(&self) -> &str {
        &self.endpoint.base
    }
}

impl fmt::Display for PushTarget {
    /// `scheme://host/repo[:tag]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.endpoint.base, self.repository)?;
        match &self.tag {
            Some(tag) => write!(f, ":{tag}"),
            None => Ok(()),
        }
    }
}

/// Where a blob's bytes are: `len` bytes of a file from `offset` (a whole bundle, or one
/// blob inside an image archive), or bytes in memory (a small document).
#[derive(Debug, Clone)]
pub enum BlobSource {
    /// A range of a file; reopened and sought to resume an upload.
    File {
        /// The file.
        path: PathBuf,
        /// Where the blob starts in it.
        offset: u64,
    },
    /// The bytes themselves.
    Bytes(Vec<u8>),
}

/// One blob to push.
#[derive(Debug, Clone)]
pub struct BlobToPush {
    /// Its digest (the registry checks the upload against it).
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// Its bytes.
    pub source: BlobSource,
    /// A short name for progress and messages.
    pub label: String,
}

/// How one blob got to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry had it already (`HEAD`): nothing sent.
    Present,
    /// Mounted from another repository of the same registry that this run pushed it to.
    Mounted {
        /// That repository.
        from: String,
    },
    /// Uploaded.
    Uploaded {
        /// Bytes sent, counting bytes sent again after an interruption.
        sent: u64,
        /// Times the upload resumed after a broken request.
        resumes: u32,
    },
}

/// Hears a push's progress; the CLI renders it.
pub trait PushEvents: Sync {
    /// A blob starts (after `HEAD` found it missing).
    fn start(&self, label: &str, size: u64);
    /// The registry acknowledged `bytes` more bytes of it.
    fn advance(&self, label: &str, bytes: u64);
    /// The blob is done.
    fn finish(&self, label: &str, outcome: &BlobOutcome);
    /// Something worth telling (an upload resumed or restarted).
    fn note(&self, label: &str, msg: &str);
}

/// [`PushEvents`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPushEvents;

impl PushEvents for NoPushEvents {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: &str, _: u64) {}
    fn finish(&self, _: &str, _: &BlobOutcome) {}
    fn note(&self, _: &str, _: &str) {}
}

/// A manifest as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteManifest {
    /// The bytes, exactly.
    pub bytes: Vec<u8>,
    /// Their digest (checked against `Docker-Content-Digest` or the digest asked for).
    pub digest: Digest,
    /// The `Content-Type` the registry sent.
    pub media_type: String,
}

/// Pushes blobs and manifests to registries (and reads them back for `kiln pull`).
/// Safe to share between threads.
pub struct Pusher {
    pub(crate) client: RegistryClient,
    pub(crate) chunk: u64,
    /// Blobs pushed in this run: digest → (registry base, repository), for mounts.
    pushed: Mutex<BTreeMap<Digest, (String, String)>>,
}

impl Pusher {
    /// A pusher with `credentials` (a docker `config.json`-style file's logins) and the
    /// retry, timeout and deadline settings of `opts`.
    pub fn new(credentials: Credentials, opts: FetchOptions) -> Result<Pusher, ImageError> {
        Ok(Pusher {
            client: RegistryClient::new(RegistryMirrors::new(), credentials, opts)?,
            chunk: DEFAULT_CHUNK,
            pushed: Mutex::new(BTreeMap::new()),
        })
    }

    /// Sets the upload chunk size (at least 1 byte).
    pub fn with_chunk_size(mut self, chunk: u64) -> Pusher {
        self.chunk = chunk.max(1);
        self
    }

    /// Runs `attempt` against the target's registry through the transport's retry loop,
    /// within the deadline of the fetch options.
    pub(crate) fn on_target<T>(
        &self,
        target: &PushTarget,
        what: &str,
        attempt: impl FnMut(&Endpoint, &Deadline) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        self.client
            .try_endpoints(what, std::slice::from_ref(&target.endpoint), attempt)
    }

    /// Sends the request `build` makes (from the client and the longest wait the deadline
    /// allows) to `url` through the registry's authentication for `actions` on the target.
    pub(crate) fn send(
        &self,
        endpoint: &Endpoint,
        target: &PushTarget,
        actions: &'static str,
        deadline: &Deadline,
        url: &str,
        build: &dyn Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, ImageError> {
        let wait = deadline.wait(self.client.transport().options().idle_timeout);
        let client = self.client.transport().client();
        self.client
            .authorized_for(endpoint, &target.repository, actions)
            .send(url, &|| build(client).timeout(wait))
    }

    /// The size of `digest` in the target's repository, `None` when it is not there.
    pub fn blob_size(
        &self,
        target: &PushTarget,
        digest: &Digest,
    ) -> Result<Option<u64>, ImageError> {
        let what = format!("HEAD of blob {digest} in {target}");
        self.on_target(target, &what, |endpoint, deadline| {
            let url = target.blob_url(digest);
            let response = self.send(endpoint, target, PULL_PUSH, deadline, &url, &|c| {
                c.head(&url)
            })?;
            match response.status().as_u16() {
                200 => Ok(Some(
                    kiln_transport::header_u64(&response, CONTENT_LENGTH).unwrap_or(0),
                )),
                404 => Ok(None),
                status => Err(TransportError::HttpStatus { url, status }.into()),
            }
        })
    }

    /// The digest the registry serves for manifest `reference` (a tag) of the target, `None`
    /// when it has none (`HEAD`, accepting image manifests and indexes).
    pub fn manifest_digest(
        &self,
        target: &PushTarget,
        reference: &str,
    ) -> Result<Option<Digest>, ImageError> {
        let what = format!("HEAD of manifest {reference} in {target}");
        self.on_target(target, &what, |endpoint, deadline| {
            let url = target.manifest_url(reference);
            let response = self.send(endpoint, target, PULL_PUSH, deadline, &url, &|c| {
                c.head(&url).header(ACCEPT, crate::manifest::ACCEPT)
            })?;
            match response.status().as_u16() {
                200 => Ok(announced_digest(&response).and_then(|d| Digest::parse(&d).ok())),
                404 => Ok(None),
                status => Err(TransportError::HttpStatus { url, status }.into()),
            }
        })
    }

    /// Pushes one blob: skipped when the registry has it, mounted when this run pushed
    /// it to another repository of the same registry, else uploaded (resumably).
    pub fn push_blob(
        &self,
        target: &PushTarget,
        blob: &BlobToPush,
        events: &dyn PushEvents,
    ) -> Result<BlobOutcome, ImageError> {
        if let Some(size) = self.blob_size(target, &blob.digest)? {
            if size == blob.size {
                events.finish(&blob.label, &BlobOutcome::Present);
                return Ok(BlobOutcome::Present);
            }
            tracing::warn!(digest = %blob.digest, size, expected = blob.size, "registry announces another size; uploading");
        }
        let from = self
            .pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&blob.digest)
            .filter(|(base, repo)| base == target.base() && repo != &target.repository)
            .map(|(_, repo)| repo.clone());
        events.start(&blob.label, blob.size);
        let result = self.upload(target, blob, from.as_deref(), events);
        match &result {
            Ok(outcome) => {
                self.pushed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        blob.digest.clone(),
                        (target.base().to_owned(), target.repository.clone()),
                    );
                events.finish(&blob.label, outcome);
            }
            Err(e) => events.note(&blob.label, &kiln_transport::error_chain(e)),
        }
        result
    }

    /// Pushes `blobs` to `target` as [`push_blob`](Pusher::push_blob) does, up to the fetch
    /// options' `jobs` at a time; each outcome in its blob's place, so what a push reports does
    /// not depend on which upload finished first. A digest listed twice is pushed once and
    /// reported present the second time, as one blob after the other would be. On failure,
    /// the blobs not yet started are skipped and the first error in list order is returned.
    pub fn push_blobs(
        &self,
        target: &PushTarget,
        blobs: &[BlobToPush],
        events: &dyn PushEvents,
    ) -> Result<Vec<BlobOutcome>, ImageError> {
        let mut first: BTreeMap<&Digest, usize> = BTreeMap::new();
        let mut distinct = Vec::new();
        for (i, b) in blobs.iter().enumerate() {
            first.entry(&b.digest).or_insert_with(|| {
                distinct.push(b);
                i
            });
        }
        let jobs = self.client.options().jobs.max(1);
        let results = kiln_fsio::pool::run(&distinct, jobs, |b| self.push_blob(target, b, events));
        let mut outcomes = BTreeMap::new();
        let mut failure = None;
        for (b, r) in distinct.iter().zip(results) {
            match r {
                Some(Ok(o)) => {
                    outcomes.insert(&b.digest, o);
                }
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => {}
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut out = Vec::with_capacity(blobs.len());
        for (i, b) in blobs.iter().enumerate() {
            if first[&b.digest] == i {
                out.push(outcomes[&b.digest].clone());
            } else {
                events.finish(&b.label, &BlobOutcome::Present);
                out.push(BlobOutcome::Present);
            }
        }
        Ok(out)
    }

    /// Puts a manifest (or index) under `reference` (a tag or its digest) with
    /// `media_type`; returns its digest after checking the one the registry announces.
    pub fn push_manifest(
        &self,
        target: &PushTarget,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        let what = format!("manifest {reference} of {target}");
        self.on_target(target, &what, |endpoint, deadline| {
            let url = target.manifest_url(reference);
            let response = self.send(endpoint, target, PULL_PUSH, deadline, &url, &|c| {
                c.put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })?;
            let status = response.status().as_u16();
            if status != 201 && status != 200 {
                return Err(ImageError::ManifestRejected {
                    url,
                    repository: target.repository.clone(),
                    reference: reference.to_owned(),
                    status,
                    detail: error_detail(response),
                });
            }
            check_announced(&response, &digest, &what, &url)?;
            Ok(digest.clone())
        })
    }

    /// Gets a manifest by tag or digest (`accept`: the media types wanted), byte-exact;
    /// checked against the digest asked for, else against `Docker-Content-Digest`.
    pub fn get_manifest(
        &self,
        target: &PushTarget,
        reference: &str,
        accept: &str,
    ) -> Result<RemoteManifest, ImageError> {
        let what = format!("manifest {reference} of {target}");
        self.on_target(target, &what, |endpoint, deadline| {
            let url = target.manifest_url(reference);
            let response = self.send(endpoint, target, PULL, deadline, &url, &|c| {
                c.get(&url).header(ACCEPT, accept)
            })?;
            match response.status().as_u16() {
                200 => {}
                404 => {
                    return Err(ImageError::ManifestNotFound {
                        reference: format!("{target}:{reference}"),
                        urls: vec![url],
                    })
                }
                status => return Err(TransportError::HttpStatus { url, status }.into()),
            }
            let media_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let announced = announced_digest(&response);
            let bytes = read_capped(response, &url, MAX_DOCUMENT)?;
            let digest = Digest::of(&bytes);
            let expected = match Digest::parse(reference) {
                Ok(asked) => Some(asked.to_string()),
                Err(_) => announced,
            };
            if let Some(expected) = expected.filter(|e| e != digest.as_str()) {
                return Err(ImageError::DigestMismatch {
                    what: what.clone(),
                    url,
                    expected,
                    actual: digest.to_string(),
                });
            }
            Ok(RemoteManifest {
                bytes,
                digest,
                media_type,
            })
        })
    }

    /// Downloads a blob into `dir` as `<dir>/<hex>` through the transport's resumable,
    /// verified download (the partial is `<dir>/<hex>.partial`): nothing lands under its
    /// name unless it has the digest and size asked for.
    pub fn download_blob(
        &self,
        target: &PushTarget,
        digest: &Digest,
        size: u64,
        dir: &Path,
        watch: &mut dyn Watch,
    ) -> Result<PathBuf, ImageError> {
        let what = format!("blob {digest} of {target}");
        let blob = BlobTarget {
            partial: dir.join(format!("{}.partial", digest.hex())),
            blob_dir: dir.to_owned(),
            pins: Pins {
                sha256: Some(digest.hex()),
                sha512: None,
            },
            size: Some(size),
        };
        self.on_target(target, &what, |endpoint, deadline| {
            let url = target.blob_url(digest);
            let sender = self
                .client
                .authorized_for(endpoint, &target.repository, PULL);
            self.client
                .transport()
                .download(&sender, &blob, &url, deadline, watch)?;
            Ok(dir.join(digest.hex()))
        })
    }
}

/// The digest a registry announced in `Docker-Content-Digest`, when it did.
pub(crate) fn announced_digest(response: &reqwest::blocking::Response) -> Option<String> {
    response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Fails when the registry announced a digest other than `digest`.
pub(crate) fn check_announced(
    response: &reqwest::blocking::Response,
    digest: &Digest,
    what: &str,
    url: &str,
) -> Result<(), ImageError> {
    match announced_digest(response) {
        Some(announced) if announced != digest.as_str() => Err(ImageError::DigestMismatch {
            what: what.to_owned(),
            url: url.to_owned(),
            expected: digest.to_string(),
            actual: announced,
        }),
        _ => Ok(()),
    }
}

/// The registry's error codes and messages from a refusal's body (`{"errors":[…]}`), or
/// its first bytes as text.
pub(crate) fn error_detail(response: reqwest::blocking::Response) -> String {
    let mut body = Vec::new();
    // Only for the message: a body that breaks off is quoted as far as it came.
    let _ = std::io::Read::read_to_end(
        &mut std::io::Read::take(response, MAX_ERROR_BODY),
        &mut body,
    );
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(&body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::from_utf8_lossy(&body).trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_with_scheme_host_repository_and_tag() {
        let t = PushTarget::parse("http://127.0.0.1:5000/kiln/lab").unwrap();
        assert_eq!(
            (t.registry(), t.repository(), t.tag()),
            ("127.0.0.1:5000", "kiln/lab", None)
        );
        assert_eq!(t.to_string(), "http://127.0.0.1:5000/kiln/lab");
        let t = PushTarget::parse("harbor.example/kiln/lab:lab-g1").unwrap();
        assert_eq!(t.to_string(), "https://harbor.example/kiln/lab:lab-g1");
        assert_eq!(
            t.blob_url(&Digest::of(b"")),
            format!(
                "https://harbor.example/v2/kiln/lab/blobs/{}",
                Digest::of(b"")
            )
        );
        let c = t.child("registry.k8s.io/pause").unwrap();
        assert_eq!(c.repository(), "kiln/lab/registry.k8s.io/pause");
        for bad in [
            "kiln/lab",
            "ftp://h.example/x",
            "h.example",
            "h.example/",
            "h.example/Kiln",
            "h.example/kiln:bad tag",
        ] {
            let err = PushTarget::parse(bad).unwrap_err();
            assert!(
                matches!(err, ImageError::InvalidPushTarget { .. }),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
