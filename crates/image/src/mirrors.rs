//! Registry mirrors: per registry host, base URLs tried in order before the registry itself.

use kiln_transport::Mirrors;

use crate::error::ImageError;
use crate::reference::{DEFAULT_REGISTRY, LEGACY_DEFAULT_REGISTRY};

/// Mirrors of registries, e.g. a Harbor proxy project in front of `docker.io`.
///
/// A mirror is `http(s)://host[:port][/prefix]`; an image `repo` of the mirrored registry
/// is then asked for at `http(s)://host[:port]/v2/[prefix/]repo/…` (a Harbor proxy-cache
/// project is such a prefix). Mirrors are tried in order, then the registry itself.
///
/// Kept as the transport's URL [`Mirrors`]: the registry's API root
/// (`https://registry/v2/`) rewritten to each mirror's (`http(s)://host[:port]/v2/[prefix/]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryMirrors {
    rules: Mirrors,
}

/// One place to ask for a registry's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]`.
    pub(crate) base: String,
    /// Repository prefix on this endpoint, without slashes (may be empty).
    pub(crate) prefix: String,
    /// `host[:port]`: the key credentials are looked up by.
    pub(crate) host: String,
}

impl Endpoint {
    /// Parses a mirror URL.
    fn parse_mirror(registry: &str, url: &str) -> Result<Endpoint, ImageError> {
        let bad = |reason: &str| ImageError::InvalidMirror {
            registry: registry.to_owned(),
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http:// or https://"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad("expected http:// or https://"));
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(bad("expected a host[:port] without user info"));
        }
        let prefix = path.trim_matches('/');
        let prefix = match prefix {
            "v2" => "",
            p => p.strip_prefix("v2/").unwrap_or(p),
        };
        if prefix.contains(['?', '#']) || prefix.split('/').any(|c| c == "..") {
            return Err(bad("the path must be a plain repository prefix"));
        }
        Ok(Endpoint {
            base: format!("{scheme}://{host}"),
            prefix: prefix.to_owned(),
            host: host.to_owned(),
        })
    }

    /// The API root this endpoint serves a registry's repositories under:
    /// `base/v2/[prefix/]`.
    fn api_root(&self) -> String {
        match self.prefix.as_str() {
            "" => format!("{}/v2/", self.base),
            p => format!("{}/v2/{p}/", self.base),
        }
    }

    /// The registry itself: HTTPS, except plain HTTP for loopback hosts (as Docker allows).
    pub(crate) fn origin(registry: &str) -> Endpoint {
        let hostname = registry
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(registry, |(h, _)| h);
        let loopback =
            hostname == "localhost" || hostname.starts_with("127.") || hostname == "[::1]";
        let scheme = if loopback { "http" } else { "https" };
        Endpoint {
            base: format!("{scheme}://{registry}"),
            prefix: String::new(),
            host: registry.to_owned(),
        }
    }

    /// The repository name on this endpoint (with the prefix).
    pub(crate) fn repository(&self, repository: &str) -> String {
        if self.prefix.is_empty() {
            repository.to_owned()
        } else {
            format!("{}/{repository}", self.prefix)
        }
    }

    /// `…/v2/<repo>/<kind>/<reference>` for `kind` = `manifests` or `blobs`.
    pub(crate) fn url(&self, repository: &str, kind: &str, reference: &str) -> String {
        format!(
            "{}/v2/{}/{kind}/{reference}",
            self.base,
            self.repository(repository)
        )
    }
}

impl RegistryMirrors {
    /// No mirrors: each registry is asked directly.
    pub fn new() -> Self {
        RegistryMirrors::default()
    }

    /// Adds mirrors for `registry` (a host as in references, e.g. `docker.io`), tried in
    /// the order given and before any mirror added earlier for the same registry.
    pub fn add<S: AsRef<str>>(
        &mut self,
        registry: &str,
        urls: &[S],
    ) -> Result<&mut Self, ImageError> {
        let registry = normalise_registry(registry);
        let roots = urls
            .iter()
            .map(|u| Endpoint::parse_mirror(&registry, u.as_ref()).map(|e| e.api_root()))
            .collect::<Result<Vec<_>, _>>()?;
        self.rules
            .add_first(Endpoint::origin(&registry).api_root(), roots);
        Ok(self)
    }

