//! Lock, fetch and build over a fixture whose artifacts are local files.

use std::fs;
use std::io::Read;
use std::path::Path;

use crate::common::{kiln, tree_state, walk, Fixture};

fn build_in(fx: &Fixture, out: &Path, env: &[(&str, &str)], umask: &str) -> std::process::Output {
    let bin = assert_cmd::cargo::cargo_bin("kiln");
    let mut c = std::process::Command::new("sh");
    c.current_dir(&fx.dir)
        .arg("-c")
        .arg(format!(
            "umask {umask}; exec \"$0\" build cluster.toml --out \"$1\""
        ))
        .arg(bin)
        .arg(out)
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn bundle_bytes(out: &Path) -> Vec<(String, Vec<u8>)> {
    walk(out)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(out).unwrap().display().to_string(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn identical_inputs_give_identical_bytes_across_folders_time_zones_umasks_and_locales() {
    let a = Fixture::new(false);
    let b = Fixture::new(true);
    a.lock();
    // Same inputs: the second project gets the first one's lock (its epoch was fixed when written).
    fs::copy(a.dir.join("kiln.lock"), b.dir.join("kiln.lock")).unwrap();
    // …and the same PKI state (an input too: CAs are created once and reused).
    kiln()
        .current_dir(&a.dir)
        .args(["certs", "cluster.toml"])
        .assert()
        .success();
    crate::common::copy_tree(&a.dir.join("pki"), &b.dir.join("pki"));
    let out_a = a.dir.join("out-a");
    let out_b = b.dir.join("elsewhere/out-b");
    let ra = build_in(&a, &out_a, &[("TZ", "UTC"), ("LANG", "C")], "022");
    assert!(
        ra.status.success(),
        "{}",
        String::from_utf8_lossy(&ra.stderr)
    );
    let rb = build_in(
        &b,
        &out_b,
        &[
            ("TZ", "Asia/Shanghai"),
            ("LANG", "zh_CN.UTF-8"),
            ("LC_ALL", "zh_CN.UTF-8"),
        ],
        "077",
    );
    assert!(
        rb.status.success(),
        "{}",
        String::from_utf8_lossy(&rb.stderr)
    );
    let ba = bundle_bytes(&out_a.join("lab"));
    let bb = bundle_bytes(&out_b.join("lab"));
    assert_eq!(
        ba.iter().map(|x| &x.0).collect::<Vec<_>>(),
        bb.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
    for ((pa, xa), (_, xb)) in ba.iter().zip(&bb) {
        assert!(xa == xb, "{pa} differs between the two builds");
    }
    assert!(
        ba.iter()
            .any(|(p, _)| p.starts_with("bundles/runtime-debian12-")),
        "{:?}",
        ba.iter().map(|x| &x.0).collect::<Vec<_>>()
    );
}

#[test]
fn bundle_headers_are_normalised() {
    let fx = Fixture::new(false);
    fx.lock();
    let out = fx.dir.join("out");
    let r = build_in(&fx, &out, &[("SOURCE_DATE_EPOCH", "1700000000")], "027");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bundle = walk(&out.join("lab/bundles"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("etcd-debian12-"))
        .unwrap();
    let raw = fs::read(&bundle).unwrap();
    // gzip header: magic, deflate, no flags (no name), mtime 0.
    assert_eq!(&raw[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&raw[4..8], &[0, 0, 0, 0]);
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(&raw[..]));
    let mut paths = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), 1_700_000_000);
        assert_eq!(h.uid().unwrap(), 0);
        assert_eq!(h.gid().unwrap(), 0);
        assert_eq!(h.username().unwrap(), Some(""));
        assert_eq!(h.groupname().unwrap(), Some(""));
        assert!(h.entry_type().is_file());
        let path = e.path().unwrap().display().to_string();
        let mode = h.mode().unwrap();
        if path == "rootfs/usr/local/bin/etcd" {
            assert_eq!(mode, 0o755);
        }
        if path == "rootfs/etc/systemd/system/etcd.service" {
            assert_eq!(mode, 0o644);
        }
        let mut sink = Vec::new();
        e.read_to_end(&mut sink).unwrap();
        paths.push(path);
    }
    assert_eq!(paths[0], "MANIFEST", "MANIFEST comes first");
    let mut sorted = paths[1..].to_vec();
    sorted.sort();
    assert_eq!(paths[1..], sorted[..], "the other entries are sorted");
    for meta in [
        "BUNDLE",
        "UNITS",
        "IMAGES",
        "PACKAGES",
        "HEALTH",
        "install.sh",
    ] {
        assert!(
            paths.contains(&meta.to_string()),
            "{meta} missing from {paths:?}"
        );
    }
}

#[test]
fn no_op_rebuild_changes_nothing_and_a_changed_input_rebuilds() {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .assert()
        .success();
    let out = fx.dir.join("out/lab");
    let before = tree_state(&out);
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&r.stdout).contains("up to date"));
    assert_eq!(tree_state(&out), before);
    // A damaged output is noticed by the quick check and rebuilt.
    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let host = out.join("hosts/etcd1/secrets.tar.gz");
    fs::write(&host, b"short").unwrap();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&r.stdout).contains("up to date"));
    assert_eq!(fs::read_to_string(out.join("SHA256SUMS")).unwrap(), sums);
    // Changing a template changes the build.
    let p = fx.dir.join("profiles/etcd/etcd.service.hbs");
    fs::write(
        &p,
        fs::read_to_string(&p)
            .unwrap()
            .replace("RestartSec=5", "RestartSec=7"),
    )
    .unwrap();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .assert()
        .success();
    assert_ne!(fs::read_to_string(out.join("SHA256SUMS")).unwrap(), sums);
    kiln().args(["verify"]).arg(&out).assert().success();
}

