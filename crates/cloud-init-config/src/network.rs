//! Typed network-config version 2 (netplan syntax), as cloud-init 22.4 reads it.
//!
//! Debian 12's cloud-init renders it through ifupdown, which shapes two
//! choices here (checked with `cloud-init devel net-convert -O eni`):
//! interfaces are matched by MAC and renamed with `set-name`, and the default
//! route is given as `gateway4`, which becomes ifupdown's own `gateway`
//! line. `routes: [{to: default, …}]` is rejected by 22.4 ("Address default
//! is not a valid ip address"), and `to: 0.0.0.0/0` renders as
//! `post-up route add … || true`, which silently does nothing on hosts
//! without net-tools.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A network-config v2 document: `version: 2` and the Ethernet interfaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Interfaces by id; with `set-name` the id is only a label.
    pub ethernets: BTreeMap<String, Ethernet>,
}

/// The document as written: the fixed version first.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkConfigRepr {
    version: u8,
    #[serde(default)]
    ethernets: BTreeMap<String, Ethernet>,
}

impl Serialize for NetworkConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        NetworkConfigRepr {
            version: 2,
            ethernets: self.ethernets.clone(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for NetworkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = NetworkConfigRepr::deserialize(deserializer)?;
        if repr.version != 2 {
            return Err(serde::de::Error::invalid_value(
                serde::de::Unexpected::Unsigned(repr.version.into()),
                &"version 2",
            ));
        }
        Ok(Self {
            ethernets: repr.ethernets,
        })
    }
}

/// One Ethernet interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ethernet {
    /// Which physical interface this is.
    #[serde(rename = "match", default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<Match>,
    /// The name to give the matched interface, e.g. `eth0`.
    #[serde(rename = "set-name", default, skip_serializing_if = "Option::is_none")]
    pub set_name: Option<String>,
    /// Configure IPv4 by DHCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp4: Option<bool>,
    /// Static addresses in CIDR form, e.g. `10.0.0.11/24`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// IPv4 default gateway (preferred on ifupdown hosts; see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway4: Option<String>,
    /// Static routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS servers and search domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameservers: Option<Nameservers>,
}

/// How an interface is recognised.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The MAC address, lowercase `xx:xx:xx:xx:xx:xx`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub macaddress: Option<String>,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination in CIDR form (cloud-init 22.4 does not accept `default`).
    pub to: String,
    /// Next hop.
    pub via: String,
    /// Route metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// DNS settings of an interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nameservers {
    /// Server addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

impl Ethernet {
    /// The interface with MAC `mac`, renamed `name`, with static `addresses`
    /// and an optional IPv4 default `gateway`: the shape that works on
    /// Debian 12 with ifupdown. The MAC is lowercased.
    pub fn static_by_mac(
        mac: &str,
        name: &str,
        addresses: impl IntoIterator<Item = impl Into<String>>,
        gateway: Option<&str>,
    ) -> Self {
        Self {
            matches: Some(Match {
                macaddress: Some(mac.to_ascii_lowercase()),
            }),
            set_name: Some(name.to_owned()),
            addresses: addresses.into_iter().map(Into::into).collect(),
            gateway4: gateway.map(str::to_owned),
            ..Self::default()
        }
    }
}

