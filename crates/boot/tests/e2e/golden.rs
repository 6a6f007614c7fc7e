//! The golden image boots: `kiln image` of examples/golden, then its one host (etcd1) booted
//! by `kiln boot` as a QEMU guest straight from the image's qcow2, kernel and initrd, with its
//! ISO seed: the etcd role must come up as on the e2e's guest image.
//!
//! The image is cached outside the clone, keyed by what its bytes depend on (the lock, the
//! builder's sources and hooks): `kiln image` is reproducible (tests/it/golden.rs builds it
//! twice and compares), so a folder built from the same inputs holds the same bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::env::{kiln_bin, repo, require_e2e};

/// examples/golden's cluster.toml in `dir`, reading the checkout's inputs and store.
fn golden_in(dir: &Path) -> PathBuf {
    let r = repo();
    let text = fs::read_to_string(r.join("examples/golden/cluster.toml"))
        .unwrap()
        .replace(
            "[paths]\n",
            &format!(
                "[paths]\nvendor = \"{0}/examples/golden/vendor\"\nlock = \"{0}/examples/golden/kiln.lock\"\n",
                r.display()
            ),
        )
        .replace("\"../../", &format!("\"{}/", r.display()));
    let file = dir.join("cluster.toml");
    fs::write(&file, text).unwrap();
    file
}

/// The inputs the image's bytes depend on, hashed: the lock, cluster.toml's [image] (through
/// the lock's closure), the catalog, and the builder (kiln-golden, engine::golden).
fn image_key() -> String {
    let r = repo();
    let mut files = vec![
        r.join("examples/golden/kiln.lock"),
        r.join("catalog/catalog.toml"),
        r.join("crates/engine/src/golden.rs"),
    ];
    for sub in ["crates/golden/src", "crates/golden/assets"] {
        let mut names: Vec<PathBuf> = fs::read_dir(r.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        files.extend(names);
    }
    let mut h = Sha256::new();
    for f in files {
        h.update(f.strip_prefix(&r).unwrap().to_string_lossy().as_bytes());
        h.update(fs::read(&f).unwrap());
    }
    hex::encode(h.finalize())[..16].to_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "boots a QEMU guest from the golden image (2-3 min); run by tests/e2e/run.sh"]
fn golden_image_boots_its_host_into_the_etcd_role() {
    require_e2e();
    let tmp = tempfile::tempdir().unwrap();
    let cluster = golden_in(tmp.path());
    let cache = PathBuf::from("/var/tmp/kiln-golden-image").join(image_key());
    let image = cache.join("golden-image");
    if !image.join("SHA256SUMS").is_file() {
        eprintln!("golden: kiln image into {}", cache.display());
        run(Command::new(kiln_bin())
            .args(["image"])
            .arg(&cluster)
            .arg("--out")
            .arg(&cache));
    }
    run(Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&image));
    // Every seed form: kiln boot attaches the ISO and reads the final message from the folder.
    run(Command::new(kiln_bin())
        .args(["build", "--offline"])
        .arg(&cluster));
    let out = Command::new(kiln_bin())
        .arg("boot")
        .arg(&cluster)
        .arg("--image")
        .arg(image.join("disk.qcow2"))
        .args(["--timeout", "600"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "kiln boot failed");
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("etcd1        ready       cloud-init final")
            && all.contains("golden: every host reached its role"),
        "{all}"
    );
}
