//! The hosts to boot, read from the `vagrant.json` that `kiln build` writes
//! and checked before anything is started.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::BootError;
use crate::options::SeedKind;

/// The file `kiln build` writes into `OUT/<cluster>/`.
pub const LAYOUT_FILE: &str = "vagrant.json";

/// `vagrant.json` as written by `kiln build`. Machine-written, so keys it
/// may gain later are ignored rather than refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Layout {
    /// The cluster's name.
    pub cluster: String,
    /// Every host, in the build's order.
    pub hosts: Vec<LayoutHost>,
}

/// One host of `vagrant.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LayoutHost {
    /// Host name; also the name of its log and overlay files.
    pub name: String,
    /// Its address on the cluster network (informational here).
    pub ip: String,
    /// The MAC its seed's network-config matches.
    pub mac: String,
    /// Its roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The ISO seed, relative to the cluster's out folder.
    #[serde(default)]
    pub seed_iso: Option<String>,
    /// The VFAT seed, relative to the cluster's out folder.
    #[serde(default)]
    pub seed_img: Option<String>,
    /// The shared bundle medium (label KILNBUNDLE) of seeds that carry no bundles, relative to
    /// the cluster's out folder.
    #[serde(default)]
    pub bundle_medium: Option<String>,
    /// Guest memory in MiB.
    #[serde(default)]
    pub memory_mb: Option<u32>,
    /// Guest CPUs.
    #[serde(default)]
    pub cpus: Option<u32>,
}

/// A host ready to start: names and paths checked, seed resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPlan {
    /// Host name (safe as a file name).
    pub name: String,
    /// Roles, for reporting.
    pub roles: Vec<String>,
    /// Lowercase MAC address.
    pub mac: String,
    /// The seed image to attach, absolute or relative to the working folder; none for a host
    /// that boots without one (a container takes the seed folder, a network boot `kiln serve`'s
    /// seed).
    pub seed: Option<PathBuf>,
    /// The seed's user-data, if the build left the seed folder beside it.
    pub user_data: PathBuf,
    /// The shared bundle medium to attach beside the seed, read-only.
    pub bundle_medium: Option<PathBuf>,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Guest CPUs.
    pub cpus: u32,
}

/// Memory when `vagrant.json` gives none.
pub const DEFAULT_MEMORY_MB: u32 = 1024;
const MEMORY_RANGE: std::ops::RangeInclusive<u32> = 128..=65_536;
const CPU_RANGE: std::ops::RangeInclusive<u32> = 1..=64;

