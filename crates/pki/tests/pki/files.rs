//! Each host gets exactly the files its roles need, nobody else's, and kubectl reads every kubeconfig.

use std::collections::{BTreeMap, BTreeSet};

use kiln_pki::{ensure, KubeletAuth, PkiOptions};

use crate::common::*;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

const ETCD_FILES: &[&str] = &[
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/etcd/server.crt",
    "/etc/kubernetes/pki/etcd/server.key",
    "/etc/kubernetes/pki/etcd/peer.crt",
    "/etc/kubernetes/pki/etcd/peer.key",
    "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "/etc/kubernetes/pki/etcd/healthcheck-client.key",
];

const MASTER_FILES: &[&str] = &[
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/pki/apiserver.crt",
    "/etc/kubernetes/pki/apiserver.key",
    "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
    "/etc/kubernetes/pki/apiserver-kubelet-client.key",
    "/etc/kubernetes/pki/front-proxy-ca.crt",
    "/etc/kubernetes/pki/front-proxy-client.crt",
    "/etc/kubernetes/pki/front-proxy-client.key",
    "/etc/kubernetes/pki/sa.key",
    "/etc/kubernetes/pki/sa.pub",
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/apiserver-etcd-client.crt",
    "/etc/kubernetes/pki/apiserver-etcd-client.key",
    "/etc/kubernetes/admin.conf",
    "/etc/kubernetes/controller-manager.conf",
    "/etc/kubernetes/scheduler.conf",
];

const NODE_FILES: &[&str] = &[
    "/etc/kubernetes/pki/ca.crt",
    "/etc/kubernetes/kubelet.conf",
    "/var/lib/kubelet/pki/kubelet.crt",
    "/var/lib/kubelet/pki/kubelet.key",
    "/etc/kubernetes/kube-proxy.conf",
];

#[test]
fn each_role_gets_exactly_its_files_with_the_right_modes() {
    let dir = tempfile::tempdir().unwrap();
    let out = ensure(
        &dir.path().join("pki"),
        &sample(),
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let union = |parts: &[&[&str]]| parts.iter().flat_map(|p| set(p)).collect::<BTreeSet<_>>();
    assert_eq!(
        paths(&out, "m1"),
        union(&[MASTER_FILES, ETCD_FILES, NODE_FILES])
    );
    assert_eq!(paths(&out, "m2"), union(&[MASTER_FILES, ETCD_FILES]));
    assert_eq!(paths(&out, "e3"), set(ETCD_FILES));
    assert_eq!(paths(&out, "n1"), set(NODE_FILES));
    assert_eq!(paths(&out, "n2"), set(NODE_FILES));
    assert!(
        out.hosts["lb1"].is_empty(),
        "lb-only hosts need no PKI material"
    );
    for (host, files) in &out.hosts {
        for f in files {
            let want = if f.path.ends_with(".crt") || f.path.ends_with(".pub") {
                0o644
            } else {
                0o600
            };
            assert_eq!(f.mode, want, "{host} {}", f.path);
        }
        let sorted: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
        let mut again = sorted.clone();
        again.sort();
        assert_eq!(sorted, again, "{host}: files not sorted");
    }
}

#[test]
fn bootstrap_token_mode_replaces_kubelet_certificates_with_a_stored_token() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let mut input = sample_ec();
    input.kubelet_auth = KubeletAuth::BootstrapToken;
    let out = ensure(&state, &input, &clock(0), &PkiOptions::default()).unwrap();
    let node = set(&[
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/bootstrap-kubelet.conf",
        "/var/lib/kubelet/pki/kubelet.crt",
        "/var/lib/kubelet/pki/kubelet.key",
        "/etc/kubernetes/kube-proxy.conf",
    ]);
    assert_eq!(paths(&out, "n1"), node);
    let mut master = set(MASTER_FILES);
    master.extend(set(ETCD_FILES));
    master.insert("/etc/kubernetes/pki/ca.key".into());
    master.insert("/etc/kubernetes/token.csv".into());
    assert_eq!(paths(&out, "m2"), master);

    let token = std::fs::read_to_string(state.join("bootstrap-token")).unwrap();
    let token = token.trim();
    let (id, secret) = token.split_once('.').unwrap();
    assert!(id.len() == 6 && secret.len() == 16);
    assert!(token
        .bytes()
        .all(|b| b == b'.' || b.is_ascii_lowercase() || b.is_ascii_digit()));
    let csv = &file(&out, "m1", "/etc/kubernetes/token.csv").bytes;
    assert_eq!(
        String::from_utf8_lossy(csv),
        format!("{token},kubelet-bootstrap,10001,\"system:bootstrappers\"\n")
    );
    assert_eq!(file(&out, "m1", "/etc/kubernetes/token.csv").mode, 0o600);
    // The master's ca.key is the state's, for kube-controller-manager's CSR signer.
    assert_eq!(
        file(&out, "m1", "/etc/kubernetes/pki/ca.key").bytes,
        std::fs::read(state.join("ca.key")).unwrap()
    );

    let root = materialise(&out, &dir.path().join("hosts"));
    let conf = host_path(&root, "n1", "/etc/kubernetes/bootstrap-kubelet.conf");
    let conf = conf.to_str().unwrap();
    let user_token = ok(
        "kubectl",
        &[
            "config",
            "view",
            "--raw",
            "--kubeconfig",
            conf,
            "-o",
            "jsonpath={.users[0].user.token}",
        ],
    );
    assert_eq!(user_token, token);
    let user = ok(
        "kubectl",
        &[
            "config",
            "view",
            "--kubeconfig",
            conf,
            "-o",
            "jsonpath={.users[0].name}",
        ],
    );
    assert_eq!(user, "kubelet-bootstrap");

    // The token is reused by a later run.
    let again = ensure(&state, &input, &clock(3), &PkiOptions::default()).unwrap();
    assert_eq!(again.hosts, out.hosts);
}

