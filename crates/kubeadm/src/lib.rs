//! kiln-kubeadm: the kubeadm configuration of a kiln cluster and the images kubeadm needs.
//!
//! Pure: the PKI layout decides which host gets which configuration ([`Role`]), kiln-pki
//! renders it with the bootstrap token and the CA's public-key hash (so it is a secret, kept
//! only in secrets bundles), and [`images`] is the list `kubeadm config images list` prints
//! for the same settings. Documents are kubeadm.k8s.io/v1beta4, which Kubernetes 1.34 reads.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod api;
mod release;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

pub use api::KUBEADM_API;
pub use release::{images, Release, UnsupportedRelease};

use api::*;

/// Where a host's kubeadm configuration lands (in its secrets bundle: it holds the token).
pub const CONFIG_PATH: &str = "/etc/kiln/kubeadm.yaml";
/// containerd's CRI socket, as the runtime profile configures it.
pub const CRI_SOCKET: &str = "unix:///run/containerd/containerd.sock";
/// Leader election for the controller manager and the scheduler, more patient than upstream's
/// 15 s lease, 10 s renewal deadline and 2 s retry: a control plane whose API server answers a
/// lease update late (a busy or slow machine, etcd on a slow disk) otherwise loses the lease,
/// exits and is restarted with a growing back-off, over and over, and meanwhile nothing signs
/// the `cluster-info` ConfigMap for the join token, so no node can join. A standby master takes
/// over within 60 s instead of 15 s (OpenShift runs with 137 s).
fn leader_election() -> Vec<Arg<'static>> {
    [
        ("leader-elect-lease-duration", "60s"),
        ("leader-elect-renew-deadline", "40s"),
        ("leader-elect-retry-period", "10s"),
    ]
    .into_iter()
    .map(|(name, value)| Arg { name, value })
    .collect()
}

/// The repository kiln's assembled and locked control-plane images are named under
/// (catalog/images.toml), so kubeadm finds them in containerd and never pulls.
pub const IMAGE_REPOSITORY: &str = "registry.k8s.io";
/// The group kubeadm binds to node bootstrapping and CSR auto-approval at `init`.
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// How long `kubeadm init` (and a control-plane join) waits for the static pods to be healthy:
/// kubeadm's 4 minutes are too short for a host that imports its images and starts etcd and the
/// API server on slow disks at first boot.
const CONTROL_PLANE_WAIT: &str = "15m0s";
/// How long kubeadm waits for the kubelet (its health, and its TLS bootstrap when joining).
const KUBELET_WAIT: &str = "10m0s";
/// How long `kubeadm join` keeps asking the control-plane endpoint for the cluster's CA: hosts
/// boot in any order, and a node racked before its masters waits for them (kiln-kubeadm.service
/// then retries).
const DISCOVERY_WAIT: &str = "15m0s";

/// Stacked etcd (kubeadm runs it as a static pod on every master) or the cluster's etcd hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Etcd {
    /// Every master is an etcd member and every member a master.
    Stacked {
        /// The etcd version kiln's image carries (its tag is `<version>-0`), or kubeadm's own.
        version: Option<String>,
    },
    /// The etcd hosts run etcd themselves; the API servers reach them over TLS.
    External {
        /// `https://<ip>:2379` of every member, in host order.
        endpoints: Vec<String>,
    },
}

/// Everything kubeadm's documents say about the cluster (from the plan, never from cluster.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `clusterName`.
    pub cluster_name: String,
    /// Kubernetes version without the leading `v`, e.g. `1.34.4`.
    pub kubernetes_version: String,
    /// `host:port` every kubelet and admin reaches the API at: the LB VIP or the one master.
    pub control_plane_endpoint: String,
    /// Port each master's own API server listens on.
    pub bind_port: u16,
    /// Pod network.
    pub pod_subnet: String,
    /// Service network.
    pub service_subnet: String,
    /// Cluster DNS domain.
    pub dns_domain: String,
    /// Cluster DNS service address.
    pub cluster_dns: IpAddr,
    /// kube-proxy mode (`ipvs`, `iptables`, `nftables`).
    pub kube_proxy_mode: String,
    /// CoreDNS version kiln's image carries (tag `v<version>`), or kubeadm's own.
    pub coredns_version: Option<String>,
    /// kubeadm's name of the PKI's key algorithm (`RSA-2048`, `ECDSA-P256`).
    pub encryption_algorithm: &'static str,
    /// Extra API server SANs (kubeadm checks the pre-issued certificate has them).
    pub cert_sans: Vec<String>,
    /// Stacked or external etcd.
    pub etcd: Etcd,
}

