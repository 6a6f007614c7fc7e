//! `[seeds]` in cluster.toml: whether each host's seed carries its role bundles, and where
//! install.sh takes the bundles a seed does not carry from.

use std::fmt;
use std::ops::Range;

use serde::Serialize;

use crate::raw::RawSeeds;

/// Where install.sh looks for a bundle that is not beside it, each copy checked against the
/// digest the host's secrets pin before it is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum BundleSource {
    /// `medium`: a shared read-only medium labelled [`BUNDLE_MEDIUM_LABEL`] holding `bundles/`.
    Medium,
    /// `http(s)://…`: an HTTP server holding a build's out folder (`<url>/bundles/<file>`).
    Http(String),
    /// `oci://host[:port]/repo` (HTTPS) or `oci+http://…`: a registry's blob API, by digest
    /// (`/v2/<repo>/blobs/sha256:<hex>`), as `kiln push` leaves it.
    Registry {
        /// `https://host[:port]` or `http://host[:port]`.
        base: String,
        /// The repository path on it.
        repository: String,
    },
}

/// The volume label of the shared bundle medium that `medium` names.
pub const BUNDLE_MEDIUM_LABEL: &str = "KILNBUNDLE";

impl fmt::Display for BundleSource {
    /// The form cluster.toml and install.sh's `--source` use.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleSource::Medium => f.write_str("medium"),
            BundleSource::Http(url) => f.write_str(url),
            BundleSource::Registry { base, repository } => match base.strip_prefix("https://") {
                Some(host) => write!(f, "oci://{host}/{repository}"),
                None => write!(
                    f,
                    "oci+http://{}/{repository}",
                    base.trim_start_matches("http://")
                ),
            },
        }
    }
}

impl From<BundleSource> for String {
    fn from(s: BundleSource) -> String {
        s.to_string()
    }
}

/// A `bundle-sources` entry kiln cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not one of the three forms.
    #[error("expected \"medium\", an http(s):// URL of a served out folder, or oci://host[:port]/repository (oci+http:// for a plain-HTTP registry), found {0:?}")]
    Form(String),
    /// A character that would need quoting on install.sh's command line, or user info.
    #[error("{url:?}: {what} is not allowed in a bundle source (it goes into every seed's user-data: no credentials, query, fragment, spaces or quotes)")]
    Character {
        /// The source as written.
        url: String,
        /// What was found.
        what: String,
    },
    /// No host, or a port that is not a number.
    #[error("{0:?}: expected a host name or address, optionally with :port, after the scheme")]
    Host(String),
    /// A repository path the distribution spec does not allow.
    #[error("{url:?}: repository {repository:?} must be lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-'")]
    Repository {
        /// The source as written.
        url: String,
        /// The repository part.
        repository: String,
    },
}

impl std::str::FromStr for BundleSource {
    type Err = SourceError;

    fn from_str(s: &str) -> Result<BundleSource, SourceError> {
        if s == "medium" {
            return Ok(BundleSource::Medium);
        }
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| SourceError::Form(s.to_string()))?;
        if let Some(c) = rest
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._~/:%-".contains(*c)))
        {
            let what = match c {
                '@' => "user info ('@')".to_string(),
                c => format!("{c:?}"),
            };
            return Err(SourceError::Character {
                url: s.to_string(),
                what,
            });
        }
        let rest = rest.trim_end_matches('/');
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        check_authority(authority).map_err(|()| SourceError::Host(s.to_string()))?;
        match scheme {
            "http" | "https" => Ok(BundleSource::Http(format!("{scheme}://{rest}"))),
            "oci" | "oci+http" => {
                let ok = !path.is_empty() && path.split('/').all(repository_component);
                if !ok {
                    return Err(SourceError::Repository {
                        url: s.to_string(),
                        repository: path.to_string(),
                    });
                }
                let http = if scheme == "oci" { "https" } else { "http" };
                Ok(BundleSource::Registry {
                    base: format!("{http}://{authority}"),
                    repository: path.to_string(),
                })
            }
            _ => Err(SourceError::Form(s.to_string())),
        }
    }
}

/// `host` or `host:port` with a non-empty host and a port from 1 to 65535.
fn check_authority(authority: &str) -> Result<(), ()> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(())
    }
}

