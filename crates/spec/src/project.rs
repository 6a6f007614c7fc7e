//! A whole project: cluster.toml plus the profiles, overlays and catalog it uses, validated
//! together.
//!
//! Which files make up a project depends on what the files say (the hosts' roles, what each
//! profile extends, the overlays named), so validation asks for them through [`Files`]; the
//! loader (kiln-load) implements it on the disk and this crate makes no syscalls.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::catalog::{self, Catalog};
use crate::cluster::{self, Known};
use crate::diag::{Diagnostic, Diagnostics, NotUtf8, Severity};
use crate::model::Cluster;
use crate::profile::{load_overlay, load_profile, Overlay, Profile};

/// Everything a build needs to know, validated.
#[derive(Debug, Clone)]
pub struct Project {
    /// The cluster.
    pub cluster: Cluster,
    /// Profiles in use (hosts' roles, what they extend, and `common`), by name.
    pub profiles: BTreeMap<String, Profile>,
    /// Overlays in application order.
    pub overlays: Vec<Overlay>,
    /// The catalog.
    pub catalog: Catalog,
    /// Image sources (catalog/images.toml; empty when absent).
    pub images: crate::images::ImageCatalog,
    /// Warnings found while validating.
    pub warnings: Vec<Diagnostic>,
    /// Every input file read (for the build id), sorted.
    pub inputs: Vec<PathBuf>,
}

impl Project {
    /// Roles a host receives bundles for, in install order: `common`, then each role after what it extends.
    pub fn host_roles(&self, roles: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        if self.profiles.contains_key("common") {
            out.push("common".to_string());
        }
        fn visit(p: &BTreeMap<String, Profile>, r: &str, out: &mut Vec<String>) {
            if out.iter().any(|x| x == r) {
                return;
            }
            if let Some(prof) = p.get(r) {
                for e in &prof.extends {
                    visit(p, e, out);
                }
            }
            out.push(r.to_string());
        }
        for r in roles {
            visit(&self.profiles, r, &mut out);
        }
        out
    }
}

/// A file of an overlay's `files/` tree: path relative to `files/`, mode, and source path.
pub type OverlayFile = (String, u32, PathBuf);

/// Where a project's files come from: the disk (kiln-load) or, in tests, memory.
pub trait Files {
    /// The text of a file; not valid UTF-8 is an error carrying a [`NotUtf8`].
    fn read(&self, path: &Path) -> std::io::Result<String>;
    /// Whether `path` is a regular file.
    fn is_file(&self, path: &Path) -> bool;
    /// Names of the folders in `dir` that hold a file named `file` (none when `dir` is unreadable).
    fn subdirs_with(&self, dir: &Path, file: &str) -> BTreeSet<String>;
    /// An overlay's `files/` tree, sorted (empty when `root` does not exist); links and devices
    /// are refused.
    fn overlay_files(&self, root: &Path) -> Result<Vec<OverlayFile>, Diagnostic>;
}

fn read(files: &dyn Files, path: &Path) -> Result<String, Diagnostic> {
    files.read(path).map_err(|e| match NotUtf8::of(&e) {
        Some(n) => n.diagnostic(path),
        None => Diagnostic::error(path, "", None).msg(format!("cannot read: {e}")),
    })
}

fn fail(mut diags: Vec<Diagnostic>) -> Diagnostics {
    diags.sort_by(|a, b| (a.severity, &a.file, a.position).cmp(&(b.severity, &b.file, b.position)));
    Diagnostics(diags)
}

