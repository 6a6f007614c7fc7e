//! Delta bundles: what a host holding one build's role bundle needs to rebuild the next
//! build's bundle of the same role, written by the one archive writer.
//!
//! A delta is an ordinary kiln archive (its own `MANIFEST` first, so `kiln verify` checks it
//! like any bundle) holding `DELTA` (which base and which bundle), `REMOVED` (base paths the new
//! bundle no longer has), `NEW-MANIFEST` (the new bundle's MANIFEST, byte for byte) and
//! `tree/<path>` for every entry added or changed. install.sh extracts the base, removes
//! `REMOVED`, adds `tree/`, puts `NEW-MANIFEST` in place as `MANIFEST` and then checks every
//! file against it, as it checks any staged bundle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::contract::{self, DELTA, DELTA_MANIFEST, DELTA_REMOVED, DELTA_TREE};
use crate::{manifest, BundleError, BundleSpec, Entry, ManifestLine, Source, WrittenBundle};

/// The base a delta applies to: a role bundle of an earlier build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaBase<'a> {
    /// The base bundle's file name.
    pub file: &'a str,
    /// The base bundle's sha256.
    pub sha256: &'a str,
    /// The base bundle's MANIFEST lines.
    pub manifest: &'a [ManifestLine],
}

/// Which entries differ between two MANIFESTs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaPlan {
    /// Paths the new bundle has that the base lacks or holds with other content or mode.
    pub changed: Vec<String>,
    /// Paths the base has that the new bundle lacks.
    pub removed: Vec<String>,
}

impl DeltaPlan {
    /// Compares the base's MANIFEST lines with the new bundle's.
    pub fn between(base: &[ManifestLine], new: &[ManifestLine]) -> Self {
        let old: BTreeMap<&str, &ManifestLine> =
            base.iter().map(|l| (l.path.as_str(), l)).collect();
        let now: BTreeMap<&str, &ManifestLine> = new.iter().map(|l| (l.path.as_str(), l)).collect();
        let changed = new
            .iter()
            .filter(|l| {
                old.get(l.path.as_str())
                    .is_none_or(|o| o.sha256 != l.sha256 || o.mode != l.mode)
            })
            .map(|l| l.path.clone())
            .collect();
        let removed = base
            .iter()
            .filter(|l| !now.contains_key(l.path.as_str()))
            .map(|l| l.path.clone())
            .collect();
        Self { changed, removed }
    }

    /// Nothing differs.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// A delta bundle written by [`write_delta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenDelta {
    /// Final path `<dir>/<file_name>`.
    pub path: PathBuf,
    /// `<bundle id>-delta-<first 16 hex digits of sha256>.tar.gz`.
    pub file_name: String,
    /// sha256 of the delta file.
    pub sha256: String,
    /// Size of the delta file in bytes.
    pub size: u64,
    /// What it carries and removes.
    pub plan: DeltaPlan,
}

