//! Profiles and overlays: conversion of their raw form into checked layers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cluster::{sysctl_strings, to_json};
use crate::diag::{from_toml_error_keyed, Diagnostic, NotUtf8};
use crate::model::{parse_mode, HostPath, OsId};
use crate::raw::{RawArtifact, RawLayer, RawOverlay, RawProfile, RawTemplate, S};

/// Where a template is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Once per role bundle, shared by every host of the role.
    Role,
    /// Once per host (into the host's own files), with `host` in the context.
    Host,
}

/// An artifact placed on the host.
#[derive(Debug, Clone, Serialize)]
pub struct ArtifactRef {
    /// Catalog name.
    pub name: String,
    /// Destination on the host.
    pub dest: HostPath,
    /// File mode.
    pub mode: u32,
    /// For overlay entries: the role bundle that gets it.
    pub role: Option<String>,
    /// Where it was declared, for messages.
    pub origin: String,
}

/// A template rendered onto the host.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateRef {
    /// Name for messages and strict-mode errors, e.g. `profiles/etcd/etcd.service.hbs`.
    pub origin: String,
    /// Template text.
    #[serde(skip)]
    pub text: String,
    /// Destination on the host.
    pub dest: HostPath,
    /// File mode.
    pub mode: u32,
    /// Role or host scope.
    pub scope: Scope,
    /// For overlay entries: the role bundle that gets it.
    pub role: Option<String>,
}

/// A plain file copied onto the host (overlay `files/` trees).
#[derive(Debug, Clone, Serialize)]
pub struct FileRef {
    /// Destination on the host.
    pub dest: HostPath,
    /// File mode (0755 when executable on disk, else 0644).
    pub mode: u32,
    /// Source on the build machine.
    pub path: PathBuf,
    /// Where it came from, for messages.
    pub origin: String,
}

/// One layer of content: a profile body, an OS section or an overlay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Layer {
    /// Artifacts.
    pub artifacts: Vec<ArtifactRef>,
    /// Templates.
    pub templates: Vec<TemplateRef>,
    /// Plain files.
    pub files: Vec<FileRef>,
    /// Units to enable, in order.
    pub units: Vec<String>,
    /// Images (references) the role needs.
    pub images: Vec<String>,
    /// sysctl settings.
    pub sysctl: BTreeMap<String, String>,
    /// Kernel modules to load at boot.
    pub modules: Vec<String>,
    /// OS packages.
    pub packages: Vec<String>,
    /// Health check command template (a later layer replaces it).
    pub health: Option<String>,
    /// Files created at run time by the role's services.
    pub creates: Vec<String>,
}

/// A role requirement (checked against the cluster).
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    /// At least one host must have one of these roles…
    pub roles: Vec<String>,
    /// …or this cluster.toml setting must be present.
    pub or_setting: Option<String>,
    /// Explanation shown when unmet.
    pub message: Option<String>,
}

/// A checked profile.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Role name (the folder name).
    pub name: String,
    /// profile.toml path.
    #[serde(skip)]
    pub file: PathBuf,
    /// One-line description.
    pub description: Option<String>,
    /// Profiles this one builds on (their bundles are installed first).
    pub extends: Vec<String>,
    /// Requirements on the cluster.
    pub requires: Vec<Requirement>,
    /// The profile's own layer.
    pub base: Layer,
    /// OS-family and OS-id layers.
    pub os: BTreeMap<String, Layer>,
}

/// A checked overlay.
#[derive(Debug, Clone, Serialize)]
pub struct Overlay {
    /// Overlay name (the folder name).
    pub name: String,
    /// Variables for templates.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Content; entries carry the role they go to.
    pub layer: Layer,
    /// The role bundle that receives the `files/` tree.
    pub files_role: String,
}

/// Reads a file next to a profile or overlay (injected so conversion stays testable).
pub type ReadText<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

struct Conv<'a> {
    file: &'a Path,
    text: &'a str,
    dir: &'a Path,
    origin_prefix: String,
    read: ReadText<'a>,
    out: Vec<Diagnostic>,
}

