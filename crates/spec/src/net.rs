//! IP networks: parsing, containment and overlap of CIDR blocks, MAC addresses, host names.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network in CIDR notation, e.g. `10.96.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

fn to_u128(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v4) => (u32::from(v4) as u128, 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((v as u32).into())
    } else {
        IpAddr::V6(v.into())
    }
}

impl Cidr {
    fn bits(&self) -> u8 {
        to_u128(self.addr).1
    }

    fn mask(&self) -> u128 {
        let bits = self.bits();
        let host = bits - self.prefix;
        let all = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        if host == 128 {
            0
        } else {
            all & !((1u128 << host) - 1)
        }
    }

    /// Whether `ip` lies inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v, bits) = to_u128(ip);
        bits == self.bits() && (v & self.mask()) == to_u128(self.addr).0
    }

    /// Whether two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        if self.bits() != other.bits() {
            return false;
        }
        let shorter = if self.prefix <= other.prefix {
            self
        } else {
            other
        };
        let longer = if std::ptr::eq(shorter, self) {
            other
        } else {
            self
        };
        shorter.contains(longer.addr)
    }

    /// The `n`-th address of the network (0 is the network address).
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let (base, bits) = to_u128(self.addr);
        let size = if bits - self.prefix >= 128 {
            u128::MAX
        } else {
            1u128 << (bits - self.prefix)
        };
        (n < size).then(|| from_u128(base + n, bits == 32))
    }
}

/// Why a value is not a CIDR, a MAC address or a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// No `/` between address and prefix.
    #[error("expected a CIDR like 10.0.0.0/24, found {0:?}")]
    CidrForm(String),
    /// The part before `/` is not an address.
    #[error("{ip:?} is not an IP address (in CIDR {cidr:?})")]
    CidrAddress {
        /// The address part.
        ip: String,
        /// The CIDR as written.
        cidr: String,
    },
    /// The part after `/` is not a number.
    #[error("{prefix:?} is not a prefix length (in CIDR {cidr:?})")]
    CidrPrefix {
        /// The prefix part.
        prefix: String,
        /// The CIDR as written.
        cidr: String,
    },
    /// The prefix is longer than the address.
    #[error("prefix /{prefix} is longer than {bits} bits")]
    PrefixTooLong {
        /// The prefix length.
        prefix: u8,
        /// The address's bits (32 or 128).
        bits: u8,
    },
    /// The address has bits set beyond the prefix.
    #[error("{cidr:?} has host bits set; the network is {network}/{prefix}")]
    HostBits {
        /// The CIDR as written.
        cidr: String,
        /// The network it probably means.
        network: IpAddr,
        /// The prefix length.
        prefix: u8,
    },
    /// Not six pairs of hex digits.
    #[error("expected a MAC address like 52:54:00:12:34:56, found {0:?}")]
    Mac(String),
    /// Not an RFC 1123 label.
    #[error("{name:?} is not a valid {what}: use 1-63 lowercase letters, digits and '-', not starting or ending with '-'")]
    Label {
        /// The name as written.
        name: String,
        /// What it names ("host name", "cluster name").
        what: &'static str,
    },
}

impl FromStr for Cidr {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = s
            .split_once('/')
            .ok_or_else(|| NetError::CidrForm(s.to_string()))?;
        let ip: IpAddr = ip.parse().map_err(|_| NetError::CidrAddress {
            ip: ip.to_string(),
            cidr: s.to_string(),
        })?;
        let prefix: u8 = prefix.parse().map_err(|_| NetError::CidrPrefix {
            prefix: prefix.to_string(),
            cidr: s.to_string(),
        })?;
        let bits = to_u128(ip).1;
        if prefix > bits {
            return Err(NetError::PrefixTooLong { prefix, bits });
        }
        let c = Cidr { addr: ip, prefix };
        if to_u128(ip).0 & !c.mask() != 0 {
            return Err(NetError::HostBits {
                cidr: s.to_string(),
                network: from_u128(to_u128(ip).0 & c.mask(), bits == 32),
                prefix,
            });
        }
        Ok(c)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a MAC address `aa:bb:cc:dd:ee:ff` into lowercase canonical form.
pub fn parse_mac(s: &str) -> Result<String, NetError> {
    let parts: Vec<&str> = s.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(NetError::Mac(s.to_string()))
    }
}

/// Checks an RFC 1123 host name label (what Kubernetes accepts as a node name).
pub fn check_hostname(s: &str) -> Result<(), NetError> {
    check_label(s, "host name")
}

/// Checks an RFC 1123 label; `what` names it in the error ("cluster name").
pub fn check_label(s: &str, what: &'static str) -> Result<(), NetError> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(NetError::Label {
            name: s.to_string(),
            what,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_rejects_host_bits_and_bad_prefix() {
        assert!("10.0.0.1/24"
            .parse::<Cidr>()
            .unwrap_err()
            .to_string()
            .contains("host bits"));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert_eq!(c("0.0.0.0/0").prefix, 0);
    }

    #[test]
    fn contains_and_overlap() {
        assert!(c("10.96.0.0/12").contains("10.96.0.10".parse().unwrap()));
        assert!(!c("10.96.0.0/12").contains("10.112.0.1".parse().unwrap()));
        assert!(c("10.0.0.0/8").overlaps(&c("10.244.0.0/16")));
        assert!(c("10.244.0.0/16").overlaps(&c("10.0.0.0/8")));
        assert!(!c("10.244.0.0/16").overlaps(&c("10.96.0.0/12")));
        assert!(!c("10.0.0.0/8").overlaps(&c("fd00::/8")));
    }

    #[test]
    fn nth_address() {
        assert_eq!(c("10.96.0.0/12").nth(1).unwrap().to_string(), "10.96.0.1");
        assert_eq!(c("10.0.0.0/30").nth(4), None);
    }

    #[test]
    fn mac_and_hostname() {
        assert_eq!(parse_mac("52:54:00:AA:bb:01").unwrap(), "52:54:00:aa:bb:01");
        assert!(parse_mac("52:54:00:aa:bb").is_err());
        assert!(check_hostname("etcd-1").is_ok());
        assert!(check_hostname("Etcd_1").is_err());
        assert!(check_hostname("-x").is_err());
    }
}
