//! The state folder: reuse byte for byte, re-issue on change or renewal, CA protection, modes, table.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_pki::{ensure, table, KeyType, KubeletAuth, PkiError, PkiOptions};

use crate::common::*;

/// Every file under `dir` with its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    let mut m = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                m.insert(
                    rel,
                    (
                        std::fs::read(&p).unwrap(),
                        meta.permissions().mode() & 0o7777,
                    ),
                );
            }
        }
    }
    m
}

fn opts(rotate_ca: bool) -> PkiOptions {
    PkiOptions { rotate_ca }
}

fn written(out: &kiln_pki::PkiOutput) -> BTreeSet<String> {
    out.written.iter().cloned().collect()
}

#[test]
fn rebuild_with_nothing_changed_reuses_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let mut input = sample();
    input.kubelet_auth = KubeletAuth::BootstrapToken;
    let first = ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    assert!(written(&first).contains("issued/m1/apiserver.crt"));
    let before = snapshot(&state);
    let second = ensure(&state, &input, &clock(100), &opts(false)).unwrap();
    assert_eq!(second.hosts, first.hosts);
    assert!(second.written.is_empty(), "{:?}", second.written);
    assert_eq!(snapshot(&state), before);
}

#[test]
fn a_new_master_ip_reissues_only_the_certificates_that_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let mut input = sample_ec();
    let first = ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    input.hosts[1].ip = "10.0.0.42".parse().unwrap(); // m2
    let second = ensure(&state, &input, &clock(1), &opts(false)).unwrap();
    let mut want = BTreeSet::new();
    for leaf in [
        "m1/apiserver",
        "m2/apiserver",
        "m2/etcd/server",
        "m2/etcd/peer",
    ] {
        want.insert(format!("issued/{leaf}.crt"));
        want.insert(format!("issued/{leaf}.key"));
    }
    assert_eq!(written(&second), want);
    for (host, path) in [
        ("n1", "/etc/kubernetes/kubelet.conf"),
        ("m1", "/etc/kubernetes/pki/etcd/server.crt"),
        ("e3", "/etc/kubernetes/pki/etcd/peer.crt"),
    ] {
        assert_eq!(
            file(&second, host, path),
            file(&first, host, path),
            "{host} {path}"
        );
    }
    let root = materialise(&second, &dir.path().join("hosts"));
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
    assert!(
        sans.contains("IP Address:10.0.0.42") && !sans.contains("IP Address:10.0.0.12,"),
        "{sans}"
    );

    // A new master is another SAN change for the existing masters.
    input.hosts.push(host("m3", "10.0.0.13", &["master"]));
    let third = ensure(&state, &input, &clock(2), &opts(false)).unwrap();
    assert!(written(&third).contains("issued/m1/apiserver.crt"));
    assert!(written(&third).contains("issued/m3/admin.crt"));
    assert!(!written(&third).contains("issued/m1/admin.crt"));
}

#[test]
fn leaves_are_reissued_inside_the_renewal_window_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let input = sample_ec();
    ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    // Leaves end on day 365; the renewal window is 30 days.
    let early = ensure(&state, &input, &clock(334), &opts(false)).unwrap();
    assert!(early.written.is_empty(), "{:?}", early.written);
    let due = ensure(&state, &input, &clock(335), &opts(false)).unwrap();
    let w = written(&due);
    assert!(
        w.contains("issued/n1/kubelet.crt") && w.contains("issued/e3/etcd/healthcheck-client.key")
    );
    assert!(
        w.iter().all(|p| p.starts_with("issued/")),
        "CAs must not be renewed: {w:?}"
    );
    let leaves = snapshot(&state)
        .keys()
        .filter(|p| p.starts_with("issued"))
        .count();
    assert_eq!(w.len(), leaves, "every leaf was due");
    let row = due
        .table
        .iter()
        .find(|r| r.host == "n1" && r.file.ends_with("kubelet.crt"))
        .unwrap();
    assert_eq!(row.days_left, 365);
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let mut input = sample_ec();
    input.lifetimes.ca = Duration::from_secs(400 * DAY);
    ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    input.extra_apiserver_sans.push("new.example.com".into());
    let out = ensure(&state, &input, &clock(100), &opts(false)).unwrap();
    let rows: BTreeMap<&str, i64> = out
        .table
        .iter()
        .filter(|r| r.host == "m1")
        .map(|r| (r.file.as_str(), r.days_left))
        .collect();
    assert_eq!(rows["/etc/kubernetes/pki/apiserver.crt"], 300);
    assert_eq!(rows["/etc/kubernetes/pki/ca.crt"], 300);
    assert_eq!(rows["/etc/kubernetes/admin.conf"], 265);
}