impl Conv<'_> {
    fn err(&mut self, span: Option<std::ops::Range<usize>>, key: &str, msg: impl fmt::Display) {
        self.out.push(
            Diagnostic::error(self.file, self.text, span)
                .key(key)
                .msg(msg),
        );
    }

    fn mode(&mut self, m: &Option<S>, default: u32, key: &str) -> u32 {
        match m {
            None => default,
            Some(s) => parse_mode(s.get_ref()).unwrap_or_else(|e| {
                self.err(Some(s.span()), key, e);
                default
            }),
        }
    }

    fn dest(&mut self, d: &S, key: &str) -> Option<HostPath> {
        HostPath::parse(d.get_ref())
            .map_err(|e| self.err(Some(d.span()), key, e))
            .ok()
    }

    fn layer(&mut self, key: &str, l: &RawLayer, overlay: bool) -> Layer {
        let mut out = Layer::default();
        for (i, a) in l.artifacts.iter().enumerate() {
            if let Some(x) = self.artifact(&format!("{key}artifact[{i}]"), a, overlay) {
                out.artifacts.push(x);
            }
        }
        for (i, t) in l.templates.iter().enumerate() {
            if let Some(x) = self.template(&format!("{key}template[{i}]"), t, overlay) {
                out.templates.push(x);
            }
        }
        out.units = l.units.iter().map(|s| s.get_ref().clone()).collect();
        for (i, u) in l.units.iter().enumerate() {
            let n = u.get_ref();
            if !(n.ends_with(".service")
                || n.ends_with(".timer")
                || n.ends_with(".socket")
                || n.ends_with(".target")
                || n.ends_with(".mount"))
                || n.contains('/')
            {
                self.err(
                    Some(u.span()),
                    &format!("{key}units[{i}]"),
                    format!("{n:?} is not a systemd unit name (expected e.g. etcd.service)"),
                );
            }
        }
        out.images = l.images.iter().map(|s| s.get_ref().clone()).collect();
        match sysctl_strings(&l.sysctl) {
            Ok(s) => out.sysctl = s,
            Err(e) => self.err(None, &format!("{key}sysctl"), e),
        }
        out.modules = l.modules.iter().map(|s| s.get_ref().clone()).collect();
        out.packages = l.packages.iter().map(|s| s.get_ref().clone()).collect();
        out.health = l.health.as_ref().map(|s| s.get_ref().clone());
        for (i, c) in l.creates.iter().enumerate() {
            match HostPath::parse(c.get_ref()) {
                Ok(p) => out.creates.push(p.to_string()),
                Err(e) => self.err(Some(c.span()), &format!("{key}creates[{i}]"), e),
            }
        }
        out
    }

    fn role_field(&mut self, role: &Option<S>, overlay: bool, key: &str) -> Option<String> {
        match (role, overlay) {
            (Some(r), false) => {
                self.err(Some(r.span()), key, "`role` is only allowed in overlays (a profile's entries belong to its own role)");
                None
            }
            (Some(r), true) => Some(r.get_ref().clone()),
            (None, _) => None,
        }
    }

    fn artifact(&mut self, key: &str, a: &RawArtifact, overlay: bool) -> Option<ArtifactRef> {
        let mode = self.mode(&a.mode, 0o755, &format!("{key}.mode"));
        let role = self.role_field(&a.role, overlay, &format!("{key}.role"));
        let dest = self.dest(&a.dest, &format!("{key}.dest"))?;
        Some(ArtifactRef {
            name: a.name.get_ref().clone(),
            dest,
            mode,
            role,
            origin: self.file.display().to_string(),
        })
    }

    fn template(&mut self, key: &str, t: &RawTemplate, overlay: bool) -> Option<TemplateRef> {
        let mode = self.mode(&t.mode, 0o644, &format!("{key}.mode"));
        let role = self.role_field(&t.role, overlay, &format!("{key}.role"));
        let scope = match t.scope.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("role") => Scope::Role,
            Some("host") => Scope::Host,
            Some(other) => {
                let span = t.scope.as_ref().map(|s| s.span());
                self.err(
                    span,
                    &format!("{key}.scope"),
                    format!("unknown scope {other:?}; expected role or host"),
                );
                Scope::Role
            }
        };
        let dest = self.dest(&t.dest, &format!("{key}.dest"))?;
        let src = t.src.get_ref();
        if src.starts_with('/') || src.split('/').any(|c| c == "..") {
            self.err(
                Some(t.src.span()),
                &format!("{key}.src"),
                format!("{src:?} must be a relative path inside the folder"),
            );
            return None;
        }
        let path = self.dir.join(src);
        let text = match (self.read)(&path) {
            Ok(t) => t,
            Err(e) => {
                match NotUtf8::of(&e) {
                    // The template's own place, not the profile's `src`.
                    Some(n) => self.out.push(n.diagnostic(&path)),
                    None => self.err(
                        Some(t.src.span()),
                        &format!("{key}.src"),
                        format!("cannot read template {}: {e}", path.display()),
                    ),
                }
                return None;
            }
        };
        Some(TemplateRef {
            origin: format!("{}/{}", self.origin_prefix, src),
            text,
            dest,
            mode,
            scope,
            role,
        })
    }
}

