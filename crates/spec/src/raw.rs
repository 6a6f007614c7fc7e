//! Serde types of the files people write, exactly as written (strict, kebab-case, with spans).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A string with its place in the file.
pub type S = Spanned<String>;

/// cluster.toml as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCluster {
    pub name: S,
    pub arch: Option<S>,
    pub os: S,
    #[serde(default)]
    pub generation: Option<Spanned<u64>>,
    #[serde(default)]
    pub overlays: Vec<S>,
    #[serde(default)]
    pub sources: Vec<S>,
    #[serde(default)]
    pub paths: RawPaths,
    #[serde(default)]
    pub versions: BTreeMap<String, S>,
    /// How Kubernetes is brought up: `binary` (default) or `kubeadm`.
    pub bootstrap: Option<S>,
    pub network: RawNetwork,
    pub lb: Option<RawLb>,
    pub api: Option<RawApi>,
    #[serde(default)]
    pub pki: RawPki,
    #[serde(default)]
    pub mirrors: BTreeMap<String, Spanned<Vec<String>>>,
    /// How long downloads may wait on their sources.
    #[serde(default)]
    pub fetch: RawFetch,
    /// What each host's seed carries and where its bundles come from otherwise.
    #[serde(default)]
    pub seeds: RawSeeds,
    /// Image source kinds in preference order (`registry`, `assemble`).
    #[serde(default)]
    pub image_sources: Vec<S>,
    /// Registry host → mirror base URLs tried in order (e.g. a Harbor proxy project).
    #[serde(default)]
    pub registry_mirrors: BTreeMap<String, Spanned<Vec<String>>>,
    /// A docker config.json-style credentials file for registries (outside the repository).
    pub registry_credentials: Option<S>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    /// SSH public keys for the seed's default user (emergency access; kiln itself never uses SSH).
    #[serde(default)]
    pub ssh_authorized_keys: Vec<S>,
    #[serde(default)]
    pub packages: RawPackages,
    /// `[image]`: the cluster's golden OS image (`kiln image`).
    pub image: Option<Spanned<RawImage>>,
    #[serde(default, rename = "host")]
    pub hosts: Vec<Spanned<RawHost>>,
}

/// `[paths]`: where the other inputs live, relative to cluster.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPaths {
    pub profiles: Option<S>,
    pub overlays: Option<S>,
    pub catalog: Option<S>,
    pub vendor: Option<S>,
    pub pki: Option<S>,
    pub lock: Option<S>,
}

/// `[fetch]`: how long downloads may wait on their sources, in seconds.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFetch {
    pub idle_timeout_seconds: Option<Spanned<u64>>,
    pub deadline_seconds: Option<Spanned<u64>>,
}

/// `[seeds]`: whether seeds carry the role bundles, and where install.sh finds them if not.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSeeds {
    pub carry_bundles: Option<Spanned<bool>>,
    #[serde(default)]
    pub bundle_sources: Vec<S>,
    pub health_wait_seconds: Option<Spanned<u64>>,
}

/// `[packages]`: how the profiles' OS packages reach the hosts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPackages {
    /// Put each role's package closure into its bundle (default true).
    pub bundle: Option<Spanned<bool>>,
    /// Debian family: packages every host already has, beyond minbase and a booted systemd host.
    #[serde(default)]
    pub assume_installed: Vec<S>,
    /// Debian family: OS id → apt configuration file (relative to cluster.toml) for that release.
    #[serde(default)]
    pub apt_config: BTreeMap<String, S>,
}

/// `[image]`: the golden OS image; its presence makes `kiln lock` pin the image's packages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawImage {
    /// Packages beyond the catalog's `[os-image.<os>]` set.
    #[serde(default)]
    pub packages: Vec<S>,
    /// Which of the catalog's `[os-image.<os>.kernel.<name>]` the image has (default `cloud`).
    pub kernel: Option<S>,
}

/// `[network]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNetwork {
    pub host_cidrs: Vec<S>,
    pub pod_cidr: S,
    pub service_cidr: S,
    pub cluster_domain: Option<S>,
    pub cluster_dns: S,
    pub cni: Option<S>,
    pub kube_proxy_mode: Option<S>,
    pub gateway: Option<S>,
    #[serde(default)]
    pub nameservers: Vec<S>,
    #[serde(default)]
    pub ntp_servers: Vec<S>,
}