#[test]
fn a_missing_ca_key_is_never_replaced_silently() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let input = sample_ec();
    let first = ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    std::fs::remove_file(state.join("ca.key")).unwrap();
    let before = snapshot(&state);
    let err = ensure(&state, &input, &clock(1), &opts(false)).unwrap_err();
    assert!(
        matches!(
            err,
            PkiError::CaReplacementRefused {
                what: "cluster CA",
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("ca.key is missing") && msg.contains("rotate_ca"),
        "{msg}"
    );
    assert_eq!(snapshot(&state), before, "a refused run changes nothing");

    let rotated = ensure(&state, &input, &clock(1), &opts(true)).unwrap();
    let ca = "/etc/kubernetes/pki/ca.crt";
    assert_ne!(file(&rotated, "m1", ca), file(&first, "m1", ca));
    // The other CAs and what they signed stay as they were.
    for (host, path) in [
        ("m1", "/etc/kubernetes/pki/etcd/ca.crt"),
        ("e3", "/etc/kubernetes/pki/etcd/server.crt"),
        ("m2", "/etc/kubernetes/pki/front-proxy-client.crt"),
    ] {
        assert_eq!(
            file(&rotated, host, path),
            file(&first, host, path),
            "{host} {path}"
        );
    }
    // Everything the cluster CA signed was re-issued under the new one.
    let root = materialise(&rotated, &dir.path().join("hosts"));
    let new_ca = host_path(&root, "m1", ca);
    for (host, path) in [
        ("m1", "/etc/kubernetes/pki/apiserver.crt"),
        ("n2", "/var/lib/kubelet/pki/kubelet.crt"),
    ] {
        let cert = host_path(&root, host, path);
        let when = attime(2);
        ok(
            "openssl",
            &[
                "verify",
                "-attime",
                &when,
                "-CAfile",
                new_ca.to_str().unwrap(),
                cert.to_str().unwrap(),
            ],
        );
    }
    // And the next run is stable again.
    let again = ensure(&state, &input, &clock(2), &opts(true)).unwrap();
    assert!(again.written.is_empty(), "{:?}", again.written);
}

#[test]
fn a_mismatched_or_corrupt_ca_or_sa_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let input = sample_ec();
    ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    let etcd_key = std::fs::read(state.join("etcd/ca.key")).unwrap();
    std::fs::copy(state.join("front-proxy-ca.key"), state.join("etcd/ca.key")).unwrap();
    let err = ensure(&state, &input, &clock(1), &opts(false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("etcd CA") && err.contains("etcd/ca.key does not match etcd/ca.crt"),
        "{err}"
    );
    std::fs::write(state.join("etcd/ca.key"), etcd_key).unwrap();

    std::fs::write(state.join("front-proxy-ca.crt"), "not a certificate").unwrap();
    let err = ensure(&state, &input, &clock(1), &opts(false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("front-proxy CA") && err.contains("front-proxy-ca.crt"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    std::fs::remove_file(state.join("sa.key")).unwrap();
    let err = ensure(&state, &input, &clock(1), &opts(false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("service-account key"), "{err}");
    // An expired CA also needs an explicit rotation.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    let err = ensure(&state, &input, &clock(3651), &opts(false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("has expired"), "{err}");
}

#[test]
fn a_new_key_type_reissues_leaves_but_keeps_the_cas() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let mut input = sample();
    ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    input.key_type = KeyType::EcdsaP256;
    let out = ensure(&state, &input, &clock(1), &opts(false)).unwrap();
    let w = written(&out);
    assert!(w.contains("issued/m1/apiserver.key") && w.contains("issued/n2/kube-proxy.key"));
    assert!(w.iter().all(|p| p.starts_with("issued/")), "{w:?}");
    let key = &file(&out, "e3", "/etc/kubernetes/pki/etcd/peer.key").bytes;
    let p = dir.path().join("peer.key");
    std::fs::write(&p, key).unwrap();
    let text = ok(
        "openssl",
        &["pkey", "-in", p.to_str().unwrap(), "-noout", "-text"],
    );
    assert!(text.contains("prime256v1"), "{text}");
}

/// Runs `ensure` into `$KILN_PKI_UMASK_STATE` when started by the umask test; no-op otherwise.
#[test]
fn umask_child() {
    let Some(state) = std::env::var_os("KILN_PKI_UMASK_STATE") else {
        return;
    };
    let mut input = sample_ec();
    input.kubelet_auth = KubeletAuth::BootstrapToken;
    ensure(Path::new(&state), &input, &clock(0), &opts(false)).unwrap();
}

#[test]
fn state_modes_are_exact_whatever_the_umask() {
    let exe = std::env::current_exe().unwrap();
    for umask in ["000", "022", "077"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("pki");
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" --exact state::umask_child --test-threads=1"
            ))
            .arg(&exe)
            .env("KILN_PKI_UMASK_STATE", &state)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
        let files = snapshot(&state);
        let mut secrets = 0;
        for (path, (_, mode)) in &files {
            let name = path.to_string_lossy();
            let want = if name.ends_with(".key") || name == "bootstrap-token" {
                secrets += 1;
                0o600
            } else {
                assert!(
                    name.ends_with(".crt") || name.ends_with(".pub"),
                    "unexpected {name}"
                );
                0o644
            };
            assert_eq!(*mode, want, "umask {umask}: {name} has mode {mode:o}");
        }
        // 3 CA keys, sa.key, the token, and a key per leaf (12 on m1, 10 on m2, 3 on e3, 2 per node).
        assert_eq!(secrets, 34, "umask {umask}");
        for d in ["", "etcd", "issued", "issued/m1", "issued/m1/etcd"] {
            let mode = std::fs::metadata(state.join(d))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o700, "umask {umask}: folder {d:?}");
        }
    }
}

#[test]
fn the_table_reads_the_state_without_changing_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let mut input = sample_ec();
    assert!(matches!(
        table(&state, &input, &clock(0)),
        Err(PkiError::Io { .. })
    ));
    let out = ensure(&state, &input, &clock(0), &opts(false)).unwrap();
    let before = snapshot(&state);
    let rows = table(&state, &input, &clock(0)).unwrap();
    assert_eq!(rows, out.table);
    assert_eq!(snapshot(&state), before);
    // One row per certificate file or client kubeconfig: CAs on each host included.
    assert_eq!(rows.iter().filter(|r| r.host == "n1").count(), 4);
    assert_eq!(rows.iter().filter(|r| r.host == "lb1").count(), 0);
    let api = rows
        .iter()
        .find(|r| r.host == "m2" && r.file == "/etc/kubernetes/pki/apiserver.crt")
        .unwrap();
    assert_eq!(api.subject, "CN=kube-apiserver");
    assert!(
        api.sans.contains(&"IP:10.0.0.100".to_string())
            && api.sans.contains(&"DNS:kubernetes".to_string())
    );
    assert_eq!(api.not_after.to_string(), "2026-01-01T00:00:00Z");
    assert_eq!(api.days_left, 365);

    // --check-expiry 30 on day 340: every leaf, no CA.
    let later = table(&state, &input, &clock(340)).unwrap();
    let expiring: Vec<_> = later.iter().filter(|r| r.expires_within(30)).collect();
    assert!(expiring.iter().all(|r| !r.file.ends_with("ca.crt")));
    assert_eq!(
        expiring.len(),
        later.iter().filter(|r| !r.file.ends_with("ca.crt")).count()
    );
    assert_eq!(expiring[0].days_left, 25);

    input.hosts.push(host("n3", "10.0.0.23", &["node"]));
    let err = table(&state, &input, &clock(0)).unwrap_err();
    assert!(
        matches!(&err, PkiError::NotIssued { host, .. } if host == "n3"),
        "{err}"
    );
}

