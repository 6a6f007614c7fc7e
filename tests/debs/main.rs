//! The Debian closure of a real role installs on a fresh Debian 12 host with no network.
//!
//! A Debian 12 cluster with one `lb` host (nginx with its stream module, keepalived) is
//! locked against this machine's apt index, fetched and built; the `.deb`s of its bundles
//! (common, then lb, each in its `PACKAGES` order) are then installed with one `dpkg -i`
//! inside a copy of a fresh minbase root plus what kiln assumes a booted host has, in a
//! network namespace of its own. Every package must end configured, with nothing missing.
//!
//! Slow and root-only, so a test target of its own. Its one-time set-up uses this machine's
//! apt client and configured mirror (never a host named here): `mmdebstrap` builds the root
//! and `kiln fetch` downloads the .debs, both cached in kiln-testkit's `DebsCache` fixture folder
//! (/var/tmp/kiln-debs/ unless `KILN_DEBS_CACHE` names another; the root by a hash of how it is
//! built, the .debs by content), so later runs are offline.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// The cache folder (see the module documentation).
fn cache() -> PathBuf {
    kiln_testkit::Fixture::DebsCache.dir()
}
const SUITE: &str = "bookworm";
/// What kiln assumes a Debian-family host has beyond minbase (kiln_spec::ASSUMED_DEBIAN_HOST).
const ASSUMED: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "iproute2",
    "procps",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// Why this machine cannot run the test, if it cannot.
fn unsupported() -> Option<String> {
    if stdout(Command::new("id").arg("-u")).trim() != "0" {
        return Some("needs root (mmdebstrap, chroot, unshare)".into());
    }
    if stdout(Command::new("dpkg").arg("--print-architecture")).trim() != "amd64" {
        return Some("needs an amd64 machine".into());
    }
    for tool in ["mmdebstrap", "unshare", "chroot"] {
        if Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .output()
            .map_or(true, |o| !o.status.success())
        {
            return Some(format!("needs {tool}"));
        }
    }
    if !stdout(Command::new("apt-cache").arg("policy")).contains(&format!("n={SUITE},")) {
        return Some(format!(
            "this machine's apt index has no Debian {SUITE} (run apt-get update)"
        ));
    }
    None
}

/// The machine's apt sources for the suite, as one-line entries for mmdebstrap.
fn mirror_entries() -> Vec<String> {
    let out = stdout(Command::new("apt-get").args([
        "indextargets",
        "--format",
        "$(REPO_URI) $(RELEASE) $(COMPONENT)",
        "Identifier: Packages",
    ]));
    let mut entries: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let pocket_ok = f.get(1).is_some_and(|r| {
                [
                    SUITE.to_string(),
                    format!("{SUITE}-updates"),
                    format!("{SUITE}-security"),
                ]
                .contains(&r.to_string())
            });
            (f.len() == 3 && pocket_ok).then(|| format!("deb {} {} {}", f[0], f[1], f[2]))
        })
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

/// A fresh minbase root with the assumed packages, built once and cached by how it is built.
fn cached_root() -> PathBuf {
    let include = ASSUMED.join(",");
    let opts = [
        "--variant=minbase".to_string(),
        format!("--include={include}"),
        "--dpkgopt=path-exclude=/usr/share/doc/*".into(),
        "--dpkgopt=path-exclude=/usr/share/man/*".into(),
    ];
    let key = hex::encode(Sha256::digest(format!("{SUITE} {}", opts.join(" "))));
    let dir = cache().join(&key[..16]);
    let root = dir.join("root");
    if root.join("var/lib/dpkg/status").is_file() {
        return root;
    }
    fs::create_dir_all(&dir).unwrap();
    let part = dir.join(format!("root.part-{}", std::process::id()));
    let _ = fs::remove_dir_all(&part);
    let t = Instant::now();
    run(Command::new("mmdebstrap")
        .arg("--mode=root")
        .args(&opts)
        .arg(SUITE)
        .arg(&part)
        .args(mirror_entries()));
    eprintln!(
        "debs: built the minbase root in {:.0?} (cached in {})",
        t.elapsed(),
        dir.display()
    );
    // Another run may have finished first: keep whichever landed.
    if fs::rename(&part, &root).is_err() {
        fs::remove_dir_all(&part).unwrap();
    }
    root
}

fn kiln(dir: &Path, args: &[&str]) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("kiln");
    run(Command::new(bin)
        .current_dir(dir)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_LOG"))
}

/// (PACKAGES lines, path → bytes of every packages/ file) of one bundle.
fn bundle_packages(bundle: &Path) -> (Vec<String>, Vec<(String, Vec<u8>)>) {
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        fs::File::open(bundle).unwrap(),
    ));
    let (mut list, mut files) = (Vec::new(), Vec::new());
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        if path == "PACKAGES" {
            list = String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
        } else if path.starts_with("packages/") {
            files.push((path, bytes));
        }
    }
    (list, files)
}

