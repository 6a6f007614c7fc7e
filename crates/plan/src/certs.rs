//! The cluster's PKI input, derived from the validated cluster (built once, by [`crate::plan`]).

use std::time::Duration;

use kiln_pki_layout::{role, KeyType, KubeletAuth, Lifetimes, PkiHost, PkiInput};
use kiln_spec::{Bootstrap, KeyType as SpecKey, KubeletAuth as SpecAuth, Project};

const DAY: u64 = 24 * 60 * 60;

/// What the PKI needs to know about the cluster.
pub fn pki_input(project: &Project) -> PkiInput {
    let c = &project.cluster;
    let p = &c.pki;
    let mut input = PkiInput {
        cluster_name: c.name.clone(),
        cluster_domain: c.network.cluster_domain.clone(),
        service_ip: c.network.api_service_ip,
        hosts: c
            .hosts
            .iter()
            .map(|h| PkiHost {
                name: h.name.clone(),
                ip: h.ip,
                roles: project.host_roles(&h.roles).into_iter().collect(),
            })
            .collect(),
        vip: c.lb.as_ref().map(|l| l.vip),
        api_port: c.lb.as_ref().map(|l| l.port).unwrap_or(6443),
        external_api: c.api_endpoint.clone(),
        extra_apiserver_sans: p.extra_sans.clone(),
        key_type: match p.key_type {
            SpecKey::Rsa2048 => KeyType::Rsa2048,
            SpecKey::EcdsaP256 => KeyType::EcdsaP256,
        },
        kubelet_auth: match p.kubelet_auth {
            SpecAuth::Certificates => KubeletAuth::Certificates,
            SpecAuth::BootstrapToken => KubeletAuth::BootstrapToken,
        },
        lifetimes: Lifetimes {
            ca: Duration::from_secs(u64::from(p.ca_days) * DAY),
            leaf: Duration::from_secs(u64::from(p.leaf_days) * DAY),
            backdate: Duration::from_secs(u64::from(p.backdate_minutes) * 60),
            renew_before: Duration::from_secs(u64::from(p.renew_days) * DAY),
        },
        kubeadm: None,
    };
    if c.bootstrap == Bootstrap::Kubeadm {
        input.kubeadm = Some(kubeadm_settings(project, &input));
    }
    input
}

/// kubeadm's view of the cluster; its endpoint is the PKI's one API URL rule, without `https://`.
fn kubeadm_settings(project: &Project, input: &PkiInput) -> kiln_kubeadm::Settings {
    let c = &project.cluster;
    let endpoint = input.api_endpoint().unwrap_or_default();
    let authority = endpoint.strip_prefix("https://").unwrap_or(&endpoint);
    let authority = authority.split('/').next().unwrap_or_default();
    let with = |r: &'static str| input.hosts.iter().filter(move |h| h.has(r));
    // Stacked when the masters are exactly the etcd members: kubeadm then runs etcd itself.
    let stacked = with(role::ETCD)
        .map(|h| &h.name)
        .eq(with(role::MASTER).map(|h| &h.name));
    let etcd = if stacked {
        kiln_kubeadm::Etcd::Stacked {
            version: c.versions.get("etcd").cloned(),
        }
    } else {
        kiln_kubeadm::Etcd::External {
            endpoints: with(role::ETCD)
                .map(|h| kiln_pki_layout::https_url(h.ip, 2379))
                .collect(),
        }
    };
    kiln_kubeadm::Settings {
        cluster_name: c.name.clone(),
        kubernetes_version: c.versions.get("kubernetes").cloned().unwrap_or_default(),
        control_plane_endpoint: authority.to_string(),
        bind_port: c.lb.as_ref().map_or(6443, |l| l.backend_port),
        pod_subnet: c.network.pod_cidr.to_string(),
        service_subnet: c.network.service_cidr.to_string(),
        dns_domain: c.network.cluster_domain.clone(),
        cluster_dns: c.network.cluster_dns,
        kube_proxy_mode: c.network.kube_proxy_mode.clone(),
        coredns_version: c.versions.get("coredns").cloned(),
        encryption_algorithm: match c.pki.key_type {
            SpecKey::Rsa2048 => "RSA-2048",
            SpecKey::EcdsaP256 => "ECDSA-P256",
        },
        cert_sans: c.pki.extra_sans.clone(),
        etcd,
    }
}
