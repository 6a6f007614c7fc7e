//! The PKI's input types, their validation, and the one rule for the API server URL.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::InvalidInput;

/// Role names the PKI acts on; any other role is ignored.
pub mod role {
    /// Runs an etcd member.
    pub const ETCD: &str = "etcd";
    /// Runs kube-apiserver, kube-controller-manager and kube-scheduler.
    pub const MASTER: &str = "master";
    /// Runs kubelet and kube-proxy.
    pub const NODE: &str = "node";
    /// Runs the API load balancer; needs no PKI material.
    pub const LB: &str = "lb";
}

/// Everything the PKI needs to know about the cluster (converted from the validated cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiInput {
    /// Cluster name, used as the cluster and context name in kubeconfigs.
    pub cluster_name: String,
    /// Cluster DNS domain, e.g. `cluster.local`.
    pub cluster_domain: String,
    /// First IP of the service CIDR (the `kubernetes` service), a SAN of the apiserver.
    pub service_ip: IpAddr,
    /// Every host of the cluster with its roles.
    pub hosts: Vec<PkiHost>,
    /// Load-balancer VIP in front of the apiservers, if any.
    pub vip: Option<IpAddr>,
    /// Port kube-apiserver listens on (6443 by default).
    pub api_port: u16,
    /// API URL for nodes and admins when it is not `https://<vip>:<api_port>`,
    /// e.g. `https://k8s.example.com:8443`; its host becomes an apiserver SAN.
    pub external_api: Option<String>,
    /// Extra apiserver SANs: IP addresses or DNS names (`*.` wildcards allowed).
    pub extra_apiserver_sans: Vec<String>,
    /// Key algorithm of new keys.
    pub key_type: KeyType,
    /// How kubelets authenticate to the apiserver.
    pub kubelet_auth: KubeletAuth,
    /// Certificate lifetimes and renewal window.
    pub lifetimes: Lifetimes,
    /// kubeadm's settings when kubeadm brings the cluster up (the layout then follows
    /// kubeadm's files exactly and every kubeadm host gets its kubeadm configuration).
    pub kubeadm: Option<kiln_kubeadm::Settings>,
}

/// One host as the PKI sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiHost {
    /// Host (and Kubernetes node) name; lower-case RFC 1123, used in SANs and state paths.
    pub name: String,
    /// The host's cluster IP address.
    pub ip: IpAddr,
    /// Role names (see [`role`]); unknown ones are ignored.
    pub roles: BTreeSet<String>,
}

impl PkiHost {
    /// Whether the host has role `r`.
    pub fn has(&self, r: &str) -> bool {
        self.roles.contains(r)
    }
}

/// Key algorithm for newly generated keys.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// RSA 2048-bit keys, signatures with SHA-256 (kubeadm's default).
    #[default]
    Rsa2048,
    /// ECDSA keys on P-256, signatures with SHA-256.
    EcdsaP256,
}

/// How kubelets authenticate to the apiserver.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletAuth {
    /// kiln issues each kubelet's client certificate and writes `kubelet.conf`.
    #[default]
    Certificates,
    /// Kubelets join with a bootstrap token (`bootstrap-kubelet.conf`, `token.csv`) and
    /// kube-controller-manager signs their client certificates with `ca.key`.
    BootstrapToken,
}

/// Certificate lifetimes, the notBefore backdating and the renewal window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Lifetime of a new CA (default 10 years).
    pub ca: Duration,
    /// Lifetime of a new leaf certificate (default 1 year), capped at its CA's notAfter.
    pub leaf: Duration,
    /// How far notBefore lies before "now" to tolerate clock skew (default 1 hour).
    pub backdate: Duration,
    /// A leaf this close to its notAfter is re-issued (default 30 days).
    pub renew_before: Duration,
}

const DAY: u64 = 24 * 60 * 60;

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            ca: Duration::from_secs(3650 * DAY),
            leaf: Duration::from_secs(365 * DAY),
            backdate: Duration::from_secs(60 * 60),
            renew_before: Duration::from_secs(30 * DAY),
        }
    }
}

/// A subject alternative name, normalised so stored and wanted SANs compare exactly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum San {
    /// A DNS name, lower-case.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl San {
    /// An IP SAN if `s` parses as an address, else a DNS SAN.
    pub fn parse(s: &str) -> San {
        match s.parse::<IpAddr>() {
            Ok(ip) => San::Ip(ip),
            Err(_) => San::Dns(s.to_ascii_lowercase()),
        }
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(d) => write!(f, "DNS:{d}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
        }
    }
}

