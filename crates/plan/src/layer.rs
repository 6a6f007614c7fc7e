//! The layering operation: profile → OS family → OS → overlays, folded into one role layer.

use std::collections::BTreeMap;

use kiln_spec::{ArtifactRef, FileRef, Layer, OsId, Overlay, Profile, TemplateRef};

/// One entry of a merged layer, keyed by its destination.
#[derive(Debug, Clone)]
pub enum Item {
    /// An artifact from the catalog.
    Artifact(ArtifactRef),
    /// A template.
    Template(TemplateRef),
    /// A plain file.
    File(FileRef),
}

impl Item {
    /// Destination path on the host.
    pub fn dest(&self) -> &str {
        match self {
            Item::Artifact(a) => a.dest.as_str(),
            Item::Template(t) => t.dest.as_str(),
            Item::File(f) => f.dest.as_str(),
        }
    }
}

/// The result of folding layers for one role on one OS.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    /// Entries by destination; a later layer's entry replaces an earlier one at the same path.
    pub items: BTreeMap<String, Item>,
    /// Units to enable, first mention wins the position.
    pub units: Vec<String>,
    /// Images, deduplicated in first-mention order.
    pub images: Vec<String>,
    /// sysctls, later layers override.
    pub sysctl: BTreeMap<String, String>,
    /// Modules, deduplicated in first-mention order.
    pub modules: Vec<String>,
    /// Packages, deduplicated in first-mention order.
    pub packages: Vec<String>,
    /// Health check command template; a later layer replaces it.
    pub health: Option<(String, String)>,
    /// Files the role's services create at run time.
    pub creates: Vec<String>,
}

fn push_unique(v: &mut Vec<String>, items: &[String]) {
    for i in items {
        if !v.contains(i) {
            v.push(i.clone());
        }
    }
}

impl Merged {
    /// Applies one layer on top; `only_role` keeps overlay entries meant for that role.
    pub fn apply(&mut self, layer: &Layer, only_role: Option<(&str, &str)>, origin: &str) {
        let keep = |r: &Option<String>| match only_role {
            None => true,
            Some((role, default)) => r.as_deref().unwrap_or(default) == role,
        };
        for a in layer.artifacts.iter().filter(|a| keep(&a.role)) {
            self.items
                .insert(a.dest.as_str().to_string(), Item::Artifact(a.clone()));
        }
        for t in layer.templates.iter().filter(|t| keep(&t.role)) {
            self.items
                .insert(t.dest.as_str().to_string(), Item::Template(t.clone()));
        }
        push_unique(&mut self.units, &layer.units);
        push_unique(&mut self.images, &layer.images);
        for (k, v) in &layer.sysctl {
            self.sysctl.insert(k.clone(), v.clone());
        }
        push_unique(&mut self.modules, &layer.modules);
        push_unique(&mut self.packages, &layer.packages);
        push_unique(&mut self.creates, &layer.creates);
        if let Some(h) = &layer.health {
            self.health = Some((origin.to_string(), h.clone()));
        }
    }

    /// Applies an overlay's files tree when it targets `role`.
    pub fn apply_files(&mut self, overlay: &Overlay, role: &str) {
        if overlay.files_role == role {
            for f in &overlay.layer.files {
                self.items
                    .insert(f.dest.as_str().to_string(), Item::File(f.clone()));
            }
        }
    }
}

/// Folds profile → OS family → OS id → overlays (in order) for `role` on `os`.
pub fn merge(profile: &Profile, os: OsId, overlays: &[Overlay]) -> Merged {
    let mut m = Merged::default();
    let origin = format!("profiles/{}/profile.toml", profile.name);
    m.apply(&profile.base, None, &origin);
    if let Some(l) = profile.os.get(os.family()) {
        m.apply(l, None, &origin);
    }
    if let Some(l) = profile.os.get(os.as_str()) {
        m.apply(l, None, &origin);
    }
    for o in overlays {
        let mut l = o.layer.clone();
        // An overlay's sysctls and modules go to the common bundle only.
        if profile.name != "common" {
            l.sysctl.clear();
            l.modules.clear();
        }
        m.apply(
            &l,
            Some((&profile.name, "common")),
            &format!("overlays/{}/overlay.toml", o.name),
        );
        m.apply_files(o, &profile.name);
    }
    m
}
