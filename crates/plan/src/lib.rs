//! kiln-plan: turns a validated project into the exact content of every role bundle and host.
//!
//! Pure: takes the project (already read and checked) and returns values. Layering is
//! profile → OS family → OS → overlays (cluster.toml order) → host, see [`layer`].
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod certs;
pub mod complete;
pub mod context;
pub mod host;
pub mod kubeadm_images;
pub mod layer;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;

use serde::Serialize;
use sha2::{Digest, Sha256};

use kiln_spec::{OsId, Project, Scope};

pub use host::{HostMac, HostNetwork, INTERFACE};
pub use layer::{merge, Item, Merged};

/// Where a planned file's bytes come from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum FileSource {
    /// A catalog artifact (bytes come from the store, pinned by the lock).
    Artifact {
        /// Catalog name.
        name: String,
        /// Version.
        version: String,
    },
    /// Generated content (a rendered template or a generated config).
    Content {
        /// Template or generator it came from.
        origin: String,
        /// sha256 of the bytes.
        sha256: String,
        /// The bytes.
        #[serde(skip)]
        bytes: Vec<u8>,
    },
    /// A file copied from an overlay's files tree.
    Local {
        /// Where it came from.
        origin: String,
        /// Its path on the build machine.
        #[serde(skip)]
        path: PathBuf,
    },
}

/// One file of a bundle or host.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedFile {
    /// Absolute path on the host.
    pub path: String,
    /// File mode (shown in octal, e.g. "0644").
    #[serde(serialize_with = "octal")]
    pub mode: u32,
    /// Origin of its bytes.
    pub source: FileSource,
}

/// One role bundle: a role on one OS.
#[derive(Debug, Clone, Serialize)]
pub struct BundlePlan {
    /// Bundle id, `<role>-<os>`.
    pub id: String,
    /// Role.
    pub role: String,
    /// OS.
    pub os: OsId,
    /// Roles it builds on.
    pub extends: Vec<String>,
    /// Files, sorted by path.
    pub files: Vec<PlannedFile>,
    /// Units to enable, in order.
    pub units: Vec<String>,
    /// Image references.
    pub images: Vec<String>,
    /// sysctls.
    pub sysctl: BTreeMap<String, String>,
    /// Kernel modules.
    pub modules: Vec<String>,
    /// OS packages.
    pub packages: Vec<String>,
    /// Rendered health check command.
    pub health: Option<String>,
    /// Files the role's services create at run time.
    pub creates: Vec<String>,
    /// Hosts receiving this bundle.
    pub hosts: Vec<String>,
}

/// One host: which bundles it gets, its own files, and every fact about it the build needs.
///
/// The build reads host facts only from here, never from cluster.toml again.
#[derive(Debug, Clone, Serialize)]
pub struct HostPlan {
    /// Host name.
    pub name: String,
    /// Address on the cluster network.
    pub ip: IpAddr,
    /// MAC address its seed matches.
    pub mac: HostMac,
    /// OS.
    pub os: OsId,
    /// Roles as written.
    pub roles: Vec<String>,
    /// Bundle ids in install order.
    pub bundles: Vec<String>,
    /// Host-specific files (host-scope templates, host sysctls, identity).
    pub files: Vec<PlannedFile>,
    /// Certificates, keys, kubeconfigs and tokens the PKI issues to this host (path, mode).
    pub secrets: Vec<PlannedSecret>,
    /// Prefix length, interface, gateway and DNS servers.
    #[serde(skip)]
    pub network: HostNetwork,
    /// The API server URL (the plan's one rule, the same on every host).
    #[serde(skip)]
    pub api_url: Option<String>,
    /// SSH public keys its seed installs.
    #[serde(skip)]
    pub ssh_authorized_keys: Vec<String>,
}

impl HostPlan {
    /// The address with its prefix length, e.g. `10.77.0.11/24`.
    pub fn address(&self) -> String {
        format!("{}/{}", self.ip, self.network.prefix)
    }
}

/// A file the PKI issues to a host (its bytes exist only at build time).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedSecret {
    /// Absolute path on the host.
    pub path: String,
    /// File mode.
    #[serde(serialize_with = "octal")]
    pub mode: u32,
}

/// An artifact the plan needs, for the lock and the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ArtifactNeed {
    /// Catalog name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Arch.
    pub arch: String,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Cluster name.
    pub cluster: String,
    /// Generation.
    pub generation: u64,
    /// Role bundles, sorted by id.
    pub bundles: Vec<BundlePlan>,
    /// Hosts in cluster.toml order.
    pub hosts: Vec<HostPlan>,
    /// Artifacts needed, sorted.
    pub artifacts: Vec<ArtifactNeed>,
    /// With `bootstrap = "kubeadm"`: every image kubeadm runs, as `kubeadm config images list`
    /// prints them for the first master's configuration.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kubeadm_images: Vec<String>,
    /// The PKI's validated input and every host's certificates and files, built once here.
    #[serde(skip)]
    pub pki: kiln_pki_layout::Layout,
}