/// The cluster out folder for `out`: `out` itself when it holds
/// `vagrant.json`, else its one subfolder that does (`OUT` given for
/// `OUT/<cluster>`).
pub fn cluster_dir(out: &Path) -> Result<PathBuf, BootError> {
    if out.join(LAYOUT_FILE).is_file() {
        return Ok(out.to_owned());
    }
    let entries = std::fs::read_dir(out).map_err(BootError::io("read folder", out))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(BootError::io("read folder", out))?;
        if entry.path().join(LAYOUT_FILE).is_file() {
            found.push(entry.path());
        }
    }
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(BootError::OutFolder {
            path: out.to_owned(),
            reason: format!(
                "no {LAYOUT_FILE} here or in a subfolder; run `kiln build` (it writes OUT/<cluster>/{LAYOUT_FILE})"
            ),
        }),
        _ => Err(BootError::OutFolder {
            path: out.to_owned(),
            reason: format!(
                "several clusters ({}); give the cluster's folder",
                found
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

impl Layout {
    /// Reads and parses `dir/vagrant.json`.
    pub fn load(dir: &Path) -> Result<Self, BootError> {
        let path = dir.join(LAYOUT_FILE);
        let text = std::fs::read_to_string(&path).map_err(BootError::io("read", &path))?;
        serde_json::from_str(&text).map_err(|source| BootError::LayoutJson { path, source })
    }

    /// The hosts to boot, in `vagrant.json`'s order: all of them, or those
    /// named in `only` (each must exist). Checks names, MACs, seed paths and
    /// sizes; seed paths are resolved against `dir`, the folder holding
    /// `vagrant.json`. The hosts in `seedless` boot without a seed image, so
    /// the build need not have made one for them.
    pub fn plan(
        &self,
        dir: &Path,
        only: Option<&[String]>,
        seed: SeedKind,
        memory_override: Option<u32>,
        seedless: &[String],
    ) -> Result<Vec<HostPlan>, BootError> {
        let file = dir.join(LAYOUT_FILE);
        let bad = |reason: String| BootError::Layout {
            path: file.clone(),
            reason,
        };
        if self.hosts.is_empty() {
            return Err(bad("no hosts".to_owned()));
        }
        let mut names = BTreeSet::new();
        let mut macs = BTreeSet::new();
        for host in &self.hosts {
            check_name(&host.name).map_err(|r| bad(format!("host name {:?} {r}", host.name)))?;
            if !names.insert(host.name.as_str()) {
                return Err(bad(format!("host {:?} appears twice", host.name)));
            }
            check_mac(&host.mac)
                .map_err(|r| bad(format!("host {}: mac {:?} {r}", host.name, host.mac)))?;
            if !macs.insert(host.mac.to_ascii_lowercase()) {
                return Err(bad(format!(
                    "host {}: mac {} is used by another host",
                    host.name, host.mac
                )));
            }
        }
        if let Some(only) = only {
            let unknown: Vec<String> = only
                .iter()
                .filter(|n| !names.contains(n.as_str()))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(BootError::UnknownHosts {
                    unknown,
                    known: self.hosts.iter().map(|h| h.name.clone()).collect(),
                });
            }
        }
        let wanted = |name: &str| only.is_none_or(|o| o.iter().any(|n| n == name));
        let mut plans = Vec::new();
        for host in self.hosts.iter().filter(|h| wanted(&h.name)) {
            let seed_path = match seedless.contains(&host.name) {
                true => None,
                false => Some(seed_image(dir, host, seed, &bad)?),
            };
            let bundle_medium = match &host.bundle_medium {
                None => None,
                Some(rel) => {
                    check_relative(rel).map_err(|r| {
                        bad(format!("host {}: bundle_medium {rel:?} {r}", host.name))
                    })?;
                    let path = dir.join(rel);
                    if !path.is_file() {
                        return Err(BootError::Missing {
                            what: "bundle medium",
                            path,
                            hint: format!(" (host {}, bundle_medium in {LAYOUT_FILE})", host.name),
                        });
                    }
                    Some(path)
                }
            };
            let memory_mb = memory_override
                .or(host.memory_mb)
                .unwrap_or(DEFAULT_MEMORY_MB);
            if !MEMORY_RANGE.contains(&memory_mb) {
                return Err(bad(format!(
                    "host {}: memory {memory_mb} MiB is outside {}..={}",
                    host.name,
                    MEMORY_RANGE.start(),
                    MEMORY_RANGE.end()
                )));
            }
            let cpus = host.cpus.unwrap_or(1);
            if !CPU_RANGE.contains(&cpus) {
                return Err(bad(format!(
                    "host {}: cpus {cpus} is outside {}..={}",
                    host.name,
                    CPU_RANGE.start(),
                    CPU_RANGE.end()
                )));
            }
            plans.push(HostPlan {
                name: host.name.clone(),
                roles: host.roles.clone(),
                mac: host.mac.to_ascii_lowercase(),
                seed: seed_path,
                user_data: dir
                    .join("hosts")
                    .join(&host.name)
                    .join("seed")
                    .join(cloud_init_config::USER_DATA),
                bundle_medium,
                memory_mb,
                cpus,
            });
        }
        Ok(plans)
    }
}

/// The `seed` image of `host`, checked: named in the layout, a relative path, and there.
fn seed_image(
    dir: &Path,
    host: &LayoutHost,
    seed: SeedKind,
    bad: &dyn Fn(String) -> BootError,
) -> Result<PathBuf, BootError> {
    let (key, rel) = match seed {
        SeedKind::Iso => ("seed_iso", &host.seed_iso),
        SeedKind::Vfat => ("seed_img", &host.seed_img),
    };
    let rel = rel.as_deref().ok_or_else(|| {
        bad(format!(
            "host {} has no {key} (build the {} seed, or boot with the other seed kind)",
            host.name,
            seed.name()
        ))
    })?;
    check_relative(rel).map_err(|r| bad(format!("host {}: {key} {rel:?} {r}", host.name)))?;
    let seed_path = dir.join(rel);
    if !seed_path.is_file() {
        return Err(BootError::Missing {
            what: "seed image",
            path: seed_path,
            hint: format!(" (host {}, {key} in {LAYOUT_FILE})", host.name),
        });
    }
    Ok(seed_path)
}

/// Host names become file names: `[A-Za-z0-9._-]`, not starting with `.` or `-`.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if name.starts_with(['.', '-']) {
        return Err("must not start with '.' or '-'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may only hold letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// Six `:`-separated hex pairs, unicast (QEMU refuses multicast MACs).
fn check_mac(mac: &str) -> Result<(), &'static str> {
    let parts: Vec<&str> = mac.split(':').collect();
    let hex_pair = |p: &&str| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit());
    if parts.len() != 6 || !parts.iter().all(hex_pair) {
        return Err("is not six ':'-separated hex pairs");
    }
    let first = u8::from_str_radix(parts[0], 16).expect("checked hex");
    if first & 1 == 1 {
        return Err("is a multicast address");
    }
    Ok(())
}

/// A path inside the out folder: relative, no `..`.
fn check_relative(path: &str) -> Result<(), &'static str> {
    let p = Path::new(path);
    if path.is_empty() || p.is_absolute() {
        return Err("must be a relative path inside the out folder");
    }
    if p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err("must not hold '..' or '.' components");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_macs_and_paths_are_checked() {
        for good in ["etcd1", "node-1.lab", "a_b"] {
            check_name(good).unwrap();
        }
        for bad in ["", ".x", "-x", "a/b", "a b", &"a".repeat(64)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_mac("52:54:00:77:00:11").unwrap();
        check_mac("52:54:00:AB:cd:ef").unwrap();
        for bad in [
            "",
            "52:54:00:77:00",
            "52-54-00-77-00-11",
            "5g:54:00:77:00:11",
        ] {
            assert!(check_mac(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_mac("01:00:5e:00:00:01"),
            Err("is a multicast address")
        );
        check_relative("hosts/etcd1/cidata.iso").unwrap();
        for bad in ["", "/etc/passwd", "../x", "hosts/../../x", "./x"] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
    }
}
