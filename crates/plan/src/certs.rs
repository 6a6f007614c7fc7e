//! The cluster's PKI input, derived from the validated cluster (built once, by [`crate::plan`]).

use std::time::Duration;

use kiln_pki_layout::{KeyType, KubeletAuth, Lifetimes, PkiHost, PkiInput};
use kiln_spec::{KeyType as SpecKey, KubeletAuth as SpecAuth, Project};

const DAY: u64 = 24 * 60 * 60;

/// What the PKI needs to know about the cluster.
pub fn pki_input(project: &Project) -> PkiInput {
    let c = &project.cluster;
    let p = &c.pki;
    PkiInput {
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
    }
}
