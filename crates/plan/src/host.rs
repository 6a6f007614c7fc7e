//! A host's own facts as the build and its seed use them: address, prefix length, MAC, interface.

use std::net::IpAddr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use kiln_spec::net::Cidr;

/// The name every seed gives the cluster interface (found by its MAC, then renamed).
pub const INTERFACE: &str = "eth0";

/// The MAC address a host's seed matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMac {
    /// Written in cluster.toml.
    Planned(String),
    /// Derived from cluster and host name because cluster.toml gives none: locally
    /// administered, QEMU's 52:54:00 prefix, so test VMs get a stable address.
    Derived(String),
}

impl HostMac {
    /// The MAC of host `name` of `cluster`: `planned` when given, else the derived one.
    pub fn new(cluster: &str, name: &str, planned: Option<&str>) -> HostMac {
        match planned {
            Some(m) => HostMac::Planned(m.to_string()),
            None => {
                let d = Sha256::digest(format!("{cluster}/{name}"));
                HostMac::Derived(format!("52:54:00:{:02x}:{:02x}:{:02x}", d[0], d[1], d[2]))
            }
        }
    }

    /// The address, e.g. `52:54:00:12:34:56`.
    pub fn as_str(&self) -> &str {
        match self {
            HostMac::Planned(m) | HostMac::Derived(m) => m,
        }
    }
}

impl std::fmt::Display for HostMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `kiln plan --json` shows the MAC written in cluster.toml, `null` when it is derived.
impl Serialize for HostMac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HostMac::Planned(m) => s.serialize_some(m),
            HostMac::Derived(_) => s.serialize_none(),
        }
    }
}

/// How a host sits on the cluster network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNetwork {
    /// Prefix length of the host network its address lies in.
    pub prefix: u8,
    /// Interface name ([`INTERFACE`]).
    pub interface: String,
    /// Default gateway.
    pub gateway: Option<IpAddr>,
    /// DNS servers.
    pub nameservers: Vec<IpAddr>,
}

/// The prefix length of the first of `host_cidrs` that contains `ip`; `None` when none does.
pub fn prefix_of(host_cidrs: &[Cidr], ip: IpAddr) -> Option<u8> {
    host_cidrs.iter().find(|n| n.contains(ip)).map(|n| n.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_comes_from_the_network_holding_the_address() {
        let nets: Vec<Cidr> = ["10.0.0.0/16", "10.0.5.0/24", "fd00::/64"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let p = |ip: &str| prefix_of(&nets, ip.parse().unwrap());
        assert_eq!(p("10.0.5.7"), Some(16), "the first network holding it wins");
        assert_eq!(p("10.0.9.1"), Some(16));
        assert_eq!(p("fd00::7"), Some(64));
        assert_eq!(p("192.168.1.1"), None, "no silent /24");
    }

    #[test]
    fn planned_mac_wins_and_derived_mac_is_stable() {
        let planned = HostMac::new("lab", "etcd1", Some("52:54:00:77:00:11"));
        assert_eq!(planned, HostMac::Planned("52:54:00:77:00:11".into()));
        // Pinned: VMs of existing builds keep their address.
        let d = HostMac::new("k8s", "m1", None);
        assert_eq!(d, HostMac::Derived("52:54:00:18:e1:97".into()));
        assert_ne!(d, HostMac::new("k8s2", "m1", None));
        assert_eq!(serde_json::to_string(&d).unwrap(), "null");
        assert_eq!(
            serde_json::to_string(&planned).unwrap(),
            "\"52:54:00:77:00:11\""
        );
    }
}
