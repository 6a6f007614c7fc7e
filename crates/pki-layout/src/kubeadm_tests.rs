//! The layout with kubeadm: what each kind of host gets, and what kubeadm forbids it to have.

use std::collections::BTreeSet;

use crate::{KeyType, KubeletAuth, Layout, Lifetimes, PkiHost, PkiInput, Source};

fn host(name: &str, ip: &str, roles: &[&str]) -> PkiHost {
    PkiHost {
        name: name.into(),
        ip: ip.parse().unwrap(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    }
}

fn layout(etcd: kiln_kubeadm::Etcd, hosts: Vec<PkiHost>) -> Layout {
    let settings = kiln_kubeadm::Settings {
        cluster_name: "c".into(),
        kubernetes_version: "1.34.4".into(),
        control_plane_endpoint: "10.0.0.100:6443".into(),
        bind_port: 6443,
        pod_subnet: "10.244.0.0/16".into(),
        service_subnet: "10.96.0.0/12".into(),
        dns_domain: "cluster.local".into(),
        cluster_dns: "10.96.0.10".parse().unwrap(),
        kube_proxy_mode: "ipvs".into(),
        coredns_version: None,
        encryption_algorithm: "RSA-2048",
        cert_sans: Vec::new(),
        etcd,
    };
    Layout::new(PkiInput {
        cluster_name: "c".into(),
        cluster_domain: "cluster.local".into(),
        service_ip: "10.96.0.1".parse().unwrap(),
        hosts,
        vip: Some("10.0.0.100".parse().unwrap()),
        api_port: 6443,
        external_api: None,
        extra_apiserver_sans: Vec::new(),
        key_type: KeyType::Rsa2048,
        kubelet_auth: KubeletAuth::BootstrapToken,
        lifetimes: Lifetimes::default(),
        kubeadm: Some(settings),
    })
    .unwrap()
}

fn paths(l: &Layout, host: &str) -> BTreeSet<String> {
    l.host(host)
        .unwrap()
        .files
        .iter()
        .map(|f| f.path.clone())
        .collect()
}

fn stacked() -> Layout {
    layout(
        kiln_kubeadm::Etcd::Stacked { version: None },
        vec![
            host("m2", "10.0.0.12", &["master", "etcd"]),
            host("m1", "10.0.0.11", &["master", "etcd"]),
            host("n1", "10.0.0.21", &["node"]),
            host("lb1", "10.0.0.5", &["lb"]),
        ],
    )
}

#[test]
fn the_first_master_by_name_inits_with_super_admin_and_kubelet_kubeconfigs() {
    let l = stacked();
    let m1 = paths(&l, "m1");
    for p in [
        "/etc/kubernetes/super-admin.conf",
        "/etc/kubernetes/kubelet.conf",
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/front-proxy-ca.key",
        "/etc/kubernetes/pki/etcd/ca.key",
        "/etc/kiln/kubeadm.yaml",
    ] {
        assert!(m1.contains(p), "m1 lacks {p}");
    }
    let config = |h: &str| {
        l.host(h)
            .unwrap()
            .files
            .iter()
            .find_map(|f| match f.source {
                Source::KubeadmConfig(r) => Some(r),
                _ => None,
            })
    };
    assert_eq!(config("m1"), Some(kiln_kubeadm::Role::Init));
    assert_eq!(config("m2"), Some(kiln_kubeadm::Role::JoinControlPlane));
    assert_eq!(config("n1"), Some(kiln_kubeadm::Role::Node));
    assert!(paths(&l, "lb1").is_empty());
    // No token.csv: kubeadm's token is a Secret `kubeadm init` creates.
    assert!(!m1.contains("/etc/kubernetes/token.csv"));
}

#[test]
fn joining_hosts_get_nothing_kubeadm_join_refuses_to_overwrite() {
    let l = stacked();
    let m2 = paths(&l, "m2");
    assert!(!m2.contains("/etc/kubernetes/kubelet.conf"));
    assert!(!m2.contains("/etc/kubernetes/super-admin.conf"));
    assert!(m2.contains("/etc/kubernetes/pki/etcd/ca.key"));
    let n1 = paths(&l, "n1");
    let want: BTreeSet<String> = [
        "/etc/kiln/kubeadm.yaml",
        "/var/lib/kubelet/pki/kubelet.crt",
        "/var/lib/kubelet/pki/kubelet.key",
    ]
    .map(String::from)
    .into();
    assert_eq!(n1, want);
}

#[test]
fn components_reach_their_own_master_and_external_etcd_keeps_its_ca_key() {
    let l = layout(
        kiln_kubeadm::Etcd::External {
            endpoints: vec!["https://10.0.0.31:2379".into()],
        },
        vec![
            host("m1", "10.0.0.11", &["master"]),
            host("e1", "10.0.0.31", &["etcd"]),
        ],
    );
    let m1 = l.host("m1").unwrap();
    assert!(!paths(&l, "m1").contains("/etc/kubernetes/pki/etcd/ca.key"));
    let server = |p: &str| {
        m1.files
            .iter()
            .find_map(|f| match &f.source {
                Source::Kubeconfig { server, .. } if f.path == p => Some(server.clone()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(
        server("/etc/kubernetes/controller-manager.conf"),
        "https://10.0.0.11:6443"
    );
    assert_eq!(
        server("/etc/kubernetes/admin.conf"),
        "https://10.0.0.100:6443"
    );
    assert!(paths(&l, "e1").iter().all(|p| p.contains("/etcd/")));
}