/// `[lb]`: the load-balanced API address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLb {
    pub vip: S,
    pub port: Option<Spanned<u16>>,
    #[serde(default)]
    pub backends: Vec<S>,
    pub backend_port: Option<Spanned<u16>>,
}

/// `[api]`: an API endpoint outside this cluster description.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawApi {
    pub endpoint: S,
}

/// `[pki]`: certificate settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPki {
    pub key_type: Option<S>,
    pub kubelet_auth: Option<S>,
    pub ca_days: Option<Spanned<u32>>,
    pub leaf_days: Option<Spanned<u32>>,
    pub backdate_minutes: Option<Spanned<u32>>,
    pub renew_days: Option<Spanned<u32>>,
    #[serde(default)]
    pub extra_sans: Vec<S>,
}

/// One `[[host]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHost {
    pub name: S,
    pub ip: S,
    pub mac: Option<S>,
    pub os: Option<S>,
    pub roles: Spanned<Vec<S>>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, toml::Value>,
}

/// A profile's or overlay's artifact line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawArtifact {
    /// Catalog name.
    pub name: S,
    /// Absolute destination on the host.
    pub dest: S,
    pub mode: Option<S>,
    /// Overlays only: the role whose bundle gets it (default `common`).
    pub role: Option<S>,
}

/// A profile's or overlay's template line.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTemplate {
    /// Template file, relative to the profile or overlay folder.
    pub src: S,
    /// Absolute destination on the host.
    pub dest: S,
    pub mode: Option<S>,
    /// `role` (default: once per role bundle) or `host` (rendered per host).
    pub scope: Option<S>,
    /// Overlays only: the role whose bundle gets it (default `common`).
    pub role: Option<S>,
}

/// A role requirement: at least one host with one of `roles`, or the setting present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRequirement {
    pub roles: Vec<String>,
    /// A cluster.toml setting that satisfies the requirement instead (`api.endpoint`, `lb.backends`).
    pub or_setting: Option<String>,
    pub message: Option<String>,
}

/// The body shared by a profile and its OS sections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawLayer {
    #[serde(default, rename = "artifact")]
    pub artifacts: Vec<RawArtifact>,
    #[serde(default, rename = "template")]
    pub templates: Vec<RawTemplate>,
    #[serde(default)]
    pub units: Vec<S>,
    #[serde(default)]
    pub images: Vec<S>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub modules: Vec<S>,
    #[serde(default)]
    pub packages: Vec<S>,
    pub health: Option<S>,
    #[serde(default)]
    pub creates: Vec<S>,
}

/// `profiles/<role>/profile.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProfile {
    pub description: Option<String>,
    #[serde(default)]
    pub extends: Vec<S>,
    #[serde(default)]
    pub requires: Vec<RawRequirement>,
    #[serde(default, rename = "artifact")]
    pub artifacts: Vec<RawArtifact>,
    #[serde(default, rename = "template")]
    pub templates: Vec<RawTemplate>,
    #[serde(default)]
    pub units: Vec<S>,
    #[serde(default)]
    pub images: Vec<S>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub modules: Vec<S>,
    #[serde(default)]
    pub packages: Vec<S>,
    /// Shell command (a template) that exits 0 when the role is healthy on a host.
    pub health: Option<S>,
    /// Files the role's services create at run time (e.g. kubelet.conf after TLS bootstrapping),
    /// so references to them are not missing files.
    #[serde(default)]
    pub creates: Vec<S>,
    /// Sections by OS family (`el`, `debian`) or OS id (`centos7`, …).
    #[serde(default)]
    pub os: BTreeMap<String, Spanned<RawLayer>>,
}

/// `overlays/<name>/overlay.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOverlay {
    pub description: Option<String>,
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    #[serde(default, rename = "artifact")]
    pub artifacts: Vec<RawArtifact>,
    #[serde(default, rename = "template")]
    pub templates: Vec<RawTemplate>,
    #[serde(default)]
    pub sysctl: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub modules: Vec<S>,
    /// Role whose bundle receives the `files/` tree (default `common`).
    pub files_role: Option<S>,
}
