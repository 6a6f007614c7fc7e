//! cloud-init seeds in the build: valid user-data, CIDATA images, pinned digests, vagrant.json.

use std::fs;
use std::process::Command;

use crate::common::{kiln, Fixture};

pub(crate) fn tool(name: &str, pkg: &str) -> Command {
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
pub(crate) fn build_every_seed_form(fx: &Fixture) -> std::path::PathBuf {
    build_seeds(fx, "iso,vfat,dir")
}

/// Locks and builds `fx` with the seed forms `forms`; returns `out/lab`.
fn build_seeds(fx: &Fixture, forms: &str) -> std::path::PathBuf {
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "--seed", forms, "cluster.toml"])
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
        // Not even install.sh: the runcmd takes it from the sources by its digest.
        assert_eq!(names, ["secrets.tar.gz"], "{host}");
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
        let script = fx.dir.join(format!("{host}-runcmd.sh"));
        fs::write(&script, runcmd_of(&seed.join("user-data"))).unwrap();
        let r = tool("shellcheck", "shellcheck")
            .args(["-s", "sh"])
            .arg(&script)
            .output()
            .unwrap();
        assert!(r.status.success(), "{host}: shellcheck: {r:?}");
        // The images stay small whatever the bundles weigh, and so does their share of the
        // disk: the zero blocks of both are holes (issue 14: at most 64 KiB a host beyond its
        // secrets, which each image holds).
        let secrets = fs::metadata(seed.join("kiln/secrets.tar.gz"))
            .unwrap()
            .len();
        let mut allocated = 0;
        for (img, max) in [("cidata.iso", 1 << 20), ("cidata.img", 256 << 10)] {
            let md = fs::metadata(out.join(format!("hosts/{host}/{img}"))).unwrap();
            assert!(md.len() <= max, "{host} {img}: {} bytes", md.len());
            allocated += std::os::unix::fs::MetadataExt::blocks(&md) * 512;
        }
        let beyond = allocated - 2 * secrets.div_ceil(4096) * 4096;
        assert!(
            beyond <= 64 << 10,
            "{host}: images take {allocated} bytes, {beyond} beyond secrets of {secrets} bytes"
        );
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
    // And install.sh, for seeds that do not carry it.
    let r = tool("isoinfo", "genisoimage")
        .args(["-R", "-i"])
        .arg(&medium)
        .args(["-x", "/install.sh"])
        .output()
        .unwrap();
    assert_eq!(r.stdout, fs::read(out.join("install.sh")).unwrap());
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

/// `health-wait-seconds` reaches install.sh through every seed's runcmd (and only when set);
/// a value outside 1..=86400 is refused at its key and nothing is written.
#[test]
fn health_wait_reaches_install_sh_through_the_runcmd() {
    let fx = with_seeds("health-wait-seconds = 120");
    let out = build_seeds(&fx, "dir");
    for host in ["etcd1", "runtime1", "lb1"] {
        let script = runcmd_of(&out.join(format!("hosts/{host}/seed/user-data")));
        assert!(
            script.contains("KILN_HEALTH_WAIT=120 sh \"$i\" --dir \"$d\""),
            "{host}: {script}"
        );
    }
    let manifest = |out: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&fs::read(out.join("MANIFEST.json")).unwrap()).unwrap()
    };
    // Recorded for what serves the build (kiln serve's network seeds keep it).
    assert_eq!(manifest(&out)["health-wait-seconds"], 120);
    let default = Fixture::new(false);
    let plain = build_seeds(&default, "dir");
    let script = runcmd_of(&plain.join("hosts/etcd1/seed/user-data"));
    assert!(!script.contains("KILN_HEALTH_WAIT"), "{script}");
    assert!(manifest(&plain).get("health-wait-seconds").is_none());

    let fx = with_seeds("health-wait-seconds = 0");
    let before = crate::common::tree_state(&fx.dir);
    let (code, stderr) = crate::common::kiln_in(&fx.dir, &["check", "cluster.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "`seeds.health-wait-seconds`: expected a number of seconds from 1 to 86400, found 0"
        ),
        "{stderr}"
    );
    assert_eq!(crate::common::tree_state(&fx.dir), before);
}

/// The shell of a seed's runcmd (`sh -c <script>`): user-data's `- |` block.
pub(crate) fn runcmd_of(user_data: &std::path::Path) -> String {
    let text = fs::read_to_string(user_data).unwrap();
    let block: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "- |")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .collect();
    assert!(
        !block.is_empty(),
        "no runcmd script in {}",
        user_data.display()
    );
    block
        .iter()
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect()
}

