//! `kiln fetch` against a real HTTP server on 127.0.0.1: kill -9 mid-download, then resume.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::common::{kiln, noise, Fixture};

/// Serves `/etcd` (slowly while `slow` is set, honouring `Range`) and `/etcd.sha256`.
fn serve(body: Vec<u8>, slow: Arc<AtomicBool>, ranges: Arc<Mutex<Vec<String>>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sum = format!("{}  etcd\n", hex::encode(Sha256::digest(&body)));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let (body, slow, ranges, sum) =
                (body.clone(), slow.clone(), ranges.clone(), sum.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut first = String::new();
                reader.read_line(&mut first).unwrap_or(0);
                let mut range = None;
                loop {
                    let mut l = String::new();
                    if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                        break;
                    }
                    if let Some(v) = l.to_ascii_lowercase().strip_prefix("range: bytes=") {
                        range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                        ranges.lock().unwrap().push(v.trim().to_string());
                    }
                }
                let head = first.starts_with("HEAD");
                if first.contains("/etcd.sha256") {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sum}",
                        sum.len()
                    );
                    return;
                }
                let start = range.unwrap_or(0).min(body.len());
                let status = if start > 0 {
                    format!(
                        "206 Partial Content\r\nContent-Range: bytes {start}-{}/{}",
                        body.len() - 1,
                        body.len()
                    )
                } else {
                    "200 OK".into()
                };
                let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n", body.len() - start);
                if head {
                    return;
                }
                for chunk in body[start..].chunks(16 * 1024) {
                    if conn.write_all(chunk).is_err() {
                        return;
                    }
                    if slow.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(40));
                    }
                }
            });
        }
    });
    port
}

#[test]
fn kill_9_during_fetch_then_rerun_resumes_and_never_leaves_a_wrong_blob() {
    let body = noise(99, 3 * 1024 * 1024);
    let sha = hex::encode(Sha256::digest(&body));
    let slow = Arc::new(AtomicBool::new(true));
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let port = serve(body.clone(), slow.clone(), ranges.clone());

    let fx = Fixture::small();
    let cat = fx.dir.join("catalog/catalog.toml");
    let t = fs::read_to_string(&cat).unwrap().replacen(
        "[[artifact.etcd.source]]\nkind = \"file\"\npath = \"files/etcd-{version}-{arch}\"",
        &format!("[[artifact.etcd.source]]\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/etcd\"\nchecksum-url = \"http://127.0.0.1:{port}/etcd.sha256\""),
        1,
    );
    fs::write(&cat, t).unwrap();
    fx.edit(|t| t.replace("sources = [\"file\"]", "sources = [\"file\", \"http\"]"));
    fx.lock();
    let lock = fs::read_to_string(fx.dir.join("kiln.lock")).unwrap();
    assert!(
        lock.contains(&sha) && lock.contains("size = 3145728"),
        "lock pins the served file: {lock}"
    );

    let bin = assert_cmd::cargo::cargo_bin("kiln");
    let mut child = std::process::Command::new(bin)
        .current_dir(&fx.dir)
        .args(["fetch", "cluster.toml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = fx.dir.join(format!("vendor/tmp/{sha}.part"));
    let t0 = Instant::now();
    while fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 256 * 1024 {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no partial download appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let blob = fx.dir.join(format!("vendor/sha256/{sha}"));
    assert!(
        !blob.exists(),
        "a partial download must never appear under its final name"
    );

    slow.store(false, Ordering::SeqCst);
    kiln()
        .current_dir(&fx.dir)
        .args(["fetch", "cluster.toml"])
        .assert()
        .success();
    assert_eq!(fs::read(&blob).unwrap(), body);
    assert!(
        ranges.lock().unwrap().iter().any(|r| r != "0-"),
        "the rerun resumed with a Range request: {:?}",
        ranges.lock().unwrap()
    );
    assert!(!part.exists());
}
