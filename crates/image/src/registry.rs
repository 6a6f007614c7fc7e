//! The OCI distribution API client: endpoints in mirror order, retries, and anonymous,
//! basic and bearer-token authentication.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use kiln_store::{error_chain, FetchOptions};
use reqwest::blocking::{Client, Response};
use reqwest::header::{HeaderName, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

use crate::auth::{fetch_token, parse_challenge, Challenge, Credentials};
use crate::error::{ImageError, Reaction};
use crate::manifest::{self, MAX_DOCUMENT};
use crate::mirrors::{Endpoint, RegistryMirrors};
use crate::reference::{Digest, Reference};

/// First backoff delay; doubled on each retry up to `FetchOptions::max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Talks to registries (through their mirrors) for [`resolve`](Self::resolve) and
/// [`pull`](Self::pull). Safe to share between threads; remembers tokens per repository.
pub struct RegistryClient {
    http: Client,
    mirrors: RegistryMirrors,
    credentials: Credentials,
    opts: FetchOptions,
    /// `Authorization` values that worked, by (endpoint base, repository on it).
    auth: Mutex<BTreeMap<(String, String), String>>,
}

/// A manifest or index exactly as the registry sent it.
#[derive(Debug, Clone)]
pub(crate) struct FetchedManifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
    pub(crate) url: String,
}