/// Runs a seed's runcmd `script` twice as cloud-init would, in a mount namespace of its own
/// where `seed` is the NoCloud seed folder, `/var/lib` is empty and `/etc/kiln/signing.pub` is
/// `key` (as write_files places it; `/etc` is an overlay there); install.sh installs under
/// `root` and stops after its first step (killed: its work folder stays, in a `TMPDIR` beside
/// `root`, not in the machine's). Returns stdout and stderr of both runs.
pub(crate) fn run_seed_script(
    script: &str,
    seed: &std::path::Path,
    key: &std::path::Path,
    root: &std::path::Path,
    host: &str,
) -> String {
    for (t, pkg) in [
        ("unshare", "util-linux"),
        ("mount", "mount"),
        ("dash", "dash"),
    ] {
        tool(t, pkg);
    }
    let inner = r#"set -u
mount -t tmpfs kiln /var/lib && mkdir -p /var/lib/cloud/seed/nocloud &&
mount --bind "$1" /var/lib/cloud/seed/nocloud || exit 99
mkdir -p "$3/upper" "$3/work" &&
mount -t overlay kiln -o "lowerdir=/etc,upperdir=$3/upper,workdir=$3/work" /etc &&
mkdir -p /etc/kiln && cp "$4" /etc/kiln/signing.pub || exit 98
for run in 1 2; do dash -c "$2" 2>&1; echo "run $run: exit $?"; done
ls /var/lib/kiln/downloads"#;
    let tmpdir = root.with_extension("tmp");
    fs::create_dir_all(&tmpdir).unwrap();
    let r = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            inner,
            "-",
        ])
        .arg(seed)
        .arg(script)
        .arg(root.with_extension("etc"))
        .arg(key)
        .env("KILN_ROOT", root)
        .env("KILN_EXPECT_HOST", host)
        .env("KILN_NO_SYSTEMCTL", "1")
        .env("KILN_TEST_KILL_AT", "verify")
        .env("TMPDIR", &tmpdir)
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    String::from_utf8(r.stdout).unwrap()
}

#[test]
fn a_seed_without_install_sh_takes_it_from_a_source_by_its_digest_and_keeps_it() {
    use kiln_testkit::http::{Reply, Server};
    let server = Server::start();
    let source = server.url("/out");
    let fx = with_seeds(&format!(
        "carry-bundles = false\nbundle-sources = [\"{source}\"]"
    ));
    let out = build_seeds(&fx, "dir");
    let install_sh = fs::read(out.join("install.sh")).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&install_sh));
    for e in fs::read_dir(out.join("bundles")).unwrap() {
        let e = e.unwrap();
        let path = format!("/out/bundles/{}", e.file_name().to_string_lossy());
        server.always(&path, Reply::Serve(fs::read(e.path()).unwrap()));
    }
    let seed = out.join("hosts/etcd1/seed");
    let script = runcmd_of(&seed.join("user-data"));

    // Another install.sh on the source: refused by its digest, nothing runs.
    server.always("/out/install.sh", Reply::Serve(b"echo pwned\n".to_vec()));
    let root = fx.dir.join("root");
    fs::create_dir_all(&root).unwrap();
    let text = run_seed_script(&script, &seed, &out.join("signing.pub"), &root, "etcd1");
    let want = format!(
        "KILN seed fail file install.sh ({sha}) is not in /var/lib/cloud/seed/nocloud/kiln and no source has it: {source}: has sha256 "
    );
    assert!(text.contains(&want), "{text}");
    assert!(
        text.contains("run 1: exit 1") && !text.contains("pwned"),
        "{text}"
    );
    assert!(!text.contains("KILN verify"), "{text}");

    // The real one: fetched once, kept by its digest, run; the second run finds it kept.
    server.always("/out/install.sh", Reply::Serve(install_sh));
    let before = server.requests("/out/install.sh").len();
    let text = run_seed_script(&script, &seed, &out.join("signing.pub"), &root, "etcd1");
    assert!(
        text.contains(&format!("install.sh: install.sh fetched from {source}")),
        "{text}"
    );
    assert_eq!(
        server.requests("/out/install.sh").len(),
        before + 1,
        "{text}"
    );
    let verify: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("KILN verify ok host=etcd1 "))
        .collect();
    assert_eq!(verify.len(), 2, "{text}");
    assert!(
        text.contains("install.sh: HOST and BUNDLES signed by /etc/kiln/signing.pub"),
        "{text}"
    );
    assert!(verify[0].contains(&format!("@{source}")), "{text}");
    assert!(text.lines().any(|l| l == format!("{sha}.sh")), "{text}");
}
