//! cloud-init seeds in the build: valid user-data, CIDATA images, pinned digests, vagrant.json.

use std::fs;
use std::process::Command;

use crate::common::{kiln, Fixture};

fn tool(name: &str, pkg: &str) -> Command {
    assert!(
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {name}"))
            .output()
            .unwrap()
            .status
            .success(),
        "{name} is missing: install the Debian package {pkg} (scripts/setup does)"
    );
    Command::new(name)
}

/// Locks and builds `fx` with every seed form; returns `out/lab`.
fn build_every_seed_form(fx: &Fixture) -> std::path::PathBuf {
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "--seed", "iso,vfat,dir", "cluster.toml"])
        .assert()
        .success();
    fx.dir.join("out/lab")
}

#[test]
fn seeds_are_valid_and_pin_the_installer_and_secrets() {
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let digest_of = |rel: &str| {
        sums.lines()
            .find(|l| l.ends_with(&format!("  {rel}")))
            .unwrap_or_else(|| panic!("{rel} not in SHA256SUMS"))
            .split("  ")
            .next()
            .unwrap()
            .to_string()
    };
    let install = digest_of("install.sh");
    for host in ["etcd1", "etcd2", "etcd3", "runtime1"] {
        let seed = out.join(format!("hosts/{host}/seed"));
        let ud = seed.join("user-data");
        let r = tool("cloud-init", "cloud-init")
            .args(["schema", "--config-file"])
            .arg(&ud)
            .output()
            .unwrap();
        assert!(
            r.status.success(),
            "{host}: {}{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        let text = fs::read_to_string(&ud).unwrap();
        assert!(text.starts_with("#cloud-config\n"));
        assert!(
            text.contains(&install),
            "{host}: user-data does not pin install.sh"
        );
        assert!(
            text.contains(&digest_of(&format!("hosts/{host}/secrets.tar.gz"))),
            "{host}: user-data does not pin its secrets"
        );
        let nc = fs::read_to_string(seed.join("network-config")).unwrap();
        assert!(nc.contains("set-name: eth0"), "{nc}");
        for img in ["cidata.img", "cidata.iso"] {
            let p = out.join(format!("hosts/{host}/{img}"));
            let r = tool("blkid", "util-linux")
                .args(["-p", "-o", "export"])
                .arg(&p)
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&r.stdout);
            assert!(s.contains("LABEL=CIDATA"), "{host} {img}: {s}");
        }
        // The seed folder carries exactly the bundles named in the host's BUNDLES file.
        let names: Vec<String> = fs::read_dir(seed.join("kiln"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.contains(&"install.sh".to_string())
                && names.contains(&"secrets.tar.gz".to_string()),
            "{names:?}"
        );
        assert!(
            names.iter().any(|n| n.starts_with("common-debian12-")),
            "{names:?}"
        );
    }
    let r = tool("isoinfo", "genisoimage")
        .args(["-R", "-f", "-i"])
        .arg(out.join("hosts/etcd1/cidata.iso"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&r.stdout);
    for f in [
        "/user-data",
        "/meta-data",
        "/network-config",
        "/kiln/install.sh",
        "/kiln/secrets.tar.gz",
    ] {
        assert!(
            listing.lines().any(|l| l == f),
            "{f} missing from the ISO: {listing}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("vagrant.json")).unwrap()).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 6);
    assert_eq!(hosts[0]["mac"], "52:54:00:77:00:11");
    assert_eq!(hosts[0]["seed_iso"], "hosts/etcd1/cidata.iso");
    kiln().arg("verify").arg(&out).assert().success();
}

#[test]
fn unknown_seed_form_is_a_clear_error() {
    let fx = Fixture::small();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "--seed", "floppy", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("unknown seed form \"floppy\""));
}

/// The lab fixture with a `[seeds]` table of `body`.
fn with_seeds(body: &str) -> Fixture {
    let fx = Fixture::new(false);
    fx.edit(|t| t.replacen("[network]", &format!("[seeds]\n{body}\n\n[network]"), 1));
    fx
}

#[test]
fn seeds_without_bundles_name_their_sources_and_the_medium_holds_every_bundle_once() {
    let fx = with_seeds(
        "carry-bundles = false\nbundle-sources = [\"medium\", \"oci+http://10.77.0.1:5000/kiln/lab\"]",
    );
    let out = build_every_seed_form(&fx);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("MANIFEST.json")).unwrap()).unwrap();
    for host in ["etcd1", "runtime1", "lb1"] {
        let seed = out.join(format!("hosts/{host}/seed"));
        let mut names: Vec<String> = fs::read_dir(seed.join("kiln"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["install.sh", "secrets.tar.gz"], "{host}");
        let ud = fs::read_to_string(seed.join("user-data")).unwrap();
        assert!(
            ud.contains("--source 'medium' --source 'oci+http://10.77.0.1:5000/kiln/lab'"),
            "{host}: {ud}"
        );
        let r = tool("cloud-init", "cloud-init")
            .args(["schema", "--config-file"])
            .arg(seed.join("user-data"))
            .output()
            .unwrap();
        assert!(r.status.success(), "{host}: {r:?}");
        // The images stay small whatever the bundles weigh (2 MiB is the smallest VFAT).
        for (img, max) in [("cidata.iso", 1 << 20), ("cidata.img", 2 << 20)] {
            let len = fs::metadata(out.join(format!("hosts/{host}/{img}")))
                .unwrap()
                .len();
            assert!(len <= max, "{host} {img}: {len} bytes");
        }
    }
    // bundles.iso: labelled KILNBUNDLE, every bundle once, byte for byte.
    let medium = out.join("bundles.iso");
    let r = tool("blkid", "util-linux")
        .args(["-p", "-o", "export"])
        .arg(&medium)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&r.stdout);
    assert!(s.contains("LABEL=KILNBUNDLE"), "{s}");
    let bundles = manifest["bundles"].as_object().unwrap();
    for b in bundles.values() {
        let file = b["file"].as_str().unwrap();
        let r = tool("isoinfo", "genisoimage")
            .args(["-R", "-i"])
            .arg(&medium)
            .args(["-x", &format!("/{file}")])
            .output()
            .unwrap();
        assert_eq!(r.stdout, fs::read(out.join(file)).unwrap(), "{file}");
    }
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("vagrant.json")).unwrap()).unwrap();
    assert_eq!(v["hosts"][0]["bundle_medium"], "bundles.iso");
    kiln().arg("verify").arg(&out).assert().success();
}

#[test]
fn seeds_settings_are_checked_at_their_key() {
    let fx = with_seeds("carry-bundles = false\nbundle-sources = [\"http://u:p@h/x\"]");
    let before = crate::common::tree_state(&fx.dir);
    let (code, stderr) = crate::common::kiln_in(&fx.dir, &["check", "cluster.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    let line = fs::read_to_string(fx.cluster())
        .unwrap()
        .lines()
        .position(|l| l.starts_with("bundle-sources"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "cluster.toml:{line}:19: error: `seeds.bundle-sources[0]`: \"http://u:p@h/x\": user info ('@') is not allowed in a bundle source"
        )),
        "{stderr}"
    );
    assert_eq!(crate::common::tree_state(&fx.dir), before);
}