/// Writes `<dir>/<id>-delta-<16 hex>.tar.gz` turning `base` into `new`, whose entries (as
/// given to [`crate::write_bundle`]) are `entries`; `None` when the two bundles are equal.
pub fn write_delta(
    dir: &Path,
    id: &str,
    base: &DeltaBase,
    new: &WrittenBundle,
    entries: &[Entry],
    mtime: u64,
) -> Result<Option<WrittenDelta>, BundleError> {
    let plan = DeltaPlan::between(base.manifest, &new.manifest);
    if base.sha256 == new.sha256 || plan.is_empty() {
        return Ok(None);
    }
    let by_path: BTreeMap<&str, &Entry> = entries.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut out = Vec::with_capacity(plan.changed.len() + 3);
    for path in &plan.changed {
        let e = by_path
            .get(path.as_str())
            .ok_or_else(|| BundleError::DeltaEntryMissing {
                bundle: new.file_name.clone(),
                path: path.clone(),
            })?;
        out.push(Entry {
            path: format!("{DELTA_TREE}/{path}"),
            mode: e.mode,
            source: e.source.clone(),
        });
    }
    let meta = format!(
        "KILN_BUNDLE_ID={id}\nKILN_DELTA_BASE_FILE={}\nKILN_DELTA_BASE_SHA256={}\nKILN_DELTA_FOR_FILE={}\nKILN_DELTA_FOR_SHA256={}\n",
        base.file, base.sha256, new.file_name, new.sha256
    );
    let text = |path: &str, bytes: Vec<u8>| Entry {
        path: path.to_owned(),
        mode: 0o644,
        source: Source::Bytes(bytes),
    };
    out.push(text(DELTA, meta.into_bytes()));
    out.push(text(DELTA_REMOVED, contract::render_lines(&plan.removed)));
    out.push(text(DELTA_MANIFEST, manifest::render(&new.manifest)));
    let w = crate::write_bundle(
        dir,
        &format!("{id}-delta"),
        &BundleSpec {
            entries: out,
            mtime,
        },
    )?;
    Ok(Some(WrittenDelta {
        path: w.path,
        file_name: w.file_name,
        sha256: w.sha256,
        size: w.size,
        plan,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, mode: u32, bytes: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            mode,
            source: Source::Bytes(bytes.to_vec()),
        }
    }

    fn bundle(dir: &Path, entries: &[Entry]) -> WrittenBundle {
        let spec = BundleSpec {
            entries: entries.to_vec(),
            mtime: 7,
        };
        crate::write_bundle(dir, "etcd-debian12", &spec).unwrap()
    }

    /// Every member of the archive at `path`, read by the strict reader.
    fn members(path: &Path) -> BTreeMap<String, Vec<u8>> {
        crate::read_archive(path, &|_| true).unwrap().members
    }

    fn base_entries() -> Vec<Entry> {
        vec![
            entry("UNITS", 0o644, b"etcd.service\n"),
            entry("rootfs/etc/etcd.env", 0o644, b"A=1\n"),
            entry("rootfs/etc/old.conf", 0o644, b"old\n"),
            entry("rootfs/usr/bin/etcd", 0o755, b"\x7fELF big binary"),
        ]
    }

    #[test]
    fn a_changed_file_and_the_new_manifest_are_all_a_delta_carries() {
        let t = tempfile::tempdir().unwrap();
        let base = bundle(&t.path().join("old"), &base_entries());
        let mut new_entries = base_entries();
        new_entries[1] = entry("rootfs/etc/etcd.env", 0o644, b"A=2\n");
        let new = bundle(&t.path().join("new"), &new_entries);
        let from = DeltaBase {
            file: &base.file_name,
            sha256: &base.sha256,
            manifest: &base.manifest,
        };
        let out = t.path().join("deltas");
        let d = write_delta(&out, "etcd-debian12", &from, &new, &new_entries, 7)
            .unwrap()
            .unwrap();
        assert!(d.file_name.starts_with("etcd-debian12-delta-"));
        assert_eq!(d.plan.changed, ["rootfs/etc/etcd.env"]);
        assert!(d.plan.removed.is_empty());
        // A delta is a kiln archive like any other: verify accepts it.
        crate::verify_bundle(&d.path).unwrap();
        let m = members(&d.path);
        let names: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                DELTA,
                DELTA_MANIFEST,
                DELTA_REMOVED,
                "tree/rootfs/etc/etcd.env"
            ]
        );
        assert_eq!(m["tree/rootfs/etc/etcd.env"], b"A=2\n");
        assert_eq!(m[DELTA_MANIFEST], manifest::render(&new.manifest));
        assert_eq!(m[DELTA_REMOVED], b"");
        let meta = String::from_utf8(m[DELTA].clone()).unwrap();
        assert!(meta.contains(&format!("KILN_DELTA_BASE_SHA256={}\n", base.sha256)));
        assert!(meta.contains(&format!("KILN_DELTA_FOR_SHA256={}\n", new.sha256)));
        // The same inputs write the same bytes.
        let again = write_delta(
            &t.path().join("again"),
            "etcd-debian12",
            &from,
            &new,
            &new_entries,
            7,
        )
        .unwrap()
        .unwrap();
        assert_eq!(again.sha256, d.sha256);
    }

    #[test]
    fn removed_files_are_listed_and_mode_changes_carried() {
        let t = tempfile::tempdir().unwrap();
        let base = bundle(&t.path().join("old"), &base_entries());
        let mut new_entries = base_entries();
        new_entries.remove(2);
        new_entries[2].mode = 0o750;
        new_entries.push(entry("rootfs/etc/new.conf", 0o600, b"new\n"));
        let new = bundle(&t.path().join("new"), &new_entries);
        let from = DeltaBase {
            file: &base.file_name,
            sha256: &base.sha256,
            manifest: &base.manifest,
        };
        let d = write_delta(t.path(), "etcd-debian12", &from, &new, &new_entries, 7)
            .unwrap()
            .unwrap();
        assert_eq!(d.plan.removed, ["rootfs/etc/old.conf"]);
        assert_eq!(
            d.plan.changed,
            ["rootfs/etc/new.conf", "rootfs/usr/bin/etcd"]
        );
        let m = members(&d.path);
        assert_eq!(m[DELTA_REMOVED], b"rootfs/etc/old.conf\n");
        assert!(!m.contains_key("tree/rootfs/etc/etcd.env"));
        let lines = crate::read_archive(&d.path, &|_| false).unwrap().manifest;
        let etcd = lines
            .iter()
            .find(|l| l.path == "tree/rootfs/usr/bin/etcd")
            .unwrap();
        assert_eq!(etcd.mode, 0o750);
    }

    #[test]
    fn an_unchanged_bundle_has_no_delta() {
        let t = tempfile::tempdir().unwrap();
        let base = bundle(&t.path().join("old"), &base_entries());
        let from = DeltaBase {
            file: &base.file_name,
            sha256: &base.sha256,
            manifest: &base.manifest,
        };
        let out = t.path().join("deltas");
        let d = write_delta(&out, "etcd-debian12", &from, &base, &base_entries(), 7).unwrap();
        assert!(d.is_none());
        assert!(!out.exists(), "nothing is written for an unchanged bundle");
    }

    #[test]
    fn an_entry_missing_from_the_given_entries_is_named() {
        let t = tempfile::tempdir().unwrap();
        let base = bundle(&t.path().join("old"), &base_entries());
        let mut new_entries = base_entries();
        new_entries[0] = entry("UNITS", 0o644, b"etcd.service\nx.service\n");
        let new = bundle(&t.path().join("new"), &new_entries);
        let from = DeltaBase {
            file: &base.file_name,
            sha256: &base.sha256,
            manifest: &base.manifest,
        };
        let err =
            write_delta(t.path(), "etcd-debian12", &from, &new, &new_entries[1..], 7).unwrap_err();
        assert!(
            matches!(&err, BundleError::DeltaEntryMissing { path, .. } if path == "UNITS"),
            "{err}"
        );
    }
}
