//! Signed builds through the CLI: openssl verifies what `kiln build` signed (MANIFEST.json and
//! a host's HOST+BUNDLES), seeds carry the public key, rebuilds sign identically, and
//! `kiln verify --key` refuses another cluster's key and an unsigned folder.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{kiln, Fixture};

/// `openssl dgst -sha256 -verify PUB -signature SIG FILE`, as install.sh runs it.
fn openssl_verifies(public: &Path, sig: &Path, file: &Path) -> bool {
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(sig)
        .arg(file)
        .output()
        .expect("openssl is installed");
    out.status.success()
}

/// A member of a .tar.gz, read by GNU tar.
fn member(archive: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xzOf")
        .arg(archive)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "{name} in {}", archive.display());
    out.stdout
}

/// `kiln verify OUT --key KEY`: (exit code, stdout, stderr).
fn verify_with(out: &Path, key: &Path) -> (Option<i32>, String, String) {
    let r = kiln()
        .arg("verify")
        .arg(out)
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    (
        r.status.code(),
        String::from_utf8_lossy(&r.stdout).into_owned(),
        String::from_utf8_lossy(&r.stderr).into_owned(),
    )
}

fn built() -> Fixture {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml"])
        .assert()
        .success();
    fx
}

#[test]
fn openssl_verifies_the_builds_signatures_and_seeds_carry_the_key() {
    let fx = built();
    let out = fx.dir.join("out/lab");
    let public = fx.dir.join("pki/signing.pub");
    assert_eq!(
        fs::read(out.join("signing.pub")).unwrap(),
        fs::read(&public).unwrap()
    );
    assert!(openssl_verifies(
        &public,
        &out.join("MANIFEST.json.sig"),
        &out.join("MANIFEST.json")
    ));

    let t = tempfile::tempdir().unwrap();
    let secrets = out.join("hosts/etcd1/secrets.tar.gz");
    let signed = t.path().join("signed");
    let host = member(&secrets, "HOST");
    assert!(String::from_utf8_lossy(&host).contains("KILN_GENERATION=1\n"));
    fs::write(&signed, [host, member(&secrets, "BUNDLES")].concat()).unwrap();
    fs::write(t.path().join("sig"), member(&secrets, "BUNDLES.sig")).unwrap();
    assert!(openssl_verifies(&public, &t.path().join("sig"), &signed));

    let user_data = fs::read_to_string(out.join("hosts/etcd1/seed/user-data")).unwrap();
    assert!(
        user_data.contains("path: /etc/kiln/signing.pub"),
        "{user_data}"
    );
    for line in fs::read_to_string(&public).unwrap().lines() {
        assert!(user_data.contains(line), "user-data lacks {line:?}");
    }

    // Deterministic signatures: a forced rebuild writes the same bytes.
    let before = fs::read(out.join("MANIFEST.json.sig")).unwrap();
    let secrets_before = fs::read(&secrets).unwrap();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml", "--force"])
        .assert()
        .success();
    assert_eq!(fs::read(out.join("MANIFEST.json.sig")).unwrap(), before);
    assert_eq!(fs::read(&secrets).unwrap(), secrets_before);
}

#[test]
fn verify_key_proves_origin_and_refuses_another_key_and_an_unsigned_folder() {
    let fx = built();
    let out = fx.dir.join("out/lab");
    let public = fx.dir.join("pki/signing.pub");
    let (code, text, err) = verify_with(&out, &public);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        text.contains("signatures verified: MANIFEST.json and 6 hosts' BUNDLES signed by"),
        "{text}"
    );
    let own = kiln().arg("verify").arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&own.stdout);
    assert!(
        own.status.success() && text.contains("not who built them"),
        "{text}"
    );

    // Another cluster's key (made by openssl: any P-256 public key PEM will do).
    let t = tempfile::tempdir().unwrap();
    let (key, other) = (t.path().join("other.key"), t.path().join("other.pub"));
    let made = Command::new("sh")
        .arg("-c")
        .arg("openssl ecparam -name prime256v1 -genkey -noout -out \"$1\" && openssl ec -in \"$1\" -pubout -out \"$2\"")
        .args(["sh".as_ref(), key.as_os_str(), other.as_os_str()])
        .status()
        .unwrap();
    assert!(made.success());
    let (code, _, err) = verify_with(&out, &other);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("MANIFEST.json.sig does not verify with"),
        "{err}"
    );

    // A key that is not one: named.
    let (code, _, err) = verify_with(&out, &fx.cluster());
    assert!(
        code == Some(1) && err.contains("not an ECDSA P-256 public key"),
        "{err}"
    );

    // Unsigned: the signature and its SHA256SUMS line gone, as a kiln before signatures wrote.
    fs::remove_file(out.join("MANIFEST.json.sig")).unwrap();
    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let sums: String = sums
        .lines()
        .filter(|l| !l.ends_with("  MANIFEST.json.sig"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(out.join("SHA256SUMS"), sums).unwrap();
    let (code, _, err) = verify_with(&out, &public);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not signed: no") && err.contains("MANIFEST.json.sig"),
        "{err}"
    );
}
