//! Registry credentials (a docker `config.json`-style `auths` file), `WWW-Authenticate`
//! challenges, and bearer tokens from a registry's token service.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use kiln_transport::{read_capped, Transport, TransportError};
use serde::Deserialize;

use crate::error::ImageError;
use crate::mirrors::normalise_registry;

/// Largest token response accepted.
const MAX_TOKEN_RESPONSE: u64 = 1024 * 1024;

/// Registry logins by host. `Debug` shows hosts and users, never passwords.
#[derive(Clone, Default)]
pub struct Credentials {
    logins: BTreeMap<String, Login>,
    file: Option<PathBuf>,
}

/// A user name and password for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Login {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl Login {
    /// The `Authorization: Basic …` value.
    pub(crate) fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.user, self.password);
        format!("Basic {}", BASE64.encode(pair))
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("file", &self.file)
            .field("users", &self.users())
            .finish()
    }
}

/// The `auths` map of a docker `config.json`.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl Credentials {
    /// No credentials: every registry is asked anonymously.
    pub fn none() -> Self {
        Credentials::default()
    }

    /// Reads a docker `config.json`-style file: `{"auths": {"host": {"auth": base64("user:password")}}}`
    /// (or `username` and `password` fields). Keys may be hosts or URLs; other keys of
    /// the file (credential helpers) are ignored.
    pub fn load(path: &Path) -> Result<Self, ImageError> {
        let text = fs::read_to_string(path).map_err(|source| ImageError::CredentialsRead {
            path: path.to_owned(),
            source,
        })?;
        Credentials::parse(&text, path)
    }

    /// Parses the text of a credentials file; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ImageError> {
        let bad = |reason: String| ImageError::CredentialsFormat {
            path: path.to_owned(),
            reason,
        };
        // serde_json's messages quote no input, so a password cannot leak through them.
        let file: ConfigFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut creds = Credentials {
            logins: BTreeMap::new(),
            file: Some(path.to_owned()),
        };
        for (key, entry) in file.auths {
            let login = match (&entry.auth, &entry.username, &entry.password) {
                (Some(auth), _, _) if !auth.is_empty() => {
                    let decoded = BASE64
                        .decode(auth.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| bad(format!("auths.{key}.auth is not base64 of user:password")))?;
                    let (user, password) = decoded
                        .split_once(':')
                        .ok_or_else(|| bad(format!("auths.{key}.auth is not base64 of user:password")))?;
                    Login {
                        user: user.to_owned(),
                        password: password.to_owned(),
                    }
                }
                (_, Some(user), Some(password)) => Login {
                    user: user.clone(),
                    password: password.clone(),
                },
                _ if entry.identitytoken.is_some() => {
                    return Err(bad(format!(
                        "auths.{key}: identity tokens are not supported; give auth or username and password"
                    )))
                }
                _ => {
                    return Err(bad(format!(
                        "auths.{key}: neither auth nor username and password"
                    )))
                }
            };
            creds.logins.insert(normalise_registry(&key), login);
        }
        Ok(creds)
    }

    /// Adds (or replaces) the login for a registry host.
    pub fn insert(&mut self, registry: &str, user: &str, password: &str) -> &mut Self {
        self.logins.insert(
            normalise_registry(registry),
            Login {
                user: user.to_owned(),
                password: password.to_owned(),
            },
        );
        self
    }

    /// Hosts and their users (no passwords), sorted by host.
    pub fn users(&self) -> Vec<(String, String)> {
        self.logins
            .iter()
            .map(|(h, l)| (h.clone(), l.user.clone()))
            .collect()
    }

    /// The file the credentials came from, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The login for an endpoint host.
    pub(crate) fn get(&self, host: &str) -> Option<&Login> {
        self.logins.get(&normalise_registry(host))
    }
}

/// A `WWW-Authenticate` challenge kiln can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Send the login with every request.
    Basic,
    /// Get a token from `realm` and send it as a bearer token.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (`Bearer realm="…",service="…",scope="…"` or `Basic …`).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    if scheme.eq_ignore_ascii_case("basic") {
        Some(Challenge::Basic)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        })
    } else {
        None
    }
}