/// One path component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn repository_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    if c.contains("..") || c.contains("___") || c.contains("._") || c.contains("_.") {
        return false;
    }
    let separators_ok = c
        .split(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .all(|s| matches!(s, "." | "_" | "__") || s.bytes().all(|b| b == b'-'));
    bytes
        .iter()
        .all(|&b| alnum(b) || b == b'.' || b == b'_' || b == b'-')
        && separators_ok
}

/// `[seeds]`, validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeedSettings {
    /// `carry-bundles`: each host's seed holds its role bundles (default true). Without them a
    /// seed holds install.sh, the host's secrets and the documents: a few KiB.
    pub carry_bundles: bool,
    /// `bundle-sources`: where install.sh takes bundles its seed does not carry, in order.
    pub bundle_sources: Vec<BundleSource>,
    /// `health-wait-seconds`: how long install.sh, run by the seed, retries each role's
    /// health check before the run fails (and an upgrade rolls back); `None`: install.sh's
    /// default, [`DEFAULT_HEALTH_WAIT_SECONDS`].
    pub health_wait_seconds: Option<u64>,
}

/// install.sh's own wait for each role's health (`KILN_HEALTH_WAIT`), in seconds.
pub const DEFAULT_HEALTH_WAIT_SECONDS: u64 = 900;

/// Largest `health-wait-seconds`: a day.
pub const MAX_HEALTH_WAIT_SECONDS: u64 = 86_400;

impl Default for SeedSettings {
    fn default() -> Self {
        SeedSettings {
            carry_bundles: true,
            bundle_sources: Vec::new(),
            health_wait_seconds: None,
        }
    }
}

impl SeedSettings {
    /// Whether the build writes the shared bundle medium.
    pub fn wants_medium(&self) -> bool {
        self.bundle_sources.contains(&BundleSource::Medium)
    }
}

