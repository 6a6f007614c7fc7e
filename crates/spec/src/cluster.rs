//! cluster.toml: parsing and validation into [`Cluster`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use crate::diag::{from_toml_error_keyed, Diagnostic};
use crate::kinds::{ImageSourceKind, SourceKind};
use crate::model::*;
use crate::net::{check_hostname, check_label, parse_mac, Cidr};
use crate::raw::{RawCluster, S};

/// What the cluster is validated against: what exists beside it.
pub struct Known<'a> {
    /// Role names that have a profile.
    pub roles: &'a BTreeSet<String>,
    /// Overlay names that exist.
    pub overlays: &'a BTreeSet<String>,
}

/// Parses cluster.toml text into its raw form.
pub fn parse(file: &Path, text: &str) -> Result<RawCluster, Diagnostic> {
    toml::from_str(text).map_err(|e| from_toml_error_keyed(file, text, &e))
}

struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
    out: Vec<Diagnostic>,
}

impl Ctx<'_> {
    fn err(&mut self, s: Option<std::ops::Range<usize>>, key: &str, msg: impl fmt::Display) {
        self.out
            .push(Diagnostic::error(self.file, self.text, s).key(key).msg(msg));
    }

    fn ip(&mut self, v: &S, key: &str) -> Option<IpAddr> {
        match v.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.err(
                    Some(v.span()),
                    key,
                    format!("expected an IP address, found {:?}", v.get_ref()),
                );
                None
            }
        }
    }

    fn cidr(&mut self, v: &S, key: &str) -> Option<Cidr> {
        match v.get_ref().parse() {
            Ok(c) => Some(c),
            Err(e) => {
                self.err(Some(v.span()), key, e);
                None
            }
        }
    }
}