/// Reads (through `files`) and validates cluster.toml and everything it refers to.
pub fn validate(cluster_file: &Path, files: &dyn Files) -> Result<Project, Diagnostics> {
    let text = read(files, cluster_file)?;
    let raw = cluster::parse(cluster_file, &text)?;
    let base = cluster_file
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let rel = |v: &Option<crate::raw::S>, d: &str| {
        base.join(v.as_ref().map(|s| s.get_ref().as_str()).unwrap_or(d))
    };
    let profiles_dir = rel(&raw.paths.profiles, "profiles");
    let overlays_dir = rel(&raw.paths.overlays, "overlays");
    let roles = files.subdirs_with(&profiles_dir, "profile.toml");
    let overlay_names = files.subdirs_with(&overlays_dir, "overlay.toml");
    let mut diags = Vec::new();
    if roles.is_empty() {
        let span = raw.paths.profiles.as_ref().map(|s| s.span());
        diags.push(
            Diagnostic::error(cluster_file, &text, span)
                .key("paths.profiles")
                .msg(format!(
                    "no profiles found in {} (expected <role>/profile.toml folders)",
                    profiles_dir.display()
                )),
        );
    }
    let (cluster, mut found) = cluster::validate(
        cluster_file,
        &text,
        &raw,
        &Known {
            roles: &roles,
            overlays: &overlay_names,
        },
    );
    diags.append(&mut found);
    let Some(cluster) = cluster else {
        return Err(fail(diags));
    };
    let mut inputs = vec![cluster_file.to_path_buf()];

    // Profiles: hosts' roles, their extends closure, and common.
    let reader = |p: &Path| files.read(p);
    let mut profiles: BTreeMap<String, Profile> = BTreeMap::new();
    let mut todo: Vec<String> = cluster.hosts.iter().flat_map(|h| h.roles.clone()).collect();
    if roles.contains("common") {
        todo.push("common".into());
    }
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let file = profiles_dir.join(&name).join("profile.toml");
        let ptext = match read(files, &file) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        match load_profile(&name, &file, &ptext, &reader) {
            Ok(p) => {
                for (i, e) in p.extends.iter().enumerate() {
                    if !roles.contains(e) {
                        diags.push(
                            Diagnostic::error(&file, &ptext, None)
                                .key(format!("extends[{i}]"))
                                .msg(format!("extends unknown profile {e:?}")),
                        );
                    } else {
                        todo.push(e.clone());
                    }
                }
                inputs.push(file.clone());
                inputs.extend(template_paths(&profiles_dir.join(&name), &p));
                profiles.insert(name, p);
            }
            Err(mut d) => diags.append(&mut d),
        }
    }
    check_extends_cycles(&profiles, &mut diags);

    // Requirements declared by the profiles of roles in use.
    let used: BTreeSet<&str> = cluster
        .hosts
        .iter()
        .flat_map(|h| h.roles.iter().map(String::as_str))
        .collect();
    for role in &used {
        let Some(p) = profiles.get(*role) else {
            continue;
        };
        for req in &p.requires {
            let met_by_role = req.roles.iter().any(|r| used.contains(r.as_str()));
            let met_by_setting = match req.or_setting.as_deref() {
                Some("api.endpoint") => cluster.api_endpoint.is_some(),
                Some("lb.backends") => cluster.lb.as_ref().is_some_and(|l| !l.backends.is_empty()),
                _ => false,
            };
            if !met_by_role && !met_by_setting {
                let (i, h) = raw
                    .hosts
                    .iter()
                    .enumerate()
                    .find(|(_, h)| {
                        h.get_ref()
                            .roles
                            .get_ref()
                            .iter()
                            .any(|r| r.get_ref() == role)
                    })
                    .expect("role is used");
                let alt = req
                    .or_setting
                    .as_ref()
                    .map(|s| format!(" or `{s}` in cluster.toml"))
                    .unwrap_or_default();
                let why = req
                    .message
                    .as_ref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                diags.push(
                    Diagnostic::error(cluster_file, &text, Some(h.get_ref().roles.span()))
                        .key(format!("host[{i}].roles"))
                        .msg(format!(
                            "role {role:?} requires a host with role {}{alt}{why}",
                            req.roles.join(" or ")
                        )),
                );
            }
        }
    }
    let etcd = cluster.hosts_with("etcd").count();
    if etcd > 0 && etcd % 2 == 0 {
        diags.push(Diagnostic::error(cluster_file, &text, None).key("host").msg(format!("{etcd} etcd members: an even count tolerates no more failures than {} members; use an odd number", etcd - 1)).warning());
    }

    // Overlays, in order.
    let mut overlays = Vec::new();
    for name in &cluster.overlays {
        let dir = overlays_dir.join(name);
        let file = dir.join("overlay.toml");
        let otext = match read(files, &file) {
            Ok(t) => t,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        let tree = match files.overlay_files(&dir.join("files")) {
            Ok(f) => f,
            Err(d) => {
                diags.push(d);
                continue;
            }
        };
        match load_overlay(name, &file, &otext, &reader, tree) {
            Ok(o) => {
                let layer_roles = o
                    .layer
                    .artifacts
                    .iter()
                    .filter_map(|a| a.role.clone())
                    .chain(o.layer.templates.iter().filter_map(|t| t.role.clone()))
                    .chain(std::iter::once(o.files_role.clone()));
                for r in layer_roles {
                    if !roles.contains(&r) {
                        diags.push(
                            Diagnostic::error(&file, &otext, None)
                                .key("role")
                                .msg(format!("overlay entry targets unknown role {r:?}")),
                        );
                    }
                }
                inputs.push(file.clone());
                inputs.extend(
                    o.layer
                        .templates
                        .iter()
                        .map(|t| overlays_dir.join(t.origin.trim_start_matches("overlays/"))),
                );
                inputs.extend(o.layer.files.iter().map(|f| f.path.clone()));
                overlays.push(o);
            }
            Err(mut d) => diags.append(&mut d),
        }
    }

    // Catalog: every artifact in use must resolve to a source that can be pinned.
    let cat_file = cluster.paths.catalog.join("catalog.toml");
    let pins_file = cluster.paths.catalog.join("pins.toml");
    let catalog = match read(files, &cat_file) {
        Ok(ct) => {
            let pins_text = files.read(&pins_file).ok();
            match catalog::parse(&cat_file, &ct, &pins_file, pins_text.as_deref()) {
                Ok(c) => Some(c),
                Err(d) => {
                    diags.push(d);
                    None
                }
            }
        }
        Err(d) => {
            diags.push(d);
            None
        }
    };
    let mut cluster = cluster;
    if let (Some(cat), Some(img)) = (&catalog, cluster.image.as_mut()) {
        match cat.os_image.get(img.os.as_str()) {
            Some(base) => {
                let arch = cluster.arch.as_str();
                let mut all: Vec<String> =
                    base.packages.iter().map(|p| p.replace("{arch}", arch)).collect();
                match base.kernel.get(&img.kernel) {
                    Some(k) => {
                        all.push(k.package.replace("{arch}", arch));
                        img.initrd_modules = k.initrd.clone();
                    }
                    None => {
                        let span = raw.image.as_ref().map(|i| {
                            i.get_ref().kernel.as_ref().map(|k| k.span()).unwrap_or(i.span())
                        });
                        diags.push(
                            Diagnostic::error(cluster_file, &text, span)
                                .key("image.kernel")
                                .msg(format!(
                                    "{} has no [os-image.{}.kernel.{}]; expected one of {}",
                                    cat_file.display(),
                                    img.os,
                                    img.kernel,
                                    base.kernel
                                        .iter()
                                        .map(|(n, k)| format!("{n:?} ({})", k.description))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )),
                        );
                    }
                }
                let extra: Vec<String> =
                    img.extra.iter().filter(|p| !all.contains(p)).cloned().collect();
                all.extend(extra);
                img.packages = all;
            }
            None => diags.push(
                Diagnostic::error(cluster_file, &text, raw.image.as_ref().map(|i| i.span()))
                    .key("image")
                    .msg(format!(
                        "{} has no [os-image.{}]: it says which packages a golden image of that OS holds",
                        cat_file.display(),
                        img.os
                    )),
            ),
        }
    }
    if let Some(cat) = &catalog {
        inputs.push(cat_file.clone());
        if files.is_file(&pins_file) {
            inputs.push(pins_file.clone());
        }
        let oses: BTreeSet<_> = cluster.hosts.iter().map(|h| h.os).collect();
        let mut refs: Vec<(String, String)> = Vec::new();
        for p in profiles.values() {
            let mut layers = vec![&p.base];
            for os in &oses {
                layers.extend(p.os.get(os.family()));
                layers.extend(p.os.get(os.as_str()));
            }
            for l in layers {
                refs.extend(
                    l.artifacts
                        .iter()
                        .map(|a| (a.name.clone(), a.origin.clone())),
                );
            }
        }
        for o in &overlays {
            refs.extend(
                o.layer
                    .artifacts
                    .iter()
                    .map(|a| (a.name.clone(), a.origin.clone())),
            );
        }
        refs.sort();
        refs.dedup_by(|a, b| a.0 == b.0);
        for (name, origin) in refs {
            let version_key = cat.artifact.get(&name).map(|a| a.version.clone());
            let span = version_key
                .as_ref()
                .and_then(|k| raw.versions.get(k))
                .map(|v| v.span());
            let key = version_key
                .as_ref()
                .map(|k| format!("versions.{k}"))
                .unwrap_or_else(|| "versions".into());
            match cat.resolve(&name, &cluster.versions, cluster.arch, &cluster.sources) {
                Ok(r) if !r.has_checksum_source() => diags.push(Diagnostic::error(cluster_file, &text, span).key(key).msg(format!(
                    "{} {} ({}) has no pin in {} and no checksum source: add the pin or a checksum-url",
                    name, r.version, r.arch, pins_file.display()
                ))),
                Ok(_) => {}
                Err(e) => diags.push(Diagnostic::error(cluster_file, &text, span).key(key).msg(format!("{e} (used by {origin})"))),
            }
        }
    }

    let images_file = cluster.paths.catalog.join("images.toml");
    let mut images = crate::images::ImageCatalog::default();
    if files.is_file(&images_file) {
        match read(files, &images_file).and_then(|t| crate::images::parse(&images_file, &t)) {
            Ok(c) => {
                images = c;
                inputs.push(images_file.clone());
            }
            Err(d) => diags.push(d),
        }
    }

    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(fail(diags));
    }
    inputs.sort();
    inputs.dedup();
    Ok(Project {
        cluster,
        profiles,
        overlays,
        catalog: catalog.expect("no errors"),
        images,
        warnings: diags,
        inputs,
    })
}

