//! Validated types: what later stages receive once every input has been checked.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;

use crate::kinds::{ImageSourceKind, SourceKind};
use crate::net::Cidr;

/// Target CPU architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// 64-bit ARM.
    Arm64,
}

impl Arch {
    /// All supported names.
    pub const NAMES: &'static [&'static str] = &["amd64", "arm64"];

    /// Parses `amd64` or `arm64`.
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "amd64" => Some(Arch::Amd64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    /// The name used in URLs and Debian architectures.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The name rpm uses (`x86_64`, `aarch64`).
    pub fn rpm_name(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A supported host operating system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum OsId {
    /// CentOS 7.
    #[serde(rename = "centos7")]
    Centos7,
    /// Rocky Linux 9.
    #[serde(rename = "rocky9")]
    Rocky9,
    /// Ubuntu 22.04.
    #[serde(rename = "ubuntu2204")]
    Ubuntu2204,
    /// Ubuntu 24.04.
    #[serde(rename = "ubuntu2404")]
    Ubuntu2404,
    /// Debian 12.
    #[serde(rename = "debian12")]
    Debian12,
}

impl OsId {
    /// All supported names.
    pub const NAMES: &'static [&'static str] =
        &["centos7", "rocky9", "ubuntu2204", "ubuntu2404", "debian12"];

    /// Parses an OS id such as `rocky9`.
    pub fn parse(s: &str) -> Option<OsId> {
        Some(match s {
            "centos7" => OsId::Centos7,
            "rocky9" => OsId::Rocky9,
            "ubuntu2204" => OsId::Ubuntu2204,
            "ubuntu2404" => OsId::Ubuntu2404,
            "debian12" => OsId::Debian12,
            _ => return None,
        })
    }

    /// The id as written in cluster.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            OsId::Centos7 => "centos7",
            OsId::Rocky9 => "rocky9",
            OsId::Ubuntu2204 => "ubuntu2204",
            OsId::Ubuntu2404 => "ubuntu2404",
            OsId::Debian12 => "debian12",
        }
    }

    /// The OS family whose profile sections apply: `el` or `debian`.
    pub fn family(self) -> &'static str {
        match self {
            OsId::Centos7 | OsId::Rocky9 => "el",
            _ => "debian",
        }
    }

    /// For Debian-family systems, the apt release (`Origin`, codename) whose index computes
    /// package closures, as apt reports them (`o=Debian,n=bookworm`).
    pub fn apt_release(self) -> Option<(&'static str, &'static str)> {
        match self {
            OsId::Debian12 => Some(("Debian", "bookworm")),
            OsId::Ubuntu2204 => Some(("Ubuntu", "jammy")),
            OsId::Ubuntu2404 => Some(("Ubuntu", "noble")),
            OsId::Centos7 | OsId::Rocky9 => None,
        }
    }
}

impl fmt::Display for OsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An absolute, normalised path on a host: no `.`/`..`/empty components, no whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct HostPath(String);

impl HostPath {
    /// Checks and wraps an absolute path such as `/etc/sysctl.d/k8s.conf`.
    pub fn parse(s: &str) -> Result<HostPath, ValueError> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(ValueError::Relative(s.to_string()));
        };
        if rest.is_empty() {
            return Err(ValueError::Root);
        }
        if rest
            .split('/')
            .any(|comp| comp.is_empty() || comp == "." || comp == "..")
        {
            return Err(ValueError::NotNormal(s.to_string()));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValueError::Whitespace(s.to_string()));
        }
        Ok(HostPath(s.to_string()))
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading '/', as stored under `rootfs/` in a bundle.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }
}

impl fmt::Display for HostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a host path or a file mode is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A host path that does not start with `/`.
    #[error("{0:?} must be an absolute path (start with '/')")]
    Relative(String),
    /// The host path `/` itself.
    #[error("the root folder itself is not a file destination")]
    Root,
    /// A host path with empty, `.` or `..` components.
    #[error("{0:?} must be normalised: no empty, '.' or '..' components")]
    NotNormal(String),
    /// A host path with whitespace or control characters.
    #[error("{0:?} contains whitespace or control characters")]
    Whitespace(String),
    /// Not three or four octal digits.
    #[error("expected an octal file mode such as \"0644\", found {0:?}")]
    Mode(String),
}

