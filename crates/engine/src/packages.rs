//! OS packages: each role's package closure per OS, pinned in kiln.lock and shipped in its
//! bundle as `packages/<file>` (listed in `PACKAGES`, in install order).
//!
//! Debian family: apt computes the closure against a private status holding what the host
//! is assumed to have (a minbase system, a booted systemd host, `[packages]
//! assume-installed`, and the closures of the bundles installed before this one), pinning
//! each .deb by the sha256 of apt's index. The golden image (`[image]`, `kiln image`) has one
//! more closure, [`IMAGE_ROLE`], computed from nothing: a whole system. EL: the catalog's `[[rpm]]` entries, pinned by
//! the user from a mirror they name, and their `requires`.

use std::collections::{BTreeMap, BTreeSet};

use kiln_deb::{AptIndex, AptPin};
use kiln_plan::Plan;
use kiln_spec::catalog::rpm_closure;
use kiln_spec::{
    Lock, LockedClosure, LockedPackage, OsId, Project, SourceKind, ASSUMED_DEBIAN_HOST,
};

use crate::LockProblem;

/// What locking the packages gave.
#[derive(Debug, Default)]
pub struct PackageLock {
    /// Every package of every closure, one entry per (OS, name).
    pub packages: Vec<LockedPackage>,
    /// Every closure computed or kept.
    pub closures: Vec<LockedClosure>,
    /// What could not be pinned, one line each, naming package, role and OS.
    pub unpinned: Vec<String>,
}

/// The lock's name for the golden image's closure (`role` of its `[[closure]]`): not a
/// profile name, which cannot start with `@`.
pub const IMAGE_ROLE: &str = "@image";

/// What the golden image's closure is computed against, as recorded in the lock.
const IMAGE_BASE: &str = "nothing: a whole system (minbase is in the closure)";

/// A closure the plan needs: a role's packages on one OS.
#[derive(Debug, Clone)]
struct Want {
    role: String,
    os: OsId,
    requested: Vec<String>,
    after: Vec<String>,
    base: String,
    /// From nothing: minbase plus `requested` (the golden image), not on top of a host.
    whole: bool,
}

impl Want {
    fn matches(&self, c: &LockedClosure, arch: &str) -> bool {
        c.role == self.role
            && c.os == self.os.as_str()
            && c.arch == arch
            && c.requested == self.requested
            && c.base == self.base
            && c.after == self.after
    }
}

/// `path` made absolute: apt runs it from other folders (`apt-get download` in a temp folder).
pub fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a closure of `os` assumes the host has, as recorded in the lock.
fn base_description(project: &Project, os: OsId) -> String {
    if os.family() == "el" {
        return "the host's base system; rpms from the catalog's [[rpm]] entries".into();
    }
    format!("minbase + {}", assumed_debian(project).join(", "))
}