#[test]
fn ca_keys_never_reach_etcd_node_or_lb_hosts() {
    for auth in [KubeletAuth::Certificates, KubeletAuth::BootstrapToken] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("pki");
        let mut input = sample_ec();
        input.kubelet_auth = auth;
        let out = ensure(&state, &input, &clock(0), &PkiOptions::default()).unwrap();
        let ca_keys: Vec<(String, Vec<u8>)> = ["ca.key", "etcd/ca.key", "front-proxy-ca.key"]
            .iter()
            .map(|k| (k.to_string(), std::fs::read(state.join(k)).unwrap()))
            .collect();
        for (host, files) in &out.hosts {
            let master = input
                .hosts
                .iter()
                .any(|h| &h.name == host && h.has("master"));
            for f in files {
                for (name, key) in &ca_keys {
                    let may = master && auth == KubeletAuth::BootstrapToken && name == "ca.key";
                    if f.bytes.windows(key.len()).any(|w| w == &key[..]) {
                        assert!(may, "{host} {} holds the {name} private key", f.path);
                        assert_eq!(f.path, "/etc/kubernetes/pki/ca.key");
                    }
                }
            }
        }
    }
}

/// The DER-free fingerprint of each certificate a host receives: its PEM text, kubeconfigs decoded.
fn certs_by_host(out: &kiln_pki::PkiOutput) -> BTreeMap<String, Vec<(String, String)>> {
    use base64::Engine as _;
    let mut m = BTreeMap::new();
    for (host, files) in &out.hosts {
        let mut v = Vec::new();
        for f in files {
            if f.path.ends_with(".crt") {
                v.push((f.path.clone(), String::from_utf8(f.bytes.clone()).unwrap()));
            }
            let text = String::from_utf8_lossy(&f.bytes);
            for line in text.lines() {
                if let Some(b64) = line.trim().strip_prefix("client-certificate-data: ") {
                    let pem = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap();
                    v.push((f.path.clone(), String::from_utf8(pem).unwrap()));
                }
            }
        }
        m.insert(host.clone(), v);
    }
    m
}

#[test]
fn no_host_receives_another_hosts_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let input = sample_ec();
    let out = ensure(
        &dir.path().join("pki"),
        &input,
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    let by_host = certs_by_host(&out);
    let ca_paths = [
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/etcd/ca.crt",
        "/etc/kubernetes/pki/front-proxy-ca.crt",
    ];
    // Leaf certificates are per host: the same bytes never appear on two hosts.
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (host, certs) in &by_host {
        for (path, pem) in certs {
            if ca_paths.contains(&path.as_str()) {
                continue;
            }
            if let Some(other) = owner.insert(pem, host) {
                panic!("{path} of {host} is also on {other}");
            }
        }
    }
    // Subjects and SANs name only the host itself (the apiserver's lists every master by design).
    for (host, certs) in &by_host {
        for (path, _) in certs {
            if ca_paths.contains(&path.as_str()) || path.ends_with("apiserver.crt") {
                continue;
            }
            let p = if path.ends_with(".crt") {
                host_path(&root, host, path)
            } else {
                let p = host_path(&root, host, path).with_extension("pem");
                let pem = &by_host[host].iter().find(|(q, _)| q == path).unwrap().1;
                std::fs::write(&p, pem).unwrap();
                p
            };
            let text = ok(
                "openssl",
                &[
                    "x509",
                    "-in",
                    p.to_str().unwrap(),
                    "-noout",
                    "-subject",
                    "-ext",
                    "subjectAltName",
                ],
            );
            for other in input.hosts.iter().filter(|h| &h.name != host) {
                let words: Vec<&str> = text
                    .split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-'))
                    .collect();
                assert!(
                    !words.contains(&other.name.as_str()),
                    "{host} {path} names {}: {text}",
                    other.name
                );
                assert!(
                    !words.contains(&other.ip.to_string().as_str()),
                    "{host} {path} has {}'s IP: {text}",
                    other.name
                );
            }
        }
    }
}