/// Makes a valid input invalid in one field.
type Breaker = Box<dyn Fn(&mut kiln_pki::PkiInput)>;

#[test]
fn invalid_input_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("pki");
    let cases: Vec<(&str, Breaker)> = vec![
        (
            "hosts[0].name",
            Box::new(|i| i.hosts[0].name = "../evil".into()),
        ),
        ("hosts[1].name", Box::new(|i| i.hosts[1].name = "m1".into())),
        (
            "extra_apiserver_sans[0]",
            Box::new(|i| i.extra_apiserver_sans[0] = "bad name".into()),
        ),
        (
            "external_api",
            Box::new(|i| i.external_api = Some("http://x:1".into())),
        ),
        (
            "lifetimes.renew_before",
            Box::new(|i| i.lifetimes.renew_before = i.lifetimes.leaf),
        ),
        (
            "lifetimes.leaf",
            Box::new(|i| i.lifetimes.leaf = i.lifetimes.ca * 2),
        ),
        (
            "cluster_domain",
            Box::new(|i| i.cluster_domain = "Cluster.Local".into()),
        ),
    ];
    for (field, break_it) in cases {
        let mut input = sample();
        break_it(&mut input);
        let err = ensure(&state, &input, &clock(0), &opts(false)).unwrap_err();
        assert!(
            matches!(&err, PkiError::InvalidInput { field: f, .. } if f == field),
            "{field}: {err}"
        );
        assert!(!state.exists(), "{field}: state folder was created");
    }
}