/// A template that failed, or two sources claiming one path.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] kiln_render::RenderError),
    /// The PKI input is invalid.
    #[error("certificates: {0}")]
    Pki(#[from] kiln_pki_layout::InvalidInput),
    /// `bootstrap = "kubeadm"` with a Kubernetes release whose kubeadm kiln does not know.
    #[error("versions.kubernetes: {0}")]
    Kubeadm(#[from] kiln_kubeadm::UnsupportedRelease),
    /// A host's address lies in none of the host networks, so it has no prefix length.
    #[error("host {host}: {ip} is outside every network in network.host-cidrs")]
    OutsideHostNetworks {
        /// Host.
        host: String,
        /// Its address.
        ip: IpAddr,
    },
    /// Something a unit or config refers to is delivered to no host that needs it.
    #[error("the plan is incomplete:\n{}", .0.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n"))]
    Incomplete(Vec<complete::Miss>),
    /// With `bootstrap = "kubeadm"`, a host's bundles lack an image kubeadm runs there, or carry
    /// it under another tag.
    #[error("the bundles differ from the images kubeadm runs (`kubeadm config images list`):\n{}", .0.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n"))]
    KubeadmImages(Vec<kubeadm_images::ImageMiss>),
    /// A path is claimed twice within one host's bundles.
    #[error("{path} is provided by both bundle {first} and bundle {second} for host {host}")]
    Conflict {
        /// Host.
        host: String,
        /// Path.
        path: String,
        /// First bundle.
        first: String,
        /// Second bundle.
        second: String,
    },
}

fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn content(path: &str, mode: u32, origin: String, bytes: Vec<u8>) -> PlannedFile {
    PlannedFile {
        path: path.to_string(),
        mode,
        source: FileSource::Content {
            origin,
            sha256: sha256_hex(&bytes),
            bytes,
        },
    }
}

/// A template rendered with `ctx`, as the file it becomes.
fn rendered(t: &kiln_spec::TemplateRef, ctx: &serde_json::Value) -> Result<PlannedFile, PlanError> {
    let out = kiln_render::render(&t.origin, &t.text, ctx)?;
    Ok(content(
        t.dest.as_str(),
        t.mode,
        t.origin.clone(),
        out.into_bytes(),
    ))
}

/// Builds the plan.
pub fn plan(project: &Project) -> Result<Plan, PlanError> {
    let cluster = &project.cluster;
    // (role, os) pairs in use and their hosts.
    let mut pairs: BTreeMap<(String, OsId), Vec<String>> = BTreeMap::new();
    let mut host_plans = Vec::new();
    for h in &cluster.hosts {
        let roles = project.host_roles(&h.roles);
        for r in &roles {
            pairs
                .entry((r.clone(), h.os))
                .or_default()
                .push(h.name.clone());
        }
        host_plans.push((h, roles));
    }

    let pki_input = certs::pki_input(project);
    let kubeadm_images = match &pki_input.kubeadm {
        Some(k) => kiln_kubeadm::images(k)?,
        None => Vec::new(),
    };
    let api_url = pki_input.api_endpoint();
    let mut bundles = Vec::new();
    let mut merged_by_id: BTreeMap<String, Merged> = BTreeMap::new();
    let mut role_ctx: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut needs = BTreeSet::new();
    for ((role, os), hosts) in &pairs {
        let profile = &project.profiles[role];
        let m = merge(profile, *os, &project.overlays);
        let ctx = context::role_context(
            project,
            role,
            *os,
            api_url.as_deref(),
            pki_input.kubeadm.as_ref(),
        );
        let id = format!("{role}-{os}");
        role_ctx.insert(id.clone(), ctx.clone());
        let mut files = Vec::new();
        for item in m.items.values() {
            match item {
                Item::Artifact(a) => {
                    let version = project
                        .catalog
                        .artifact
                        .get(&a.name)
                        .and_then(|c| cluster.versions.get(&c.version))
                        .cloned()
                        .unwrap_or_default();
                    needs.insert(ArtifactNeed {
                        name: a.name.clone(),
                        version: version.clone(),
                        arch: cluster.arch.to_string(),
                    });
                    files.push(PlannedFile {
                        path: a.dest.to_string(),
                        mode: a.mode,
                        source: FileSource::Artifact {
                            name: a.name.clone(),
                            version,
                        },
                    });
                }
                Item::Template(t) if t.scope == Scope::Role => files.push(rendered(t, &ctx)?),
                Item::Template(_) => {}
                Item::File(f) => files.push(PlannedFile {
                    path: f.dest.to_string(),
                    mode: f.mode,
                    source: FileSource::Local {
                        origin: f.origin.clone(),
                        path: f.path.clone(),
                    },
                }),
            }
        }
        let origin = format!("profiles/{role} and overlays");
        if !m.sysctl.is_empty() {
            let p = format!("/etc/sysctl.d/90-kiln-{role}.conf");
            files.push(content(
                &p,
                0o644,
                "kiln: sysctl".into(),
                kiln_render::sysctl_conf(&origin, &m.sysctl).into_bytes(),
            ));
        }
        if !m.modules.is_empty() {
            let p = format!("/etc/modules-load.d/kiln-{role}.conf");
            files.push(content(
                &p,
                0o644,
                "kiln: modules".into(),
                kiln_render::modules_conf(&origin, &m.modules).into_bytes(),
            ));
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let health = match &m.health {
            Some((origin, t)) => Some(
                kiln_render::render(&format!("{origin} (health)"), t, &ctx)?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let mut images = Vec::new();
        for (i, img) in m.images.iter().enumerate() {
            let r = kiln_render::render(&format!("profiles/{role} images[{i}]"), img, &ctx)?;
            // An entry may render empty where it does not apply (`{{#if …}}`).
            if !r.is_empty() && !images.contains(&r) {
                images.push(r);
            }
        }
        bundles.push(BundlePlan {
            id: id.clone(),
            role: role.clone(),
            os: *os,
            extends: profile.extends.clone(),
            files,
            units: m.units.clone(),
            images,
            sysctl: m.sysctl.clone(),
            modules: m.modules.clone(),
            packages: m.packages.clone(),
            health,
            creates: m.creates.clone(),
            hosts: hosts.clone(),
        });
        merged_by_id.insert(id, m);
    }

    let pki = kiln_pki_layout::Layout::new(pki_input)?;
    let mut hosts = Vec::new();
    for (h, roles) in host_plans {
        let ids: Vec<String> = roles.iter().map(|r| format!("{r}-{}", h.os)).collect();
        // No path may come from two bundles of one host: install order would silently decide.
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for id in &ids {
            let b = bundles
                .iter()
                .find(|b| &b.id == id)
                .expect("bundle planned");
            for f in &b.files {
                if let Some(first) = owner.insert(&f.path, &b.id) {
                    return Err(PlanError::Conflict {
                        host: h.name.clone(),
                        path: f.path.clone(),
                        first: first.to_string(),
                        second: b.id.clone(),
                    });
                }
            }
        }
        let mut files = Vec::new();
        for id in &ids {
            let templates: Vec<_> = merged_by_id[id]
                .items
                .values()
                .filter_map(|item| match item {
                    Item::Template(t) if t.scope == Scope::Host => Some(t),
                    _ => None,
                })
                .collect();
            // The host context copies every host's facts: build it only for a role that has
            // host-scope templates.
            if templates.is_empty() {
                continue;
            }
            let ctx = context::host_context_from(&role_ctx[id], h);
            for t in templates {
                files.push(rendered(t, &ctx)?);
            }
        }
        if !h.sysctl.is_empty() {
            let src = format!("cluster.toml host {}", h.name);
            files.push(content(
                "/etc/sysctl.d/99-kiln-host.conf",
                0o644,
                "kiln: host sysctl".into(),
                kiln_render::sysctl_conf(&src, &h.sysctl).into_bytes(),
            ));
        }
        let env = format!(
            "# Generated by kiln: this host's identity.\nKILN_CLUSTER={}\nKILN_HOST={}\nKILN_IP={}\nKILN_ROLES={}\n",
            cluster.name,
            h.name,
            h.ip,
            h.roles.join(",")
        );
        files.push(content(
            "/etc/kiln/host.env",
            0o644,
            "kiln: host identity".into(),
            env.into_bytes(),
        ));
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        let secrets: Vec<PlannedSecret> = pki
            .host(&h.name)
            .into_iter()
            .flat_map(|l| &l.files)
            .map(|f| PlannedSecret {
                path: f.path.clone(),
                mode: f.mode,
            })
            .collect();
        if let Some(clash) = files
            .iter()
            .find(|f| secrets.iter().any(|s| s.path == f.path))
        {
            return Err(PlanError::Conflict {
                host: h.name.clone(),
                path: clash.path.clone(),
                first: "host files".into(),
                second: "certificates".into(),
            });
        }
        let prefix = host::prefix_of(&cluster.network.host_cidrs, h.ip).ok_or_else(|| {
            PlanError::OutsideHostNetworks {
                host: h.name.clone(),
                ip: h.ip,
            }
        })?;
        hosts.push(HostPlan {
            name: h.name.clone(),
            ip: h.ip,
            mac: HostMac::new(&cluster.name, &h.name, h.mac.as_deref()),
            os: h.os,
            roles: h.roles.clone(),
            bundles: ids,
            files,
            secrets,
            network: HostNetwork {
                prefix,
                interface: INTERFACE.to_string(),
                gateway: cluster.network.gateway,
                nameservers: cluster.network.nameservers.clone(),
            },
            api_url: api_url.clone(),
            ssh_authorized_keys: cluster.ssh_authorized_keys.clone(),
        });
    }

    let misses = complete::check(&bundles, &hosts);
    if !misses.is_empty() {
        return Err(PlanError::Incomplete(misses));
    }
    let image_misses = kubeadm_images::check(&kubeadm_images, &bundles, &hosts);
    if !image_misses.is_empty() {
        return Err(PlanError::KubeadmImages(image_misses));
    }
    Ok(Plan {
        cluster: cluster.name.clone(),
        generation: cluster.generation,
        bundles,
        hosts,
        artifacts: needs.into_iter().collect(),
        kubeadm_images,
        pki,
    })
}
