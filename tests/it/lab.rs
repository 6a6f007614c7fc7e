//! The lab example, from its real Debian artifacts (fetched by the set-up: see README).

use std::fs;

use crate::common::{kiln, repo, walk};

fn lab_vendor_ready() -> bool {
    let lock = fs::read_to_string(repo().join("examples/lab/kiln.lock")).unwrap();
    let store = repo().join("examples/lab/vendor/sha256");
    lock.lines()
        .filter_map(|l| l.strip_prefix("sha256 = \""))
        .all(|s| store.join(&s[..64]).is_file())
}

#[test]
fn lab_builds_twice_to_the_same_bytes_offline() {
    assert!(lab_vendor_ready(), "examples/lab/vendor is not filled: run `cargo run -- fetch examples/lab/cluster.toml` (the set-up in README.md does)");
    let tmp = tempfile::tempdir().unwrap();
    // The lab, with its PKI state in the temp folder (tests never write into the checkout).
    let r = repo();
    let text = fs::read_to_string(r.join("examples/lab/cluster.toml")).unwrap().replace(
        "[paths]\n",
        &format!("[paths]\nvendor = \"{0}/examples/lab/vendor\"\nlock = \"{0}/examples/lab/kiln.lock\"\n", r.display()),
    );
    let text = text.replace("\"../../", &format!("\"{}/", r.display()));
    let lab = tmp.path().join("cluster.toml");
    fs::write(&lab, text).unwrap();
    let mut sums = Vec::new();
    for (i, tz) in ["UTC", "America/New_York"].iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        kiln()
            .env("TZ", tz)
            .args(["build", "--offline", "--out"])
            .arg(&out)
            .arg(&lab)
            .assert()
            .success();
        sums.push(fs::read_to_string(out.join("lab/SHA256SUMS")).unwrap());
        kiln().arg("verify").arg(out.join("lab")).assert().success();
        let files = walk(&out.join("lab"));
        // The whole lab payload is real: etcd and containerd are large binaries.
        let size: u64 = files.iter().map(|p| p.metadata().unwrap().len()).sum();
        assert!(size > 50_000_000, "lab out is only {size} bytes");
    }
    assert_eq!(sums[0], sums[1]);
    // sha256sum reads SHA256SUMS.
    let st = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .arg("SHA256SUMS")
        .current_dir(tmp.path().join("out0/lab"))
        .status()
        .unwrap();
    assert!(st.success());
}
