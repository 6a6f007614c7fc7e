//! openssl verifies every leaf against its CA and shows the subject, SANs and usages the guide asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use kiln_pki::{ensure, KeyType, PkiOptions};

use crate::common::*;

/// What `openssl x509 -text` says about one certificate.
#[derive(Debug, Default)]
struct X509Text {
    subject: String,
    issuer: String,
    sans: BTreeSet<String>,
    key_usage: String,
    eku: String,
    basic: String,
    public_key: String,
}

fn inspect(pem: &Path) -> X509Text {
    let p = pem.to_str().unwrap();
    let text = ok(
        "openssl",
        &[
            "x509",
            "-in",
            p,
            "-noout",
            "-subject",
            "-issuer",
            "-nameopt",
            "RFC2253",
            "-ext",
            "subjectAltName,keyUsage,extendedKeyUsage,basicConstraints",
        ],
    );
    let mut out = X509Text::default();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("subject=") {
            out.subject = s.to_string();
        } else if let Some(s) = line.strip_prefix("issuer=") {
            out.issuer = s.to_string();
        } else if line.starts_with("X509v3 ") {
            section = line.to_string();
        } else {
            let v = line.trim().to_string();
            if section.starts_with("X509v3 Subject Alternative Name") {
                out.sans = v.split(", ").map(str::to_string).collect();
            } else if section.starts_with("X509v3 Key Usage") {
                assert!(section.contains("critical"), "keyUsage must be critical");
                out.key_usage = v;
            } else if section.starts_with("X509v3 Extended Key Usage") {
                out.eku = v;
            } else if section.starts_with("X509v3 Basic Constraints") {
                assert!(
                    section.contains("critical"),
                    "basicConstraints must be critical"
                );
                out.basic = v;
            }
        }
    }
    let full = ok("openssl", &["x509", "-in", p, "-noout", "-text"]);
    out.public_key = full
        .lines()
        .find(|l| l.trim().starts_with("Public Key Algorithm:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    out
}

/// Every certificate a host receives, as (host path, PEM file on disk), kubeconfig certs included.
fn certificates(root: &Path, out: &kiln_pki::PkiOutput) -> Vec<(String, String, PathBuf)> {
    let mut v = Vec::new();
    for (host, files) in &out.hosts {
        for f in files {
            let on_disk = host_path(root, host, &f.path);
            if f.path.ends_with(".crt") {
                v.push((host.clone(), f.path.clone(), on_disk));
            } else if f.path.ends_with(".conf") {
                let text = String::from_utf8(f.bytes.clone()).unwrap();
                let Some(b64) = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
                else {
                    continue;
                };
                let pem = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                let p = on_disk.with_extension("conf.crt");
                std::fs::write(&p, pem).unwrap();
                v.push((host.clone(), f.path.clone(), p));
            }
        }
    }
    v
}

/// Which CA file (host path) must have signed the certificate at `path`.
fn ca_of(path: &str) -> &'static str {
    if path.contains("/etcd/") || path.ends_with("apiserver-etcd-client.crt") {
        "/etc/kubernetes/pki/etcd/ca.crt"
    } else if path.ends_with("front-proxy-client.crt") {
        "/etc/kubernetes/pki/front-proxy-ca.crt"
    } else {
        "/etc/kubernetes/pki/ca.crt"
    }
}

#[test]
fn openssl_verifies_every_leaf_against_its_ca_for_its_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let out = ensure(
        &dir.path().join("pki"),
        &sample(),
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    // CA certificates come from a master/etcd host that holds all three.
    let cas: BTreeMap<&str, PathBuf> = [
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/etcd/ca.crt",
        "/etc/kubernetes/pki/front-proxy-ca.crt",
    ]
    .into_iter()
    .map(|p| (p, host_path(&root, "m1", p)))
    .collect();
    let certs = certificates(&root, &out);
    let when = attime(1);
    let mut verified = 0;
    for (host, path, pem) in &certs {
        if cas.contains_key(path.as_str()) {
            continue;
        }
        let server = path.ends_with("apiserver.crt")
            || path.ends_with("/etcd/server.crt")
            || path.ends_with("/etcd/peer.crt")
            || path.ends_with("/kubelet.crt");
        let client = !server || path.contains("/etcd/");
        let ca = cas[ca_of(path)].to_str().unwrap();
        let pem_s = pem.to_str().unwrap();
        let mut purposes = vec![];
        if server {
            purposes.push("sslserver");
        }
        if client {
            purposes.push("sslclient");
        }
        for purpose in purposes {
            let v = ok(
                "openssl",
                &[
                    "verify",
                    "-attime",
                    &when,
                    "-x509_strict",
                    "-purpose",
                    purpose,
                    "-CAfile",
                    ca,
                    pem_s,
                ],
            );
            assert!(v.trim().ends_with(": OK"), "{host} {path}: {v}");
        }
        // The wrong purpose is rejected, so the EKU really is restricted.
        let wrong = if server && !client {
            "sslclient"
        } else if !server {
            "sslserver"
        } else {
            ""
        };
        if !wrong.is_empty() {
            let r = run(
                "openssl",
                &[
                    "verify", "-attime", &when, "-purpose", wrong, "-CAfile", ca, pem_s,
                ],
            );
            assert!(!r.status.success(), "{host} {path} verified as {wrong}");
        }
        // And any other CA of the cluster rejects it.
        for (other, other_file) in &cas {
            if *other != ca_of(path) {
                let r = run(
                    "openssl",
                    &[
                        "verify",
                        "-attime",
                        &when,
                        "-CAfile",
                        other_file.to_str().unwrap(),
                        pem_s,
                    ],
                );
                assert!(
                    !r.status.success(),
                    "{host} {path} verified against {other}"
                );
            }
        }
        verified += 1;
    }
    // m1: 3 etcd + 4 master leaves + 3 control-plane confs + kubelet.conf, serving, kube-proxy;
    // m2: 3 + 4 + 3; e3: 3; n1, n2: 3 each.
    assert_eq!(verified, 13 + 10 + 3 + 3 + 3);
}

