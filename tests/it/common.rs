//! Fixtures: temporary projects built from the repository's profiles with local artifacts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use sha2::{Digest, Sha256};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kiln binary.
pub fn kiln() -> Command {
    let mut c = Command::cargo_bin("kiln").expect("kiln binary");
    c.env_remove("SOURCE_DATE_EPOCH").env_remove("KILN_LOG");
    c
}

/// The kiln binary with only 127.0.0.1 reachable: an HTTP(S) proxy on a closed local port for
/// anything else, so a request that escaped a test's local servers fails.
pub fn kiln_local() -> Command {
    let mut c = kiln();
    c.env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1");
    c
}

/// Runs kiln in `dir` with `args`: its exit code and stderr.
pub fn kiln_in(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = kiln().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    for e in walk(from) {
        let rel = e.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(&e, &dest).unwrap();
    }
}

/// Every regular file under `dir`, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Path → sha256 of every file under `dir` (and every directory), to prove nothing changed.
pub fn tree_state(dir: &Path) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                m.insert(rel + "/", String::new());
                stack.push(p);
            } else {
                m.insert(rel, hex::encode(Sha256::digest(fs::read(&p).unwrap())));
            }
        }
    }
    m
}

/// Artifacts of the lab's roles (common, etcd, runtime), served from local files.
pub const LAB_ARTIFACTS: &[(&str, &str)] = &[
    ("etcd", "etcd"),
    ("etcdctl", "etcd"),
    ("containerd", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("ctr", "containerd"),
    ("runc", "runc"),
    ("cni-bridge", "cni"),
    ("cni-host-local", "cni"),
    ("cni-loopback", "cni"),
    ("cni-portmap", "cni"),
    ("cni-bandwidth", "cni"),
    ("cni-firewall", "cni"),
    ("cni-tuning", "cni"),
    ("cni-ptp", "cni"),
    ("cni-macvlan", "cni"),
    ("cni-ipvlan", "cni"),
    ("cni-vlan", "cni"),
    ("cni-host-device", "cni"),
    ("cni-dhcp", "cni"),
    ("cni-static", "cni"),
    ("cni-sbr", "cni"),
    ("cni-vrf", "cni"),
    ("catatonit", "catatonit"),
];

/// Deterministic pseudo-random bytes (xorshift), so fixtures compress like binaries do not.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half the bytes repeat, like real executables, so compression has work to do.
        let b = x.to_le_bytes();
        v.extend_from_slice(&b[..4]);
        v.extend_from_slice(&[b[0]; 4]);
    }
    v.truncate(len);
    v
}

/// The lab cluster.toml with the repository paths made local to a fixture. Its OS packages
/// are left to the hosts (`[packages] bundle = false`): bundling them would need apt downloads.
pub fn lab_cluster_text() -> String {
    let t = fs::read_to_string(repo().join("examples/lab/cluster.toml")).unwrap();
    let t = t
        .replace("sources = [\"apt\"]", "sources = [\"file\"]")
        .replace("profiles = \"../../profiles\"\n", "")
        .replace("overlays = \"../../overlays\"\n", "")
        .replace("catalog = \"../../catalog\"\n", "");
    format!("{t}\n[packages]\nbundle = false\n")
}

/// `cluster` without its `lb` hosts, for tests of OS packages whose repository or catalog
/// holds only the common role's packages.
pub fn without_lb_hosts(cluster: String) -> String {
    let mut parts = cluster.split("\n[[host]]\n");
    let head = parts.next().unwrap_or_default().to_owned();
    parts.fold(head, |text, host| {
        if !host.contains("roles = [\"lb\"]") {
            return format!("{text}\n[[host]]\n{host}");
        }
        // Keep the tables that follow the dropped host's own.
        match host.find("\n[") {
            Some(next) => format!("{text}{}", &host[next..]),
            None => text,
        }
    })
}

/// A temporary project shaped like the lab, whose artifacts are local files.
pub struct Fixture {
    /// Keeps the folder alive.
    pub _tmp: tempfile::TempDir,
    /// Project root (holds cluster.toml).
    pub dir: PathBuf,
}

impl Fixture {
    /// A fixture; `reverse` creates the artifact files in the opposite order.
    pub fn new(reverse: bool) -> Fixture {
        Self::sized(reverse, 40_000)
    }

    /// A fixture with tiny artifacts, for tests that never build.
    pub fn small() -> Fixture {
        Self::sized(false, 64)
    }

    fn sized(reverse: bool, step: usize) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("project");
        fs::create_dir_all(&dir).unwrap();
        copy_tree(&repo().join("profiles"), &dir.join("profiles"));
        copy_tree(&repo().join("overlays"), &dir.join("overlays"));
        fs::write(dir.join("cluster.toml"), lab_cluster_text()).unwrap();
        let cat = dir.join("catalog");
        fs::create_dir_all(cat.join("files")).unwrap();
        let mut catalog = String::from("# fixture catalog: local files\n");
        for (name, key) in LAB_ARTIFACTS {
            catalog.push_str(&format!("\n[artifact.{name}]\nversion = \"{key}\"\n[[artifact.{name}.source]]\nkind = \"file\"\npath = \"files/{name}-{{version}}-{{arch}}\"\n"));
        }
        let mut order: Vec<(usize, &(&str, &str))> = LAB_ARTIFACTS.iter().enumerate().collect();
        if reverse {
            order.reverse();
        }
        for (i, (name, key)) in order {
            let version = match *key {
                "etcd" => "3.4.23",
                "containerd" => "1.6.20",
                "runc" => "1.1.5",
                "catatonit" => "0.1.7",
                _ => "1.1.1",
            };
            let size = step * (4 + i);
            fs::write(
                cat.join(format!("files/{name}-{version}-amd64")),
                noise(i as u64 + 1, size),
            )
            .unwrap();
        }
        fs::write(cat.join("catalog.toml"), catalog).unwrap();
        fs::copy(repo().join("catalog/images.toml"), cat.join("images.toml")).unwrap();
        Fixture { _tmp: tmp, dir }
    }

    /// cluster.toml path.
    pub fn cluster(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// Rewrites cluster.toml with `f`.
    pub fn edit(&self, f: impl FnOnce(String) -> String) {
        let t = fs::read_to_string(self.cluster()).unwrap();
        fs::write(self.cluster(), f(t)).unwrap();
    }

    /// Runs `kiln lock` and asserts success.
    pub fn lock(&self) {
        kiln()
            .current_dir(&self.dir)
            .args(["lock", "cluster.toml"])
            .assert()
            .success();
    }
}
