//! A registry token service for Debian's docker-registry in token mode: it signs JWTs with an
//! openssl key whose certificate the registry trusts, granting what each `scope` asks, to a
//! user with the right password and, when told, to anonymous clients (as Harbor's public
//! projects do for pulls).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::components::{Registry, RegistryAuth};

/// The service name the registry and its tokens agree on.
pub const SERVICE: &str = "kiln-registry";
/// The issuer the registry trusts.
pub const ISSUER: &str = "kiln-test-issuer";

/// A token request the service saw.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The query string, as sent.
    pub query: String,
    /// `user:password` of its basic auth, when sent.
    pub basic: Option<String>,
}

/// The token service: `GET /token?service=…&scope=…`.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`.
    pub realm: String,
    /// The certificate the registry must trust.
    pub cert: PathBuf,
    seen: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    /// Starts a service in `dir` (its key and certificate live there) that grants tokens to
    /// `user`:`password`, and to anyone without credentials when `anonymous` is set.
    pub fn start(dir: &Path, user: &str, password: &str, anonymous: bool) -> TokenServer {
        std::fs::create_dir_all(dir).unwrap();
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        crate::run(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=kiln-test-token", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let cert_der_b64 = STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let counter = AtomicU64::new(0);
        let credentials = format!("{user}:{password}");
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some((target, basic)) = read_request(&mut stream) else {
                    continue;
                };
                let query = target.split_once('?').map_or("", |(_, q)| q).to_owned();
                log.lock().unwrap().push(TokenRequest {
                    query: query.clone(),
                    basic: basic.clone(),
                });
                let subject = match basic.as_deref() {
                    Some(b) if b == credentials => Some(credentials.split(':').next().unwrap()),
                    None if anonymous => Some(""),
                    _ => None,
                };
                let response = match subject {
                    Some(sub) => {
                        let jti = counter.fetch_add(1, Ordering::SeqCst);
                        let token = sign(&key, &cert_der_b64, sub, &query, jti);
                        let body = format!(r#"{{"token":"{token}","expires_in":600}}"#);
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    }
                    None => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned(),
                };
                let _ = stream.write_all(response.as_bytes());
            }
        });
        TokenServer { realm, cert, seen }
    }

    /// A registry in `dir` that takes this service's tokens.
    pub fn registry(&self, dir: &Path) -> Registry {
        Registry::start(
            dir,
            RegistryAuth::Token {
                realm: self.realm.clone(),
                service: SERVICE.to_owned(),
                issuer: ISSUER.to_owned(),
                rootcertbundle: self.cert.clone(),
            },
        )
    }

    /// Every request so far, in order.
    pub fn seen(&self) -> Vec<TokenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

/// The request target and basic credentials of one HTTP request.
fn read_request(stream: &mut std::net::TcpStream) -> Option<(String, Option<String>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let mut basic = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                basic = value
                    .trim()
                    .strip_prefix("Basic ")
                    .and_then(|b| STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok());
            }
        }
    }
    Some((target, basic))
}

/// Percent-decodes a query value.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A JWT for `subject` granting every action each `scope=repository:NAME:ACTIONS` asks for.
fn sign(key: &Path, cert_der_b64: &str, subject: &str, query: &str, jti: u64) -> String {
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == "scope")
        .filter_map(|(_, v)| {
            let v = decode(v);
            let mut parts = v.splitn(3, ':');
            let kind = parts.next()?.to_owned();
            let name = parts.next()?.to_owned();
            let actions: Vec<String> = parts.next()?.split(',').map(str::to_owned).collect();
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [cert_der_b64]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 10, "iat": now - 10,
        "jti": format!("kiln-{jti}"), "access": access
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(out.stdout))
}
