//! Which units the changes touch. A unit uses: its unit file and drop-ins; the files whose
//! paths appear in those (ExecStart's binary, EnvironmentFile, a `--config` flag) and, one
//! level further, in the text files so named (the certificates an env file names); the
//! files under `/etc/<unit name>/` (nginx.conf for nginx.service); and the OS package of the
//! unit's own name. A unit that reads a file no text names (a compiled-in default path outside
//! `/etc/<name>/`) is not seen: the plan says why each unit restarts, so a reader can judge.

use std::collections::{BTreeMap, BTreeSet};

use kiln_bundle::contract::{self, ROOTFS};
use kiln_bundle::{ArchiveContents, ManifestLine};

use super::compare::package_id;
use super::side::Side;
use super::{DiffError, UnitAction, UnitChange, UnitReason};

/// Where systemd looks for unit files kiln could ship.
const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system/",
    "/usr/lib/systemd/system/",
    "/lib/systemd/system/",
];

/// Texts scanned for paths further than this are not followed (binaries are not text anyway).
const MAX_DEPTH: usize = 2;

/// What a host (or one bundle) installs, seen from the host: later archives win, as
/// install.sh installs them in order.
#[derive(Default)]
pub(crate) struct View<'a> {
    /// Host path → its MANIFEST line.
    files: BTreeMap<String, &'a ManifestLine>,
    /// Host path → contents, for the small files.
    contents: BTreeMap<String, &'a [u8]>,
    /// Units to enable, in order (every bundle's UNITS).
    units: Vec<String>,
    /// Package name → version.
    packages: BTreeMap<String, Option<String>>,
}

impl<'a> View<'a> {
    /// The view of `bundles` (in install order) and then a secrets archive.
    pub fn of(
        side: &'a Side,
        bundles: &[String],
        secrets: Option<&'a ArchiveContents>,
    ) -> Result<Self, DiffError> {
        let mut v = View::default();
        for f in bundles {
            v.add_bundle(side, f)?;
        }
        if let Some(s) = secrets {
            v.add_archive(s);
        }
        Ok(v)
    }

    /// The units of the view, in the order install.sh enables them.
    pub fn units(&self) -> &[String] {
        &self.units
    }

    /// Adds a role bundle (its files, UNITS and packages).
    fn add_bundle(&mut self, side: &'a Side, file: &str) -> Result<(), DiffError> {
        let c = side.archive(file)?;
        let units = c
            .members
            .get(contract::UNITS)
            .map(|b| contract::parse_lines(contract::UNITS, b))
            .transpose()
            .map_err(|source| DiffError::Contract {
                file: side.dir.join(file),
                member: contract::UNITS,
                source,
            })?
            .unwrap_or_default();
        for u in units {
            if !self.units.contains(&u) {
                self.units.push(u);
            }
        }
        for l in &c.manifest {
            if let Some(p) = l.path.strip_prefix("packages/") {
                let (name, _, version) = package_id(p);
                self.packages.insert(name, version);
            }
        }
        self.add_archive(c);
        Ok(())
    }

    /// Adds the files under `rootfs/` of an archive (a bundle or a host's secrets).
    fn add_archive(&mut self, c: &'a ArchiveContents) {
        for l in &c.manifest {
            let Some(rel) = l
                .path
                .strip_prefix(ROOTFS)
                .and_then(|p| p.strip_prefix('/'))
            else {
                continue;
            };
            let host = format!("/{rel}");
            if let Some(bytes) = c.members.get(&l.path) {
                self.contents.insert(host.clone(), bytes);
            } else {
                self.contents.remove(&host);
            }
            self.files.insert(host, l);
        }
    }

