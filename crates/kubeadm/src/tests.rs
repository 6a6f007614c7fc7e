//! The rendered documents, pinned: what each kind of host receives.

use super::*;

fn settings(etcd: Etcd) -> Settings {
    Settings {
        cluster_name: "prod".into(),
        kubernetes_version: "1.34.4".into(),
        control_plane_endpoint: "10.0.0.100:6443".into(),
        bind_port: 6443,
        pod_subnet: "10.244.0.0/16".into(),
        service_subnet: "10.96.0.0/12".into(),
        dns_domain: "cluster.local".into(),
        cluster_dns: "10.96.0.10".parse().unwrap(),
        kube_proxy_mode: "ipvs".into(),
        coredns_version: Some("1.14.3".into()),
        encryption_algorithm: "RSA-2048",
        cert_sans: vec!["k8s.example.com".into()],
        etcd,
    }
}

fn rendered(s: &Settings, name: &str, role: Role) -> String {
    let member = Member {
        name,
        ip: "10.0.0.11".parse().unwrap(),
        role,
    };
    let secrets = JoinSecrets {
        token: "abcdef.0123456789abcdef",
        ca_cert_hash: "sha256:0123",
    };
    String::from_utf8(render(s, &member, &secrets).unwrap()).unwrap()
}

#[test]
fn the_first_master_gets_init_cluster_kubelet_and_proxy_documents() {
    let external = Etcd::External {
        endpoints: vec![
            "https://10.0.0.11:2379".into(),
            "https://10.0.0.21:2379".into(),
        ],
    };
    insta::assert_snapshot!(rendered(&settings(external), "m1", Role::Init));
}

#[test]
fn joining_hosts_get_one_join_document() {
    let s = settings(Etcd::Stacked { version: None });
    insta::assert_snapshot!(rendered(&s, "m2", Role::JoinControlPlane));
    let node = rendered(&s, "n1", Role::Node);
    assert!(!node.contains("controlPlane"), "{node}");
    assert!(node.contains("kind: JoinConfiguration"), "{node}");
}

#[test]
fn image_tags_follow_the_clusters_versions_else_kubeadms() {
    let mut s = settings(Etcd::Stacked {
        version: Some("3.5.21".into()),
    });
    let list = images(&s).unwrap();
    assert_eq!(list[4], "registry.k8s.io/coredns/coredns:v1.14.3");
    assert_eq!(list[5], "registry.k8s.io/pause:3.10.1");
    assert_eq!(list[6], "registry.k8s.io/etcd:3.5.21-0");
    s.coredns_version = None;
    s.etcd = Etcd::Stacked { version: None };
    let list = images(&s).unwrap();
    assert_eq!(list[4], "registry.k8s.io/coredns/coredns:v1.12.1");
    assert_eq!(list[6], "registry.k8s.io/etcd:3.6.5-0");
    s.kubernetes_version = "1.30.0".into();
    assert!(images(&s).is_err());
}
