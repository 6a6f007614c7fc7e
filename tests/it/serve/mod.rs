//! `kiln serve`: a real server on 127.0.0.1 (port 0) over a built lab fixture, asked with curl
//! (`paths`) and by the seeds' own runcmd (`installs`).

mod dhcp;
mod installs;
mod paths;

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common::noise;
use crate::seeds::tool;

/// A `kiln serve --json` process; killed when dropped.
pub(super) struct Serve {
    child: Child,
    stdout: BufReader<ChildStdout>,
    /// `http://127.0.0.1:<port>`.
    pub(super) url: String,
}

impl Serve {
    /// Starts `kiln serve OUT --listen 127.0.0.1:0 --json --state STATE ARGS…` and reads the
    /// bound address from its status line.
    pub(super) fn start(out: &Path, state: &Path, args: &[&str]) -> Serve {
        Serve::start_on("127.0.0.1:0", out, state, args)
    }

    /// [`Serve::start`] on `listen`.
    pub(super) fn start_on(listen: &str, out: &Path, state: &Path, args: &[&str]) -> Serve {
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("kiln"))
            .arg("serve")
            .arg(out)
            .args(["--listen", listen, "--json", "--state"])
            .arg(state)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        if line.is_empty() {
            let err = stderr_of(&mut child);
            panic!("kiln serve ended: {:?}: {err}", child.wait());
        }
        let status: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(status["event"], "listening", "{line}");
        let url = status["url"].as_str().unwrap().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        assert!(listen.ends_with(":0") || url.ends_with(listen), "{line}");
        assert_ne!(url, "http://127.0.0.1:0", "{line}");
        Serve { child, stdout, url }
    }

    /// Stops the server; returns its access log records.
    pub(super) fn stop(mut self) -> Vec<Value> {
        // A record is written when its response is done, just after the client has its bytes.
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        rest.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET `url` with curl: the status and the body.
pub(super) fn get(url: &str) -> (u16, Vec<u8>) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = tool("curl", "curl")
        .args(["-sS", "--max-time", "30", "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code}", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}: {out:?}");
    let code = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    (code, fs::read(body.path()).unwrap())
}

pub(super) fn get_text(url: &str) -> (u16, String) {
    let (code, body) = get(url);
    (code, String::from_utf8(body).unwrap())
}

pub(super) fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The first `<prefix><64 hex>` in `text`: a token in a URL.
pub(super) fn token_after(text: &str, prefix: &str) -> String {
    let at = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {text}"))
        + prefix.len();
    let t: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    assert_eq!(t.len(), 64, "{text}");
    t
}

/// Whether `text` holds a run of 64 hex digits (a token).
pub(super) fn has_token(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_hexdigit() { run + 1 } else { 0 };
        if run >= 64 {
            return true;
        }
    }
    false
}

pub(super) fn manifest(out: &Path) -> Value {
    serde_json::from_slice(&fs::read(out.join("MANIFEST.json")).unwrap()).unwrap()
}

pub(super) fn hexhyp(mac: &Value) -> String {
    mac.as_str().unwrap().replace(':', "-")
}

/// A netboot folder: a kernel and an initrd to serve (their bytes are never booted here).
pub(super) fn netboot(dir: &Path) -> PathBuf {
    let nb = dir.join("netboot");
    fs::create_dir_all(&nb).unwrap();
    fs::write(nb.join("vmlinuz"), noise(7, 70_000)).unwrap();
    fs::write(nb.join("initrd.img"), noise(8, 90_000)).unwrap();
    nb
}

/// All a child wrote on its (piped) stderr.
pub(super) fn stderr_of(child: &mut std::process::Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}
