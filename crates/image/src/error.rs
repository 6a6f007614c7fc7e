//! Errors of image handling: each names the reference, registry, URL, digest or file involved.

use std::fmt;
use std::io;
use std::path::PathBuf;

use kiln_store::StoreError;
use kiln_transport::{error_chain, Attempt, Classify, Reaction, TransportError};

/// Everything that can go wrong parsing, resolving, pulling, writing or assembling images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// An image reference that does not follow Docker's grammar.
    #[error("invalid image reference `{input}`: {reason}")]
    InvalidReference {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest that is not `sha256:` and 64 lowercase hex digits.
    #[error("invalid digest `{input}`: expected sha256: and 64 lowercase hex digits")]
    InvalidDigest {
        /// The text given.
        input: String,
    },
    /// A platform that is not `os/arch[/variant]`.
    #[error("invalid platform `{input}`: expected os/arch[/variant], e.g. linux/amd64")]
    InvalidPlatform {
        /// The text given.
        input: String,
    },
    /// A mirror URL that is not `http(s)://host[:port][/prefix]`.
    #[error("invalid mirror `{url}` for registry {registry}: {reason}")]
    InvalidMirror {
        /// The registry host being mirrored.
        registry: String,
        /// The mirror URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The credentials file could not be read.
    #[error("cannot read credentials file {}", path.display())]
    CredentialsRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The credentials file is not a docker `config.json`-style `auths` map.
    #[error("credentials file {}: {reason}", path.display())]
    CredentialsFormat {
        /// The file.
        path: PathBuf,
        /// What is wrong (never includes a secret).
        reason: String,
    },
    /// The registry wants credentials and none are configured for it.
    #[error("registry {registry} requires authentication ({url}) and no credentials are configured for it")]
    AuthRequired {
        /// The registry (or mirror) host.
        registry: String,
        /// The URL that asked.
        url: String,
    },
    /// The registry (or its token service) refused the configured credentials.
    #[error(
        "registry {registry} refused the credentials of user `{user}`{}",
        from_file(file)
    )]
    AuthRejected {
        /// The registry (or mirror) host.
        registry: String,
        /// The user name (the password is never reported).
        user: String,
        /// The credentials file the user came from.
        file: Option<PathBuf>,
    },
    /// The registry answered 403: authenticated but not allowed.
    #[error("registry {registry} denied access to {url}{}", as_user(user))]
    AccessDenied {
        /// The registry (or mirror) host.
        registry: String,
        /// The URL.
        url: String,
        /// The user, when credentials were sent.
        user: Option<String>,
    },
    /// A token service answered something unusable.
    #[error("token service {realm} of registry {registry}: {reason}")]
    Token {
        /// The registry (or mirror) host.
        registry: String,
        /// The token endpoint.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// A `WWW-Authenticate` challenge kiln cannot answer.
    #[error("{url}: unsupported authentication challenge `{challenge}`")]
    UnsupportedChallenge {
        /// The URL.
        url: String,
        /// The challenge header.
        challenge: String,
    },
    /// No registry endpoint has a manifest for the tag or digest.
    #[error("{reference}: no such image: manifest unknown at {}", urls.join(", "))]
    ManifestNotFound {
        /// The reference asked for.
        reference: String,
        /// Every URL that answered 404.
        urls: Vec<String>,
    },
    /// Bytes that do not hash to their digest.
    #[error("{what} from {url}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched (manifest, config or layer of which image).
        what: String,
        /// Where it came from.
        url: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A media type kiln does not handle (schema 1, artifacts, foreign layers, ...).
    #[error(
        "{reference}: unsupported media type `{media_type}` for {what}{}",
        at_url(url)
    )]
    UnsupportedMediaType {
        /// The image.
        reference: String,
        /// Manifest, config or layer.
        what: String,
        /// The media type.
        media_type: String,
        /// Where it was seen, when it came from the network.
        url: Option<String>,
    },
    /// A manifest or index that is not valid JSON of its kind.
    #[error("{what}: invalid {kind}: {reason}")]
    BadManifest {
        /// Which document (reference and digest).
        what: String,
        /// `manifest`, `index` or `config`.
        kind: &'static str,
        /// The parse error.
        reason: String,
    },
    /// A multi-platform image without the platform asked for.
    #[error("{reference}: no image for platform {platform}; available: {}", available.join(", "))]
    NoPlatform {
        /// The image.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// Platforms the image has.
        available: Vec<String>,
    },
    /// A locked image whose stored manifest says something else than the lock.
    #[error("{reference}: manifest {digest} does not match kiln.lock: {reason}")]
    LockMismatch {
        /// The image.
        reference: String,
        /// The manifest digest.
        digest: String,
        /// What differs.
        reason: String,
    },
    /// Every endpoint (mirrors first, then the registry) failed.
    #[error("{what}: every registry endpoint failed:{}", Attempts(attempts))]
    AllEndpointsFailed {
        /// What was being fetched.
        what: String,
        /// The last error of each endpoint, in the order tried.
        attempts: Vec<Attempt<ImageError>>,
    },
    /// Talking to an endpoint or landing its bytes failed (HTTP, transfer, size, disk).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Several blobs of a pull failed.
    #[error("{} blobs could not be pulled:{}", errors.len(), Errors(errors))]
    PullFailed {
        /// Each blob's error.
        errors: Vec<ImageError>,
    },
    /// Network access was needed while it is not allowed.
    #[error("{what} is not in the store and the network is not allowed")]
    Offline {
        /// What is missing (image and digest).
        what: String,
    },
    /// A blob needed to write or assemble an image is not in the store.
    #[error(
        "{reference}: blob {digest} is not in the store (or was corrupt); pull the image first"
    )]
    MissingBlob {
        /// The image.
        reference: String,
        /// The missing blob.
        digest: String,
    },
    /// A local file could not be read, written or saved under its final name (names the
    /// operation and the file).
    #[error(transparent)]
    File(#[from] kiln_fsio::Error),
    /// A path inside an image that is absolute, empty or climbs out with `..`.
    #[error("invalid path `{path}` in image {reference}: {reason}")]
    InvalidImagePath {
        /// The image.
        reference: String,
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Two images of one archive with the same name.
    #[error("image {reference} appears twice in one archive")]
    DuplicateImage {
        /// The reference.
        reference: String,
    },
    /// An archive with no image at all.
    #[error("an image archive needs at least one image")]
    NoImages,
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A push or pull target that is not `[http://|https://]host[:port]/repository[:tag]`.
    #[error("invalid registry repository `{input}`: {reason}")]
    InvalidPushTarget {
        /// The text given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry refused a blob upload (start, chunk or final `PUT`).
    #[error(
        "{url}: registry refused blob {digest} for repository {repository}: HTTP {status}{}",
        detail_of(detail)
    )]
    UploadRefused {
        /// The URL of the refused request.
        url: String,
        /// The repository pushed to.
        repository: String,
        /// The blob.
        digest: String,
        /// The status.
        status: u16,
        /// The registry's error codes and messages.
        detail: String,
    },
    /// An upload that cannot go on (no location, no usable status).
    #[error("{url}: upload of blob {digest} to repository {repository} lost: {reason}")]
    UploadLost {
        /// The upload's URL.
        url: String,
        /// The repository pushed to.
        repository: String,
        /// The blob.
        digest: String,
        /// What happened.
        reason: String,
    },
    /// The registry refused a manifest.
    #[error(
        "{url}: registry refused manifest {reference} for repository {repository}: HTTP {status}{}",
        detail_of(detail)
    )]
    ManifestRejected {
        /// The URL.
        url: String,
        /// The repository pushed to.
        repository: String,
        /// The tag or digest.
        reference: String,
        /// The status.
        status: u16,
        /// The registry's error codes and messages.
        detail: String,
    },
}