fn template_paths(dir: &Path, p: &Profile) -> Vec<PathBuf> {
    std::iter::once(&p.base)
        .chain(p.os.values())
        .flat_map(|l| l.templates.iter())
        .map(|t| {
            dir.join(
                t.origin
                    .split_once('/')
                    .map(|x| x.1)
                    .and_then(|r| r.split_once('/'))
                    .map(|x| x.1)
                    .unwrap_or(&t.origin),
            )
        })
        .collect()
}

fn check_extends_cycles(profiles: &BTreeMap<String, Profile>, diags: &mut Vec<Diagnostic>) {
    fn walk<'a>(
        p: &'a BTreeMap<String, Profile>,
        n: &'a str,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if stack.contains(&n) {
            let mut cyc: Vec<String> = stack.iter().map(|s| s.to_string()).collect();
            cyc.push(n.to_string());
            return Some(cyc);
        }
        stack.push(n);
        if let Some(prof) = p.get(n) {
            for e in &prof.extends {
                if let Some(c) = walk(p, e, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        None
    }
    for (name, p) in profiles {
        if let Some(cycle) = walk(profiles, name, &mut Vec::new()) {
            diags.push(
                Diagnostic::error(&p.file, "", None)
                    .key("extends")
                    .msg(format!("extends forms a cycle: {}", cycle.join(" -> "))),
            );
            return;
        }
    }
}