/// Converts TOML values of a free table into JSON for templates.
pub fn to_json(v: &toml::Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// A sysctl value that is neither a string nor an integer (nor a boolean).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sysctl `{key}` must be a string or an integer, found {found}")]
pub struct SysctlError {
    /// The sysctl key.
    pub key: String,
    /// The TOML type found.
    pub found: &'static str,
}

/// Converts a sysctl table (values may be strings or numbers) into strings.
pub fn sysctl_strings(
    table: &BTreeMap<String, toml::Value>,
) -> Result<BTreeMap<String, String>, SysctlError> {
    table
        .iter()
        .map(|(k, v)| {
            let s = match v {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => u8::from(*b).to_string(),
                other => {
                    return Err(SysctlError {
                        key: k.clone(),
                        found: other.type_str(),
                    })
                }
            };
            Ok((k.clone(), s))
        })
        .collect()
}

/// Validates a parsed cluster.toml. Returns the cluster (when usable) and every finding.
pub fn validate(
    file: &Path,
    text: &str,
    raw: &RawCluster,
    known: &Known<'_>,
) -> (Option<Cluster>, Vec<Diagnostic>) {
    let mut c = Ctx {
        file,
        text,
        out: Vec::new(),
    };

    if let Err(e) = check_label(raw.name.get_ref(), "cluster name") {
        c.err(Some(raw.name.span()), "name", e);
    }
    let arch = match &raw.arch {
        None => Some(Arch::Amd64),
        Some(a) => {
            let v = Arch::parse(a.get_ref());
            if v.is_none() {
                c.err(
                    Some(a.span()),
                    "arch",
                    format!(
                        "unknown arch {:?}; expected one of {}",
                        a.get_ref(),
                        Arch::NAMES.join(", ")
                    ),
                );
            }
            v
        }
    };
    let os = parse_os(&mut c, &raw.os, "os");

    let mut overlays = Vec::new();
    for (i, o) in raw.overlays.iter().enumerate() {
        if !known.overlays.contains(o.get_ref()) {
            let have: Vec<_> = known.overlays.iter().cloned().collect();
            c.err(
                Some(o.span()),
                &format!("overlays[{i}]"),
                format!(
                    "unknown overlay {:?}; available: {}",
                    o.get_ref(),
                    list_or_none(&have)
                ),
            );
        } else if overlays.contains(o.get_ref()) {
            c.err(
                Some(o.span()),
                &format!("overlays[{i}]"),
                format!("overlay {:?} is listed twice", o.get_ref()),
            );
        } else {
            overlays.push(o.get_ref().clone());
        }
    }

    let mut sources = Vec::new();
    for (i, s) in raw.sources.iter().enumerate() {
        match s.get_ref().parse::<SourceKind>() {
            Ok(k) => sources.push(k),
            Err(e) => c.err(Some(s.span()), &format!("sources[{i}]"), e.to_string()),
        }
    }
    if raw.sources.is_empty() {
        sources = SourceKind::ALL.to_vec();
    }

    let versions: BTreeMap<String, String> = raw
        .versions
        .iter()
        .map(|(k, v)| (k.clone(), v.get_ref().clone()))
        .collect();
    for (k, v) in &raw.versions {
        let s = v.get_ref();
        if s.is_empty() || s.starts_with('v') || s.chars().any(|ch| ch.is_whitespace() || ch == '/')
        {
            c.err(
                Some(v.span()),
                &format!("versions.{k}"),
                format!("expected a version like \"1.34.2\" (no leading 'v'), found {s:?}"),
            );
        }
    }

    let network = validate_network(&mut c, raw);
    let hosts = validate_hosts(&mut c, raw, os, known);
    let lb = validate_lb(&mut c, raw, network.as_ref(), &hosts);
    let pki = validate_pki(&mut c, raw);
    let bootstrap = validate_bootstrap(&mut c, raw);

    let mut mirrors = BTreeMap::new();
    for (prefix, repl) in &raw.mirrors {
        let key = format!("mirrors.\"{prefix}\"");
        if !is_url_prefix(prefix) {
            c.err(
                Some(repl.span()),
                &key,
                format!("mirror prefix {prefix:?} must be an http(s):// or file:// URL"),
            );
        }
        for r in repl.get_ref() {
            if !is_url_prefix(r) {
                c.err(
                    Some(repl.span()),
                    &key,
                    format!("replacement {r:?} must be an http(s):// or file:// URL"),
                );
            }
        }
        mirrors.insert(prefix.clone(), repl.get_ref().clone());
    }
    let fetch = crate::fetch::validate(&raw.fetch, &mut |span, key, msg| {
        c.err(Some(span), key, msg)
    });
    let seeds = crate::seeds::validate(&raw.seeds, &mut |span, key, msg| {
        c.err(Some(span), key, msg)
    });

    for (i, k) in raw.ssh_authorized_keys.iter().enumerate() {
        let ok = [
            "ssh-rsa ",
            "ssh-ed25519 ",
            "ecdsa-sha2-",
            "sk-ssh-ed25519@",
            "sk-ecdsa-sha2-",
        ]
        .iter()
        .any(|p| k.get_ref().starts_with(p))
            && !k.get_ref().contains('\n');
        if !ok {
            c.err(
                Some(k.span()),
                &format!("ssh-authorized-keys[{i}]"),
                "expected one OpenSSH public key line (ssh-ed25519 AAAA…, ssh-rsa …, ecdsa-sha2-…)",
            );
        }
    }
    let mut image_sources = Vec::new();
    for (i, s) in raw.image_sources.iter().enumerate() {
        match s.get_ref().parse::<ImageSourceKind>() {
            Ok(k) => image_sources.push(k),
            Err(e) => c.err(
                Some(s.span()),
                &format!("image-sources[{i}]"),
                e.to_string(),
            ),
        }
    }
    if raw.image_sources.is_empty() {
        image_sources = ImageSourceKind::ALL.to_vec();
    }
    for (host, urls) in &raw.registry_mirrors {
        for u in urls.get_ref() {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                c.err(
                    Some(urls.span()),
                    &format!("registry-mirrors.\"{host}\""),
                    format!("mirror {u:?} must be an http(s):// URL"),
                );
            }
        }
    }
    let api_endpoint = raw.api.as_ref().map(|a| {
        if !a.endpoint.get_ref().starts_with("https://") {
            c.err(
                Some(a.endpoint.span()),
                "api.endpoint",
                format!("expected an https:// URL, found {:?}", a.endpoint.get_ref()),
            );
        }
        a.endpoint.get_ref().clone()
    });

    let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let packages = validate_packages(&mut c, raw, &base);
    let image = os.and_then(|os| validate_image(&mut c, raw, os, arch));
    let p = &raw.paths;
    let rel = |v: &Option<S>, default: &str| {
        base.join(v.as_ref().map(|s| s.get_ref().as_str()).unwrap_or(default))
    };
    let paths = Paths {
        cluster_file: file.to_path_buf(),
        profiles: rel(&p.profiles, "profiles"),
        overlays: rel(&p.overlays, "overlays"),
        catalog: rel(&p.catalog, "catalog"),
        vendor: rel(&p.vendor, "vendor"),
        pki: rel(&p.pki, "pki"),
        lock: rel(&p.lock, "kiln.lock"),
        base: base.clone(),
    };

    let cluster = match (arch, os, network) {
        (Some(arch), Some(os), Some(network))
            if !c
                .out
                .iter()
                .any(|d| d.severity == crate::diag::Severity::Error) =>
        {
            Some(Cluster {
                name: raw.name.get_ref().clone(),
                arch,
                os,
                generation: raw.generation.as_ref().map(|g| *g.get_ref()).unwrap_or(1),
                overlays,
                sources,
                versions,
                bootstrap,
                network,
                lb,
                api_endpoint,
                pki: pki.unwrap_or_else(default_pki),
                mirrors,
                fetch,
                seeds,
                image_sources,
                registry_mirrors: raw
                    .registry_mirrors
                    .iter()
                    .map(|(k, v)| (k.clone(), v.get_ref().clone()))
                    .collect(),
                registry_credentials: raw
                    .registry_credentials
                    .as_ref()
                    .map(|p| base.join(p.get_ref())),
                vars: raw
                    .vars
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
                ssh_authorized_keys: raw
                    .ssh_authorized_keys
                    .iter()
                    .map(|k| k.get_ref().clone())
                    .collect(),
                packages,
                image,
                hosts,
                paths,
            })
        }
        _ => None,
    };
    (cluster, c.out)
}

