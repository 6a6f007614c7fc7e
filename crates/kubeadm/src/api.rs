//! The subset of kubeadm's v1beta4 documents (and the kubelet's and kube-proxy's component
//! configurations) that kiln writes, as serde types with kubeadm's camelCase field names.

use serde::Serialize;

/// `apiVersion` of kubeadm's documents that Kubernetes 1.31 and later read.
pub const KUBEADM_API: &str = "kubeadm.k8s.io/v1beta4";

/// `InitConfiguration`: the first master's own settings and the bootstrap token.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InitConfiguration<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub bootstrap_tokens: Vec<BootstrapToken<'a>>,
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint<'a>,
    pub node_registration: NodeRegistration<'a>,
    pub timeouts: Timeouts,
    pub skip_phases: Vec<&'static str>,
}

/// How long kubeadm waits for each step (v1beta4 durations, e.g. `15m0s`); unset ones keep
/// kubeadm's defaults.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane_component_health_check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubelet_health_check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery: Option<&'static str>,
    #[serde(rename = "tlsBootstrap", skip_serializing_if = "Option::is_none")]
    pub tls_bootstrap: Option<&'static str>,
}

/// A bootstrap token kubeadm stores as a Secret at `init`.
#[derive(Debug, Serialize)]
pub struct BootstrapToken<'a> {
    pub token: &'a str,
    pub description: &'static str,
    pub ttl: &'static str,
    pub groups: [&'static str; 1],
    pub usages: [&'static str; 2],
}

/// Where a control-plane host's own API server listens.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiEndpoint<'a> {
    pub advertise_address: &'a str,
    pub bind_port: u16,
}

/// How a host registers as a node.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRegistration<'a> {
    pub name: &'a str,
    pub cri_socket: &'static str,
    pub image_pull_policy: &'static str,
    pub kubelet_extra_args: Vec<Arg<'a>>,
}

/// One `name`/`value` argument (v1beta4's list form of extra arguments).
#[derive(Debug, Serialize)]
pub struct Arg<'a> {
    pub name: &'static str,
    pub value: &'a str,
}

/// `ClusterConfiguration`: what every control-plane host shares.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfiguration<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub cluster_name: &'a str,
    pub kubernetes_version: String,
    pub control_plane_endpoint: &'a str,
    pub certificates_dir: &'static str,
    pub image_repository: &'static str,
    pub encryption_algorithm: &'static str,
    pub networking: Networking<'a>,
    pub dns: ImageMeta,
    pub etcd: EtcdConfig<'a>,
    pub api_server: ApiServer<'a>,
    pub controller_manager: ControlPlaneComponent,
    pub scheduler: ControlPlaneComponent,
}

/// The controller manager's or the scheduler's flags beyond kubeadm's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlaneComponent {
    pub extra_args: Vec<Arg<'static>>,
}

/// Pod and service networks and the cluster domain.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Networking<'a> {
    pub pod_subnet: &'a str,
    pub service_subnet: &'a str,
    pub dns_domain: &'a str,
}

/// An image tag that overrides kubeadm's built-in one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageMeta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
}

/// Stacked (`local`) or `external` etcd.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EtcdConfig<'a> {
    Local {
        #[serde(rename = "dataDir")]
        data_dir: &'static str,
        #[serde(rename = "imageTag", skip_serializing_if = "Option::is_none")]
        image_tag: Option<String>,
    },
    External {
        endpoints: &'a [String],
        #[serde(rename = "caFile")]
        ca_file: &'static str,
        #[serde(rename = "certFile")]
        cert_file: &'static str,
        #[serde(rename = "keyFile")]
        key_file: &'static str,
    },
}

/// API server settings kubeadm also checks the pre-issued serving certificate against.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer<'a> {
    #[serde(rename = "certSANs", skip_serializing_if = "<[_]>::is_empty")]
    pub cert_sans: &'a [String],
}

/// `JoinConfiguration`: every other master and every node.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinConfiguration<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub discovery: Discovery<'a>,
    pub node_registration: NodeRegistration<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<JoinControlPlane<'a>>,
    pub timeouts: Timeouts,
}

/// Discovery by bootstrap token, the CA pinned by its public-key hash.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery<'a> {
    pub bootstrap_token: DiscoveryToken<'a>,
}

/// The token, the API endpoint and the pinned CA.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryToken<'a> {
    pub api_server_endpoint: &'a str,
    pub token: &'a str,
    pub ca_cert_hashes: [String; 1],
}

/// A joining control-plane host's own API endpoint.
#[derive(Debug, Serialize)]
pub struct JoinControlPlane<'a> {
    #[serde(rename = "localAPIEndpoint")]
    pub local_api_endpoint: ApiEndpoint<'a>,
}

/// The kubelet's configuration kubeadm stores in the cluster and writes on every host.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub cgroup_driver: &'static str,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: [String; 1],
    pub cluster_domain: &'a str,
    pub container_runtime_endpoint: &'static str,
}

/// kube-proxy's configuration (kubeadm runs kube-proxy as a DaemonSet with it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration<'a> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub mode: &'a str,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: &'a str,
}
