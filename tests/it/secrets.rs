//! The PKI in the build: per-host secrets bundles, no secret in role bundles, stable rebuilds.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{kiln, walk, Fixture};

/// (path, mode, bytes) of every entry of a kiln archive.
pub fn entries(archive: &Path) -> Vec<(String, u32, Vec<u8>)> {
    let raw = fs::read(archive).unwrap();
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(&raw[..]));
    let mut out = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mode = e.header().mode().unwrap();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        out.push((path, mode, b));
    }
    out
}

fn built() -> Fixture {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "--seed", "none", "cluster.toml"])
        .assert()
        .success();
    fx
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn role_bundles_hold_no_private_key_or_secret_bytes() {
    let fx = built();
    let out = fx.dir.join("out/lab");
    let mut secrets = Vec::new();
    for s in walk(&out.join("hosts"))
        .into_iter()
        .filter(|p| p.ends_with("secrets.tar.gz"))
    {
        for (path, mode, bytes) in entries(&s) {
            if mode == 0o600 && path.starts_with("rootfs/") {
                secrets.push((path, bytes));
            }
        }
    }
    assert!(
        secrets.len() >= 3 * 3,
        "expected three etcd keys for each of three hosts, got {}",
        secrets.len()
    );
    for b in walk(&out.join("bundles")) {
        for (path, _, bytes) in entries(&b) {
            assert!(
                !contains(&bytes, b"PRIVATE KEY"),
                "{} holds a private key in {path}",
                b.display()
            );
            for (spath, sbytes) in &secrets {
                assert!(
                    !contains(&bytes, sbytes),
                    "{} holds the bytes of {spath} in {path}",
                    b.display()
                );
            }
        }
    }
}

#[test]
fn secrets_bundles_are_0600_and_hold_only_their_hosts_files() {
    let fx = built();
    let out = fx.dir.join("out/lab");
    for host in ["etcd1", "etcd2", "etcd3", "runtime1"] {
        let p = out.join(format!("hosts/{host}/secrets.tar.gz"));
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{host}"
        );
        let e = entries(&p);
        let host_file = &e.iter().find(|x| x.0 == "HOST").unwrap().2;
        let host_text = String::from_utf8_lossy(host_file);
        assert!(host_text.contains(&format!("KILN_HOST={host}\n")));
        // The host contract's parsers read what the build wrote (install.sh's input).
        let meta = kiln_bundle::contract::HostMeta::parse(host_file).unwrap();
        assert_eq!((meta.cluster.as_str(), meta.host.as_str()), ("lab", host));
        let listed = &e.iter().find(|x| x.0 == "BUNDLES").unwrap().2;
        let bundles = kiln_bundle::contract::parse_bundles(listed).unwrap();
        assert!(!bundles.is_empty(), "{host}");
        for b in &bundles {
            let (sha, _) = kiln_bundle::sha256_file(&out.join("bundles").join(&b.file)).unwrap();
            assert_eq!(sha, b.sha256, "{host}: {}", b.file);
        }
        // The installer's clock check: the earliest notAfter of this host's certificates.
        let not_after = host_text
            .lines()
            .find_map(|l| l.strip_prefix("KILN_NOT_AFTER="));
        assert_eq!(
            not_after.is_some(),
            host.starts_with("etcd"),
            "{host}: only hosts with certificates have KILN_NOT_AFTER"
        );
        if let Some(t) = not_after {
            let t: i64 = t.parse().unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert!(
                t > now + 300 * 86_400 && t < now + 400 * 86_400,
                "{host}: {t}"
            );
        }
        for (path, mode, _) in &e {
            if path.ends_with(".key") {
                assert_eq!(*mode, 0o600, "{host}: {path}");
            }
            if path.ends_with(".crt") {
                assert_eq!(*mode, 0o644, "{host}: {path}");
            }
        }
        let has_server = e
            .iter()
            .any(|x| x.0 == "rootfs/etc/kubernetes/pki/etcd/server.crt");
        assert_eq!(has_server, host.starts_with("etcd"), "{host}");
        assert!(
            !e.iter().any(|x| x.0.ends_with("/ca.key")),
            "{host} received a CA key"
        );
    }
    // etcd1's server certificate names etcd1 and its address, and no other member.
    let e = entries(&out.join("hosts/etcd1/secrets.tar.gz"));
    let crt = &e
        .iter()
        .find(|x| x.0 == "rootfs/etc/kubernetes/pki/etcd/server.crt")
        .unwrap()
        .2;
    let tmp = tempfile::NamedTempFile::new().unwrap();
    fs::write(tmp.path(), crt).unwrap();
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(tmp.path())
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&text.stdout);
    assert!(
        sans.contains("DNS:etcd1") && sans.contains("IP Address:10.77.0.11"),
        "{sans}"
    );
    assert!(
        !sans.contains("etcd2") && !sans.contains("10.77.0.12"),
        "{sans}"
    );
}

#[test]
fn rebuild_reuses_certificates_byte_for_byte() {
    let fx = built();
    let p = fx.dir.join("out/lab/hosts/etcd2/secrets.tar.gz");
    let before = fs::read(&p).unwrap();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "--force", "--seed", "none", "cluster.toml"])
        .assert()
        .success();
    assert_eq!(fs::read(&p).unwrap(), before);
}

#[test]
fn a_lost_ca_key_stops_the_build_unless_rotation_is_asked_for() {
    let fx = built();
    fs::remove_file(fx.dir.join("pki/etcd/ca.key")).unwrap();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "--force", "--seed", "none", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("etcd") && e.to_lowercase().contains("ca"), "{e}");
    kiln()
        .current_dir(&fx.dir)
        .args([
            "build",
            "--force",
            "--rotate-ca",
            "--seed",
            "none",
            "cluster.toml",
        ])
        .assert()
        .success();
    kiln()
        .arg("verify")
        .arg(fx.dir.join("out/lab"))
        .assert()
        .success();
}

#[test]
fn certs_table_json_and_expiry_check() {
    let fx = Fixture::small();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["certs", "cluster.toml"])
        .output()
        .unwrap();
    assert!(r.status.success());
    let table = String::from_utf8_lossy(&r.stdout);
    assert!(
        table.contains("etcd1") && table.contains("/etc/kubernetes/pki/etcd/server.crt"),
        "{table}"
    );
    let mode = fs::metadata(fx.dir.join("pki"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    let j = kiln()
        .current_dir(&fx.dir)
        .args(["certs", "--json", "cluster.toml"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert!(rows.as_array().unwrap().len() >= 12);
    kiln()
        .current_dir(&fx.dir)
        .args(["certs", "--check-expiry", "30", "cluster.toml"])
        .assert()
        .success();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["certs", "--check-expiry", "400", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("expires in"));
}

#[test]
fn plan_lists_each_hosts_certificates() {
    let fx = Fixture::small();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["plan", "cluster.toml"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&r.stdout);
    assert!(
        s.contains("0600 /etc/kubernetes/pki/etcd/peer.key  (certificates)"),
        "{s}"
    );
    assert!(!fx.dir.join("pki").exists(), "plan must not create the PKI");
}
