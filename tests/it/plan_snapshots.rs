//! `kiln plan --json` of both examples, snapshotted with real digests.

use crate::common::{kiln, repo};

fn plan_json(example: &str) -> serde_json::Value {
    let out = kiln()
        .current_dir(repo())
        .args([
            "plan",
            "--json",
            &format!("examples/{example}/cluster.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn lab_plan() {
    let plan = plan_json("lab");
    let bundles: Vec<&str> = plan["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        bundles,
        [
            "common-debian12",
            "etcd-debian12",
            "lb-debian12",
            "runtime-debian12"
        ]
    );
    insta::assert_json_snapshot!("plan_lab", plan);
}

#[test]
fn prod_plan() {
    let plan = plan_json("prod");
    let hosts = plan["hosts"].as_array().unwrap();
    let master01 = hosts.iter().find(|h| h["name"] == "master01").unwrap();
    assert_eq!(
        master01["bundles"],
        serde_json::json!(["common-centos7", "master-centos7", "etcd-centos7"])
    );
    let node01 = hosts.iter().find(|h| h["name"] == "node01").unwrap();
    assert_eq!(
        node01["bundles"],
        serde_json::json!([
            "common-centos7",
            "runtime-centos7",
            "node-centos7",
            "etcd-centos7"
        ])
    );
    insta::assert_json_snapshot!("plan_prod", plan);
}

#[test]
fn text_plan_lists_files_and_hosts() {
    let out = kiln()
        .current_dir(repo())
        .args(["plan", "examples/lab/cluster.toml"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("bundle etcd-debian12  (hosts: etcd1, etcd2, etcd3)"),
        "{s}"
    );
    assert!(s.contains("0755 /usr/local/bin/etcd"), "{s}");
    assert!(s.contains("host runtime1"), "{s}");
}