impl Classify for ImageError {
    /// The transport's classification for its errors; an endpoint that lacks the image,
    /// sends wrong bytes or refuses us is skipped for the next; the rest is local: fatal.
    fn reaction(&self) -> Reaction {
        match self {
            ImageError::Transport(e) => e.reaction(),
            ImageError::ManifestNotFound { .. }
            | ImageError::DigestMismatch { .. }
            | ImageError::AuthRequired { .. }
            | ImageError::AuthRejected { .. }
            | ImageError::AccessDenied { .. }
            | ImageError::Token { .. }
            | ImageError::UnsupportedChallenge { .. } => Reaction::NextSource,
            // A lost upload is started again from its `POST`.
            ImageError::UploadLost { .. } => Reaction::Retry,
            _ => Reaction::Fatal,
        }
    }
}

fn detail_of(detail: &str) -> String {
    match detail {
        "" => String::new(),
        d => format!(" ({d})"),
    }
}

fn from_file(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!(" (from {})", path.display()),
        None => String::new(),
    }
}

fn as_user(user: &Option<String>) -> String {
    match user {
        Some(user) => format!(" for user `{user}`"),
        None => String::new(),
    }
}

fn at_url(url: &Option<String>) -> String {
    match url {
        Some(url) => format!(" at {url}"),
        None => String::new(),
    }
}

struct Attempts<'a>(&'a [Attempt<ImageError>]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for a in self.0 {
            write!(f, "\n  - {}: {}", a.url, error_chain(&a.error))?;
        }
        Ok(())
    }
}

struct Errors<'a>(&'a [ImageError]);

impl fmt::Display for Errors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in self.0 {
            write!(f, "\n  - {}", error_chain(error))?;
        }
        Ok(())
    }
}