/// `key=value, key="quoted \" value"` pairs; keys lowercased.
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| *c != ',') {
                value.push(c);
            }
            value = value.trim().to_owned();
        }
        out.insert(key.trim().to_ascii_lowercase(), value);
    }
    out
}

/// Asks a token service for a token for `scope` (pull, or pull and push); the login, when given, is sent
/// as basic auth. `registry` names the registry in errors.
pub(crate) fn fetch_token(
    transport: &Transport,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    login: Option<&Login>,
    file: Option<&Path>,
) -> Result<String, ImageError> {
    let token_err = |reason: String| ImageError::Token {
        registry: registry.to_owned(),
        realm: realm.to_owned(),
        reason,
    };
    // A challenge may name several scopes separated by spaces (a cross-repository mount
    // reads the source repository too): each is its own `scope` parameter.
    let mut query: Vec<(&str, &str)> = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| ("scope", s))
        .collect();
    if let Some(service) = service {
        query.push(("service", service));
    }
    let mut request = transport.client().get(realm).query(&query);
    if let Some(login) = login {
        request = request.header(reqwest::header::AUTHORIZATION, login.basic_header());
    }
    let response = Transport::execute(realm, request)?;
    let status = response.status().as_u16();
    match (status, login) {
        (200, _) => {}
        (401 | 403, Some(login)) => {
            return Err(ImageError::AuthRejected {
                registry: registry.to_owned(),
                user: login.user.clone(),
                file: file.map(Path::to_owned),
            })
        }
        (401 | 403, None) => {
            return Err(ImageError::AuthRequired {
                registry: registry.to_owned(),
                url: realm.to_owned(),
            })
        }
        (status, _) if status >= 500 || status == 429 => {
            return Err(TransportError::HttpStatus {
                url: realm.to_owned(),
                status,
            }
            .into())
        }
        (status, _) => return Err(token_err(format!("HTTP {status}"))),
    }
    #[derive(Deserialize)]
    struct TokenResponse {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let body = read_capped(response, realm, MAX_TOKEN_RESPONSE)?;
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| token_err(format!("response is not a token document: {e}")))?;
    parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| token_err("response has no token".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="kiln""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://t/x, scope="a\"b""#),
            Some(Challenge::Bearer {
                realm: "http://t/x".into(),
                service: None,
                scope: Some("a\"b".into()),
            })
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn credentials_file_forms_and_no_password_in_debug() {
        let text = r#"{
            "auths": {
                "https://index.docker.io/v1/": {"auth": "YWxpY2U6czNjcjN0"},
                "Harbor.Example:8443": {"username": "bob", "password": "hunter2"}
            },
            "credsStore": "desktop"
        }"#;
        let creds = Credentials::parse(text, Path::new("/etc/kiln/auth.json")).unwrap();
        assert_eq!(
            creds.users(),
            vec![
                ("docker.io".to_owned(), "alice".to_owned()),
                ("harbor.example:8443".to_owned(), "bob".to_owned())
            ]
        );
        assert_eq!(creds.get("docker.io").unwrap().password, "s3cr3t");
        assert_eq!(creds.get("harbor.example:8443").unwrap().user, "bob");
        let debug = format!("{creds:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("hunter2"),
            "{debug}"
        );
        assert!(debug.contains("alice"), "{debug}");
    }

    #[test]
    fn bad_credentials_name_the_file_and_key() {
        let path = Path::new("/home/u/.kiln/auth.json");
        let err = Credentials::parse(r#"{"auths":{"r.example":{"auth":"!!"}}}"#, path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/home/u/.kiln/auth.json") && err.contains("auths.r.example"),
            "{err}"
        );
        let err = Credentials::parse(r#"{"auths":{"r.example":{"identitytoken":"t"}}}"#, path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("identity tokens"), "{err}");
        assert!(Credentials::parse("[", path).is_err());
    }
}