    /// Every file the unit uses, with how, the first way found kept.
    fn uses(&self, unit: &str) -> BTreeMap<String, String> {
        let mut used: BTreeMap<String, String> = BTreeMap::new();
        let mut texts: Vec<(String, usize)> = Vec::new();
        for dir in UNIT_DIRS {
            let own = format!("{dir}{unit}");
            if self.files.contains_key(&own) {
                used.entry(own.clone())
                    .or_insert_with(|| "unit-file".into());
                texts.push((own, 1));
            }
            let drop_ins = format!("{dir}{unit}.d/");
            for p in self.files.keys().filter(|p| p.starts_with(&drop_ins)) {
                used.entry(p.clone()).or_insert_with(|| "drop-in".into());
                texts.push((p.clone(), 1));
            }
        }
        while let Some((text, depth)) = texts.pop() {
            let Some(bytes) = self.contents.get(&text) else {
                continue;
            };
            for token in paths_in(bytes) {
                let prefix = format!("{token}/");
                let named = self
                    .files
                    .keys()
                    .filter(|p| **p == token || p.starts_with(&prefix));
                for p in named {
                    if !used.contains_key(p) {
                        used.insert(p.clone(), format!("named-by {text}"));
                        if depth < MAX_DEPTH {
                            texts.push((p.clone(), depth + 1));
                        }
                    }
                }
            }
        }
        let config_dir = format!("/etc/{}/", stem(unit));
        for p in self.files.keys().filter(|p| p.starts_with(&config_dir)) {
            used.entry(p.clone()).or_insert_with(|| "config-dir".into());
        }
        used
    }
}

/// A unit's name without its type: `nginx` for `nginx.service`.
fn stem(unit: &str) -> &str {
    unit.rsplit_once('.').map_or(unit, |(s, _)| s)
}

/// Absolute paths in a text: runs of path characters that start with `/` (after systemd's
/// `-`, `+`, `@` prefixes).
fn paths_in(bytes: &[u8]) -> BTreeSet<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return BTreeSet::new();
    };
    let is_path = |c: char| c.is_ascii_alphanumeric() || "/._-+@".contains(c);
    text.split(|c: char| !is_path(c))
        // systemd's prefixes: `EnvironmentFile=-/…` (optional), `ExecStart=+/…`, `@`, `-`.
        .map(|t| t.trim_start_matches(['-', '+', '@']))
        .filter(|t| t.starts_with('/') && !t.starts_with("//") && t.len() > 1)
        .map(|t| t.trim_end_matches(['/', '.']).to_owned())
        .collect()
}

/// Units to start, stop or restart between two views, sorted by unit name.
pub(crate) fn unit_changes(old: &View<'_>, new: &View<'_>) -> Vec<UnitChange> {
    let all: BTreeSet<&String> = old.units.iter().chain(new.units.iter()).collect();
    let mut out = Vec::new();
    for unit in all {
        let (was, is) = (old.units.contains(unit), new.units.contains(unit));
        if !was || !is {
            out.push(UnitChange {
                unit: unit.clone(),
                action: if is {
                    UnitAction::Start
                } else {
                    UnitAction::Stop
                },
                because: Vec::new(),
            });
            continue;
        }
        let mut uses = old.uses(unit);
        for (p, how) in new.uses(unit) {
            uses.insert(p, how);
        }
        let same = |p: &String| match (old.files.get(p), new.files.get(p)) {
            (Some(o), Some(n)) => o.sha256 == n.sha256 && o.mode == n.mode,
            (None, None) => true,
            _ => false,
        };
        let mut because: Vec<UnitReason> = uses
            .into_iter()
            .filter(|(p, _)| !same(p))
            .map(|(what, how)| UnitReason { what, how })
            .collect();
        let name = stem(unit);
        if old.packages.get(name) != new.packages.get(name) {
            because.push(UnitReason {
                what: format!("package:{name}"),
                how: "package".into(),
            });
        }
        if !because.is_empty() {
            out.push(UnitChange {
                unit: unit.clone(),
                action: UnitAction::Restart,
                because,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_found_in_unit_and_env_texts() {
        let t = b"EnvironmentFile=-/etc/kiln/etcd.env\nExecStart=/usr/local/bin/etcd --config=/etc/x/ \"/opt/a.conf\"\nURL=https://10.0.0.1:2379/\n";
        let got: Vec<String> = paths_in(t).into_iter().collect();
        assert_eq!(
            got,
            [
                "/etc/kiln/etcd.env",
                "/etc/x",
                "/opt/a.conf",
                "/usr/local/bin/etcd"
            ]
        );
    }

    #[test]
    fn the_stem_drops_the_unit_type() {
        assert_eq!(stem("nginx.service"), "nginx");
        assert_eq!(stem("kiln-firewall-reload.service"), "kiln-firewall-reload");
        assert_eq!(stem("noext"), "noext");
    }
}
