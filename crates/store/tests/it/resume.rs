//! A download killed with SIGKILL resumes from its partial on the next run.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_store::Store;

use crate::server::{Reply, Server};
use crate::{assert_store, payload, sha};

const DRIVER: &str = env!("CARGO_BIN_EXE_kiln-store-fetch-test");

#[test]
fn kill_9_mid_download_then_rerun_resumes_with_range() {
    let server = Server::start();
    let body = payload(256 * 1024, 50);
    let digest = sha(&body);
    // First run: a slow trickle (~4 s in all) so the process can be killed mid-way.
    server.script(
        "/big.tar.gz",
        vec![Reply::Trickle {
            body: body.clone(),
            chunk: 4096,
            pause: Duration::from_millis(60),
        }],
    );
    server.always("/big.tar.gz", Reply::Serve(body.clone()));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vendor");
    let store = Store::open(&root).unwrap();
    let part = store.partial_path(&digest);
    let args = [
        "fetch".to_owned(),
        root.display().to_string(),
        server.url("/big.tar.gz"),
        digest.clone(),
        body.len().to_string(),
    ];

    let mut child = Command::new(DRIVER)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < 32 * 1024 {
        assert!(Instant::now() < deadline, "no partial appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "driver ended before the kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup code runs
    child.wait().unwrap();

    let kept = fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < body.len() as u64, "{kept}");
    assert!(
        !store.blob_path(&digest).exists(),
        "no final blob after a kill"
    );
    assert_store(&store, &[], &[&digest]);

    let out = Command::new(DRIVER).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = server.requests("/big.tar.gz");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].range, Some(format!("bytes={kept}-")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("resumed_from: {kept}")),
        "{stdout}"
    );
    assert_store(&store, &[(&digest, &body)], &[]);
}