#[test]
fn the_lb_closure_installs_with_dpkg_into_a_fresh_debian_12_root_offline() {
    let test = "the_lb_closure_installs_with_dpkg_into_a_fresh_debian_12_root_offline";
    if let Some(why) = unsupported() {
        kiln_testkit::ready(test, false, &why);
        return;
    }
    let t0 = Instant::now();
    let root = cached_root();
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path();
    let r = repo();
    fs::write(
        project.join("cluster.toml"),
        format!(
            r#"name = "debs"
arch = "amd64"
os = "debian12"
sources = ["apt"]

[paths]
profiles = "{0}/profiles"
overlays = "{0}/overlays"
catalog = "{0}/catalog"
vendor = "{1}/vendor"

[network]
host-cidrs = ["10.77.0.0/24"]
pod-cidr = "10.244.0.0/16"
service-cidr = "10.96.0.0/12"
cluster-dns = "10.96.0.10"

[lb]
vip = "10.77.0.100"
backends = ["10.77.0.11:2379"]

[vars]
lb_interface = "eth0"
lb_router_id = 51

[[host]]
name = "lb1"
ip = "10.77.0.31"
roles = ["lb"]
vars = {{ lb_priority = 100 }}
"#,
            r.display(),
            cache().display()
        ),
    )
    .unwrap();
    let t = Instant::now();
    kiln(project, &["lock", "--offline", "cluster.toml"]);
    let lock = fs::read_to_string(project.join("kiln.lock")).unwrap();
    assert!(
        lock.contains("requested = [\"nginx\", \"libnginx-mod-stream\", \"keepalived\"]"),
        "{lock}"
    );
    eprintln!(
        "debs: locked against apt's local index in {:.0?}",
        t.elapsed()
    );
    kiln(project, &["fetch", "cluster.toml"]);
    kiln(
        project,
        &[
            "build",
            "cluster.toml",
            "--offline",
            "--seed",
            "none",
            "--out",
            "out",
        ],
    );

    // The host's copy of the root, its packages in install order: common's, then lb's.
    let host = project.join("host");
    run(Command::new("cp").arg("-a").arg(&root).arg(&host));
    fs::write(
        host.join("usr/sbin/policy-rc.d"),
        "#!/bin/sh\n# Services are not started in a chroot.\nexit 101\n",
    )
    .unwrap();
    run(Command::new("chmod")
        .arg("755")
        .arg(host.join("usr/sbin/policy-rc.d")));
    fs::create_dir_all(host.join("tmp/kiln-debs")).unwrap();
    let bundles: Vec<PathBuf> = fs::read_dir(project.join("out/debs/bundles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut order = Vec::new();
    for role in ["common-debian12-", "lb-debian12-"] {
        let b = bundles
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(role))
            .unwrap();
        let (list, files) = bundle_packages(b);
        assert!(!list.is_empty(), "{role}: no packages");
        for p in &list {
            let (_, bytes) = files
                .iter()
                .find(|(f, _)| f == p)
                .unwrap_or_else(|| panic!("{p} is listed but not in the bundle"));
            let name = p.trim_start_matches("packages/");
            fs::write(host.join("tmp/kiln-debs").join(name), bytes).unwrap();
            order.push(format!("/tmp/kiln-debs/{name}"));
        }
    }
    let t = Instant::now();
    let script = format!(
        "mount -t proc proc '{0}/proc' && DEBIAN_FRONTEND=noninteractive chroot '{0}' dpkg -i {1}",
        host.display(),
        order.join(" ")
    );
    let out = Command::new("unshare")
        .args(["--net", "--mount", "--fork", "sh", "-c", &script])
        .output()
        .unwrap();
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "dpkg -i of the closure failed, with no network:\n{log}"
    );
    eprintln!(
        "debs: dpkg -i of {} packages in {:.0?}",
        order.len(),
        t.elapsed()
    );

    let status = stdout(Command::new("chroot").arg(&host).args([
        "dpkg-query",
        "-W",
        "-f",
        "${db:Status-Abbrev}|${Package}|${Version}\n",
    ]));
    let not_ok: Vec<&str> = status.lines().filter(|l| !l.starts_with("ii ")).collect();
    assert!(
        not_ok.is_empty(),
        "not installed and configured: {not_ok:?}\n{log}"
    );
    for n in ["nginx", "libnginx-mod-stream", "keepalived", "chrony"] {
        assert!(
            status.lines().any(|l| l.starts_with(&format!("ii |{n}|"))),
            "{n} is not installed:\n{status}"
        );
    }
    assert_eq!(
        stdout(Command::new("chroot").arg(&host).args(["dpkg", "--audit"])),
        "",
        "dpkg --audit"
    );
    run(Command::new("chroot")
        .arg(&host)
        .args(["apt-get", "check", "-q"]));
    // The binaries find every library they need.
    run(Command::new("chroot").arg(&host).args(["nginx", "-v"]));
    run(Command::new("chroot")
        .arg(&host)
        .args(["keepalived", "--version"]));
    eprintln!("debs: done in {:.0?}", t0.elapsed());
}
