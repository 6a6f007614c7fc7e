//! Bearer-token auth: the registry delegates to a small token service run by the test
//! (JWTs signed with an openssl key whose certificate the registry trusts).

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
use kiln_image::{
    BlobSource, BlobToPush, Credentials, Digest, ImageError, NoPushEvents, Platform, PushTarget,
    Pusher, Reference, RegistryClient, RegistryMirrors,
};
use kiln_store::{NoProgress, Store};

use crate::fixtures::{build_images, push, Registry, RegistryAuth};
use crate::{fast_opts, have_tools, run};

const USER: &str = "kiln";
const PASSWORD: &str = "t0ken-pass";
const SERVICE: &str = "kiln-registry";
const ISSUER: &str = "kiln-test-issuer";

/// A token request the service saw.
#[derive(Debug, Clone)]
struct TokenRequest {
    query: String,
    basic: Option<String>,
}

/// The token service: `GET /token?service=…&scope=…` with basic auth.
struct TokenServer {
    realm: String,
    seen: Arc<Mutex<Vec<TokenRequest>>>,
}

impl TokenServer {
    fn start(key: PathBuf, cert_der_b64: String) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let counter = Arc::new(AtomicU64::new(0));
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
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
                                .map(|b| String::from_utf8(STANDARD.decode(b).unwrap()).unwrap());
                        }
                    }
                }
                let query = target.split_once('?').map_or("", |(_, q)| q).to_owned();
                log.lock().unwrap().push(TokenRequest {
                    query: query.clone(),
                    basic: basic.clone(),
                });
                let ok = basic.as_deref() == Some(&format!("{USER}:{PASSWORD}"));
                let response = if ok {
                    let jti = counter.fetch_add(1, Ordering::SeqCst);
                    let token = sign(&key, &cert_der_b64, &query, jti);
                    let body = format!(r#"{{"token":"{token}","expires_in":600}}"#);
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = stream.write_all(response.as_bytes());
            }
        });
        TokenServer { realm, seen }
    }

    fn seen(&self) -> Vec<TokenRequest> {
        self.seen.lock().unwrap().clone()
    }
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

/// A JWT granting every action each `scope=repository:NAME:ACTIONS` asks for.
fn sign(key: &Path, cert_der_b64: &str, query: &str, jti: u64) -> String {
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
        "iss": ISSUER, "sub": USER, "aud": SERVICE,
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

#[test]
fn bearer_token_auth_through_a_token_service_reuses_the_token_and_names_a_refusal() {
    let test = "bearer_token_auth_through_a_token_service_reuses_the_token_and_names_a_refusal";
    if !have_tools(test, &["docker-registry", "skopeo", "umoci", "openssl"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=kiln-test-token", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&cert)
        .output()
        .unwrap()
        .stdout;
    let tokens = TokenServer::start(key, STANDARD.encode(der));
    let reg = Registry::start(
        &dir.join("registry"),
        RegistryAuth::Token {
            realm: tokens.realm.clone(),
            service: SERVICE.to_owned(),
            issuer: ISSUER.to_owned(),
            rootcertbundle: cert,
        },
    );
    let images = build_images(&dir.join("images"));
    push(
        &images,
        "a",
        &format!("{}/team/a:1", reg.addr),
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
    );
    let pushed = tokens.seen().len();
    let reference = Reference::parse(&format!("{}/team/a:1", reg.addr)).unwrap();
    let amd64 = Platform::linux("amd64");

    let mut creds = Credentials::none();
    creds.insert(&reg.addr, USER, PASSWORD);
    let c = RegistryClient::new(RegistryMirrors::new(), creds, fast_opts()).unwrap();
    let locked = c.resolve(&reference, &amd64).unwrap();
    assert_eq!(locked.manifest_digest.as_str(), images.a);
    let store = Store::open(&dir.join("vendor")).unwrap();
    c.pull(&store, &[locked], &NoProgress).unwrap();
    assert!(store.contains(&images.big_layer["sha256:".len()..]));
    let ours: Vec<TokenRequest> = tokens.seen()[pushed..].to_vec();
    assert_eq!(
        ours.len(),
        1,
        "one token for the repository, reused: {ours:#?}"
    );
    assert!(
        ours[0].query.contains("scope=repository%3Ateam%2Fa%3Apull"),
        "{ours:?}"
    );
    assert!(
        ours[0].query.contains(&format!("service={SERVICE}")),
        "{ours:?}"
    );
    assert_eq!(
        ours[0].basic.as_deref(),
        Some(&*format!("{USER}:{PASSWORD}"))
    );

    // The token service refuses a wrong password: registry and user named, password not.
    let mut wrong = Credentials::none();
    wrong.insert(&reg.addr, USER, "not-the-password");
    let c = RegistryClient::new(RegistryMirrors::new(), wrong, fast_opts()).unwrap();
    let err = c.resolve(&reference, &amd64).unwrap_err();
    assert!(matches!(err, ImageError::AuthRejected { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&reg.addr) && msg.contains("`kiln`"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");

    // Anonymous pulls are refused by this token service.
    let c = RegistryClient::new(RegistryMirrors::new(), Credentials::none(), fast_opts()).unwrap();
    let msg = c.resolve(&reference, &amd64).unwrap_err().to_string();
    assert!(msg.contains("requires authentication"), "{msg}");

    // A push asks for a token scoped pull,push and gets its blob and manifest in.
    let before = tokens.seen().len();
    let mut creds = Credentials::none();
    creds.insert(&reg.addr, USER, PASSWORD);
    let pusher = Pusher::new(creds, fast_opts()).unwrap();
    let target = PushTarget::parse(&format!("http://{}/team/pushed", reg.addr)).unwrap();
    let blob = BlobToPush {
        digest: Digest::of(b"{}"),
        size: 2,
        source: BlobSource::Bytes(b"{}".to_vec()),
        label: "empty".into(),
    };
    pusher.push_blob(&target, &blob, &NoPushEvents).unwrap();
    assert!(reg.blob_data(blob.digest.hex()).exists());
    let ours: Vec<TokenRequest> = tokens.seen()[before..].to_vec();
    assert!(
        ours.iter().any(|t| t
            .query
            .contains("scope=repository%3Ateam%2Fpushed%3Apull%2Cpush")),
        "{ours:#?}"
    );
}