/// Which document a host gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The master that runs `kubeadm init` (the one whose name sorts first).
    Init,
    /// Another master: `kubeadm join` with `controlPlane`.
    JoinControlPlane,
    /// A worker: `kubeadm join`.
    Node,
}

/// One host as its kubeadm document names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<'a> {
    /// Node name.
    pub name: &'a str,
    /// Its cluster address (the kubelet's node IP, a master's advertise address).
    pub ip: IpAddr,
    /// Its document.
    pub role: Role,
}

/// What only the build knows: the bootstrap token and the cluster CA's public-key pin.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinSecrets<'a> {
    /// Bootstrap token, `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: &'a str,
    /// `sha256:<hex>` of the cluster CA's SubjectPublicKeyInfo.
    pub ca_cert_hash: &'a str,
}

/// A document could not be written as YAML.
#[derive(Debug, thiserror::Error)]
#[error("kubeadm configuration of host {host}: {document} as YAML")]
pub struct RenderError {
    /// Host.
    pub host: String,
    /// Document kind.
    pub document: &'static str,
    /// Why.
    #[source]
    pub source: serde_saphyr::SerializeError,
}

/// Renders `member`'s kubeadm configuration: Init + Cluster + Kubelet + KubeProxy documents for
/// the first master, a JoinConfiguration for the others.
pub fn render(
    settings: &Settings,
    member: &Member<'_>,
    secrets: &JoinSecrets<'_>,
) -> Result<Vec<u8>, RenderError> {
    let ip = member.ip.to_string();
    let registration = NodeRegistration {
        name: member.name,
        cri_socket: CRI_SOCKET,
        // Offline: an image kiln did not bring must fail the install, never be pulled.
        image_pull_policy: "Never",
        kubelet_extra_args: vec![Arg {
            name: "node-ip",
            value: &ip,
        }],
    };
    let local = || ApiEndpoint {
        advertise_address: &ip,
        bind_port: settings.bind_port,
    };
    let yaml = |document: &'static str, value: &dyn erased::Yaml| {
        value.yaml().map_err(|source| RenderError {
            host: member.name.to_string(),
            document,
            source,
        })
    };
    let docs = match member.role {
        Role::Init => {
            let init = InitConfiguration {
                api_version: KUBEADM_API,
                kind: "InitConfiguration",
                bootstrap_tokens: vec![BootstrapToken {
                    token: secrets.token,
                    description: "kiln: nodes join with it at first boot",
                    // Hosts boot from their seeds whenever they are racked, maybe days after
                    // the first master: the token must not expire before the last one joins.
                    ttl: "0s",
                    groups: [NODE_TOKEN_GROUP],
                    usages: ["signing", "authentication"],
                }],
                local_api_endpoint: local(),
                node_registration: registration,
                timeouts: Timeouts {
                    control_plane_component_health_check: Some(CONTROL_PLANE_WAIT),
                    kubelet_health_check: Some(KUBELET_WAIT),
                    ..Timeouts::default()
                },
                // kubelet-finalize would rewrite kiln's kubelet.conf (this master's own, from
                // its secrets bundle) to point at the kubelet's rotating certificate files, and
                // install.sh would put kiln's back at its next run, restarting the kubelet: kiln
                // keeps the file and its certificate (renewed through kiln's PKI).
                // addon/coredns: kubeadm's CoreDNS forwards to the nodes' /etc/resolv.conf,
                // and CoreDNS exits when that holds no nameserver, as on an air-gapped host; the
                // master profile's add-ons carry kiln's CoreDNS instead (the binary bootstrap's:
                // it forwards only when the cluster names nameservers).
                skip_phases: vec!["kubelet-finalize", "addon/coredns"],
            };
            vec![
                yaml("InitConfiguration", &init)?,
                yaml("ClusterConfiguration", &cluster_document(settings))?,
                yaml("KubeletConfiguration", &kubelet_document(settings))?,
                yaml("KubeProxyConfiguration", &proxy_document(settings))?,
            ]
        }
        Role::JoinControlPlane | Role::Node => {
            let join = JoinConfiguration {
                api_version: KUBEADM_API,
                kind: "JoinConfiguration",
                discovery: Discovery {
                    bootstrap_token: DiscoveryToken {
                        api_server_endpoint: &settings.control_plane_endpoint,
                        token: secrets.token,
                        ca_cert_hashes: [secrets.ca_cert_hash.to_string()],
                    },
                },
                node_registration: registration,
                control_plane: (member.role == Role::JoinControlPlane).then(|| JoinControlPlane {
                    local_api_endpoint: local(),
                }),
                timeouts: Timeouts {
                    control_plane_component_health_check: (member.role == Role::JoinControlPlane)
                        .then_some(CONTROL_PLANE_WAIT),
                    kubelet_health_check: Some(KUBELET_WAIT),
                    discovery: Some(DISCOVERY_WAIT),
                    tls_bootstrap: Some(KUBELET_WAIT),
                },
            };
            vec![yaml("JoinConfiguration", &join)?]
        }
    };
    let mut out = String::from("# Generated by kiln: kubeadm's configuration for this host.\n");
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(d);
    }
    Ok(out.into_bytes())
}