/// Expected openssl view of one certificate kind.
struct Expect {
    host: &'static str,
    path: &'static str,
    subject: &'static str,
    issuer: &'static str,
    sans: &'static [&'static str],
    eku: &'static str,
}

const SERVER: &str = "TLS Web Server Authentication";
const CLIENT: &str = "TLS Web Client Authentication";
const BOTH: &str = "TLS Web Server Authentication, TLS Web Client Authentication";
const ETCD_M1: &[&str] = &[
    "DNS:m1",
    "DNS:localhost",
    "IP Address:10.0.0.11",
    "IP Address:127.0.0.1",
    "IP Address:0:0:0:0:0:0:0:1",
];

const EXPECT: &[Expect] = &[
    Expect {
        host: "m1",
        path: "/etc/kubernetes/pki/apiserver.crt",
        subject: "CN=kube-apiserver",
        issuer: "CN=kubernetes",
        eku: SERVER,
        sans: &[
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "DNS:m1",
            "DNS:m2",
            "DNS:k8s.example.com",
            "IP Address:10.96.0.1",
            "IP Address:10.0.0.11",
            "IP Address:10.0.0.12",
            "IP Address:10.0.0.100",
            "IP Address:127.0.0.1",
            "IP Address:192.0.2.7",
        ],
    },
    Expect {
        host: "m1",
        path: "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
        subject: "CN=kube-apiserver-kubelet-client,O=system:masters",
        issuer: "CN=kubernetes",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "m2",
        path: "/etc/kubernetes/pki/front-proxy-client.crt",
        subject: "CN=front-proxy-client",
        issuer: "CN=front-proxy-ca",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "m2",
        path: "/etc/kubernetes/pki/apiserver-etcd-client.crt",
        subject: "CN=kube-apiserver-etcd-client,O=system:masters",
        issuer: "CN=etcd-ca",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "m1",
        path: "/etc/kubernetes/pki/etcd/server.crt",
        subject: "CN=m1",
        issuer: "CN=etcd-ca",
        eku: BOTH,
        sans: ETCD_M1,
    },
    Expect {
        host: "m1",
        path: "/etc/kubernetes/pki/etcd/peer.crt",
        subject: "CN=m1",
        issuer: "CN=etcd-ca",
        eku: BOTH,
        sans: ETCD_M1,
    },
    Expect {
        host: "e3",
        path: "/etc/kubernetes/pki/etcd/server.crt",
        subject: "CN=e3",
        issuer: "CN=etcd-ca",
        eku: BOTH,
        sans: &[
            "DNS:e3",
            "DNS:localhost",
            "IP Address:10.0.0.13",
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
        ],
    },
    Expect {
        host: "e3",
        path: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
        subject: "CN=kube-etcd-healthcheck-client",
        issuer: "CN=etcd-ca",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "n1",
        path: "/var/lib/kubelet/pki/kubelet.crt",
        subject: "CN=system:node:n1,O=system:nodes",
        issuer: "CN=kubernetes",
        eku: SERVER,
        sans: &["DNS:n1", "IP Address:10.0.0.21"],
    },
    Expect {
        host: "m1",
        path: "/etc/kubernetes/admin.conf",
        subject: "CN=kubernetes-admin,O=system:masters",
        issuer: "CN=kubernetes",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "m2",
        path: "/etc/kubernetes/controller-manager.conf",
        subject: "CN=system:kube-controller-manager",
        issuer: "CN=kubernetes",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "m2",
        path: "/etc/kubernetes/scheduler.conf",
        subject: "CN=system:kube-scheduler",
        issuer: "CN=kubernetes",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "n2",
        path: "/etc/kubernetes/kubelet.conf",
        subject: "CN=system:node:n2,O=system:nodes",
        issuer: "CN=kubernetes",
        eku: CLIENT,
        sans: &[],
    },
    Expect {
        host: "n2",
        path: "/etc/kubernetes/kube-proxy.conf",
        subject: "CN=system:kube-proxy",
        issuer: "CN=kubernetes",
        eku: CLIENT,
        sans: &[],
    },
];

