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

#[test]
fn seeds_are_valid_and_pin_the_installer_and_secrets() {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "--seed", "iso,vfat,dir", "cluster.toml"])
        .assert()
        .success();
    let out = fx.dir.join("out/lab");
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