impl RegistryClient {
    /// A client with the given mirrors, credentials and fetch options (retries,
    /// timeouts, backoff, whether the network is allowed).
    pub fn new(
        mirrors: RegistryMirrors,
        credentials: Credentials,
        opts: FetchOptions,
    ) -> Result<Self, ImageError> {
        let http = Client::builder()
            .connect_timeout(opts.connect_timeout)
            // For the blocking client this bounds each wait, not the whole transfer.
            .timeout(opts.read_timeout)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::HttpClient {
                reason: error_chain(&e),
            })?;
        Ok(RegistryClient {
            http,
            mirrors,
            credentials,
            opts,
            auth: Mutex::new(BTreeMap::new()),
        })
    }

    /// The fetch options this client was made with.
    pub fn options(&self) -> &FetchOptions {
        &self.opts
    }

    /// GETs `url` of `repository` on `endpoint`, answering an authentication challenge
    /// once. Returns any response but 401.
    pub(crate) fn get(
        &self,
        endpoint: &Endpoint,
        repository: &str,
        url: &str,
        headers: &[(HeaderName, String)],
    ) -> Result<Response, ImageError> {
        let key = (endpoint.base.clone(), endpoint.repository(repository));
        let cached = self.lock_auth().get(&key).cloned();
        let send = |authorization: Option<&str>| {
            let mut request = self.http.get(url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            request.send().map_err(|source| ImageError::Request {
                url: url.to_owned(),
                source,
            })
        };
        let response = send(cached.as_deref())?;
        if response.status().as_u16() != 401 {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        drop(response);
        let login = self.credentials.get(&endpoint.host);
        let authorization = match parse_challenge(&challenge) {
            None => {
                return Err(ImageError::UnsupportedChallenge {
                    url: url.to_owned(),
                    challenge,
                })
            }
            Some(Challenge::Basic) => match login {
                Some(login) => login.basic_header(),
                None => {
                    return Err(ImageError::AuthRequired {
                        registry: endpoint.host.clone(),
                        url: url.to_owned(),
                    })
                }
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", key.1));
                let token = fetch_token(
                    &self.http,
                    &endpoint.host,
                    &realm,
                    service.as_deref(),
                    &scope,
                    login,
                    self.credentials.file(),
                )?;
                format!("Bearer {token}")
            }
        };
        let response = send(Some(&authorization))?;
        if response.status().as_u16() == 401 {
            return Err(match login {
                Some(login) => ImageError::AuthRejected {
                    registry: endpoint.host.clone(),
                    user: login.user.clone(),
                    file: self.credentials.file().map(ToOwned::to_owned),
                },
                None => ImageError::AuthRequired {
                    registry: endpoint.host.clone(),
                    url: url.to_owned(),
                },
            });
        }
        self.lock_auth().insert(key, authorization);
        Ok(response)
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), String>> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error for an unexpected status (403 gets its own message).
    pub(crate) fn status_error(&self, endpoint: &Endpoint, url: &str, status: u16) -> ImageError {
        if status == 403 {
            ImageError::AccessDenied {
                registry: endpoint.host.clone(),
                url: url.to_owned(),
                user: self.credentials.get(&endpoint.host).map(|l| l.user.clone()),
            }
        } else {
            ImageError::HttpStatus {
                url: url.to_owned(),
                status,
            }
        }
    }

    /// Runs `attempt` on each endpoint of `registry` (mirrors first), retrying transient
    /// failures with capped exponential backoff. The first success wins.
    pub(crate) fn on_endpoints<T>(
        &self,
        registry: &str,
        what: &str,
        mut attempt: impl FnMut(&Endpoint) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        if !self.opts.allow_network {
            return Err(ImageError::Offline {
                what: what.to_owned(),
            });
        }
        let mut failures: Vec<(String, ImageError)> = Vec::new();
        for endpoint in self.mirrors.endpoints(registry) {
            let mut tries = 0u32;
            loop {
                tries += 1;
                let error = match attempt(&endpoint) {
                    Ok(value) => return Ok(value),
                    Err(e) => e,
                };
                match error.reaction() {
                    Reaction::Fatal => return Err(error),
                    Reaction::Retry if tries <= self.opts.retries => {
                        let delay = FIRST_BACKOFF
                            .saturating_mul(1u32 << (tries - 1).min(16))
                            .min(self.opts.max_backoff);
                        tracing::warn!(
                            endpoint = %endpoint.base,
                            tries,
                            delay_ms = delay.as_millis() as u64,
                            error = %error_chain(&error),
                            "{what}: transient failure, retrying"
                        );
                        thread::sleep(delay);
                    }
                    _ => {
                        tracing::warn!(
                            endpoint = %endpoint.base,
                            error = %error_chain(&error),
                            "{what}: giving up on this endpoint"
                        );
                        failures.push((endpoint.base.clone(), error));
                        break;
                    }
                }
            }
        }
        Err(merge_failures(what, failures))
    }

    /// Fetches a manifest or index by tag or digest, byte-exact, checking it against
    /// `expected` (digest and size) when given, else against `Docker-Content-Digest`.
    pub(crate) fn fetch_manifest(
        &self,
        reference: &Reference,
        expected: Option<(&Digest, u64)>,
    ) -> Result<FetchedManifest, ImageError> {
        let wanted = match expected {
            Some((digest, _)) => digest.as_str().to_owned(),
            None => reference.manifest_ref().to_owned(),
        };
        let what = format!("manifest {wanted} of {reference}");
        let repository = reference.repository();
        self.on_endpoints(reference.registry(), &what, |endpoint| {
            let url = endpoint.url(repository, "manifests", &wanted);
            let response = self.get(
                endpoint,
                repository,
                &url,
                &[(ACCEPT, manifest::ACCEPT.to_owned())],
            )?;
            match response.status().as_u16() {
                200 => {}
                404 => {
                    return Err(ImageError::ManifestNotFound {
                        reference: reference.to_string(),
                        urls: vec![url],
                    })
                }
                status => return Err(self.status_error(endpoint, &url, status)),
            }
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let content_type = header(CONTENT_TYPE.as_str());
            let announced = header("docker-content-digest");
            let limit = expected.map_or(MAX_DOCUMENT, |(_, size)| size.min(MAX_DOCUMENT));
            let bytes = read_capped(response, &url, limit)?;
            let digest = Digest::of(&bytes);
            let check = match expected {
                Some((d, _)) => Some(d.as_str().to_owned()),
                None => announced.filter(|a| a.starts_with("sha256:")),
            };
            if let Some(check) = check {
                if check != digest.as_str() {
                    return Err(ImageError::DigestMismatch {
                        what: what.clone(),
                        url,
                        expected: check,
                        actual: digest.to_string(),
                    });
                }
            }
            if let Some((_, size)) = expected {
                if bytes.len() as u64 != size {
                    return Err(ImageError::SizeMismatch {
                        url,
                        expected: size,
                        actual: bytes.len() as u64,
                    });
                }
            }
            let media_type = manifest::media_type_of(&bytes, content_type.as_deref());
            Ok(FetchedManifest {
                bytes,
                digest,
                media_type,
                url,
            })
        })
    }

    /// Fetches a small blob (an image config) into memory, checking digest and size.
    pub(crate) fn fetch_small_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        what: &str,
    ) -> Result<Vec<u8>, ImageError> {
        let repository = reference.repository();
        self.on_endpoints(reference.registry(), what, |endpoint| {
            let url = endpoint.url(repository, "blobs", digest.as_str());
            let response = self.get(endpoint, repository, &url, &[])?;
            match response.status().as_u16() {
                200 => {}
                status => return Err(self.status_error(endpoint, &url, status)),
            }
            let bytes = read_capped(response, &url, size.min(MAX_DOCUMENT))?;
            let actual = Digest::of(&bytes);
            if &actual != digest {
                return Err(ImageError::DigestMismatch {
                    what: what.to_owned(),
                    url,
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                });
            }
            Ok(bytes)
        })
    }
}

/// Reads a whole body of at most `limit` bytes.
fn read_capped(response: Response, url: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
    let mut bytes = Vec::new();
    response
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ImageError::Body {
            url: url.to_owned(),
            received: bytes.len() as u64,
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(ImageError::TooLarge {
            url: url.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// One endpoint's error as is; 404s everywhere as one "no such image"; else the list.
fn merge_failures(what: &str, mut failures: Vec<(String, ImageError)>) -> ImageError {
    if failures.len() == 1 {
        return failures.remove(0).1;
    }
    if failures
        .iter()
        .all(|(_, e)| matches!(e, ImageError::ManifestNotFound { .. }))
    {
        let mut reference = String::new();
        let mut urls = Vec::new();
        for (_, e) in failures {
            if let ImageError::ManifestNotFound {
                reference: r,
                urls: u,
            } = e
            {
                reference = r;
                urls.extend(u);
            }
        }
        return ImageError::ManifestNotFound { reference, urls };
    }
    ImageError::AllEndpointsFailed {
        what: what.to_owned(),
        attempts: failures,
    }
}