/// Whether `s` can be a Debian or rpm package name.
pub fn is_package_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_'))
}

fn validate_packages(c: &mut Ctx<'_>, raw: &RawCluster, base: &Path) -> PackageSettings {
    let p = &raw.packages;
    let mut out = PackageSettings {
        bundle: p.bundle.as_ref().is_none_or(|b| *b.get_ref()),
        ..PackageSettings::default()
    };
    for (i, n) in p.assume_installed.iter().enumerate() {
        if is_package_name(n.get_ref()) {
            out.assume_installed.push(n.get_ref().clone());
        } else {
            c.err(
                Some(n.span()),
                &format!("packages.assume-installed[{i}]"),
                format!("{:?} is not a package name", n.get_ref()),
            );
        }
    }
    for (k, v) in &p.apt_config {
        match OsId::parse(k) {
            Some(os) if os.family() == "debian" => {
                out.apt_config.insert(os, base.join(v.get_ref()));
            }
            _ => c.err(Some(v.span()), &format!("packages.apt-config.{k}"), format!("{k:?} is not a Debian-family OS id (expected one of debian12, ubuntu2204, ubuntu2404)")),
        }
    }
    out
}

/// `[image]`: Debian 12 on amd64 only for now (the builder's hooks and kernel are Debian 12's,
/// its boot loaders GRUB's for BIOS and x86-64 UEFI); extra packages are package names, each
/// once.
fn validate_image(
    c: &mut Ctx<'_>,
    raw: &RawCluster,
    os: OsId,
    arch: Option<Arch>,
) -> Option<ImageSettings> {
    let img = raw.image.as_ref()?;
    if os != OsId::Debian12 {
        c.err(
            Some(img.span()),
            "image",
            format!("kiln image builds debian12 images only (this cluster's os is {os}); remove [image] or use os = \"debian12\""),
        );
        return None;
    }
    if let Some(arch @ Arch::Arm64) = arch {
        c.err(
            Some(img.span()),
            "image",
            format!("kiln image builds amd64 images only (its disk boots with GRUB for BIOS and x86-64 UEFI; this cluster's arch is {arch}); remove [image] or use arch = \"amd64\""),
        );
        return None;
    }
    let mut extra: Vec<String> = Vec::new();
    for (i, n) in img.get_ref().packages.iter().enumerate() {
        let key = format!("image.packages[{i}]");
        if !is_package_name(n.get_ref()) {
            c.err(
                Some(n.span()),
                &key,
                format!("{:?} is not a package name", n.get_ref()),
            );
        } else if extra.contains(n.get_ref()) {
            c.err(
                Some(n.span()),
                &key,
                format!("{:?} is listed twice", n.get_ref()),
            );
        } else {
            extra.push(n.get_ref().clone());
        }
    }
    Some(ImageSettings {
        os,
        extra,
        kernel: img
            .get_ref()
            .kernel
            .as_ref()
            .map(|k| k.get_ref().clone())
            .unwrap_or_else(|| DEFAULT_IMAGE_KERNEL.to_owned()),
        initrd_modules: String::new(),
        packages: Vec::new(),
    })
}

