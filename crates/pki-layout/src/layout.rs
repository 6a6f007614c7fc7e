//! Which certificates each host needs and where each file lands on it (kubeadm's layout).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::ca::CaId;
use crate::input::{https_url, role, url_host, KubeletAuth, PkiHost, PkiInput, San};
use crate::{ISSUED, MODE_PUBLIC, MODE_SECRET};

/// kubeadm's certificate folder.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// kubeadm's kubeconfig folder.
pub const KUBE_DIR: &str = "/etc/kubernetes";
/// The kubelet's certificate folder (`--cert-dir`), holding its serving certificate.
pub const KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki";

/// Kubernetes user name in `token.csv` and `bootstrap-kubelet.conf`.
pub const BOOTSTRAP_USER: &str = "kubelet-bootstrap";
/// Kubernetes group of the bootstrap token (bind it to `system:node-bootstrapper`).
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers";
/// Group with full access, hard-wired in the apiserver (needs no RBAC binding).
const MASTERS_GROUP: &str = "system:masters";
/// Group of every kubelet's identity.
const NODES_GROUP: &str = "system:nodes";
/// The group of kubeadm's `admin.conf`, bound to cluster-admin by `kubeadm init` (≥ 1.29).
const KUBEADM_ADMINS_GROUP: &str = "kubeadm:cluster-admins";

/// Credential of a kubeconfig.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The host's leaf at this index (client certificate and key embedded).
    Leaf(usize),
    /// The cluster's bootstrap token.
    Token,
}

/// Where the bytes of a host file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A CA certificate.
    CaCert(CaId),
    /// A CA private key.
    CaKey(CaId),
    /// Certificate of the host's leaf at this index.
    LeafCert(usize),
    /// Key of the host's leaf at this index.
    LeafKey(usize),
    /// `sa.key`.
    SaKey,
    /// `sa.pub`.
    SaPub,
    /// A kubeconfig.
    Kubeconfig {
        /// User (and context) name.
        user: String,
        /// API server URL.
        server: String,
        /// How the user authenticates.
        credential: Credential,
    },
    /// The apiserver's `--token-auth-file` holding the bootstrap token.
    TokenCsv,
    /// The host's kubeadm configuration (it holds the bootstrap token and the CA's pin).
    KubeadmConfig(kiln_kubeadm::Role),
}

/// One file on a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    /// Absolute path on the host.
    pub path: String,
    /// File mode.
    pub mode: u32,
    /// Where its bytes come from.
    pub source: Source,
}

/// Everything one host needs: the certificates it wants and the files they land in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    /// Host name.
    pub name: String,
    /// Leaf certificates issued for this host.
    pub leaves: Vec<LeafSpec>,
    /// Files, sorted by path.
    pub files: Vec<FilePlan>,
}

/// What a leaf certificate must look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// State path without extension, e.g. `issued/m1/etcd/server` (`.crt` and `.key` added).
    pub rel: String,
    /// The signing CA.
    pub ca: CaId,
    /// Subject common name.
    pub cn: String,
    /// Subject organisation (Kubernetes group), if any.
    pub org: Option<String>,
    /// Subject alternative names.
    pub sans: BTreeSet<San>,
    /// extendedKeyUsage serverAuth.
    pub server: bool,
    /// extendedKeyUsage clientAuth.
    pub client: bool,
}

impl LeafSpec {
    /// State path of the certificate.
    pub fn cert_rel(&self) -> String {
        format!("{}.crt", self.rel)
    }

    /// State path of the private key.
    pub fn key_rel(&self) -> String {
        format!("{}.key", self.rel)
    }
}

/// What a leaf must certify.
struct Want<'a> {
    ca: CaId,
    cn: &'a str,
    org: Option<&'a str>,
    sans: BTreeSet<San>,
    usage: Usage,
}

/// Extended key usages of a leaf.
#[derive(Clone, Copy)]
enum Usage {
    Server,
    Client,
    Both,
}