/// The packages a Debian-family host is assumed to have beyond minbase, sorted.
fn assumed_debian(project: &Project) -> Vec<String> {
    let mut v: Vec<String> = ASSUMED_DEBIAN_HOST
        .iter()
        .map(|s| s.to_string())
        .chain(project.cluster.packages.assume_installed.iter().cloned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The golden image's closure, when the cluster has `[image]` (Debian family only).
fn image_want(project: &Project) -> Option<Want> {
    let img = project.cluster.image.as_ref()?;
    Some(Want {
        role: IMAGE_ROLE.into(),
        os: img.os,
        requested: img.packages.clone(),
        after: Vec::new(),
        base: IMAGE_BASE.into(),
        whole: true,
    })
}

/// The closures the plan needs, pre-roles first (a role after every role installed before
/// it), and the golden image's.
fn wants(project: &Project, plan: &Plan) -> Vec<Want> {
    let mut out = role_wants(project, plan);
    out.extend(image_want(project));
    out
}

fn role_wants(project: &Project, plan: &Plan) -> Vec<Want> {
    if !project.cluster.packages.bundle {
        return Vec::new();
    }
    let mut out: Vec<Want> = plan
        .bundles
        .iter()
        .filter(|b| !b.packages.is_empty())
        .map(|b| {
            let after: Vec<String> = project
                .host_roles(std::slice::from_ref(&b.role))
                .into_iter()
                .filter(|r| *r != b.role)
                .collect();
            Want {
                role: b.role.clone(),
                os: b.os,
                requested: b.packages.clone(),
                after,
                base: base_description(project, b.os),
                whole: false,
            }
        })
        .collect();
    // Every role installed before another has fewer roles before it.
    out.sort_by(|a, b| (a.os, a.after.len(), &a.role).cmp(&(b.os, b.after.len(), &b.role)));
    out
}

/// Pins the package closure of every bundle, keeping an OS's closures from `existing` when
/// nothing they were computed from changed (so a relock does not move versions).
pub fn lock(project: &Project, plan: &Plan, existing: Option<&Lock>) -> PackageLock {
    let arch = project.cluster.arch.as_str();
    let mut out = PackageLock::default();
    let all = wants(project, plan);
    let oses: BTreeSet<OsId> = all.iter().map(|w| w.os).collect();
    for os in oses {
        let wants: Vec<&Want> = all.iter().filter(|w| w.os == os).collect();
        if os.family() == "debian" {
            if let Some(kept) = existing.and_then(|l| keep(l, &wants, arch)) {
                out.packages.extend(kept.0);
                out.closures.extend(kept.1);
                continue;
            }
        }
        let got = match os.family() {
            "el" => lock_el(project, os, &wants),
            _ => lock_debian(project, os, &wants),
        };
        out.packages.extend(got.packages);
        out.closures.extend(got.closures);
        out.unpinned.extend(got.unpinned);
    }
    out.packages.sort();
    out.packages.dedup();
    out
}

/// The closures (and their packages) of `existing` if it has each wanted one unchanged.
fn keep(
    existing: &Lock,
    wants: &[&Want],
    arch: &str,
) -> Option<(Vec<LockedPackage>, Vec<LockedClosure>)> {
    let mut closures = Vec::new();
    let mut packages = Vec::new();
    for w in wants {
        let c = existing.closures.iter().find(|c| w.matches(c, arch))?;
        for n in &c.install {
            packages.push(existing.find_package(&c.os, n)?.clone());
        }
        closures.push(c.clone());
    }
    Some((packages, closures))
}

fn closure_entry(w: &Want, arch: &str, install: Vec<String>) -> LockedClosure {
    LockedClosure {
        os: w.os.as_str().into(),
        role: w.role.clone(),
        arch: arch.into(),
        requested: w.requested.clone(),
        base: w.base.clone(),
        after: w.after.clone(),
        install,
    }
}

fn lock_debian(project: &Project, os: OsId, wants: &[&Want]) -> PackageLock {
    let mut out = PackageLock::default();
    let c = &project.cluster;
    let arch = c.arch.as_str();
    let config = c.packages.apt_config.get(&os).map(|p| absolute(p));
    let fail_all = |out: &mut PackageLock, why: &str| {
        for w in wants {
            out.unpinned.push(format!(
                "packages {} of {} on {os}: {why}",
                w.requested.join(", "),
                w.role
            ));
        }
    };
    if config.is_none() {
        match kiln_deb::host_arch() {
            Ok(h) if h == arch => {}
            Ok(h) => {
                fail_all(&mut out, &format!("this machine's apt serves {h}, the cluster is {arch}; name an apt configuration for {arch} in [packages.apt-config] {os}"));
                return out;
            }
            Err(e) => {
                fail_all(&mut out, &kiln_store::error_chain(&e));
                return out;
            }
        }
    }
    tracing::info!(%os, "reading apt's index");
    let index = match AptIndex::load(arch, config.as_deref()) {
        Ok(i) => i,
        Err(e) => {
            fail_all(&mut out, &kiln_store::error_chain(&e));
            return out;
        }
    };
    let (origin, codename) = os
        .apt_release()
        .expect("a Debian-family OS has an apt release");
    if !index.has_release(origin, codename) {
        let what = match &config {
            Some(p) => format!("the apt configuration {}", p.display()),
            None => "this machine's apt configuration".into(),
        };
        fail_all(
            &mut out,
            &format!(
                "{what} has no index for {origin} {codename} (it has: {}); give [packages.apt-config] {os} = \"<apt.conf>\" whose sources are {origin} {codename} and run `APT_CONFIG=<apt.conf> apt-get update`",
                index.releases().join(", ")
            ),
        );
        return out;
    }
    tracing::info!(%os, "computing the minbase closure");
    let base = match index.base(&assumed_debian(project)) {
        Ok(b) => b,
        Err(e) => {
            fail_all(
                &mut out,
                &format!("the assumed base system: {}", kiln_store::error_chain(&e)),
            );
            return out;
        }
    };
    let mut closures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut pins: BTreeMap<String, AptPin> = BTreeMap::new();
    for w in wants.iter().filter(|w| w.whole) {
        tracing::info!(%os, packages = %w.requested.join(" "), "computing the golden image's closure");
        let got = index.base(&[]).and_then(|minbase| {
            let mut all = minbase;
            all.extend(w.requested.iter().cloned());
            index.closure(&[], &all)
        });
        match got {
            Ok(list) => {
                let names = list.iter().map(|p| p.package.clone()).collect();
                for p in list {
                    pins.insert(p.package.clone(), p);
                }
                out.closures.push(closure_entry(w, arch, names));
            }
            Err(e) => out.unpinned.push(format!(
                "the golden image's packages {} on {os}: {}",
                w.requested.join(", "),
                kiln_store::error_chain(&e)
            )),
        }
    }
    for w in wants.iter().filter(|w| !w.whole) {
        let mut installed = base.clone();
        for a in &w.after {
            installed.extend(closures.get(a).into_iter().flatten().cloned());
        }
        tracing::info!(role = %w.role, %os, packages = %w.requested.join(" "), "computing the package closure");
        match index.closure(&installed, &w.requested) {
            Ok(list) => {
                let names = list.iter().map(|p| p.package.clone()).collect();
                for p in list {
                    pins.insert(p.package.clone(), p);
                }
                out.closures.push(closure_entry(w, arch, names));
                closures.insert(
                    w.role.clone(),
                    out.closures.last().expect("just pushed").install.clone(),
                );
            }
            Err(e) => out.unpinned.push(format!(
                "packages {} of {} on {os}: {}",
                w.requested.join(", "),
                w.role,
                kiln_store::error_chain(&e)
            )),
        }
    }
    out.packages = pins
        .into_values()
        .map(|p| LockedPackage {
            os: os.as_str().into(),
            name: p.package,
            version: p.version,
            arch: p.arch,
            source: SourceKind::Apt,
            urls: Vec::new(),
            filename: p.filename,
            sha256: p.sha256,
            size: Some(p.size),
        })
        .collect();
    out
}

fn lock_el(project: &Project, os: OsId, wants: &[&Want]) -> PackageLock {
    let mut out = PackageLock::default();
    let c = &project.cluster;
    let catalog_file = c.paths.catalog.join("catalog.toml");
    let mut closures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for w in wants {
        let installed: BTreeSet<String> = w
            .after
            .iter()
            .flat_map(|a| closures.get(a).into_iter().flatten().cloned())
            .collect();
        match rpm_closure(&project.catalog.rpms, os, c.arch, &w.requested, &installed) {
            Ok(list) => {
                for r in &list {
                    out.packages.push(LockedPackage {
                        os: os.as_str().into(),
                        name: r.name.clone(),
                        version: r.version.clone(),
                        arch: r.arch.clone(),
                        source: r.source(),
                        urls: vec![r.url.clone()],
                        filename: r.file_name().into(),
                        sha256: r.sha256.clone(),
                        size: r.size,
                    });
                }
                let names: Vec<String> = list.iter().map(|r| r.name.clone()).collect();
                closures.insert(w.role.clone(), names.clone());
                out.closures.push(closure_entry(w, c.arch.as_str(), names));
            }
            Err(missing) => {
                for m in missing {
                    out.unpinned.push(format!(
                        "package {m} ({}) of {} on {os}: no [[rpm]] entry in {}; add it with the url and sha256 of the rpm on your mirror (and `requires` for what it needs)",
                        c.arch.rpm_name(),
                        w.role,
                        catalog_file.display()
                    ));
                }
            }
        }
    }
    out
}

/// Each bundle's packages in install order, as locked; fails naming every closure that is
/// missing or no longer matches the profiles.
pub fn locked(
    project: &Project,
    plan: &Plan,
    lock: &Lock,
) -> Result<BTreeMap<String, Vec<LockedPackage>>, Vec<LockProblem>> {
    let arch = project.cluster.arch.as_str();
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for w in wants(project, plan) {
        let id = format!("{}-{}", w.role, w.os);
        match lock.closure(&w.role, w.os.as_str()) {
            None if w.whole => problems.push(LockProblem::ImageNotPinned {
                os: w.os.to_string(),
                lock: project.cluster.paths.lock.clone(),
            }),
            Some(c) if w.whole && !w.matches(c, arch) => problems.push(LockProblem::ImageChanged {
                os: w.os.to_string(),
            }),
            None => problems.push(LockProblem::PackagesNotPinned {
                role: w.role.clone(),
                os: w.os.to_string(),
                lock: project.cluster.paths.lock.clone(),
            }),
            Some(c) if !w.matches(c, arch) => problems.push(LockProblem::PackagesChanged {
                role: w.role.clone(),
                os: w.os.to_string(),
            }),
            Some(c) => {
                out.insert(id, closure_packages(lock, c));
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A locked closure's packages, in its install order.
fn closure_packages(lock: &Lock, c: &LockedClosure) -> Vec<LockedPackage> {
    c.install
        .iter()
        .map(|n| {
            lock.find_package(&c.os, n)
                .cloned()
                .expect("a parsed lock's closures name its packages")
        })
        .collect()
}

/// The golden image's packages (its whole system, in apt's install order), as locked; fails
/// naming what is missing or no longer matches `[image]` and the catalog.
pub fn locked_image(project: &Project, lock: &Lock) -> Result<Vec<LockedPackage>, crate::Error> {
    let Some(w) = image_want(project) else {
        return Err(crate::Error::NoImage {
            cluster: project.cluster.paths.cluster_file.clone(),
        });
    };
    let arch = project.cluster.arch.as_str();
    let problem = match lock.closure(&w.role, w.os.as_str()) {
        Some(c) if w.matches(c, arch) => return Ok(closure_packages(lock, c)),
        Some(_) => LockProblem::ImageChanged {
            os: w.os.to_string(),
        },
        None => LockProblem::ImageNotPinned {
            os: w.os.to_string(),
            lock: project.cluster.paths.lock.clone(),
        },
    };
    Err(crate::Error::Stale {
        problems: vec![problem],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closure_matches_only_its_own_inputs() {
        let w = Want {
            role: "lb".into(),
            os: OsId::Debian12,
            requested: vec!["nginx".into()],
            after: vec!["common".into()],
            base: "minbase + systemd".into(),
            whole: false,
        };
        let c = closure_entry(&w, "amd64", vec!["nginx".into()]);
        assert!(w.matches(&c, "amd64"));
        assert!(!w.matches(&c, "arm64"));
        let more = Want {
            requested: vec!["nginx".into(), "keepalived".into()],
            ..w.clone()
        };
        assert!(!more.matches(&c, "amd64"));
        let other_base = Want {
            base: "minbase + dbus".into(),
            ..w
        };
        assert!(!other_base.matches(&c, "amd64"));
    }
}
