//! A real three-member etcd cluster runs mutual TLS on kiln's certificates alone.
//!
//! Needs Debian's `etcd-server` and `etcd-client` packages (etcd and etcdctl 3.4).

mod common;

use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_pki::{ensure, PkiInput, PkiOptions, SystemClock};

use common::*;

/// Kills every etcd it started when dropped, also when the test panics.
struct Cluster {
    children: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port the OS considers free on `ip` (bound, read, released).
fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd member as the test sees it.
struct Member {
    name: String,
    ip: IpAddr,
    client: u16,
    peer: u16,
}

impl Member {
    fn client_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.client)
    }
    fn peer_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.peer)
    }
}

fn cluster_input() -> PkiInput {
    input_with(vec![
        host("e1", "127.0.0.1", &["etcd", "master"]),
        host("e2", "127.0.0.2", &["etcd"]),
        host("e3", "127.0.0.3", &["etcd"]),
    ])
}

/// Runs etcdctl against `endpoint` with the given TLS files; combined stdout and stderr.
fn etcdctl(endpoint: &str, tls: &[(&str, &Path)], args: &[&str]) -> (Output, String) {
    let mut cmd = Command::new("etcdctl");
    cmd.env_clear()
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["--dial-timeout=2s", "--command-timeout=4s"]);
    for (flag, path) in tls {
        cmd.arg(format!("--{flag}={}", path.display()));
    }
    let out = cmd
        .args(args)
        .output()
        .expect("etcdctl not found: apt-get install etcd-client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn logs(dir: &Path, members: &[Member]) -> String {
    members
        .iter()
        .map(|m| std::fs::read_to_string(dir.join(format!("{}.log", m.name))).unwrap_or_default())
        .collect()
}

#[test]
fn three_member_etcd_runs_mutual_tls_on_kiln_certificates() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let input = cluster_input();
    let out = ensure(
        &dir.path().join("pki"),
        &input,
        &SystemClock,
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    // Another cluster's PKI: its client certificate must be refused.
    let other = input_with(vec![host("x1", "127.0.0.1", &["etcd"])]);
    let other_out = ensure(
        &dir.path().join("other-pki"),
        &other,
        &SystemClock,
        &PkiOptions::default(),
    )
    .unwrap();
    let other_root = materialise(&other_out, &dir.path().join("other-hosts"));

    let members: Vec<Member> = input
        .hosts
        .iter()
        .map(|h| Member {
            name: h.name.clone(),
            ip: h.ip,
            client: free_port(h.ip),
            peer: free_port(h.ip),
        })
        .collect();
    let initial: Vec<String> = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    let pki = |host: &str, f: &str| -> PathBuf {
        host_path(&root, host, &format!("/etc/kubernetes/pki/{f}"))
    };

    let mut cluster = Cluster {
        children: Vec::new(),
    };
    for m in &members {
        let log = std::fs::File::create(dir.path().join(format!("{}.log", m.name))).unwrap();
        let child = Command::new("etcd")
            .env_clear()
            .arg(format!("--name={}", m.name))
            .arg(format!(
                "--data-dir={}",
                dir.path().join(format!("{}.etcd", m.name)).display()
            ))
            .arg(format!("--listen-client-urls={}", m.client_url()))
            .arg(format!("--advertise-client-urls={}", m.client_url()))
            .arg(format!("--listen-peer-urls={}", m.peer_url()))
            .arg(format!("--initial-advertise-peer-urls={}", m.peer_url()))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .args([
                "--initial-cluster-token=kiln-test",
                "--initial-cluster-state=new",
            ])
            .args(["--logger=zap", "--log-outputs=stderr"])
            .arg("--client-cert-auth")
            .arg(format!(
                "--trusted-ca-file={}",
                pki(&m.name, "etcd/ca.crt").display()
            ))
            .arg(format!(
                "--cert-file={}",
                pki(&m.name, "etcd/server.crt").display()
            ))
            .arg(format!(
                "--key-file={}",
                pki(&m.name, "etcd/server.key").display()
            ))
            .arg("--peer-client-cert-auth")
            .arg(format!(
                "--peer-trusted-ca-file={}",
                pki(&m.name, "etcd/ca.crt").display()
            ))
            .arg(format!(
                "--peer-cert-file={}",
                pki(&m.name, "etcd/peer.crt").display()
            ))
            .arg(format!(
                "--peer-key-file={}",
                pki(&m.name, "etcd/peer.key").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd not found: apt-get install etcd-server");
        cluster.children.push(child);
    }

    let endpoint = members[0].client_url();
    let ca = pki("e1", "etcd/ca.crt");
    let (hc_cert, hc_key) = (
        pki("e2", "etcd/healthcheck-client.crt"),
        pki("e2", "etcd/healthcheck-client.key"),
    );
    let health: [(&str, &Path); 3] = [("cacert", &ca), ("cert", &hc_cert), ("key", &hc_key)];

    // etcdctl 3.4 prints one "is healthy" line per member (on stderr).
    let deadline = Instant::now() + Duration::from_secs(40);
    let healthy = loop {
        let (o, text) = etcdctl(&endpoint, &health, &["endpoint", "health", "--cluster"]);
        if o.status.success() && text.matches("is healthy").count() == 3 {
            break text;
        }
        if Instant::now() > deadline {
            panic!(
                "cluster not healthy: {text}\nlogs:\n{}",
                logs(dir.path(), &members)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    for m in &members {
        assert!(
            healthy.contains(&format!("{} is healthy", m.client_url())),
            "{healthy}"
        );
    }

    // The apiserver's etcd client certificate can write and read, on another member.
    let (api_cert, api_key) = (
        pki("e1", "apiserver-etcd-client.crt"),
        pki("e1", "apiserver-etcd-client.key"),
    );
    let apiserver: [(&str, &Path); 3] = [("cacert", &ca), ("cert", &api_cert), ("key", &api_key)];
    let (o, text) = etcdctl(
        &members[2].client_url(),
        &apiserver,
        &["put", "/kiln/pki", "ok"],
    );
    assert!(o.status.success(), "{text}");
    let (o, text) = etcdctl(
        &members[1].client_url(),
        &apiserver,
        &["get", "--print-value-only", "/kiln/pki"],
    );
    assert!(o.status.success() && text.trim() == "ok", "{text}");

    // Without a client certificate: refused.
    let (o, text) = etcdctl(&endpoint, &[("cacert", &ca)], &["endpoint", "health"]);
    assert!(
        !o.status.success(),
        "accepted without a client certificate: {text}"
    );
    // With a client certificate of another cluster's CA: refused.
    let other_pki =
        |f: &str| host_path(&other_root, "x1", &format!("/etc/kubernetes/pki/etcd/{f}"));
    let (x_cert, x_key) = (
        other_pki("healthcheck-client.crt"),
        other_pki("healthcheck-client.key"),
    );
    let foreign: [(&str, &Path); 3] = [("cacert", &ca), ("cert", &x_cert), ("key", &x_key)];
    let (o, text) = etcdctl(&endpoint, &foreign, &["endpoint", "health"]);
    assert!(
        !o.status.success(),
        "accepted another cluster's certificate: {text}"
    );
    // And etcd says why: the TLS handshake was rejected, for each reason.
    let log = logs(dir.path(), &members);
    assert!(log.contains("client didn't provide a certificate"), "{log}");
    assert!(
        log.contains("certificate signed by unknown authority"),
        "{log}"
    );
    // The same client succeeds with its own cluster's certificate (the control).
    let (o, text) = etcdctl(&endpoint, &health, &["endpoint", "health"]);
    assert!(o.status.success(), "{text}");

    drop(cluster);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