#[test]
fn build_without_lock_fails_closed_and_writes_nothing() {
    let fx = Fixture::small();
    let before = tree_state(&fx.dir);
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("kiln.lock not found: run `kiln lock` first")
    );
    assert_eq!(tree_state(&fx.dir), before);
}

#[test]
fn artifact_missing_from_lock_fails_closed() {
    let fx = Fixture::small();
    fx.lock();
    let lock = fx.dir.join("kiln.lock");
    let t = fs::read_to_string(&lock).unwrap();
    let start = t.find("[[artifact]]\nname = \"runc\"").unwrap();
    let end = t[start + 1..]
        .find("[[artifact]]")
        .map(|i| i + start + 1)
        .unwrap_or(t.len());
    fs::write(&lock, format!("{}{}", &t[..start], &t[end..])).unwrap();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("runc 1.1.5 (amd64) is not pinned"), "{e}");
    assert!(!fx.dir.join("out").exists());
}

#[test]
fn offline_build_names_every_missing_artifact_and_writes_nothing() {
    let fx = Fixture::small();
    fx.lock();
    let before = tree_state(&fx.dir);
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "--offline", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        e.contains("missing from the store") && e.contains("--offline"),
        "{e}"
    );
    for name in [
        "etcd-3.4.23-amd64",
        "runc-1.1.5-amd64",
        "cni-vrf-1.1.1-amd64",
    ] {
        assert!(e.contains(name), "{name} not named in {e}");
    }
    assert_eq!(tree_state(&fx.dir), before);
}

#[test]
fn changed_local_artifact_is_refused_at_fetch() {
    let fx = Fixture::small();
    fx.lock();
    let f = fx.dir.join("catalog/files/runc-1.1.5-amd64");
    fs::write(&f, b"tampered").unwrap();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("runc-1.1.5-amd64"), "{e}");
    assert!(!fx.dir.join("out/lab").exists());
}

#[test]
fn corrupt_store_entry_is_replaced_before_use() {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["fetch", "cluster.toml"])
        .assert()
        .success();
    let lock = fs::read_to_string(fx.dir.join("kiln.lock")).unwrap();
    let i = lock.find("name = \"etcd\"").unwrap();
    let sha = &lock[i..].split("sha256 = \"").nth(1).unwrap()[..64];
    let blob = fx.dir.join("vendor/sha256").join(sha);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&blob, bytes).unwrap();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .assert()
        .success();
    let (got, _) = kiln_bundle::sha256_file(&blob).unwrap();
    assert_eq!(got, sha, "the blob was restored from its source");
    kiln()
        .args(["verify"])
        .arg(fx.dir.join("out/lab"))
        .assert()
        .success();
}

#[test]
fn verify_reports_tampering_with_exit_1() {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .assert()
        .success();
    let out = fx.dir.join("out/lab");
    kiln().arg("verify").arg(&out).assert().success();
    let bundle = walk(&out.join("bundles"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("etcd-debian12"))
        .unwrap();
    kiln().arg("verify").arg(&bundle).assert().success();
    let mut b = fs::read(&bundle).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    fs::write(&bundle, b).unwrap();
    let r = kiln().arg("verify").arg(&out).output().unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("verification failed"));
    kiln().arg("verify").arg(&bundle).assert().code(1);
}