/// Accumulates one host's leaves and files; files shared by two roles are listed once.
struct Builder<'a> {
    host: &'a PkiHost,
    leaves: Vec<LeafSpec>,
    files: BTreeMap<String, FilePlan>,
}

impl Builder<'_> {
    fn file(&mut self, path: String, mode: u32, source: Source) {
        let plan = FilePlan {
            path: path.clone(),
            mode,
            source,
        };
        let previous = self.files.insert(path, plan.clone());
        debug_assert!(
            previous.is_none_or(|p| p == plan),
            "two sources for one path"
        );
    }

    /// Adds a leaf stored at `issued/<host>/<name>.{crt,key}` and returns its index.
    fn leaf(&mut self, name: &str, want: Want<'_>) -> usize {
        self.leaves.push(LeafSpec {
            rel: format!("{ISSUED}/{}/{name}", self.host.name),
            ca: want.ca,
            cn: want.cn.to_string(),
            org: want.org.map(str::to_string),
            sans: want.sans,
            server: matches!(want.usage, Usage::Server | Usage::Both),
            client: matches!(want.usage, Usage::Client | Usage::Both),
        });
        self.leaves.len() - 1
    }

    /// Adds a leaf and places it at `<dir>/<name>.{crt,key}` on the host.
    fn leaf_files(&mut self, dir: &str, name: &str, want: Want<'_>) {
        let i = self.leaf(name, want);
        self.file(
            format!("{dir}/{name}.crt"),
            MODE_PUBLIC,
            Source::LeafCert(i),
        );
        self.file(format!("{dir}/{name}.key"), MODE_SECRET, Source::LeafKey(i));
    }

    /// The kubelet's serving certificate in its cert-dir, for the node's name and address.
    fn kubelet_serving(&mut self) {
        let host = self.host;
        let serving = Want {
            ca: CaId::Cluster,
            cn: &format!("system:node:{}", host.name),
            org: Some(NODES_GROUP),
            sans: sans([San::Dns(host.name.clone()), San::Ip(host.ip)]),
            usage: Usage::Server,
        };
        self.leaf_files(KUBELET_PKI_DIR, "kubelet", serving);
    }

    fn ca_key(&mut self, id: CaId) {
        self.file(
            format!("{PKI_DIR}/{}", id.key_rel()),
            MODE_SECRET,
            Source::CaKey(id),
        );
    }

    fn ca_cert(&mut self, id: CaId) {
        self.file(
            format!("{PKI_DIR}/{}", id.cert_rel()),
            MODE_PUBLIC,
            Source::CaCert(id),
        );
    }

    /// A client certificate for `cn`/`org`, stored as leaf `name`, embedded in `<KUBE_DIR>/<conf>`.
    fn kubeconfig(&mut self, conf: &str, name: &str, cn: &str, org: Option<&str>, server: &str) {
        let want = client(CaId::Cluster, cn, org);
        let i = self.leaf(name, want);
        self.file(
            format!("{KUBE_DIR}/{conf}"),
            MODE_SECRET,
            Source::Kubeconfig {
                user: cn.to_string(),
                server: server.to_string(),
                credential: Credential::Leaf(i),
            },
        );
    }
}

/// A client-only leaf without SANs.
fn client<'a>(ca: CaId, cn: &'a str, org: Option<&'a str>) -> Want<'a> {
    Want {
        ca,
        cn,
        org,
        sans: BTreeSet::new(),
        usage: Usage::Client,
    }
}

fn sans(items: impl IntoIterator<Item = San>) -> BTreeSet<San> {
    items.into_iter().collect()
}

const LOCALHOST_V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const LOCALHOST_V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);