fn cluster_document(s: &Settings) -> ClusterConfiguration<'_> {
    ClusterConfiguration {
        api_version: KUBEADM_API,
        kind: "ClusterConfiguration",
        cluster_name: &s.cluster_name,
        kubernetes_version: format!("v{}", s.kubernetes_version),
        control_plane_endpoint: &s.control_plane_endpoint,
        certificates_dir: "/etc/kubernetes/pki",
        image_repository: IMAGE_REPOSITORY,
        encryption_algorithm: s.encryption_algorithm,
        networking: Networking {
            pod_subnet: &s.pod_subnet,
            service_subnet: &s.service_subnet,
            dns_domain: &s.dns_domain,
        },
        dns: ImageMeta {
            image_tag: release::coredns_tag(s),
        },
        etcd: match &s.etcd {
            Etcd::Stacked { .. } => EtcdConfig::Local {
                data_dir: "/var/lib/etcd",
                image_tag: release::etcd_tag(s),
            },
            Etcd::External { endpoints } => EtcdConfig::External {
                endpoints,
                ca_file: "/etc/kubernetes/pki/etcd/ca.crt",
                cert_file: "/etc/kubernetes/pki/apiserver-etcd-client.crt",
                key_file: "/etc/kubernetes/pki/apiserver-etcd-client.key",
            },
        },
        api_server: ApiServer {
            cert_sans: &s.cert_sans,
        },
        controller_manager: ControlPlaneComponent {
            extra_args: leader_election(),
        },
        scheduler: ControlPlaneComponent {
            extra_args: leader_election(),
        },
    }
}

fn kubelet_document(s: &Settings) -> KubeletConfiguration<'_> {
    KubeletConfiguration {
        api_version: "kubelet.config.k8s.io/v1beta1",
        kind: "KubeletConfiguration",
        cgroup_driver: "systemd",
        cluster_dns: [s.cluster_dns.to_string()],
        cluster_domain: &s.dns_domain,
        container_runtime_endpoint: CRI_SOCKET,
    }
}

fn proxy_document(s: &Settings) -> KubeProxyConfiguration<'_> {
    KubeProxyConfiguration {
        api_version: "kubeproxy.config.k8s.io/v1alpha1",
        kind: "KubeProxyConfiguration",
        mode: &s.kube_proxy_mode,
        cluster_cidr: &s.pod_subnet,
    }
}

/// Serialising the documents through one object-safe call (they are different types).
mod erased {
    /// A document that becomes YAML.
    pub(crate) trait Yaml {
        fn yaml(&self) -> Result<String, serde_saphyr::SerializeError>;
    }

    impl<T: serde::Serialize> Yaml for T {
        fn yaml(&self) -> Result<String, serde_saphyr::SerializeError> {
            let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
            serde_saphyr::to_string_with_options(self, options)
        }
    }
}
