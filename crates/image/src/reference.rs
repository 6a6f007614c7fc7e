//! Image references (`registry/repository:tag@sha256:…`) with Docker's normalisation, and digests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

/// The registry an unqualified name (`nginx`, `team/app`) belongs to.
pub const DEFAULT_REGISTRY: &str = "docker.io";

/// Legacy spelling of [`DEFAULT_REGISTRY`] that Docker rewrites to it.
pub(crate) const LEGACY_DEFAULT_REGISTRY: &str = "index.docker.io";

/// Namespace of official images on the default registry.
const OFFICIAL_NAMESPACE: &str = "library/";

/// Tag used when a reference names neither tag nor digest (as Docker does).
pub const DEFAULT_TAG: &str = "latest";

/// Longest repository name Docker accepts.
const MAX_NAME_LEN: usize = 255;

/// Longest tag Docker accepts.
const MAX_TAG_LEN: usize = 128;

/// A content digest: `sha256:` and 64 lowercase hex digits (the only algorithm kiln pins).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);

impl Digest {
    /// Parses `sha256:<hex>`.
    pub fn parse(s: &str) -> Result<Digest, ImageError> {
        match s.strip_prefix("sha256:") {
            Some(hex) if kiln_store::is_sha256(hex) => Ok(Digest(s.to_owned())),
            _ => Err(ImageError::InvalidDigest {
                input: s.to_owned(),
            }),
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_hex(&hex::encode(Sha256::digest(bytes)))
    }

    /// The digest with the given (already valid) sha256 hex.
    pub(crate) fn from_hex(hex: &str) -> Digest {
        debug_assert!(kiln_store::is_sha256(hex));
        Digest(format!("sha256:{hex}"))
    }

    /// The 64 hex digits: the blob's name in the store.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The full `sha256:<hex>` form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Digest {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A normalised image reference: registry host, repository path, and a tag and/or digest.
///
/// Parsing applies Docker's rules: a first component without `.`, `:` or `localhost`
/// is not a registry (the image is on `docker.io`), and single-component names on
/// `docker.io` get the `library/` prefix. A reference with neither tag nor digest gets
/// the tag `latest`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference such as `nginx`, `registry.k8s.io/pause:3.10.1`
    /// or `127.0.0.1:5000/team/app@sha256:…`.
    pub fn parse(input: &str) -> Result<Reference, ImageError> {
        let bad = |reason: &str| ImageError::InvalidReference {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(bad("empty"));
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("contains whitespace"));
        }
        let (rest, digest) =
            match input.rsplit_once('@') {
                Some((rest, digest)) => (
                    rest,
                    Some(Digest::parse(digest).map_err(|_| {
                        bad("the digest must be sha256: and 64 lowercase hex digits")
                    })?),
                ),
                None => (input, None),
            };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(bad)?;
        }
        let (registry, path) = split_registry(name);
        let registry = if registry.eq_ignore_ascii_case(LEGACY_DEFAULT_REGISTRY) {
            DEFAULT_REGISTRY.to_owned()
        } else {
            check_registry(registry).map_err(bad)?;
            registry.to_owned()
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}{path}")
        } else {
            path.to_owned()
        };
        check_repository(&repository).map_err(bad)?;
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry host (with port when given), e.g. `docker.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference has one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image pinned to `digest` (the tag is kept for naming).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same reference without its digest (a tag-only reference stays as is; a
    /// digest-only one is returned unchanged because it would name nothing).
    pub fn without_digest(&self) -> Reference {
        if self.tag.is_none() {
            return self.clone();
        }
        Reference {
            digest: None,
            ..self.clone()
        }
    }

    /// What to ask a registry's manifest endpoint for: the digest when pinned, else the tag.
    pub(crate) fn manifest_ref(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_str(),
            (None, Some(t)) => t,
            (None, None) => DEFAULT_TAG,
        }
    }

    /// Whether `other` names the same image: same name and, for each of tag and digest
    /// that both carry, the same value (a digest-only reference matches by digest).
    pub fn matches(&self, other: &Reference) -> bool {
        if self.registry != other.registry || self.repository != other.repository {
            return false;
        }
        let tags = match (&self.tag, &other.tag) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        let digests = match (&self.digest, &other.digest) {
            (Some(a), Some(b)) => Some(a == b),
            _ => None,
        };
        match (tags, digests) {
            (_, Some(same_digest)) => same_digest && tags != Some(false),
            (Some(same_tag), None) => same_tag,
            (None, None) => false,
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Splits `name` into registry and path by Docker's rule for the first component.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

pub(crate) fn check_tag(tag: &str) -> Result<(), &'static str> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok
        || tag.len() > MAX_TAG_LEN
        || !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err("a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with . or -");
    }
    Ok(())
}

pub(crate) fn check_registry(registry: &str) -> Result<(), &'static str> {
    const MSG: &str = "the registry must be a host name or IP with an optional :port";
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [IPv6] or [IPv6]:port
        let (ip, after) = rest.split_once(']').ok_or(MSG)?;
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(MSG);
        }
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':').ok_or(MSG)?),
        };
        (None, port)
    } else {
        match registry.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !host.split('.').all(label_ok) {
            return Err(MSG);
        }
    }
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MSG);
        }
    }
    Ok(())
}

pub(crate) fn check_repository(repository: &str) -> Result<(), &'static str> {
    if repository.len() > MAX_NAME_LEN {
        return Err("the repository name is longer than 255 characters");
    }
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("the repository name must be lowercase");
    }
    if !repository.split('/').all(path_component_ok) {
        return Err(
            "each repository path component is [a-z0-9] separated by '.', '_', '__' or dashes",
        );
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn path_component_ok(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_normalisation_rules() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(norm("team/app:1"), "docker.io/team/app:1");
        assert_eq!(
            norm("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(norm("docker.io/nginx:1"), "docker.io/library/nginx:1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:c"), "localhost:5000/a/b:c");
        assert_eq!(
            norm("registry.k8s.io/pause:3.10.1"),
            "registry.k8s.io/pause:3.10.1"
        );
        assert_eq!(norm("127.0.0.1:5000/x/y:1"), "127.0.0.1:5000/x/y:1");
        assert_eq!(norm("[::1]:5000/x:1"), "[::1]:5000/x:1");
        // A port-looking suffix after the last slash is a tag.
        assert_eq!(norm("reg.example/app:5000"), "reg.example/app:5000");
    }

    #[test]
    fn digests_and_tags() {
        let r = Reference::parse(&format!("quay.io/coreos/etcd@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("quay.io/coreos/etcd@{D}"));

        let r = Reference::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(
            r.without_digest().to_string(),
            "docker.io/library/busybox:1.36"
        );
    }

    #[test]
    fn bad_references_say_why() {
        for (input, reason) in [
            ("", "empty"),
            ("Nginx/App", "lowercase"),
            ("reg.example/App", "lowercase"),
            ("nginx:", "tag"),
            ("nginx:-x", "tag"),
            ("nginx@sha256:abc", "digest"),
            ("nginx@md5:0123", "digest"),
            ("a b", "whitespace"),
            ("reg.example//x", "component"),
            ("reg.example/x-", "component"),
            ("reg.example:port/x", "registry"),
        ] {
            let err = Reference::parse(input).unwrap_err().to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
        assert!(path_component_ok("a__b"));
        assert!(path_component_ok("a--b"));
        assert!(!path_component_ok("a___b"));
        assert!(!path_component_ok("a._b"));
    }

    #[test]
    fn matching_is_by_name_then_tag_or_digest() {
        let p = |s: &str| Reference::parse(s).unwrap();
        let tagged = p("registry.k8s.io/pause:3.10.1");
        let pinned = tagged.with_digest(Digest::parse(D).unwrap());
        assert!(tagged.matches(&p("registry.k8s.io/pause:3.10.1")));
        assert!(!tagged.matches(&p("registry.k8s.io/pause:3.10")));
        assert!(pinned.matches(&tagged));
        assert!(pinned.matches(&p(&format!("registry.k8s.io/pause@{D}"))));
        assert!(!p("registry.k8s.io/pause@sha256:1111111111111111111111111111111111111111111111111111111111111111")
            .matches(&pinned));
        assert!(!tagged.matches(&p("other.example/pause:3.10.1")));
    }

    #[test]
    fn digests_roundtrip_through_serde() {
        let d = Digest::parse(D).unwrap();
        assert_eq!(d.hex().len(), 64);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:XYZ\"").is_err());
        assert_eq!(
            Digest::of(b"hello").hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }
}
