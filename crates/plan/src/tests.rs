//! The host plan against the k8s example: every host fact the build reads comes from here.

use std::path::Path;

use kiln_spec::Project;

use crate::{plan, HostMac, HostPlan, Plan, PlanError};

fn k8s() -> Project {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/k8s/cluster.toml");
    kiln_load::project(&file).expect("examples/k8s loads")
}

fn host<'a>(plan: &'a Plan, name: &str) -> &'a HostPlan {
    plan.hosts
        .iter()
        .find(|h| h.name == name)
        .expect("host planned")
}

#[test]
fn host_facts_come_from_the_plan() {
    let p = plan(&k8s()).unwrap();
    let m = host(&p, "master01");
    assert_eq!(m.ip.to_string(), "10.78.0.10");
    assert_eq!(m.address(), "10.78.0.10/24");
    assert_eq!(m.mac, HostMac::Planned("52:54:00:78:00:10".into()));
    assert_eq!(m.network.interface, "eth0");
    assert_eq!(m.api_url.as_deref(), Some("https://10.78.0.100:6443"));
    // The certificates a host wants are the PKI layout's list for it.
    let layout = p.pki.host("master01").unwrap();
    let paths: Vec<&str> = m.secrets.iter().map(|s| s.path.as_str()).collect();
    let wanted: Vec<&str> = layout.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, wanted);
    assert!(paths.contains(&"/etc/kubernetes/pki/apiserver.crt"));
    assert!(host(&p, "lb01").secrets.is_empty());
}

#[test]
fn api_url_is_one_rule_for_hosts_and_kubeconfigs() {
    let mut project = k8s();
    project.cluster.api_endpoint = Some("https://k8s.example.com:8443/".into());
    let p = plan(&project).unwrap();
    assert_eq!(
        host(&p, "node01").api_url.as_deref(),
        Some("https://k8s.example.com:8443"),
        "api.endpoint wins over the VIP"
    );
    assert_eq!(p.pki.input().api_endpoint(), host(&p, "node01").api_url);

    let mut project = k8s();
    project.cluster.lb.as_mut().unwrap().vip = "fd00::100".parse().unwrap();
    let p = plan(&project).unwrap();
    assert_eq!(
        host(&p, "node01").api_url.as_deref(),
        Some("https://[fd00::100]:6443")
    );

    let mut project = k8s();
    project.cluster.lb = None;
    // The lb role's templates need [lb].
    project
        .cluster
        .hosts
        .retain(|h| !h.roles.iter().any(|r| r == "lb"));
    project.cluster.hosts.reverse();
    let p = plan(&project).unwrap();
    assert_eq!(
        host(&p, "node01").api_url.as_deref(),
        Some("https://10.78.0.10:6443"),
        "without endpoint or VIP: the master first by name, not by file order"
    );
}

#[test]
fn host_outside_every_host_network_has_no_silent_24() {
    let mut project = k8s();
    project.cluster.hosts[2].ip = "192.168.99.9".parse().unwrap();
    match plan(&project) {
        Err(PlanError::OutsideHostNetworks { host, ip }) => {
            assert_eq!(host, "node01");
            assert_eq!(ip.to_string(), "192.168.99.9");
        }
        other => panic!("expected OutsideHostNetworks, got {other:?}"),
    }
}

#[test]
fn host_without_a_mac_gets_the_derived_one() {
    let mut project = k8s();
    project.cluster.hosts[0].mac = None;
    let p = plan(&project).unwrap();
    let m = host(&p, "master01");
    assert_eq!(m.mac, HostMac::new("k8s", "master01", None));
    assert!(matches!(m.mac, HostMac::Derived(_)));
    let json = serde_json::to_value(m).unwrap();
    assert_eq!(
        json["mac"],
        serde_json::Value::Null,
        "kiln plan --json shows no MAC"
    );
    assert_eq!(json["ip"], "10.78.0.10");
}