#[test]
fn kubectl_reads_every_kubeconfig_with_the_right_server_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = sample_ec();
    input.api_port = 7443;
    let out = ensure(
        &dir.path().join("pki"),
        &input,
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    let expect = [
        ("m1", "admin.conf", "kubernetes-admin"),
        (
            "m1",
            "controller-manager.conf",
            "system:kube-controller-manager",
        ),
        ("m2", "scheduler.conf", "system:kube-scheduler"),
        ("m1", "kubelet.conf", "system:node:m1"),
        ("n1", "kubelet.conf", "system:node:n1"),
        ("n2", "kube-proxy.conf", "system:kube-proxy"),
    ];
    let (mut seen, mut confs) = (0, 0);
    for (host, files) in &out.hosts {
        for f in files.iter().filter(|f| f.path.ends_with(".conf")) {
            confs += 1;
            let conf = host_path(&root, host, &f.path);
            let conf = conf.to_str().unwrap();
            let q = |jsonpath: &str| {
                ok(
                    "kubectl",
                    &[
                        "config",
                        "view",
                        "--raw",
                        "--kubeconfig",
                        conf,
                        "-o",
                        &format!("jsonpath={jsonpath}"),
                    ],
                )
            };
            assert_eq!(q("{.clusters[0].name}"), "prod");
            assert_eq!(
                q("{.current-context}"),
                format!("{}@prod", q("{.users[0].name}"))
            );
            // The embedded CA is the cluster CA the host also receives as a file.
            use base64::Engine as _;
            let ca = base64::engine::general_purpose::STANDARD
                .decode(q("{.clusters[0].cluster.certificate-authority-data}"))
                .unwrap();
            assert_eq!(ca, file(&out, "m1", "/etc/kubernetes/pki/ca.crt").bytes);
            let key = q("{.users[0].user.client-key-data}");
            assert!(!key.is_empty(), "{host} {}: no client key", f.path);
            let local =
                f.path.ends_with("/controller-manager.conf") || f.path.ends_with("/scheduler.conf");
            let server = if local {
                "https://127.0.0.1:7443"
            } else {
                "https://10.0.0.100:7443"
            };
            assert_eq!(
                q("{.clusters[0].cluster.server}"),
                server,
                "{host} {}",
                f.path
            );
            if let Some((.., user)) = expect
                .iter()
                .find(|(h, c, ..)| h == host && f.path.ends_with(&format!("/{c}")))
            {
                assert_eq!(q("{.users[0].name}"), *user, "{host} {}", f.path);
                seen += 1;
            }
        }
    }
    assert_eq!(seen, expect.len());
    // m1: 3 control-plane + kubelet + kube-proxy; m2: 3; n1, n2: 2 each.
    assert_eq!(confs, 5 + 3 + 2 + 2);
}

#[test]
fn without_vip_nodes_use_external_api_whose_host_is_an_apiserver_san() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = sample_ec();
    input.vip = None;
    input.external_api = Some("https://api.prod.example:8443".into());
    let out = ensure(
        &dir.path().join("pki"),
        &input,
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    let conf = host_path(&root, "n1", "/etc/kubernetes/kube-proxy.conf");
    let server = ok(
        "kubectl",
        &[
            "config",
            "view",
            "--kubeconfig",
            conf.to_str().unwrap(),
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    );
    assert_eq!(server, "https://api.prod.example:8443");
    let cert = host_path(&root, "m1", "/etc/kubernetes/pki/apiserver.crt");
    let sans = ok(
        "openssl",
        &[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(sans.contains("DNS:api.prod.example,"), "{sans}");
    assert!(!sans.contains("10.0.0.100"), "{sans}");

    // With neither, nodes talk to the first master.
    input.external_api = None;
    let out = ensure(
        &dir.path().join("pki"),
        &input,
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let text = String::from_utf8(
        file(&out, "n2", "/etc/kubernetes/kubelet.conf")
            .bytes
            .clone(),
    )
    .unwrap();
    assert!(
        text.contains("server: \"https://10.0.0.11:6443\"\n"),
        "{text}"
    );
}