fn check_kinds(key_type: KeyType, key_usage: &str, public_key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut input = sample();
    input.key_type = key_type;
    let out = ensure(
        &dir.path().join("pki"),
        &input,
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    let certs = certificates(&root, &out);
    for e in EXPECT {
        let (_, _, pem) = certs
            .iter()
            .find(|(h, p, _)| h == e.host && p == e.path)
            .unwrap_or_else(|| panic!("{} has no {}", e.host, e.path));
        let x = inspect(pem);
        let what = format!("{} {}", e.host, e.path);
        assert_eq!(x.subject, e.subject, "{what}");
        assert_eq!(x.issuer, e.issuer, "{what}");
        let want: BTreeSet<String> = e.sans.iter().map(|s| s.to_string()).collect();
        assert_eq!(x.sans, want, "{what}");
        assert_eq!(x.eku, e.eku, "{what}");
        assert_eq!(x.key_usage, key_usage, "{what}");
        assert_eq!(x.basic, "CA:FALSE", "{what}");
        assert_eq!(x.public_key, public_key, "{what}");
    }
    for (ca, cn) in [
        ("ca.crt", "CN=kubernetes"),
        ("etcd/ca.crt", "CN=etcd-ca"),
        ("front-proxy-ca.crt", "CN=front-proxy-ca"),
    ] {
        let x = inspect(&host_path(
            &root,
            "m1",
            &format!("/etc/kubernetes/pki/{ca}"),
        ));
        assert_eq!(x.subject, cn);
        assert_eq!(x.issuer, cn);
        assert_eq!(x.basic, "CA:TRUE");
        assert_eq!(x.public_key, public_key);
        assert!(
            x.key_usage.ends_with("Certificate Sign"),
            "{ca}: {}",
            x.key_usage
        );
        assert!(x.eku.is_empty() && x.sans.is_empty());
    }
}

#[test]
fn rsa_certificates_have_the_guides_subjects_sans_and_usages() {
    check_kinds(
        KeyType::Rsa2048,
        "Digital Signature, Key Encipherment",
        "Public Key Algorithm: rsaEncryption",
    );
}

#[test]
fn ecdsa_certificates_have_the_guides_subjects_sans_and_usages() {
    check_kinds(
        KeyType::EcdsaP256,
        "Digital Signature",
        "Public Key Algorithm: id-ecPublicKey",
    );
}

#[test]
fn keys_are_pkcs8_and_match_their_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let out = ensure(
        &dir.path().join("pki"),
        &sample(),
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    let mut pairs = 0;
    for f in &out.hosts["m1"] {
        if let Some(base) = f.path.strip_suffix(".key") {
            assert!(
                f.bytes.starts_with(b"-----BEGIN PRIVATE KEY-----\n"),
                "{} is not PKCS#8",
                f.path
            );
            let key = host_path(&root, "m1", &f.path);
            let key_pub = ok(
                "openssl",
                &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
            );
            let cert = host_path(&root, "m1", &format!("{base}.crt"));
            let cert_pub = if cert.exists() {
                ok(
                    "openssl",
                    &["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"],
                )
            } else {
                // sa.key pairs with sa.pub.
                std::fs::read_to_string(host_path(&root, "m1", &format!("{base}.pub"))).unwrap()
            };
            assert_eq!(key_pub, cert_pub, "{}", f.path);
            let bits = ok(
                "openssl",
                &["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"],
            );
            assert!(
                bits.starts_with("Private-Key: (2048 bit"),
                "{}: {}",
                f.path,
                bits.lines().next().unwrap()
            );
            pairs += 1;
        }
    }
    // sa + 3 etcd + 4 master leaves + kubelet serving.
    assert_eq!(pairs, 9);
}

#[test]
fn lifetimes_are_backdated_capped_and_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = sample();
    input.lifetimes.leaf = std::time::Duration::from_secs(90 * DAY);
    input.lifetimes.ca = std::time::Duration::from_secs(1000 * DAY);
    input.lifetimes.backdate = std::time::Duration::from_secs(7200);
    let out = ensure(
        &dir.path().join("pki"),
        &input,
        &clock(0),
        &PkiOptions::default(),
    )
    .unwrap();
    let root = materialise(&out, &dir.path().join("hosts"));
    let dates = |p: &str| {
        ok(
            "openssl",
            &[
                "x509",
                "-in",
                host_path(&root, "m1", p).to_str().unwrap(),
                "-noout",
                "-startdate",
                "-enddate",
            ],
        )
    };
    assert_eq!(
        dates("/etc/kubernetes/pki/ca.crt"),
        "notBefore=Dec 31 22:00:00 2024 GMT\nnotAfter=Sep 28 00:00:00 2027 GMT\n"
    );
    assert_eq!(
        dates("/etc/kubernetes/pki/apiserver.crt"),
        "notBefore=Dec 31 22:00:00 2024 GMT\nnotAfter=Apr  1 00:00:00 2025 GMT\n"
    );
}