/// Checks `[seeds]`, reporting each bad value through `err(span, key, message)`.
pub(crate) fn validate(
    raw: &RawSeeds,
    err: &mut dyn FnMut(Range<usize>, &str, String),
) -> SeedSettings {
    let mut sources = Vec::new();
    for (i, s) in raw.bundle_sources.iter().enumerate() {
        let key = format!("seeds.bundle-sources[{i}]");
        match s.get_ref().parse::<BundleSource>() {
            Ok(source) if sources.contains(&source) => {
                err(s.span(), &key, format!("{:?} is listed twice", s.get_ref()))
            }
            Ok(source) => sources.push(source),
            Err(e) => err(s.span(), &key, e.to_string()),
        }
    }
    let carry_bundles = raw.carry_bundles.as_ref().is_none_or(|c| *c.get_ref());
    if let Some(c) = &raw.carry_bundles {
        if !carry_bundles && raw.bundle_sources.is_empty() {
            err(
                c.span(),
                "seeds.carry-bundles",
                "seeds without bundles need seeds.bundle-sources: where install.sh takes them from (\"medium\", an http(s):// URL, or oci://host/repository)".to_string(),
            );
        }
    }
    let health_wait_seconds = raw.health_wait_seconds.as_ref().and_then(|v| {
        let n = *v.get_ref();
        if n == 0 || n > MAX_HEALTH_WAIT_SECONDS {
            err(
                v.span(),
                "seeds.health-wait-seconds",
                format!(
                    "expected a number of seconds from 1 to {MAX_HEALTH_WAIT_SECONDS}, found {n}"
                ),
            );
            return None;
        }
        Some(n)
    });
    SeedSettings {
        carry_bundles,
        bundle_sources: sources,
        health_wait_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> (SeedSettings, Vec<String>) {
        let raw: RawSeeds = toml::from_str(text).unwrap();
        let mut errors = Vec::new();
        let settings = validate(&raw, &mut |span, key, msg| {
            errors.push(format!("{}: {key}: {msg}", &text[span]))
        });
        (settings, errors)
    }

    #[test]
    fn defaults_carry_bundles_and_name_no_source() {
        assert_eq!(check(""), (SeedSettings::default(), vec![]));
        assert!(SeedSettings::default().carry_bundles);
    }

    #[test]
    fn the_three_forms_parse_and_print_back() {
        let (s, errors) = check(
            "carry-bundles = false\nbundle-sources = [\"medium\", \"http://10.77.0.1:8080/out/lab/\", \"oci://reg.example/kiln/lab\", \"oci+http://10.77.0.1:5000/kiln/lab-1\"]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert!(!s.carry_bundles);
        assert!(s.wants_medium());
        assert_eq!(
            s.bundle_sources,
            vec![
                BundleSource::Medium,
                BundleSource::Http("http://10.77.0.1:8080/out/lab".into()),
                BundleSource::Registry {
                    base: "https://reg.example".into(),
                    repository: "kiln/lab".into()
                },
                BundleSource::Registry {
                    base: "http://10.77.0.1:5000".into(),
                    repository: "kiln/lab-1".into()
                },
            ]
        );
        let printed: Vec<String> = s.bundle_sources.iter().map(|b| b.to_string()).collect();
        assert_eq!(
            printed,
            [
                "medium",
                "http://10.77.0.1:8080/out/lab",
                "oci://reg.example/kiln/lab",
                "oci+http://10.77.0.1:5000/kiln/lab-1"
            ]
        );
    }

    #[test]
    fn bad_sources_are_refused_at_their_entry() {
        let (_, errors) = check(
            "bundle-sources = [\"usb\", \"http://user:pw@h/x\", \"http://h/x?y=1\", \"oci://h:99999/x\", \"oci://h/Kiln\", \"oci://h\", \"ftp://h/x\", \"medium\", \"medium\"]\n",
        );
        assert_eq!(
            errors,
            vec![
                "\"usb\": seeds.bundle-sources[0]: expected \"medium\", an http(s):// URL of a served out folder, or oci://host[:port]/repository (oci+http:// for a plain-HTTP registry), found \"usb\"",
                "\"http://user:pw@h/x\": seeds.bundle-sources[1]: \"http://user:pw@h/x\": user info ('@') is not allowed in a bundle source (it goes into every seed's user-data: no credentials, query, fragment, spaces or quotes)",
                "\"http://h/x?y=1\": seeds.bundle-sources[2]: \"http://h/x?y=1\": '?' is not allowed in a bundle source (it goes into every seed's user-data: no credentials, query, fragment, spaces or quotes)",
                "\"oci://h:99999/x\": seeds.bundle-sources[3]: \"oci://h:99999/x\": expected a host name or address, optionally with :port, after the scheme",
                "\"oci://h/Kiln\": seeds.bundle-sources[4]: \"oci://h/Kiln\": repository \"Kiln\" must be lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-'",
                "\"oci://h\": seeds.bundle-sources[5]: \"oci://h\": repository \"\" must be lowercase path components of [a-z0-9] separated by '.', '_', '__' or '-'",
                "\"ftp://h/x\": seeds.bundle-sources[6]: expected \"medium\", an http(s):// URL of a served out folder, or oci://host[:port]/repository (oci+http:// for a plain-HTTP registry), found \"ftp://h/x\"",
                "\"medium\": seeds.bundle-sources[8]: \"medium\" is listed twice",
            ]
        );
    }

    #[test]
    fn health_wait_is_a_number_of_seconds_within_a_day() {
        let (s, errors) = check("health-wait-seconds = 120\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.health_wait_seconds, Some(120));
        for bad in ["0", "86401"] {
            let (s, errors) = check(&format!("health-wait-seconds = {bad}\n"));
            assert_eq!(s.health_wait_seconds, None);
            assert_eq!(
                errors,
                [format!("{bad}: seeds.health-wait-seconds: expected a number of seconds from 1 to 86400, found {bad}")]
            );
        }
    }

    #[test]
    fn seeds_without_bundles_need_a_source() {
        let (s, errors) = check("carry-bundles = false\n");
        assert!(!s.carry_bundles);
        assert_eq!(
            errors,
            vec!["false: seeds.carry-bundles: seeds without bundles need seeds.bundle-sources: where install.sh takes them from (\"medium\", an http(s):// URL, or oci://host/repository)"]
        );
    }

    #[test]
    fn repository_components_follow_the_distribution_grammar() {
        for ok in ["a", "kiln", "a-b", "a--b", "a_b", "a__b", "a.b", "v1.2"] {
            assert!(repository_component(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a..b", "a___b", "a._b", "A", "a b", ".a"] {
            assert!(!repository_component(bad), "{bad}");
        }
    }
}