impl NetworkConfig {
    /// Checks what cloud-init would otherwise reject or misapply at boot:
    /// interface ids and names, MAC syntax, CIDR addresses, route and
    /// gateway addresses.
    pub fn validate(&self) -> Result<()> {
        for (id, eth) in &self.ethernets {
            check_ifname("network-config ethernets id", id)?;
            if let Some(name) = &eth.set_name {
                check_ifname("network-config set-name", name)?;
            }
            if let Some(mac) = eth.matches.as_ref().and_then(|m| m.macaddress.as_ref()) {
                check_mac(mac)?;
            }
            for address in &eth.addresses {
                check_cidr("network-config addresses", address)?;
            }
            if let Some(gateway) = &eth.gateway4 {
                match gateway.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => {}
                    _ => {
                        return Err(invalid(
                            "network-config gateway4",
                            gateway,
                            "not an IPv4 address",
                        ))
                    }
                }
            }
            for route in &eth.routes {
                check_cidr("network-config routes to", &route.to)?;
                if route.via.parse::<IpAddr>().is_err() {
                    return Err(invalid(
                        "network-config routes via",
                        &route.via,
                        "not an IP address",
                    ));
                }
            }
            if let Some(ns) = &eth.nameservers {
                for server in &ns.addresses {
                    if server.parse::<IpAddr>().is_err() {
                        return Err(invalid(
                            "network-config nameservers addresses",
                            server,
                            "not an IP address",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn invalid(field: &'static str, value: &str, reason: &'static str) -> Error {
    Error::Invalid {
        field,
        value: value.to_owned(),
        reason,
    }
}

/// Linux interface names: 1 to 15 bytes of `[A-Za-z0-9_.-]`, not starting
/// with a digit. The start rule also keeps YAML 1.1 from reading a key as a
/// number, and letters-only ids like `on` are refused below.
fn check_ifname(field: &'static str, name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || name.len() > 15 || !ok_chars {
        return Err(invalid(
            field,
            name,
            "must be 1 to 15 characters of [A-Za-z0-9_.-]",
        ));
    }
    if name.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-') {
        return Err(invalid(field, name, "must start with a letter or '_'"));
    }
    // YAML 1.1 (cloud-init's PyYAML) reads these plain keys as booleans or null.
    const YAML11_WORDS: [&str; 9] = ["y", "yes", "n", "no", "on", "off", "true", "false", "null"];
    if YAML11_WORDS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(invalid(field, name, "is a YAML 1.1 boolean or null word"));
    }
    Ok(())
}

fn check_mac(mac: &str) -> Result<()> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "network-config match macaddress",
            mac,
            "must be lowercase xx:xx:xx:xx:xx:xx",
        ))
    }
}

fn check_cidr(field: &'static str, value: &str) -> Result<()> {
    let Some((addr, prefix)) = value.split_once('/') else {
        return Err(invalid(field, value, "not in CIDR form ADDRESS/PREFIX"));
    };
    let max = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => 32,
        Ok(IpAddr::V6(_)) => 128,
        Err(_) => return Err(invalid(field, value, "not an IP address")),
    };
    match prefix.parse::<u8>() {
        Ok(p) if p <= max && !prefix.starts_with('+') => Ok(()),
        _ => Err(invalid(field, value, "prefix length out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(eth: Ethernet) -> NetworkConfig {
        NetworkConfig {
            ethernets: BTreeMap::from([("eth0".to_owned(), eth)]),
        }
    }

    #[test]
    fn valid_static_config_passes() {
        let eth = Ethernet::static_by_mac(
            "52:54:00:AB:cd:01",
            "eth0",
            ["10.0.0.11/24"],
            Some("10.0.0.1"),
        );
        assert_eq!(
            eth.matches.as_ref().unwrap().macaddress.as_deref(),
            Some("52:54:00:ab:cd:01")
        );
        one(eth).validate().unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                Ethernet::static_by_mac("52:54:00:ab:cd", "eth0", ["10.0.0.11/24"], None),
                "52:54:00:ab:cd",
            ),
            (
                Ethernet::static_by_mac("52:54:00:ab:cd:01", "eth0", ["10.0.0.11"], None),
                "10.0.0.11",
            ),
            (
                Ethernet::static_by_mac("52:54:00:ab:cd:01", "eth0", ["10.0.0.11/33"], None),
                "10.0.0.11/33",
            ),
            (
                Ethernet::static_by_mac(
                    "52:54:00:ab:cd:01",
                    "eth0",
                    ["10.0.0.11/24"],
                    Some("fe80::1"),
                ),
                "fe80::1",
            ),
            (
                Ethernet::static_by_mac(
                    "52:54:00:ab:cd:01",
                    "a-very-long-interface",
                    Vec::<String>::new(),
                    None,
                ),
                "a-very-long-interface",
            ),
            (
                Ethernet {
                    routes: vec![Route {
                        to: "default".into(),
                        via: "10.0.0.1".into(),
                        metric: None,
                    }],
                    ..Ethernet::default()
                },
                "default",
            ),
        ];
        for (eth, value) in cases {
            let err = one(eth).validate().unwrap_err().to_string();
            assert!(err.contains(value), "{err}");
        }
    }

    #[test]
    fn yaml11_words_and_numbers_are_refused_as_ids() {
        for id in ["on", "Yes", "0eth", "n"] {
            let cfg = NetworkConfig {
                ethernets: BTreeMap::from([(id.to_owned(), Ethernet::default())]),
            };
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(id), "{err}");
        }
    }
}
