//! Per-host tokens: the seed URL (`/seed/<token>/`) and the one-time secrets URL
//! (`/secrets/<token>`), random from the operating system's CSPRNG, and which secrets URLs were
//! used, kept in `tokens.json` in the state folder so a restart neither forgets a use nor hands
//! out new URLs to hosts that already hold theirs.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::site::Site;
use crate::Error;

/// The state file's name in the state folder.
pub const STATE_FILE: &str = "tokens.json";
/// The state file's `schema`.
const SCHEMA: &str = "kiln-serve-tokens/1";
/// Random bytes per token: 256 bits, 64 hex digits.
const TOKEN_BYTES: usize = 32;

/// The state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct StateFile {
    schema: String,
    cluster: String,
    hosts: BTreeMap<String, HostTokens>,
}

/// One host's tokens and the use of its secrets URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct HostTokens {
    /// The secrets archive the tokens are for: a new build gets new tokens.
    secrets_sha256: String,
    seed_token: String,
    secrets_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    served: Option<Served>,
}

/// When and to whom a host's secrets URL handed out its secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Served {
    /// Unix time of the request.
    pub at: u64,
    /// The client's address.
    pub client: IpAddr,
    /// Whether every byte was handed to the connection.
    pub complete: bool,
}

/// What a request for a secrets URL gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The first request: the URL is used from now on (recorded before any byte is sent).
    Granted,
    /// The URL was used before.
    Used(Served),
}

/// What changed in the state when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// New tokens for a host (new in the state, or its secrets changed with a new build).
    New(String),
    /// New tokens for a host by `--reissue`, forgetting that its old URL was used.
    Reissued(String),
}

/// The tokens of every host of a build, and the state file that keeps them.
#[derive(Debug)]
pub struct Tokens {
    file: PathBuf,
    state: Mutex<StateFile>,
    by_seed: HashMap<[u8; 32], String>,
    by_secrets: HashMap<[u8; 32], String>,
}

/// Looked up by the token's sha256, so the lookup's timing says nothing about the token.
fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn token() -> Result<String, Error> {
    let mut b = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut b).map_err(Error::Random)?;
    Ok(hex::encode(b))
}

fn is_token(t: &str) -> bool {
    t.len() == 2 * TOKEN_BYTES && t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Tokens {
    /// Opens (or creates) the state in `dir` for `site`'s hosts: a host keeps its tokens while
    /// its secrets archive is the same, gets new ones otherwise or when named in `reissue`.
    /// Hosts the build no longer has are dropped.
    pub fn open(
        dir: &Path,
        site: &Site,
        reissue: &[String],
    ) -> Result<(Tokens, Vec<Issued>), Error> {
        for r in reissue {
            if !site.hosts.contains_key(r) {
                return Err(Error::UnknownHost {
                    host: r.clone(),
                    known: site.hosts.keys().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| Error::StateDir {
                    dir: dir.to_owned(),
                    source,
                })?;
        }
        let file = dir.join(STATE_FILE);
        let cluster = &site.manifest.cluster;
        let old = match std::fs::read(&file) {
            Ok(bytes) => {
                let bad = |reason: String| Error::BadState {
                    file: file.clone(),
                    reason,
                };
                let s: StateFile =
                    serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
                if s.schema != SCHEMA {
                    return Err(bad(format!("schema {:?}, expected {SCHEMA:?}", s.schema)));
                }
                if &s.cluster != cluster {
                    return Err(bad(format!(
                        "it is cluster {:?}'s, this build is cluster {cluster:?}",
                        s.cluster
                    )));
                }
                if let Some((h, _)) = s
                    .hosts
                    .iter()
                    .find(|(_, t)| !is_token(&t.seed_token) || !is_token(&t.secrets_token))
                {
                    return Err(bad(format!(
                        "host {h}: a token is not 64 lowercase hex digits"
                    )));
                }
                s.hosts
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(Error::Read { file, source }),
        };
        let mut hosts = BTreeMap::new();
        let mut issued = Vec::new();
        for (name, h) in &site.hosts {
            let kept = old.get(name).filter(|t| t.secrets_sha256 == h.secrets_sha);
            let t = match kept {
                Some(t) if !reissue.contains(name) => t.clone(),
                _ => {
                    issued.push(if kept.is_some() {
                        Issued::Reissued(name.clone())
                    } else {
                        Issued::New(name.clone())
                    });
                    HostTokens {
                        secrets_sha256: h.secrets_sha.clone(),
                        seed_token: token()?,
                        secrets_token: token()?,
                        served: None,
                    }
                }
            };
            hosts.insert(name.clone(), t);
        }
        let state = StateFile {
            schema: SCHEMA.into(),
            cluster: cluster.clone(),
            hosts,
        };
        write(&file, &state)?;
        let by_seed = state
            .hosts
            .iter()
            .map(|(n, t)| (key(&t.seed_token), n.clone()))
            .collect();
        let by_secrets = state
            .hosts
            .iter()
            .map(|(n, t)| (key(&t.secrets_token), n.clone()))
            .collect();
        Ok((
            Tokens {
                file,
                state: Mutex::new(state),
                by_seed,
                by_secrets,
            },
            issued,
        ))
    }

    /// The state file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The host whose seed token is `token`.
    pub fn seed_host(&self, token: &str) -> Option<&str> {
        self.by_seed.get(&key(token)).map(String::as_str)
    }

    /// The host whose secrets token is `token`.
    pub fn secrets_host(&self, token: &str) -> Option<&str> {
        self.by_secrets.get(&key(token)).map(String::as_str)
    }

    /// `host`'s seed token, secrets token and the use of its secrets URL.
    pub fn of(&self, host: &str) -> Option<(String, String, Option<Served>)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.hosts.get(host).map(|t| {
            (
                t.seed_token.clone(),
                t.secrets_token.clone(),
                t.served.clone(),
            )
        })
    }

    /// Uses `host`'s secrets URL for `client`, unless it was used: the use is written to the
    /// state file before this returns, so no byte leaves before a restart would remember it.
    pub fn claim(&self, host: &str, client: IpAddr, now: u64) -> Result<Claim, Error> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = s.hosts.get_mut(host) else {
            return Ok(Claim::Used(Served {
                at: now,
                client,
                complete: false,
            }));
        };
        if let Some(used) = &t.served {
            return Ok(Claim::Used(used.clone()));
        }
        t.served = Some(Served {
            at: now,
            client,
            complete: false,
        });
        if let Err(e) = write(&self.file, &s) {
            // Not recorded, so not granted: the URL stays usable.
            if let Some(t) = s.hosts.get_mut(host) {
                t.served = None;
            }
            return Err(e);
        }
        Ok(Claim::Granted)
    }

    /// Records that `host`'s secrets went out whole.
    pub fn completed(&self, host: &str) -> Result<(), Error> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(served) = s.hosts.get_mut(host).and_then(|t| t.served.as_mut()) {
            served.complete = true;
        }
        write(&self.file, &s)
    }
}

fn write(file: &Path, state: &StateFile) -> Result<(), Error> {
    // Mode 0600: the file holds the unused tokens.
    kiln_fsio::write_atomic(file, &kiln_bundle::json_bytes(state), 0o600).map_err(|source| {
        Error::WriteState {
            file: file.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_64_hex_digits_and_differ() {
        let (a, b) = (token().unwrap(), token().unwrap());
        assert!(is_token(&a) && is_token(&b));
        assert_ne!(a, b);
        assert!(!is_token("00") && !is_token(&a.to_uppercase()));
    }
}