    /// The mirror URLs configured for `registry`, in order, as `base[/prefix]`.
    pub fn mirrors_of(&self, registry: &str) -> Vec<String> {
        let origin = Endpoint::origin(&normalise_registry(registry));
        self.rules
            .replacements(&origin.api_root())
            .iter()
            .map(|root| {
                let e = from_root(root);
                match e.prefix.as_str() {
                    "" => e.base,
                    p => format!("{}/{p}", e.base),
                }
            })
            .collect()
    }

    /// Endpoints to try for `registry`: its mirrors in order, then itself; no duplicates.
    pub(crate) fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let origin = Endpoint::origin(&normalise_registry(registry));
        let mut roots = self.rules.candidates(&origin.api_root());
        // The last candidate is the registry as normalised; ask it as it was named.
        roots.pop();
        let mut out: Vec<Endpoint> = roots.iter().map(|r| from_root(r)).collect();
        out.push(Endpoint::origin(registry));
        let mut seen = std::collections::BTreeSet::new();
        out.retain(|e| seen.insert((e.base.clone(), e.prefix.clone())));
        out
    }
}

/// The endpoint of an API root this module made (`scheme://host/v2/[prefix/]`).
fn from_root(root: &str) -> Endpoint {
    Endpoint::parse_mirror("", root).expect("API roots are made from valid endpoints")
}

/// Lowercases a host and folds Docker's legacy default-registry names.
pub(crate) fn normalise_registry(registry: &str) -> String {
    let host = registry
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or(host).to_ascii_lowercase();
    if host == LEGACY_DEFAULT_REGISTRY {
        DEFAULT_REGISTRY.to_owned()
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_come_first_with_their_prefix_then_the_registry() {
        let mut m = RegistryMirrors::new();
        m.add(
            "docker.io",
            &[
                "https://harbor.example/dockerhub-proxy/",
                "http://127.0.0.1:5000",
            ],
        )
        .unwrap();
        let eps = m.endpoints("docker.io");
        let urls: Vec<String> = eps
            .iter()
            .map(|e| e.url("library/nginx", "manifests", "1.25"))
            .collect();
        assert_eq!(
            urls,
            vec![
                "https://harbor.example/v2/dockerhub-proxy/library/nginx/manifests/1.25",
                "http://127.0.0.1:5000/v2/library/nginx/manifests/1.25",
                "https://docker.io/v2/library/nginx/manifests/1.25",
            ]
        );
        assert_eq!(eps[0].host, "harbor.example");
        assert_eq!(
            m.mirrors_of("index.docker.io"),
            vec![
                "https://harbor.example/dockerhub-proxy",
                "http://127.0.0.1:5000"
            ]
        );
        assert_eq!(m.endpoints("quay.io").len(), 1);
    }

    #[test]
    fn loopback_registries_speak_plain_http() {
        assert_eq!(
            Endpoint::origin("127.0.0.1:5000").base,
            "http://127.0.0.1:5000"
        );
        assert_eq!(Endpoint::origin("localhost").base, "http://localhost");
        assert_eq!(
            Endpoint::origin("registry.k8s.io").base,
            "https://registry.k8s.io"
        );
    }

    #[test]
    fn bad_mirrors_are_rejected() {
        let mut m = RegistryMirrors::new();
        for bad in [
            "ftp://x",
            "harbor.example",
            "https://",
            "https://u:p@h/x",
            "https://h/../x",
        ] {
            let err = m.add("docker.io", &[bad]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        // An explicit /v2 is accepted and not doubled.
        m.add("quay.io", &["https://h.example/v2/proxy"]).unwrap();
        assert_eq!(
            m.endpoints("quay.io")[0].url("a/b", "blobs", "x"),
            "https://h.example/v2/proxy/a/b/blobs/x"
        );
    }
}