/// Parses an octal file mode written as a string, e.g. `"0644"`.
pub fn parse_mode(s: &str) -> Result<u32, ValueError> {
    let ok = (3..=4).contains(&s.len()) && s.chars().all(|c| ('0'..='7').contains(&c));
    match u32::from_str_radix(s, 8) {
        Ok(m) if ok && m <= 0o7777 => Ok(m),
        _ => Err(ValueError::Mode(s.to_string())),
    }
}

/// The validated cluster description.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Cluster name.
    pub name: String,
    /// CPU architecture of every host.
    pub arch: Arch,
    /// Default OS.
    pub os: OsId,
    /// Monotonic generation, bumped by the user for upgrades.
    pub generation: u64,
    /// Overlays, in application order.
    pub overlays: Vec<String>,
    /// Artifact source kinds, in preference order.
    pub sources: Vec<SourceKind>,
    /// Component versions, by key (`kubernetes`, `etcd`, …).
    pub versions: BTreeMap<String, String>,
    /// How Kubernetes is brought up on the hosts.
    pub bootstrap: Bootstrap,
    /// Networks and addresses.
    pub network: Network,
    /// Load balancer, when there is one.
    pub lb: Option<Lb>,
    /// External API endpoint, when the API is not served by this cluster's masters.
    pub api_endpoint: Option<String>,
    /// Certificate settings.
    pub pki: PkiSettings,
    /// URL prefix → replacement prefixes, tried in order before the original.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// How long downloads may wait (`[fetch]`). Not part of what is built.
    #[serde(skip)]
    pub fetch: crate::fetch::FetchSettings,
    /// What each host's seed carries and where install.sh finds bundles otherwise (`[seeds]`).
    pub seeds: crate::seeds::SeedSettings,
    /// Image source kinds in preference order.
    pub image_sources: Vec<ImageSourceKind>,
    /// Registry host → mirror base URLs.
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
    /// Registry credentials file.
    pub registry_credentials: Option<PathBuf>,
    /// Free variables for templates.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// SSH public keys put in every host's seed.
    pub ssh_authorized_keys: Vec<String>,
    /// Where the profiles' OS packages come from.
    pub packages: PackageSettings,
    /// `[image]`: the golden OS image, when the cluster has one.
    pub image: Option<ImageSettings>,
    /// Hosts, in file order.
    pub hosts: Vec<Host>,
    /// Resolved input and state paths.
    #[serde(skip)]
    pub paths: Paths,
}

/// Resolved paths of the other inputs and state folders.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// cluster.toml itself.
    pub cluster_file: PathBuf,
    /// The folder holding cluster.toml.
    pub base: PathBuf,
    /// profiles/.
    pub profiles: PathBuf,
    /// overlays/.
    pub overlays: PathBuf,
    /// catalog/.
    pub catalog: PathBuf,
    /// vendor/ store.
    pub vendor: PathBuf,
    /// PKI state.
    pub pki: PathBuf,
    /// kiln.lock.
    pub lock: PathBuf,
}

/// How the cluster's Kubernetes is brought up (`bootstrap` in cluster.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bootstrap {
    /// Seed 001's path: kiln's units run the binaries, kiln issues every credential.
    #[default]
    Binary,
    /// `kubeadm init`/`join` from kiln's configuration, on kiln's pre-issued PKI.
    Kubeadm,
}

impl Bootstrap {
    /// All names as written.
    pub const NAMES: &'static [&'static str] = &["binary", "kubeadm"];

    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            Bootstrap::Binary => "binary",
            Bootstrap::Kubeadm => "kubeadm",
        }
    }

    /// Parses `binary` or `kubeadm`.
    pub fn parse(s: &str) -> Option<Bootstrap> {
        match s {
            "binary" => Some(Bootstrap::Binary),
            "kubeadm" => Some(Bootstrap::Kubeadm),
            _ => None,
        }
    }
}

/// `[network]`, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// Networks the hosts live in.
    pub host_cidrs: Vec<Cidr>,
    /// Pod network.
    pub pod_cidr: Cidr,
    /// Service network.
    pub service_cidr: Cidr,
    /// Cluster DNS domain.
    pub cluster_domain: String,
    /// Cluster DNS service IP.
    pub cluster_dns: IpAddr,
    /// The first service IP (the `kubernetes` service).
    pub api_service_ip: IpAddr,
    /// CNI plugin name.
    pub cni: String,
    /// kube-proxy mode.
    pub kube_proxy_mode: String,
    /// Default gateway of the host network.
    pub gateway: Option<IpAddr>,
    /// DNS servers of the hosts.
    pub nameservers: Vec<IpAddr>,
    /// NTP servers.
    pub ntp_servers: Vec<String>,
}

