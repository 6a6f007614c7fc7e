//! The catalog's pins are generated from the upstream tables, and `kiln lock --offline` of the
//! production example pins every binary from them.

use std::fs;

use crate::common::{kiln, repo};

/// The upstream tables (the `UpstreamTables` fixture: ../shared/data beside the repository
/// unless `KILN_UPSTREAM_TABLES` names another folder), when they exist.
fn upstream_tables() -> Option<[std::path::PathBuf; 2]> {
    let data = kiln_testkit::Fixture::UpstreamTables.dir();
    let tables = [
        data.join("upstream-checksums.yml"),
        data.join("kubernetes-release-sha512.tsv"),
    ];
    tables.iter().all(|t| t.is_file()).then_some(tables)
}

#[test]
fn pins_toml_is_exactly_the_conversion_of_the_upstream_tables() {
    let test = "pins_toml_is_exactly_the_conversion_of_the_upstream_tables";
    let Some(tables) = upstream_tables() else {
        // Fails instead under KILN_REQUIRE_TOOLS, so CI never passes it unrun.
        let why = format!(
            "no upstream tables in {} (set KILN_UPSTREAM_TABLES)",
            kiln_testkit::Fixture::UpstreamTables.dir().display()
        );
        kiln_testkit::ready(test, false, &why);
        return;
    };
    let out = kiln()
        .arg("catalog")
        .arg("import-checksums")
        .args(&tables)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pins = fs::read_to_string(repo().join("catalog/pins.toml")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == pins,
        "catalog/pins.toml differs from the conversion: regenerate it with\n  kiln catalog import-checksums ../shared/data/upstream-checksums.yml ../shared/data/kubernetes-release-sha512.tsv --out catalog/pins.toml"
    );
    // Every row of the sha512 table is a pin, under the table of its tarball kind.
    let tsv = fs::read_to_string(&tables[1]).unwrap();
    let parsed: toml::Table = toml::from_str(&pins).unwrap();
    for row in tsv.lines().skip(1).filter(|l| !l.is_empty()) {
        let c: Vec<&str> = row.split('\t').collect();
        let (kind, arch) = c[1]
            .trim_start_matches("kubernetes-")
            .trim_end_matches(".tar.gz")
            .split_once("-linux-")
            .unwrap();
        assert_eq!(
            parsed[&format!("kubernetes_{kind}")][arch][c[0]].as_str(),
            Some(format!("sha512:{}", c[2]).as_str()),
            "{row}"
        );
    }
}

#[test]
fn import_checksums_refuses_tables_that_disagree() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a.tsv"), tmp.path().join("b.tsv"));
    let row = |h: char| {
        format!(
            "version\tfile\tsha512\n1.34.2\tkubernetes-server-linux-amd64.tar.gz\t{}\n",
            h.to_string().repeat(128)
        )
    };
    fs::write(&a, row('a')).unwrap();
    fs::write(&b, row('b')).unwrap();
    let out = kiln()
        .args(["catalog", "import-checksums"])
        .arg(&a)
        .arg(&b)
        .arg("--out")
        .arg(tmp.path().join("pins.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("b.tsv: kubernetes_server.amd64.1.34.2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tmp.path().join("pins.toml").exists());
}

const KUBE_BINARIES: [&str; 7] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "kubelet",
    "kubectl",
    "kubeadm",
];

#[test]
fn offline_lock_of_prod_pins_every_kubernetes_binary_and_names_what_remains() {
    let tmp = tempfile::tempdir().unwrap();
    let r = repo();
    let text = fs::read_to_string(r.join("examples/prod/cluster.toml"))
        .unwrap()
        .replace("\"../../", &format!("\"{}/", r.display()));
    fs::write(tmp.path().join("cluster.toml"), text).unwrap();
    let out = kiln()
        .current_dir(tmp.path())
        .args(["lock", "--offline", "cluster.toml"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let unpinned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::trim)
        .collect();
    for b in KUBE_BINARIES {
        assert!(
            !unpinned.iter().any(|u| u.contains(&format!(" {b} "))),
            "{b} is not pinned offline:\n{stderr}"
        );
    }
    assert!(
        !unpinned.iter().any(|u| u.starts_with("artifact ")),
        "every binary is pinned from the tables:\n{stderr}"
    );
    // What remains is named precisely: each EL package of each role, and each image.
    for p in [
        "package chrony (x86_64) of common on centos7",
        "package keepalived (x86_64) of lb on centos7",
        "package ipvsadm (x86_64) of node on centos7",
    ] {
        assert!(
            unpinned.iter().any(|u| u.starts_with(p)),
            "{p} not named:\n{stderr}"
        );
    }
    assert!(
        unpinned
            .iter()
            .any(|u| u.starts_with("image registry.k8s.io/pause:")),
        "{stderr}"
    );
    assert!(
        unpinned
            .iter()
            .all(|u| u.starts_with("package ") || u.starts_with("image ")),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");

    let lock: toml::Table =
        toml::from_str(&fs::read_to_string(tmp.path().join("kiln.lock")).unwrap()).unwrap();
    let artifacts = lock["artifact"].as_array().unwrap();
    let kube: Vec<&toml::Value> = artifacts
        .iter()
        .filter(|a| KUBE_BINARIES.contains(&a["name"].as_str().unwrap()))
        .collect();
    assert!(
        kube.len() >= 5,
        "prod's masters and nodes run the Kubernetes binaries: {kube:?}"
    );
    for a in kube {
        let b = a["name"].as_str().unwrap();
        assert_eq!(
            a["urls"][0].as_str(),
            Some("https://dl.k8s.io/v1.34.2/kubernetes-server-linux-amd64.tar.gz"),
            "{b}"
        );
        assert_eq!(
            a["member"].as_str(),
            Some(format!("kubernetes/server/bin/{b}").as_str())
        );
        assert_eq!(
            a["sha512"].as_str().map(str::len),
            Some(128),
            "{b} is pinned by the release notes' sha512"
        );
    }
    assert!(artifacts
        .iter()
        .all(|a| a.get("sha256").is_some() || a.get("sha512").is_some()));
}
