//! Helpers shared by the PKI integration tests: sample clusters, fixed clocks, openssl.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kiln_pki::{
    FixedClock, KeyType, KubeletAuth, Lifetimes, PkiHost, PkiInput, PkiOutput, SecretFile,
};

/// 2025-01-01T00:00:00Z.
pub const T0: u64 = 1_735_689_600;
/// One day in seconds.
pub const DAY: u64 = 86_400;

/// A clock stopped `days` after [`T0`].
pub fn clock(days: u64) -> FixedClock {
    FixedClock(UNIX_EPOCH + Duration::from_secs(T0 + days * DAY))
}

/// The system time `days` after [`T0`].
pub fn at(days: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + days * DAY)
}

/// `days` after [`T0`] as Unix seconds, for `openssl verify -attime`.
pub fn attime(days: u64) -> String {
    (T0 + days * DAY).to_string()
}

/// A host with roles.
pub fn host(name: &str, ip: &str, roles: &[&str]) -> PkiHost {
    PkiHost {
        name: name.into(),
        ip: ip.parse().unwrap(),
        roles: roles.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>(),
    }
}

/// An input around `hosts` with kiln's defaults and a VIP.
pub fn input_with(hosts: Vec<PkiHost>) -> PkiInput {
    PkiInput {
        cluster_name: "prod".into(),
        cluster_domain: "cluster.local".into(),
        service_ip: "10.96.0.1".parse().unwrap(),
        hosts,
        vip: Some("10.0.0.100".parse().unwrap()),
        api_port: 6443,
        external_api: None,
        extra_apiserver_sans: vec!["k8s.example.com".into(), "192.0.2.7".into()],
        key_type: KeyType::Rsa2048,
        kubelet_auth: KubeletAuth::Certificates,
        lifetimes: Lifetimes::default(),
        kubeadm: None,
    }
}

/// Two masters (one also etcd and node), a third etcd, two nodes and a load balancer.
pub fn sample() -> PkiInput {
    input_with(vec![
        host("m1", "10.0.0.11", &["master", "etcd", "node"]),
        host("m2", "10.0.0.12", &["master", "etcd"]),
        host("e3", "10.0.0.13", &["etcd"]),
        host("n1", "10.0.0.21", &["node"]),
        host("n2", "10.0.0.22", &["node"]),
        host("lb1", "10.0.0.5", &["lb"]),
    ])
}

/// [`sample`] with ECDSA keys: RSA key generation dominates test time, and these tests
/// exercise state handling, not the key algorithm (RSA runs in the openssl and rebuild tests).
pub fn sample_ec() -> PkiInput {
    PkiInput {
        key_type: KeyType::EcdsaP256,
        ..sample()
    }
}

/// The file at `path` in `host`'s list.
pub fn file<'a>(out: &'a PkiOutput, host: &str, path: &str) -> &'a SecretFile {
    out.hosts[host]
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{host} has no {path}"))
}

/// The paths `host` receives.
pub fn paths(out: &PkiOutput, host: &str) -> BTreeSet<String> {
    out.hosts[host].iter().map(|f| f.path.clone()).collect()
}

/// Writes every host's files under `root/<host>/<absolute path>`; returns `root`.
pub fn materialise(out: &PkiOutput, root: &Path) -> PathBuf {
    for (host, files) in &out.hosts {
        for f in files {
            let p = host_path(root, host, &f.path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, &f.bytes).unwrap();
        }
    }
    root.to_path_buf()
}

/// Where [`materialise`] put `path` of `host`.
pub fn host_path(root: &Path, host: &str, path: &str) -> PathBuf {
    root.join(host).join(path.trim_start_matches('/'))
}

/// Runs a command; its output whatever the exit status.
pub fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e} (is it installed?)"))
}

/// Runs a command that must succeed; its stdout.
pub fn ok(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Splits a PEM bundle's certificates into separate PEM strings.
pub fn pem_certs(pem: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            cur.clear();
        }
        cur.push_str(line);
        cur.push('\n');
        if line.starts_with("-----END CERTIFICATE") {
            out.push(cur.clone());
        }
    }
    out
}

/// The IPs of the sample's hosts, as SAN text.
pub fn ip_text(ip: IpAddr) -> String {
    format!("IP Address:{ip}")
}