fn is_url_prefix(s: &str) -> bool {
    s.starts_with("https://") || s.starts_with("http://") || s.starts_with("file://")
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn parse_os(c: &mut Ctx<'_>, v: &S, key: &str) -> Option<OsId> {
    let os = OsId::parse(v.get_ref());
    if os.is_none() {
        c.err(
            Some(v.span()),
            key,
            format!(
                "unknown OS {:?}; expected one of {}",
                v.get_ref(),
                OsId::NAMES.join(", ")
            ),
        );
    }
    os
}

fn validate_network(c: &mut Ctx<'_>, raw: &RawCluster) -> Option<Network> {
    let n = &raw.network;
    let host_cidrs: Vec<Option<Cidr>> = n
        .host_cidrs
        .iter()
        .enumerate()
        .map(|(i, s)| c.cidr(s, &format!("network.host-cidrs[{i}]")))
        .collect();
    let pod = c.cidr(&n.pod_cidr, "network.pod-cidr");
    let svc = c.cidr(&n.service_cidr, "network.service-cidr");
    let dns = c.ip(&n.cluster_dns, "network.cluster-dns");
    if n.host_cidrs.is_empty() {
        c.err(
            None,
            "network.host-cidrs",
            "at least one host network is required",
        );
    }

    // Every pair of distinct networks must be disjoint.
    let mut named: Vec<(String, &S, Cidr)> = Vec::new();
    for (i, (s, cidr)) in n.host_cidrs.iter().zip(&host_cidrs).enumerate() {
        if let Some(cidr) = cidr {
            named.push((format!("network.host-cidrs[{i}]"), s, *cidr));
        }
    }
    if let Some(p) = pod {
        named.push(("network.pod-cidr".into(), &n.pod_cidr, p));
    }
    if let Some(s) = svc {
        named.push(("network.service-cidr".into(), &n.service_cidr, s));
    }
    for i in 0..named.len() {
        for j in i + 1..named.len() {
            if named[i].2.overlaps(&named[j].2) {
                let (ka, _, a) = &named[i];
                let (kb, sb, b) = &named[j];
                c.err(
                    Some(sb.span()),
                    kb,
                    format!(
                        "{b} overlaps {ka} ({a}); pod, service and host networks must be disjoint"
                    ),
                );
            }
        }
    }
    if let (Some(s), Some(d)) = (svc, dns) {
        if !s.contains(d) {
            c.err(
                Some(n.cluster_dns.span()),
                "network.cluster-dns",
                format!("{d} is outside the service network {s}"),
            );
        }
    }
    let domain = n
        .cluster_domain
        .as_ref()
        .map(|d| d.get_ref().clone())
        .unwrap_or_else(|| "cluster.local".into());
    if let Some(d) = &n.cluster_domain {
        if d.get_ref().split('.').any(|l| check_hostname(l).is_err()) {
            c.err(
                Some(d.span()),
                "network.cluster-domain",
                format!("{:?} is not a valid DNS domain", d.get_ref()),
            );
        }
    }
    let cni = n
        .cni
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "flannel".into());
    if let Some(s) = &n.cni {
        if !["flannel", "calico", "none"].contains(&s.get_ref().as_str()) {
            c.err(
                Some(s.span()),
                "network.cni",
                format!(
                    "unknown CNI {:?}; expected flannel, calico or none",
                    s.get_ref()
                ),
            );
        }
        if s.get_ref() == "calico" && !raw.versions.contains_key("calico") {
            c.err(
                Some(s.span()),
                "network.cni",
                "cni = \"calico\" needs versions.calico (the release of calico's images and CRDs, e.g. \"3.31.5\")",
            );
        }
    }
    let mode = n
        .kube_proxy_mode
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_else(|| "ipvs".into());
    if let Some(s) = &n.kube_proxy_mode {
        if !["ipvs", "iptables", "nftables"].contains(&s.get_ref().as_str()) {
            c.err(
                Some(s.span()),
                "network.kube-proxy-mode",
                format!(
                    "unknown kube-proxy mode {:?}; expected ipvs, iptables or nftables",
                    s.get_ref()
                ),
            );
        }
    }
    let gateway = n.gateway.as_ref().and_then(|g| c.ip(g, "network.gateway"));
    if let (Some(g), Some(gs)) = (gateway, &n.gateway) {
        if !host_cidrs.iter().flatten().any(|h| h.contains(g)) {
            c.err(
                Some(gs.span()),
                "network.gateway",
                format!("gateway {g} is outside every host network"),
            );
        }
    }
    let nameservers: Vec<IpAddr> = n
        .nameservers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| c.ip(s, &format!("network.nameservers[{i}]")))
        .collect();
    let api_service_ip = svc.and_then(|s| s.nth(1));
    Some(Network {
        host_cidrs: host_cidrs.into_iter().collect::<Option<Vec<_>>>()?,
        pod_cidr: pod?,
        service_cidr: svc?,
        cluster_domain: domain,
        cluster_dns: dns?,
        api_service_ip: api_service_ip?,
        cni,
        kube_proxy_mode: mode,
        gateway,
        nameservers,
        ntp_servers: n.ntp_servers.iter().map(|s| s.get_ref().clone()).collect(),
    })
}