/// `[packages]`, validated: how the profiles' OS packages reach the hosts.
#[derive(Debug, Clone, Serialize)]
pub struct PackageSettings {
    /// Put each role's package closure into its bundle (default). When false the hosts'
    /// own repositories must supply the packages: bundles carry none.
    pub bundle: bool,
    /// Debian family: packages every host has beyond a minbase system and
    /// [`ASSUMED_DEBIAN_HOST`], so closures leave them out.
    pub assume_installed: Vec<String>,
    /// Debian family: an apt configuration file per OS (for releases other than the build
    /// machine's); kiln runs apt with `APT_CONFIG` set to it.
    pub apt_config: BTreeMap<OsId, PathBuf>,
}

impl Default for PackageSettings {
    fn default() -> Self {
        PackageSettings {
            bundle: true,
            assume_installed: Vec::new(),
            apt_config: BTreeMap::new(),
        }
    }
}

/// The kernel an image has when `[image]` names none: the cloud kernel, for virtual machines.
pub const DEFAULT_IMAGE_KERNEL: &str = "cloud";

/// `[image]`, validated: the golden OS image of the cluster's OS (`kiln image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSettings {
    /// The OS the image is built for (the cluster's `os`).
    pub os: OsId,
    /// Packages beyond the catalog's `[os-image.<os>]` set, in file order.
    pub extra: Vec<String>,
    /// The catalog's kernel the image has, by name (`[image] kernel`, default
    /// [`DEFAULT_IMAGE_KERNEL`]).
    pub kernel: String,
    /// That kernel's initramfs `MODULES` (`list` or `most`; filled in with `packages`).
    pub initrd_modules: String,
    /// The whole requested set: the catalog's packages, then `extra`, without repeats
    /// (filled in when the project is validated against the catalog).
    pub packages: Vec<String>,
}

/// What kiln assumes every Debian-family host has besides a minbase system (the packages of
/// priority required, the essential ones and apt): a booted systemd host. Package closures
/// leave these out.
pub const ASSUMED_DEBIAN_HOST: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "udev",
    "dbus",
    "iproute2",
    "procps",
];

/// `[lb]`, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Lb {
    /// Virtual IP.
    pub vip: IpAddr,
    /// Port the VIP serves.
    pub port: u16,
    /// Backends (`host:port`); empty means every master.
    pub backends: Vec<String>,
    /// Backend port when backends are the masters.
    pub backend_port: u16,
}

/// Key algorithm for issued keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyType {
    /// RSA 2048 (cfssl's and kubeadm's default).
    Rsa2048,
    /// ECDSA on P-256.
    EcdsaP256,
}

/// How kubelets authenticate to the API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletAuth {
    /// A client certificate per node, issued at build time.
    Certificates,
    /// TLS bootstrapping with a bootstrap token.
    BootstrapToken,
}

/// `[pki]`, validated with defaults applied.
#[derive(Debug, Clone, Serialize)]
pub struct PkiSettings {
    /// Key algorithm.
    pub key_type: KeyType,
    /// Kubelet authentication mode.
    pub kubelet_auth: KubeletAuth,
    /// CA lifetime in days.
    pub ca_days: u32,
    /// Leaf lifetime in days.
    pub leaf_days: u32,
    /// notBefore backdating in minutes.
    pub backdate_minutes: u32,
    /// Re-issue a leaf this many days before it expires.
    pub renew_days: u32,
    /// Extra SANs of the API server certificate.
    pub extra_sans: Vec<String>,
}

/// One host, validated.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// Host name.
    pub name: String,
    /// Address on the cluster network.
    pub ip: IpAddr,
    /// MAC address of the cluster interface, lowercase.
    pub mac: Option<String>,
    /// Operating system.
    pub os: OsId,
    /// Roles, as written.
    pub roles: Vec<String>,
    /// Host variables (the host layer).
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Host sysctls (the host layer).
    pub sysctl: BTreeMap<String, String>,
}

impl Cluster {
    /// Hosts having `role`.
    pub fn hosts_with<'a>(&'a self, role: &'a str) -> impl Iterator<Item = &'a Host> + 'a {
        self.hosts
            .iter()
            .filter(move |h| h.roles.iter().any(|r| r == role))
    }
}