/// SANs of the apiserver serving certificate (the same on every master).
fn apiserver_sans(input: &PkiInput) -> BTreeSet<San> {
    let mut s = sans(
        [
            "kubernetes".to_string(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{}", input.cluster_domain),
        ]
        .into_iter()
        .map(San::Dns),
    );
    s.insert(San::Ip(input.service_ip));
    s.insert(San::Ip(LOCALHOST_V4));
    for m in input.hosts.iter().filter(|h| h.has(role::MASTER)) {
        s.insert(San::Dns(m.name.clone()));
        s.insert(San::Ip(m.ip));
    }
    s.extend(input.vip.map(San::Ip));
    s.extend(input.external_api.as_deref().and_then(url_host));
    s.extend(input.extra_apiserver_sans.iter().map(|x| San::parse(x)));
    s
}

/// Computes every host's leaves and files from a validated input, sorted by host name.
pub(crate) fn hosts(input: &PkiInput) -> Vec<HostLayout> {
    let endpoint = input.api_endpoint().unwrap_or_default();
    let local = input.local_endpoint();
    let bootstrap = input.kubelet_auth == KubeletAuth::BootstrapToken;
    let kubeadm = input.kubeadm.as_ref();
    let stacked = matches!(
        kubeadm.map(|k| &k.etcd),
        Some(kiln_kubeadm::Etcd::Stacked { .. })
    );
    let mut hosts: Vec<&PkiHost> = input.hosts.iter().collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for host in hosts {
        let mut b = Builder {
            host,
            leaves: Vec::new(),
            files: BTreeMap::new(),
        };
        if host.has(role::ETCD) {
            // kubeadm's etcd SANs: the member's name and IP plus loopback.
            let member = sans([
                San::Dns(host.name.clone()),
                San::Ip(host.ip),
                San::Dns("localhost".into()),
                San::Ip(LOCALHOST_V4),
                San::Ip(LOCALHOST_V6),
            ]);
            let serve = |sans| Want {
                ca: CaId::Etcd,
                cn: &host.name,
                org: None,
                sans,
                usage: Usage::Both,
            };
            b.ca_cert(CaId::Etcd);
            b.leaf_files(PKI_DIR, "etcd/server", serve(member.clone()));
            b.leaf_files(PKI_DIR, "etcd/peer", serve(member));
            let health = client(CaId::Etcd, "kube-etcd-healthcheck-client", None);
            b.leaf_files(PKI_DIR, "etcd/healthcheck-client", health);
        }
        if host.has(role::MASTER) {
            let c = CaId::Cluster;
            b.ca_cert(c);
            if kubeadm.is_some() {
                // kubeadm's shared control-plane material: every master signs with ca.key
                // (kubelet CSRs) and holds the other CAs' keys as `kubeadm join` expects them.
                b.ca_key(c);
                b.ca_key(CaId::FrontProxy);
                if stacked {
                    b.ca_key(CaId::Etcd);
                }
            } else if bootstrap {
                // kube-controller-manager signs the kubelets' CSRs with ca.key.
                let key = format!("{PKI_DIR}/{}", c.key_rel());
                b.file(key, MODE_SECRET, Source::CaKey(c));
                b.file(
                    format!("{KUBE_DIR}/token.csv"),
                    MODE_SECRET,
                    Source::TokenCsv,
                );
            }
            let serving = Want {
                ca: c,
                cn: "kube-apiserver",
                org: None,
                sans: apiserver_sans(input),
                usage: Usage::Server,
            };
            b.leaf_files(PKI_DIR, "apiserver", serving);
            let kubelet_client = client(c, "kube-apiserver-kubelet-client", Some(MASTERS_GROUP));
            b.leaf_files(PKI_DIR, "apiserver-kubelet-client", kubelet_client);
            b.ca_cert(CaId::FrontProxy);
            let proxy = client(CaId::FrontProxy, "front-proxy-client", None);
            b.leaf_files(PKI_DIR, "front-proxy-client", proxy);
            b.file(format!("{PKI_DIR}/sa.key"), MODE_SECRET, Source::SaKey);
            b.file(format!("{PKI_DIR}/sa.pub"), MODE_PUBLIC, Source::SaPub);
            b.ca_cert(CaId::Etcd);
            let etcd = client(
                CaId::Etcd,
                "kube-apiserver-etcd-client",
                Some(MASTERS_GROUP),
            );
            b.leaf_files(PKI_DIR, "apiserver-etcd-client", etcd);
            let admin = Some(if kubeadm.is_some() {
                KUBEADM_ADMINS_GROUP
            } else {
                MASTERS_GROUP
            });
            b.kubeconfig("admin.conf", "admin", "kubernetes-admin", admin, &endpoint);
            // kubeadm points the components at their own master's advertised address.
            let own = https_url(host.ip, kubeadm.map_or(input.api_port, |k| k.bind_port));
            let local = if kubeadm.is_some() { &own } else { &local };
            let cm = "system:kube-controller-manager";
            b.kubeconfig(
                "controller-manager.conf",
                "controller-manager",
                cm,
                None,
                local,
            );
            let sched = "system:kube-scheduler";
            b.kubeconfig("scheduler.conf", "scheduler", sched, None, local);
        }
        if kubeadm.is_some() {
            kubeadm_host(&mut b, input);
        } else if host.has(role::NODE) {
            b.ca_cert(CaId::Cluster);
            let node_user = format!("system:node:{}", host.name);
            let nodes = Some(NODES_GROUP);
            if bootstrap {
                let source = Source::Kubeconfig {
                    user: BOOTSTRAP_USER.into(),
                    server: endpoint.clone(),
                    credential: Credential::Token,
                };
                b.file(
                    format!("{KUBE_DIR}/bootstrap-kubelet.conf"),
                    MODE_SECRET,
                    source,
                );
            } else {
                b.kubeconfig(
                    "kubelet.conf",
                    "kubelet-client",
                    &node_user,
                    nodes,
                    &endpoint,
                );
            }
            b.kubelet_serving();
            let proxy = "system:kube-proxy";
            b.kubeconfig("kube-proxy.conf", "kube-proxy", proxy, None, &endpoint);
        }
        out.push(HostLayout {
            name: host.name.clone(),
            leaves: b.leaves,
            files: b.files.into_values().collect(),
        });
    }
    out
}

/// What kubeadm needs on a master or node beyond the control-plane certificates: its
/// configuration, the first master's kubelet and super-admin kubeconfigs, and every kubelet's
/// serving certificate.
///
/// Joining hosts get no `kubelet.conf` and no `ca.crt` of their own: `kubeadm join` refuses to
/// run where they exist and writes them itself through TLS bootstrapping.
fn kubeadm_host(b: &mut Builder<'_>, input: &PkiInput) {
    let host = b.host;
    let role = if input.init_master().is_some_and(|m| m.name == host.name) {
        kiln_kubeadm::Role::Init
    } else if host.has(role::MASTER) {
        kiln_kubeadm::Role::JoinControlPlane
    } else if host.has(role::NODE) {
        kiln_kubeadm::Role::Node
    } else {
        // An etcd or lb host outside the Kubernetes cluster.
        return;
    };
    b.file(
        kiln_kubeadm::CONFIG_PATH.to_string(),
        MODE_SECRET,
        Source::KubeadmConfig(role),
    );
    let endpoint = input.api_endpoint().unwrap_or_default();
    let node_user = format!("system:node:{}", host.name);
    if role == kiln_kubeadm::Role::Init {
        let sa = "kubernetes-super-admin";
        let masters = Some(MASTERS_GROUP);
        b.kubeconfig("super-admin.conf", "super-admin", sa, masters, &endpoint);
        b.kubeconfig(
            "kubelet.conf",
            "kubelet-client",
            &node_user,
            Some(NODES_GROUP),
            &endpoint,
        );
    }
    // The kubelet serves with cert-dir's kubelet.crt when it exists (else it signs its own).
    b.kubelet_serving();
}