fn validate_hosts(
    c: &mut Ctx<'_>,
    raw: &RawCluster,
    default_os: Option<OsId>,
    known: &Known<'_>,
) -> Vec<Host> {
    let host_cidrs: Vec<Cidr> = raw
        .network
        .host_cidrs
        .iter()
        .filter_map(|s| s.get_ref().parse().ok())
        .collect();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut ips: BTreeMap<IpAddr, usize> = BTreeMap::new();
    let mut macs: BTreeMap<String, usize> = BTreeMap::new();
    let mut hosts = Vec::new();
    if raw.hosts.is_empty() {
        c.err(None, "host", "no [[host]] is defined");
    }
    for (i, sh) in raw.hosts.iter().enumerate() {
        let h = sh.get_ref();
        let k = |f: &str| format!("host[{i}].{f}");
        if let Err(e) = check_hostname(h.name.get_ref()) {
            c.err(Some(h.name.span()), &k("name"), e);
        }
        if let Some(prev) = names.insert(h.name.get_ref().clone(), i) {
            c.err(
                Some(h.name.span()),
                &k("name"),
                format!(
                    "duplicate host name {:?} (also host[{prev}])",
                    h.name.get_ref()
                ),
            );
        }
        let ip = c.ip(&h.ip, &k("ip"));
        if let Some(ip) = ip {
            if let Some(prev) = ips.insert(ip, i) {
                c.err(
                    Some(h.ip.span()),
                    &k("ip"),
                    format!("duplicate IP {ip} (also host[{prev}])"),
                );
            }
            if !host_cidrs.is_empty() && !host_cidrs.iter().any(|n| n.contains(ip)) {
                c.err(
                    Some(h.ip.span()),
                    &k("ip"),
                    format!("{ip} is outside every network in network.host-cidrs"),
                );
            }
        }
        let mac = h.mac.as_ref().and_then(|m| match parse_mac(m.get_ref()) {
            Ok(m2) => {
                if let Some(prev) = macs.insert(m2.clone(), i) {
                    c.err(
                        Some(m.span()),
                        &k("mac"),
                        format!("duplicate MAC {m2} (also host[{prev}])"),
                    );
                }
                Some(m2)
            }
            Err(e) => {
                c.err(Some(m.span()), &k("mac"), e);
                None
            }
        });
        let os = match &h.os {
            Some(o) => parse_os(c, o, &k("os")),
            None => default_os,
        };
        let roles = h.roles.get_ref();
        if roles.is_empty() {
            c.err(
                Some(sh.span()),
                &k("roles"),
                format!(
                    "host {:?} has no role; give it at least one of {}",
                    h.name.get_ref(),
                    known
                        .roles
                        .iter()
                        .filter(|r| *r != "common")
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for (j, r) in roles.iter().enumerate() {
            if !known.roles.contains(r.get_ref()) {
                c.err(
                    Some(r.span()),
                    &format!("host[{i}].roles[{j}]"),
                    format!(
                        "unknown role {:?}; roles are the profiles in the profiles folder: {}",
                        r.get_ref(),
                        known.roles.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            if !seen.insert(r.get_ref()) {
                c.err(
                    Some(r.span()),
                    &format!("host[{i}].roles[{j}]"),
                    format!("role {:?} listed twice", r.get_ref()),
                );
            }
        }
        let sysctl = match crate::cluster::sysctl_strings(&h.sysctl) {
            Ok(s) => s,
            Err(e) => {
                c.err(Some(sh.span()), &k("sysctl"), e);
                BTreeMap::new()
            }
        };
        if let (Some(ip), Some(os)) = (ip, os) {
            hosts.push(Host {
                name: h.name.get_ref().clone(),
                ip,
                mac,
                os,
                roles: roles.iter().map(|r| r.get_ref().clone()).collect(),
                vars: h
                    .vars
                    .iter()
                    .map(|(k, v)| (k.clone(), to_json(v)))
                    .collect(),
                sysctl,
            });
        }
    }
    hosts
}

fn validate_lb(
    c: &mut Ctx<'_>,
    raw: &RawCluster,
    network: Option<&Network>,
    hosts: &[Host],
) -> Option<Lb> {
    let l = raw.lb.as_ref()?;
    let vip = c.ip(&l.vip, "lb.vip")?;
    if let Some(h) = hosts.iter().find(|h| h.ip == vip) {
        c.err(
            Some(l.vip.span()),
            "lb.vip",
            format!("VIP {vip} is already the address of host {:?}", h.name),
        );
    }
    if let Some(n) = network {
        if !n.host_cidrs.iter().any(|h| h.contains(vip)) {
            c.err(
                Some(l.vip.span()),
                "lb.vip",
                format!("VIP {vip} is outside every network in network.host-cidrs"),
            );
        }
    }
    for (i, b) in l.backends.iter().enumerate() {
        let ok = b
            .get_ref()
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !ok {
            c.err(
                Some(b.span()),
                &format!("lb.backends[{i}]"),
                format!("expected host:port, found {:?}", b.get_ref()),
            );
        }
    }
    Some(Lb {
        vip,
        port: l.port.as_ref().map(|p| *p.get_ref()).unwrap_or(6443),
        backends: l.backends.iter().map(|b| b.get_ref().clone()).collect(),
        backend_port: l
            .backend_port
            .as_ref()
            .map(|p| *p.get_ref())
            .unwrap_or(6443),
    })
}

/// The role whose hosts kubeadm makes control-plane members.
const MASTER_ROLE: &str = "master";
/// The role whose hosts run etcd members.
const ETCD_ROLE: &str = "etcd";

/// `bootstrap`: kubeadm needs a Kubernetes version, the kubeadm and kubelet it runs at that
/// same version, and one API endpoint (`[lb]`, `[api]` or a single master).
fn validate_bootstrap(c: &mut Ctx<'_>, raw: &RawCluster) -> Bootstrap {
    let Some(b) = &raw.bootstrap else {
        return Bootstrap::Binary;
    };
    let Some(bootstrap) = Bootstrap::parse(b.get_ref()) else {
        c.err(
            Some(b.span()),
            "bootstrap",
            format!(
                "unknown bootstrap {:?}; expected one of {}",
                b.get_ref(),
                Bootstrap::NAMES.join(", ")
            ),
        );
        return Bootstrap::Binary;
    };
    if bootstrap == Bootstrap::Binary {
        return bootstrap;
    }
    match raw.versions.get("kubernetes") {
        None => c.err(
            Some(b.span()),
            "bootstrap",
            "bootstrap = \"kubeadm\" needs versions.kubernetes",
        ),
        Some(k8s) => {
            for key in ["kubeadm", "kubelet"] {
                if let Some(v) = raw.versions.get(key) {
                    if v.get_ref() != k8s.get_ref() {
                        c.err(
                            Some(v.span()),
                            &format!("versions.{key}"),
                            format!(
                                "kubeadm bootstrap runs {key} at the cluster's Kubernetes version {:?}, found {:?}",
                                k8s.get_ref(),
                                v.get_ref()
                            ),
                        );
                    }
                }
            }
        }
    }
    let has = |role: &'static str| {
        raw.hosts.iter().filter(move |h| {
            h.get_ref()
                .roles
                .get_ref()
                .iter()
                .any(|r| r.get_ref() == role)
        })
    };
    if has(ETCD_ROLE).next().is_none() {
        c.err(
            Some(b.span()),
            "bootstrap",
            "bootstrap = \"kubeadm\" needs etcd hosts whose certificates kiln issues: give the \
             masters role \"etcd\" (stacked etcd) or other hosts (external etcd)",
        );
    }
    if let Some(k) = &raw.pki.kubelet_auth {
        c.err(
            Some(k.span()),
            "pki.kubelet-auth",
            "applies to bootstrap = \"binary\" only: with kubeadm, kubelets join with kubeadm's \
             bootstrap token and kiln issues their certificates as kubeadm lays them out; remove it",
        );
    }
    let masters = has(MASTER_ROLE).count();
    if masters == 0 {
        c.err(
            Some(b.span()),
            "bootstrap",
            "bootstrap = \"kubeadm\" needs a host with role \"master\" to run `kubeadm init`",
        );
    } else if masters > 1 && raw.lb.is_none() && raw.api.is_none() {
        c.err(
            Some(b.span()),
            "bootstrap",
            format!(
                "bootstrap = \"kubeadm\" with {masters} masters needs one controlPlaneEndpoint: \
                 an [lb] VIP or an [api] endpoint in front of them"
            ),
        );
    }
    bootstrap
}

fn default_pki() -> PkiSettings {
    PkiSettings {
        key_type: KeyType::Rsa2048,
        kubelet_auth: KubeletAuth::Certificates,
        ca_days: 3650,
        leaf_days: 365,
        backdate_minutes: 60,
        renew_days: 30,
        extra_sans: Vec::new(),
    }
}

fn validate_pki(c: &mut Ctx<'_>, raw: &RawCluster) -> Option<PkiSettings> {
    let p = &raw.pki;
    let mut s = default_pki();
    if let Some(k) = &p.key_type {
        match k.get_ref().as_str() {
            "rsa-2048" => s.key_type = KeyType::Rsa2048,
            "ecdsa-p256" => s.key_type = KeyType::EcdsaP256,
            other => c.err(
                Some(k.span()),
                "pki.key-type",
                format!("unknown key type {other:?}; expected rsa-2048 or ecdsa-p256"),
            ),
        }
    }
    if let Some(k) = &p.kubelet_auth {
        match k.get_ref().as_str() {
            "certificates" => s.kubelet_auth = KubeletAuth::Certificates,
            "bootstrap-token" => s.kubelet_auth = KubeletAuth::BootstrapToken,
            other => c.err(
                Some(k.span()),
                "pki.kubelet-auth",
                format!("unknown kubelet auth {other:?}; expected certificates or bootstrap-token"),
            ),
        }
    }
    if let Some(v) = &p.ca_days {
        s.ca_days = *v.get_ref();
    }
    if let Some(v) = &p.leaf_days {
        s.leaf_days = *v.get_ref();
    }
    if let Some(v) = &p.backdate_minutes {
        s.backdate_minutes = *v.get_ref();
    }
    if let Some(v) = &p.renew_days {
        s.renew_days = *v.get_ref();
    }
    if s.leaf_days == 0 || s.ca_days == 0 {
        c.err(None, "pki", "lifetimes must be at least one day");
    } else if s.leaf_days > s.ca_days {
        let span = p.leaf_days.as_ref().map(|v| v.span());
        c.err(
            span,
            "pki.leaf-days",
            format!(
                "leaf lifetime ({} days) is longer than the CA's ({} days)",
                s.leaf_days, s.ca_days
            ),
        );
    }
    s.extra_sans = p.extra_sans.iter().map(|v| v.get_ref().clone()).collect();
    Some(s)
}