/// Parses and checks a profile.toml whose templates live in `dir`.
pub fn load_profile(
    name: &str,
    file: &Path,
    text: &str,
    read: ReadText<'_>,
) -> Result<Profile, Vec<Diagnostic>> {
    let raw: RawProfile =
        toml::from_str(text).map_err(|e| vec![from_toml_error_keyed(file, text, &e)])?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut c = Conv {
        file,
        text,
        dir,
        origin_prefix: format!("profiles/{name}"),
        read,
        out: Vec::new(),
    };
    let base_raw = RawLayer {
        artifacts: raw.artifacts.clone(),
        templates: raw.templates.clone(),
        units: raw.units.clone(),
        images: raw.images.clone(),
        sysctl: raw.sysctl.clone(),
        modules: raw.modules.clone(),
        packages: raw.packages.clone(),
        health: raw.health.clone(),
        creates: raw.creates.clone(),
    };
    let base = c.layer("", &base_raw, false);
    let mut os = BTreeMap::new();
    for (k, l) in &raw.os {
        if k != "el" && k != "debian" && OsId::parse(k).is_none() {
            c.err(
                Some(l.span()),
                &format!("os.{k}"),
                format!(
                    "unknown OS section {k:?}; expected el, debian or one of {}",
                    OsId::NAMES.join(", ")
                ),
            );
            continue;
        }
        let layer = c.layer(&format!("os.{k}."), l.get_ref(), false);
        os.insert(k.clone(), layer);
    }
    let requires = raw
        .requires
        .iter()
        .map(|r| Requirement {
            roles: r.roles.clone(),
            or_setting: r.or_setting.clone(),
            message: r.message.clone(),
        })
        .collect();
    if c.out.is_empty() {
        Ok(Profile {
            name: name.to_string(),
            file: file.to_path_buf(),
            description: raw.description,
            extends: raw.extends.iter().map(|s| s.get_ref().clone()).collect(),
            requires,
            base,
            os,
        })
    } else {
        Err(c.out)
    }
}

/// Parses and checks an overlay.toml; `files` is the overlay's `files/` tree (dest, mode, source path).
pub fn load_overlay(
    name: &str,
    file: &Path,
    text: &str,
    read: ReadText<'_>,
    files: Vec<(String, u32, PathBuf)>,
) -> Result<Overlay, Vec<Diagnostic>> {
    let raw: RawOverlay =
        toml::from_str(text).map_err(|e| vec![from_toml_error_keyed(file, text, &e)])?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut c = Conv {
        file,
        text,
        dir,
        origin_prefix: format!("overlays/{name}"),
        read,
        out: Vec::new(),
    };
    let raw_layer = RawLayer {
        artifacts: raw.artifacts.clone(),
        templates: raw.templates.clone(),
        units: Vec::new(),
        images: Vec::new(),
        sysctl: raw.sysctl.clone(),
        modules: raw.modules.clone(),
        packages: Vec::new(),
        health: None,
        creates: Vec::new(),
    };
    let mut layer = c.layer("", &raw_layer, true);
    let files_role = raw.files_role.as_ref().map(|s| s.get_ref().clone());
    for (rel, mode, path) in files {
        match HostPath::parse(&format!("/{rel}")) {
            Ok(dest) => layer.files.push(FileRef {
                dest,
                mode,
                path,
                origin: format!("overlays/{name}/files/{rel}"),
            }),
            Err(e) => c.err(None, "files", format!("overlays/{name}/files/{rel}: {e}")),
        }
    }
    if c.out.is_empty() {
        Ok(Overlay {
            name: name.to_string(),
            vars: raw
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
            layer,
            files_role: files_role.unwrap_or_else(|| "common".into()),
        })
    } else {
        Err(c.out)
    }
}
