//! The cluster's certificate authorities: names and where their files live.

/// One of the cluster's three certificate authorities (kubeadm's names and paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CaId {
    /// `ca.crt`: signs apiserver, kubelet and component certificates.
    Cluster,
    /// `etcd/ca.crt`: signs etcd server, peer and client certificates.
    Etcd,
    /// `front-proxy-ca.crt`: signs the aggregation-layer client certificate.
    FrontProxy,
}

impl CaId {
    /// Every CA.
    pub const ALL: [CaId; 3] = [CaId::Cluster, CaId::Etcd, CaId::FrontProxy];

    /// Path of the certificate, relative to the state folder and to `/etc/kubernetes/pki`.
    pub fn cert_rel(self) -> &'static str {
        match self {
            CaId::Cluster => "ca.crt",
            CaId::Etcd => "etcd/ca.crt",
            CaId::FrontProxy => "front-proxy-ca.crt",
        }
    }

    /// Path of the private key, relative to the state folder and to `/etc/kubernetes/pki`.
    pub fn key_rel(self) -> &'static str {
        match self {
            CaId::Cluster => "ca.key",
            CaId::Etcd => "etcd/ca.key",
            CaId::FrontProxy => "front-proxy-ca.key",
        }
    }

    /// Subject common name (kubeadm's).
    pub fn cn(self) -> &'static str {
        match self {
            CaId::Cluster => "kubernetes",
            CaId::Etcd => "etcd-ca",
            CaId::FrontProxy => "front-proxy-ca",
        }
    }

    /// Human name for messages.
    pub fn what(self) -> &'static str {
        match self {
            CaId::Cluster => "cluster CA",
            CaId::Etcd => "etcd CA",
            CaId::FrontProxy => "front-proxy CA",
        }
    }
}
