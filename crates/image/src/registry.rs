//! The OCI distribution API client: endpoints in mirror order, retries, and anonymous,
//! basic and bearer-token authentication.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kiln_store::FetchOptions;
use kiln_transport::{
    read_capped, try_sources, Attempt, Deadline, Exhausted, Sender, Transport, TransportError,
};
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};

use crate::auth::{fetch_token, parse_challenge, Challenge, Credentials};
use crate::error::ImageError;
use crate::manifest::{self, MAX_DOCUMENT};
use crate::mirrors::{Endpoint, RegistryMirrors};
use crate::reference::{Digest, Reference};

/// Talks to registries (through their mirrors) for [`resolve`](Self::resolve) and
/// [`pull`](Self::pull). Safe to share between threads; remembers tokens per repository.
pub struct RegistryClient {
    transport: Transport,
    mirrors: RegistryMirrors,
    credentials: Credentials,
    opts: FetchOptions,
    /// `Authorization` values that worked, by (endpoint base, repository on it, actions).
    auth: Mutex<BTreeMap<AuthKey, String>>,
}

/// (endpoint base, repository on it, actions): a token for `pull` does not push.
type AuthKey = (String, String, &'static str);

/// Token scope actions for reading a repository.
pub(crate) const PULL: &str = "pull";

/// Token scope actions for writing one (a push also reads: `HEAD` of blobs, mounts).
pub(crate) const PULL_PUSH: &str = "pull,push";

/// Sends requests for one repository on one endpoint: the registry's authentication
/// flow (anonymous, basic, bearer token) as the transport's per-request hook.
pub(crate) struct Authorized<'a> {
    client: &'a RegistryClient,
    endpoint: &'a Endpoint,
    repository: &'a str,
    /// The scope actions a bearer token is asked for when the challenge names none.
    actions: &'static str,
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
        Ok(RegistryClient {
            transport: Transport::new(&opts.transport())?,
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

    /// The transport every request goes through.
    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The sender for `repository` on `endpoint`, answering its authentication challenges.
    pub(crate) fn authorized<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        repository: &'a str,
    ) -> Authorized<'a> {
        self.authorized_for(endpoint, repository, PULL)
    }

    /// The sender for `repository` on `endpoint` with tokens for `actions` ([`PULL`] or
    /// [`PULL_PUSH`]).
    pub(crate) fn authorized_for<'a>(
        &'a self,
        endpoint: &'a Endpoint,
        repository: &'a str,
        actions: &'static str,
    ) -> Authorized<'a> {
        Authorized {
            client: self,
            endpoint,
            repository,
            actions,
        }
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, BTreeMap<AuthKey, String>> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `attempt` on each endpoint of `registry` (mirrors first) through the
    /// transport's retry loop, within its deadline. The first success wins.
    pub(crate) fn on_endpoints<T>(
        &self,
        registry: &str,
        what: &str,
        attempt: impl FnMut(&Endpoint, &Deadline) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        if !self.opts.allow_network {
            return Err(ImageError::Offline {
                what: what.to_owned(),
            });
        }
        let endpoints = self.mirrors.endpoints(registry);
        self.try_endpoints(what, &endpoints, attempt)
    }

    /// Runs `attempt` on each of `endpoints` through the transport's retry loop, within its
    /// deadline; one endpoint's error as is, 404s everywhere as one, else the list.
    pub(crate) fn try_endpoints<T>(
        &self,
        what: &str,
        endpoints: &[Endpoint],
        attempt: impl FnMut(&Endpoint, &Deadline) -> Result<T, ImageError>,
    ) -> Result<T, ImageError> {
        let options = self.transport.options();
        match try_sources(
            what,
            endpoints,
            options,
            |e| e.base.clone(),
            |_, _| {},
            attempt,
        ) {
            Ok(success) => Ok(success.value),
            Err(Exhausted::Fatal(e)) => Err(e),
            Err(Exhausted::AllFailed(attempts)) => Err(merge_failures(what, attempts)),
        }
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
        self.on_endpoints(reference.registry(), &what, |endpoint, deadline| {
            let url = endpoint.url(repository, "manifests", &wanted);
            let wait = deadline.wait(self.transport.options().idle_timeout);
            let response = self.authorized(endpoint, repository).send(&url, &|| {
                self.transport
                    .client()
                    .get(&url)
                    .header(ACCEPT, manifest::ACCEPT)
                    .timeout(wait)
            })?;
            match response.status().as_u16() {
                200 => {}
                404 => {
                    return Err(ImageError::ManifestNotFound {
                        reference: reference.to_string(),
                        urls: vec![url],
                    })
                }
                status => return Err(TransportError::HttpStatus { url, status }.into()),
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
                    return Err(TransportError::SizeMismatch {
                        url,
                        expected: size,
                        actual: bytes.len() as u64,
                    }
                    .into());
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
        self.on_endpoints(reference.registry(), what, |endpoint, deadline| {
            let url = endpoint.url(repository, "blobs", digest.as_str());
            let wait = deadline.wait(self.transport.options().idle_timeout);
            let response = self
                .authorized(endpoint, repository)
                .send(&url, &|| self.transport.client().get(&url).timeout(wait))?;
            match response.status().as_u16() {
                200 => {}
                status => return Err(TransportError::HttpStatus { url, status }.into()),
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

/// One endpoint's error as is; 404s everywhere as one "no such image"; else the list.
fn merge_failures(what: &str, mut failures: Vec<Attempt<ImageError>>) -> ImageError {
    if failures.len() == 1 {
        return failures.remove(0).error;
    }
    if failures
        .iter()
        .all(|a| matches!(a.error, ImageError::ManifestNotFound { .. }))
    {
        let mut reference = String::new();
        let mut urls = Vec::new();
        for Attempt { error: e, .. } in failures {
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

impl Sender for Authorized<'_> {
    type Error = ImageError;

    /// Sends with the `Authorization` that worked before for this repository, answering
    /// one authentication challenge; a 403 is access denied. Returns any other response.
    fn send(&self, url: &str, build: &dyn Fn() -> RequestBuilder) -> Result<Response, ImageError> {
        let (client, endpoint) = (self.client, self.endpoint);
        let key = (
            endpoint.base.clone(),
            endpoint.repository(self.repository),
            self.actions,
        );
        let cached = client.lock_auth().get(&key).cloned();
        let send = |authorization: Option<&str>| {
            let request = match authorization {
                Some(value) => build().header(AUTHORIZATION, value),
                None => build(),
            };
            Transport::execute(url, request)
        };
        let mut response = send(cached.as_deref())?;
        if response.status().as_u16() == 401 {
            let authorization = self.answer(url, &key.1, response)?;
            response = send(Some(&authorization))?;
            if response.status().as_u16() == 401 {
                return Err(self.refused(url));
            }
            client.lock_auth().insert(key, authorization);
        }
        if response.status().as_u16() == 403 {
            return Err(ImageError::AccessDenied {
                registry: endpoint.host.clone(),
                url: url.to_owned(),
                user: client
                    .credentials
                    .get(&endpoint.host)
                    .map(|l| l.user.clone()),
            });
        }
        Ok(response)
    }
}

impl Authorized<'_> {
    /// The `Authorization` value answering the challenge of a 401 `response`.
    fn answer(
        &self,
        url: &str,
        repository: &str,
        response: Response,
    ) -> Result<String, ImageError> {
        let endpoint = self.endpoint;
        let challenge = response
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        drop(response);
        let login = self.client.credentials.get(&endpoint.host);
        match parse_challenge(&challenge) {
            None => Err(ImageError::UnsupportedChallenge {
                url: url.to_owned(),
                challenge,
            }),
            Some(Challenge::Basic) => match login {
                Some(login) => Ok(login.basic_header()),
                None => Err(self.refused(url)),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                let actions = self.actions;
                let scope = scope.unwrap_or_else(|| format!("repository:{repository}:{actions}"));
                let token = fetch_token(
                    &self.client.transport,
                    &endpoint.host,
                    &realm,
                    service.as_deref(),
                    &scope,
                    login,
                    self.client.credentials.file(),
                )?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    /// The error when the registry still wants credentials: ours were refused, or we have none.
    fn refused(&self, url: &str) -> ImageError {
        let host = &self.endpoint.host;
        match self.client.credentials.get(host) {
            Some(login) => ImageError::AuthRejected {
                registry: host.clone(),
                user: login.user.clone(),
                file: self.client.credentials.file().map(ToOwned::to_owned),
            },
            None => ImageError::AuthRequired {
                registry: host.clone(),
                url: url.to_owned(),
            },
        }
    }
}