/// Whether `s` is a valid lower-case RFC 1123 DNS name (`wildcard` allows a leading `*.`).
pub fn is_dns_name(s: &str, wildcard: bool) -> bool {
    let s = match s.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => s,
    };
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// `https://<ip>:<port>`, with brackets around IPv6 addresses.
pub fn https_url(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("https://{v4}:{port}"),
        IpAddr::V6(v6) => format!("https://[{v6}]:{port}"),
    }
}

/// The host part of an `https://host[:port][/path]` URL.
pub fn url_host(url: &str) -> Option<San> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains('@') {
        return None;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        San::Ip(IpAddr::V6(inside.parse().ok()?))
    } else {
        let host = match authority.split_once(':') {
            Some((h, port)) => {
                port.parse::<u16>().ok()?;
                h
            }
            None => authority,
        };
        let san = San::parse(host);
        if let San::Dns(d) = &san {
            if !is_dns_name(d, false) {
                return None;
            }
        }
        san
    };
    Some(host)
}

impl PkiInput {
    /// Checks everything the PKI relies on; nothing touches the disk before this passes.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.cluster_name.trim().is_empty() {
            return Err(InvalidInput::new("cluster_name", "must not be empty"));
        }
        if !is_dns_name(&self.cluster_domain, false) {
            return Err(InvalidInput::new(
                "cluster_domain",
                format!("{:?} is not a lower-case DNS name", self.cluster_domain),
            ));
        }
        if self.api_port == 0 {
            return Err(InvalidInput::new("api_port", "must not be 0"));
        }
        let mut names = BTreeMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            // The name is a path component of the state folder: only RFC 1123 names.
            if !is_dns_name(&h.name, false) {
                return Err(InvalidInput::new(
                    format!("hosts[{i}].name"),
                    format!("{:?} is not a lower-case RFC 1123 host name", h.name),
                ));
            }
            if let Some(j) = names.insert(h.name.as_str(), i) {
                return Err(InvalidInput::new(
                    format!("hosts[{i}].name"),
                    format!("{:?} is also the name of hosts[{j}]", h.name),
                ));
            }
        }
        for (i, s) in self.extra_apiserver_sans.iter().enumerate() {
            if let San::Dns(d) = San::parse(s) {
                if !is_dns_name(&d, true) {
                    return Err(InvalidInput::new(
                        format!("extra_apiserver_sans[{i}]"),
                        format!("{s:?} is neither an IP address nor a DNS name"),
                    ));
                }
            }
        }
        if let Some(url) = &self.external_api {
            if url_host(url).is_none() {
                return Err(InvalidInput::new(
                    "external_api",
                    format!("{url:?} is not an https://host[:port] URL"),
                ));
            }
        }
        let l = &self.lifetimes;
        if l.leaf.is_zero() || l.ca.is_zero() {
            return Err(InvalidInput::new("lifetimes", "lifetimes must not be zero"));
        }
        if l.leaf > l.ca {
            return Err(InvalidInput::new(
                "lifetimes.leaf",
                "a leaf cannot outlive the CA that signs it",
            ));
        }
        // Otherwise every rerun would find every leaf due for renewal.
        if l.renew_before >= l.leaf {
            return Err(InvalidInput::new(
                "lifetimes.renew_before",
                "must be shorter than the leaf lifetime",
            ));
        }
        let needs_endpoint = self
            .hosts
            .iter()
            .any(|h| h.has(role::NODE) || h.has(role::MASTER));
        if needs_endpoint && self.api_endpoint().is_none() {
            return Err(InvalidInput::new(
                "external_api",
                "no API endpoint: give a VIP, an external API URL or a master",
            ));
        }
        Ok(())
    }

    /// The one rule for the API server URL that kubeconfigs, host plans and templates use:
    /// `external_api` (without a trailing `/`), else `https://<vip>:<api_port>`, else the master
    /// whose name sorts first on `api_port`; IPv6 addresses are bracketed.
    pub fn api_endpoint(&self) -> Option<String> {
        if let Some(url) = &self.external_api {
            return Some(url.trim_end_matches('/').to_string());
        }
        if let Some(vip) = self.vip {
            return Some(https_url(vip, self.api_port));
        }
        self.init_master().map(|m| https_url(m.ip, self.api_port))
    }

    /// The master that runs `kubeadm init`: the one whose name sorts first (the same master
    /// [`PkiInput::api_endpoint`] falls back to).
    pub fn init_master(&self) -> Option<&PkiHost> {
        self.hosts
            .iter()
            .filter(|h| h.has(role::MASTER))
            .min_by(|a, b| a.name.cmp(&b.name))
    }

    /// URL control-plane components on a master use: the local apiserver.
    pub fn local_endpoint(&self) -> String {
        https_url(IpAddr::from([127, 0, 0, 1]), self.api_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_name("kubernetes.default.svc.cluster.local", false));
        assert!(is_dns_name("m-1", false));
        assert!(!is_dns_name("M1", false));
        assert!(!is_dns_name("../etc", false));
        assert!(!is_dns_name("a..b", false));
        assert!(!is_dns_name("-a", false));
        assert!(!is_dns_name("", false));
        assert!(!is_dns_name("*.example.com", false));
        assert!(is_dns_name("*.example.com", true));
    }

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://k8s.example.com:8443/"),
            Some(San::Dns("k8s.example.com".into()))
        );
        assert_eq!(
            url_host("https://10.0.0.5"),
            Some(San::Ip("10.0.0.5".parse().unwrap()))
        );
        assert_eq!(
            url_host("https://[fd00::5]:6443"),
            Some(San::Ip("fd00::5".parse().unwrap()))
        );
        assert_eq!(url_host("http://k8s:6443"), None);
        assert_eq!(url_host("https://user@k8s:6443"), None);
        assert_eq!(url_host("https://k8s:port"), None);
    }

    fn input(hosts: Vec<PkiHost>, vip: Option<&str>, external: Option<&str>) -> PkiInput {
        PkiInput {
            cluster_name: "c".into(),
            cluster_domain: "cluster.local".into(),
            service_ip: "10.96.0.1".parse().unwrap(),
            hosts,
            vip: vip.map(|v| v.parse().unwrap()),
            api_port: 8443,
            external_api: external.map(str::to_string),
            extra_apiserver_sans: Vec::new(),
            key_type: KeyType::default(),
            kubelet_auth: KubeletAuth::default(),
            lifetimes: Lifetimes::default(),
            kubeadm: None,
        }
    }

    fn host(name: &str, ip: &str, role: &str) -> PkiHost {
        PkiHost {
            name: name.into(),
            ip: ip.parse().unwrap(),
            roles: [role.to_string()].into(),
        }
    }

    fn masters() -> Vec<PkiHost> {
        vec![
            host("n1", "10.0.0.21", role::NODE),
            host("m2", "10.0.0.12", role::MASTER),
            host("m1", "10.0.0.11", role::MASTER),
        ]
    }

    #[test]
    fn api_url_prefers_the_external_endpoint() {
        let i = input(
            masters(),
            Some("10.0.0.100"),
            Some("https://k8s.example.com:443/"),
        );
        assert_eq!(
            i.api_endpoint().as_deref(),
            Some("https://k8s.example.com:443")
        );
    }

    #[test]
    fn api_url_falls_back_to_the_vip() {
        let i = input(masters(), Some("10.0.0.100"), None);
        assert_eq!(i.api_endpoint().as_deref(), Some("https://10.0.0.100:8443"));
        let i = input(masters(), Some("fd00::100"), None);
        assert_eq!(
            i.api_endpoint().as_deref(),
            Some("https://[fd00::100]:8443")
        );
    }

    #[test]
    fn api_url_falls_back_to_the_master_first_by_name() {
        let i = input(masters(), None, None);
        assert_eq!(i.api_endpoint().as_deref(), Some("https://10.0.0.11:8443"));
        let v6 = vec![
            host("m9", "fd00::9", role::MASTER),
            host("m3", "fd00::3", role::MASTER),
        ];
        let i = input(v6, None, None);
        assert_eq!(i.api_endpoint().as_deref(), Some("https://[fd00::3]:8443"));
    }

    #[test]
    fn api_url_is_none_without_endpoint_vip_or_master() {
        let i = input(vec![host("e1", "10.0.0.1", role::ETCD)], None, None);
        assert_eq!(i.api_endpoint(), None);
        assert!(i.validate().is_ok(), "etcd-only clusters need no API URL");
        let i = input(vec![host("n1", "10.0.0.21", role::NODE)], None, None);
        assert_eq!(i.validate().unwrap_err().field, "external_api");
    }

    #[test]
    fn ipv6_urls_have_brackets() {
        assert_eq!(
            https_url("fd00::1".parse().unwrap(), 6443),
            "https://[fd00::1]:6443"
        );
        assert_eq!(
            https_url("10.0.0.1".parse().unwrap(), 6443),
            "https://10.0.0.1:6443"
        );
    }
}
