//! Completeness proof: everything a host's units and configs refer to is delivered to that host.
//!
//! For every host, the files of its bundles, its own files and its certificates form the set of
//! what it will have. Every unit's executables, and every path under the locations kiln manages
//! that a rendered file mentions, must be in that set (or be declared in a profile's `creates`).

use std::collections::{BTreeSet, HashMap};

use crate::{BundlePlan, FileSource, HostPlan, PlannedFile};

/// Where kiln is the only source of files: a reference there must be satisfied by the plan.
const MANAGED: &[&str] = &[
    "/etc/kubernetes/",
    "/etc/kiln/",
    "/usr/local/",
    "/opt/cni/bin/",
    "/var/lib/kubelet/pki/",
    "/var/lib/kubelet/config",
];

/// Manifests applied to the cluster through the API: the paths in them are other hosts' paths.
const ADDONS: &str = "/etc/kubernetes/addons/";

/// One unresolved reference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Miss {
    /// Host that would lack it.
    pub host: String,
    /// The file whose content refers to it (host path) and the bundle or host archive holding it.
    pub referrer: String,
    /// What it refers to.
    pub reference: String,
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} refers to {}, which no bundle, host file or certificate provides",
            self.host, self.referrer, self.reference
        )
    }
}

/// Absolute paths mentioned in `text` (tokens starting with '/', cut at quotes, spaces, commas…).
fn paths_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | ',' | '=' | ';' | '(' | ')' | '[' | ']' | '{' | '}'
            )
    })
    .filter(|t| t.starts_with('/') && t.len() > 1)
    .map(|t| t.trim_end_matches(['.', ':', '/']))
}

/// Executables of a unit file: the first word of every Exec* line.
fn unit_executables(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().starts_with("Exec").then_some(v.trim())
        })
        .filter_map(|v| {
            v.trim_start_matches(['-', '@', ':', '+', '!'])
                .split_whitespace()
                .next()
        })
        .collect()
}

fn managed(p: &str) -> bool {
    MANAGED
        .iter()
        .any(|m| p.starts_with(m) || *m == format!("{p}/"))
}

/// What decides a host's misses in its bundles' files: its bundle ids and its own paths.
type Shape<'a> = (Vec<&'a str>, Vec<&'a str>);

/// Checks every host of the plan; returns every miss, sorted.
pub fn check(bundles: &[BundlePlan], hosts: &[HostPlan]) -> Vec<Miss> {
    let mut misses = BTreeSet::new();
    // Hosts with the same bundles and the same own paths miss the same things in their bundles'
    // files: those are looked for once per such shape, not once per host.
    let mut by_shape: HashMap<Shape<'_>, Vec<(String, String)>> = HashMap::new();
    for h in hosts {
        let mine: Vec<&BundlePlan> = h
            .bundles
            .iter()
            .filter_map(|id| bundles.iter().find(|b| &b.id == id))
            .collect();
        let own: Vec<&str> = h
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(h.secrets.iter().map(|s| s.path.as_str()))
            .collect();
        let mut have: BTreeSet<&str> = BTreeSet::new();
        for b in &mine {
            have.extend(b.files.iter().map(|f| f.path.as_str()));
            have.extend(b.creates.iter().map(String::as_str));
        }
        have.extend(own.iter().copied());
        let shape = (h.bundles.iter().map(String::as_str).collect(), own);
        let from_bundles = by_shape.entry(shape).or_insert_with(|| {
            let sources = mine
                .iter()
                .flat_map(|b| b.files.iter().map(move |f| (b.id.clone(), f)));
            unresolved(sources, &have)
        });
        let from_host = unresolved(
            h.files.iter().map(|f| (format!("host {}", h.name), f)),
            &have,
        );
        for (referrer, reference) in from_bundles.iter().cloned().chain(from_host) {
            misses.insert(Miss {
                host: h.name.clone(),
                referrer,
                reference,
            });
        }
    }
    misses.into_iter().collect()
}

/// (referrer, reference) for every managed path that `sources` (origin, file) refer to and
/// `have` does not provide.
fn unresolved<'a>(
    sources: impl Iterator<Item = (String, &'a PlannedFile)>,
    have: &BTreeSet<&str>,
) -> Vec<(String, String)> {
    // A referenced folder is fine when something is delivered inside it.
    let present = |p: &str| {
        have.contains(p)
            || have
                .iter()
                .any(|f| f.starts_with(p) && f.as_bytes().get(p.len()) == Some(&b'/'))
    };
    let mut out = Vec::new();
    for (origin, f) in sources {
        let FileSource::Content { bytes, .. } = &f.source else {
            continue;
        };
        if f.path.starts_with(ADDONS) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(bytes) else {
            continue;
        };
        let referrer = format!("{} (in {origin})", f.path);
        if f.path.ends_with(".service") {
            for exe in unit_executables(text) {
                if exe.starts_with('/') && !present(exe) && managed(exe) {
                    out.push((referrer.clone(), exe.to_string()));
                }
            }
        }
        for p in paths_in(text) {
            if managed(p) && !present(p) && p != f.path {
                out.push((referrer.clone(), p.to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_paths_and_executables() {
        let unit = "[Service]\nExecStartPre=-/sbin/modprobe overlay\nExecStart=/usr/local/bin/etcd --cert=/etc/kubernetes/pki/a.crt,/etc/kiln/x\n";
        assert_eq!(
            unit_executables(unit),
            ["/sbin/modprobe", "/usr/local/bin/etcd"]
        );
        let p: Vec<&str> = paths_in(unit).collect();
        assert!(
            p.contains(&"/etc/kubernetes/pki/a.crt") && p.contains(&"/etc/kiln/x"),
            "{p:?}"
        );
        assert!(
            managed("/usr/local/bin/etcd")
                && !managed("/sbin/modprobe")
                && managed("/etc/kubernetes")
        );
    }
}
