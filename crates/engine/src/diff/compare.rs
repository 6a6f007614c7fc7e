//! The comparison itself: bundles by id, hosts by name, entries by path, packages by name
//! and architecture, images by reference, certificates by path on the host.

use std::collections::{BTreeMap, BTreeSet};

use kiln_bundle::contract::{self, ROOTFS};
use kiln_bundle::{ArchiveContents, BuildManifest, ManifestLine};

use super::side::Side;
use super::units::{unit_changes, View};
use super::{
    ArchiveRef, BuildRef, BundleDiff, CertChange, Change, Diff, DiffError, FileChange, FileState,
    HostBundleChange, HostDiff, ImageChange, Moved, PackageChange, SCHEMA,
};

/// Members of a secrets archive that say which build it belongs to: they differ whenever the
/// build id does, and the bundles and the generation are reported on their own.
const HOST_META: [&str; 4] = [
    contract::HOST,
    contract::BUNDLES,
    contract::BUNDLES_SIG,
    contract::MANIFEST,
];

/// Compares two loaded sides.
pub(crate) fn compare(a: &Side, b: &Side) -> Result<Diff, DiffError> {
    let (am, bm) = (&a.manifest, &b.manifest);
    let mut bundles = Vec::new();
    let mut unchanged_bundles = Vec::new();
    let ids: BTreeSet<&String> = am.bundles.keys().chain(bm.bundles.keys()).collect();
    for id in ids {
        match bundle_diff(a, b, id)? {
            Some(d) => bundles.push(d),
            None => unchanged_bundles.push(id.clone()),
        }
    }
    let mut hosts = Vec::new();
    let mut unchanged_hosts = Vec::new();
    let names: BTreeSet<&String> = am.hosts.keys().chain(bm.hosts.keys()).collect();
    for name in names {
        match host_diff(a, b, name)? {
            Some(d) => hosts.push(d),
            None => unchanged_hosts.push(name.clone()),
        }
    }
    let identical = bundles.is_empty()
        && hosts.is_empty()
        && am.generation == bm.generation
        && am.build_id == bm.build_id;
    Ok(Diff {
        schema: SCHEMA,
        cluster: bm.cluster.clone(),
        old: build_ref(a),
        new: build_ref(b),
        identical,
        bundles,
        unchanged_bundles,
        hosts,
        unchanged_hosts,
    })
}

fn build_ref(s: &Side) -> BuildRef {
    BuildRef {
        dir: s.dir.display().to_string(),
        build_id: s.manifest.build_id.clone(),
        generation: s.manifest.generation,
        pulled: s.pulled,
    }
}

fn archive_ref(m: &BuildManifest, file: &str) -> ArchiveRef {
    let o = m.outputs.get(file);
    ArchiveRef {
        file: file.to_owned(),
        sha256: o.map(|o| o.sha256.clone()).unwrap_or_default(),
        size: o.map_or(0, |o| o.size),
    }
}

/// The id MANIFEST.json gives the bundle at `file`.
fn bundle_id<'m>(m: &'m BuildManifest, file: &str) -> Option<&'m String> {
    m.bundles
        .iter()
        .find_map(|(id, b)| (b.file == file).then_some(id))
}

fn bundle_diff(a: &Side, b: &Side, id: &str) -> Result<Option<BundleDiff>, DiffError> {
    let (old, new) = (a.manifest.bundles.get(id), b.manifest.bundles.get(id));
    let old_ref = old.map(|i| archive_ref(&a.manifest, &i.file));
    let new_ref = new.map(|i| archive_ref(&b.manifest, &i.file));
    let change = match (&old_ref, &new_ref) {
        (Some(o), Some(n)) if o.sha256 == n.sha256 => return Ok(None),
        (Some(_), Some(_)) => Change::Changed,
        (None, _) => Change::Added,
        (Some(_), None) => Change::Removed,
    };
    let info = new.or(old).expect("in one of the two");
    let old_c = old.map(|i| a.archive(&i.file)).transpose()?;
    let new_c = new.map(|i| b.archive(&i.file)).transpose()?;
    let lines = |c: Option<&ArchiveContents>| c.map(|c| c.manifest.clone()).unwrap_or_default();
    let (old_lines, new_lines) = (lines(old_c), lines(new_c));
    let keep = |l: &&ManifestLine| !is_payload(&l.path);
    let files = file_changes(old_lines.iter().filter(keep), new_lines.iter().filter(keep));
    let packages = package_changes(&packages_of(&old_lines), &packages_of(&new_lines));
    let images = image_changes(
        &images_of(a, old.map(|i| i.file.as_str()), old_c)?,
        &images_of(b, new.map(|i| i.file.as_str()), new_c)?,
    );
    let files_of = |i: Option<&kiln_bundle::BundleInfo>| i.map(|i| vec![i.file.clone()]);
    let units = unit_changes(
        &View::of(a, files_of(old).as_deref().unwrap_or_default(), None)?,
        &View::of(b, files_of(new).as_deref().unwrap_or_default(), None)?,
    );
    let mut hosts = info.hosts.clone();
    hosts.sort();
    Ok(Some(BundleDiff {
        id: id.to_owned(),
        role: info.role.clone(),
        os: info.os.clone(),
        change,
        old: old_ref,
        new: new_ref,
        hosts,
        files,
        packages,
        images,
        units,
    }))
}

/// Whether a bundle entry is a package or image file (reported as packages and images).
fn is_payload(path: &str) -> bool {
    path.starts_with("packages/") || path.starts_with("images/")
}

fn state(l: &ManifestLine) -> FileState {
    FileState {
        mode: format!("{:04o}", l.mode),
        size: l.size,
        sha256: l.sha256.clone(),
    }
}

/// Entry changes between two MANIFESTs (each sorted by path), sorted by path.
pub(crate) fn file_changes<'a>(
    old: impl Iterator<Item = &'a ManifestLine>,
    new: impl Iterator<Item = &'a ManifestLine>,
) -> Vec<FileChange> {
    let old: BTreeMap<&str, &ManifestLine> = old.map(|l| (l.path.as_str(), l)).collect();
    let new: BTreeMap<&str, &ManifestLine> = new.map(|l| (l.path.as_str(), l)).collect();
    changed(&old, &new, |o, n| o.sha256 == n.sha256 && o.mode == n.mode)
        .into_iter()
        .map(|(p, change, o, n)| FileChange {
            path: (*p).to_owned(),
            change,
            old: o.map(|l| state(l)),
            new: n.map(|l| state(l)),
        })
        .collect()
}

/// Every key of either map whose entries are not `same`, with how it differs, sorted by key.
fn changed<'m, K: Ord, V>(
    old: &'m BTreeMap<K, V>,
    new: &'m BTreeMap<K, V>,
    same: impl Fn(&V, &V) -> bool,
) -> Vec<(&'m K, Change, Option<&'m V>, Option<&'m V>)> {
    let keys: BTreeSet<&K> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (o, n) = (old.get(k), new.get(k));
            let change = match (o, n) {
                (Some(o), Some(n)) if same(o, n) => return None,
                (Some(_), Some(_)) => Change::Changed,
                (None, _) => Change::Added,
                (Some(_), None) => Change::Removed,
            };
            Some((k, change, o, n))
        })
        .collect()
}

/// (name, arch) → version of every `packages/<file>` entry.
fn packages_of(lines: &[ManifestLine]) -> BTreeMap<(String, String), Option<String>> {
    lines
        .iter()
        .filter_map(|l| l.path.strip_prefix("packages/"))
        .map(|file| {
            let (name, arch, version) = package_id(file);
            ((name, arch), version)
        })
        .collect()
}

/// Name, architecture and version from a package file name as kiln lock records it: Debian's
/// `name_version_arch.deb` (the epoch's `:` written `%3a`), RPM's `name-version-release.arch.rpm`;
/// any other name is its own package without a version.
pub(crate) fn package_id(file: &str) -> (String, String, Option<String>) {
    if let Some(stem) = file.strip_suffix(".deb") {
        let parts: Vec<&str> = stem.split('_').collect();
        if let [name, version, arch] = parts[..] {
            let version = version.replace("%3a", ":").replace("%3A", ":");
            return (name.to_owned(), arch.to_owned(), Some(version));
        }
    }
    if let Some((nvr, arch)) = file.strip_suffix(".rpm").and_then(|s| s.rsplit_once('.')) {
        let mut it = nvr.rsplitn(3, '-');
        if let (Some(release), Some(version), Some(name)) = (it.next(), it.next(), it.next()) {
            return (
                name.to_owned(),
                arch.to_owned(),
                Some(format!("{version}-{release}")),
            );
        }
    }
    (file.to_owned(), String::new(), None)
}

fn package_changes(
    old: &BTreeMap<(String, String), Option<String>>,
    new: &BTreeMap<(String, String), Option<String>>,
) -> Vec<PackageChange> {
    changed(old, new, |o, n| o == n)
        .into_iter()
        .map(|(k, change, o, n)| PackageChange {
            name: k.0.clone(),
            arch: k.1.clone(),
            change,
            old_version: o.cloned().flatten(),
            new_version: n.cloned().flatten(),
        })
        .collect()
}

/// reference → manifest digest from a bundle's IMAGE-DIGESTS.
fn images_of(
    side: &Side,
    file: Option<&str>,
    c: Option<&ArchiveContents>,
) -> Result<BTreeMap<String, String>, DiffError> {
    let (Some(file), Some(c)) = (file, c) else {
        return Ok(BTreeMap::new());
    };
    let bytes = c
        .members
        .get(contract::IMAGE_DIGESTS)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let contract_err = |source| DiffError::Contract {
        file: side.dir.join(file),
        member: contract::IMAGE_DIGESTS,
        source,
    };
    let mut out = BTreeMap::new();
    for (i, line) in contract::parse_lines(contract::IMAGE_DIGESTS, bytes)
        .map_err(contract_err)?
        .iter()
        .enumerate()
    {
        let fields: Vec<&str> = line.split(' ').collect();
        let [_, reference, digest] = fields[..] else {
            return Err(contract_err(contract::ContractError::BadLine {
                member: contract::IMAGE_DIGESTS,
                line: i + 1,
                reason: "expected `<path> <reference> <digest>`".into(),
            }));
        };
        out.insert(reference.to_owned(), digest.to_owned());
    }
    Ok(out)
}

fn image_changes(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<ImageChange> {
    changed(old, new, |o, n| o == n)
        .into_iter()
        .map(|(r, change, o, n)| ImageChange {
            reference: r.clone(),
            change,
            old_digest: o.cloned(),
            new_digest: n.cloned(),
        })
        .collect()
}

/// The bundles a host installs, by id → file.
fn host_bundles(m: &BuildManifest, files: &[String]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|f| {
            (
                bundle_id(m, f).cloned().unwrap_or_else(|| f.clone()),
                f.clone(),
            )
        })
        .collect()
}

fn host_diff(a: &Side, b: &Side, name: &str) -> Result<Option<HostDiff>, DiffError> {
    let (old, new) = (a.manifest.hosts.get(name), b.manifest.hosts.get(name));
    let empty = BTreeMap::new();
    let old_b = old.map_or_else(|| empty.clone(), |h| host_bundles(&a.manifest, &h.bundles));
    let new_b = new.map_or_else(|| empty.clone(), |h| host_bundles(&b.manifest, &h.bundles));
    let sha = |side: &Side, f: &String| archive_ref(&side.manifest, f).sha256;
    let bundles: Vec<HostBundleChange> = changed(&old_b, &new_b, |o, n| sha(a, o) == sha(b, n))
        .into_iter()
        .map(|(id, change, o, n)| HostBundleChange {
            id: id.clone(),
            change,
            old_file: o.cloned(),
            new_file: n.cloned(),
        })
        .collect();
    let secrets_compared = !a.pulled && !b.pulled;
    let (old_s, new_s) = (
        secrets_of(a, old.filter(|_| secrets_compared))?,
        secrets_of(b, new.filter(|_| secrets_compared))?,
    );
    let own = |l: &&ManifestLine| !HOST_META.contains(&l.path.as_str());
    let lines =
        |s: Option<(&str, &ArchiveContents)>| s.map(|s| s.1.manifest.clone()).unwrap_or_default();
    let (old_lines, new_lines) = (lines(old_s), lines(new_s));
    let files = file_changes(old_lines.iter().filter(own), new_lines.iter().filter(own));
    let certificates = cert_changes(a, b, old_s, new_s, &files)?;
    let view = |side, h: Option<&kiln_bundle::HostInfo>, s| {
        View::of(side, h.map(|h| h.bundles.as_slice()).unwrap_or_default(), s)
    };
    let units = unit_changes(
        &view(a, old, old_s.map(|s| s.1))?,
        &view(b, new, new_s.map(|s| s.1))?,
    );
    let ip = match (old, new) {
        (Some(o), Some(n)) if o.ip != n.ip => Some(Moved {
            old: o.ip.clone(),
            new: n.ip.clone(),
        }),
        _ => None,
    };
    let change = match (old, new) {
        (None, _) => Change::Added,
        (Some(_), None) => Change::Removed,
        (Some(_), Some(_)) if bundles.is_empty() && files.is_empty() && ip.is_none() => {
            return Ok(None)
        }
        (Some(_), Some(_)) => Change::Changed,
    };
    let roles_of = |side: &Side, h: Option<&kiln_bundle::HostInfo>| -> Vec<String> {
        h.map(|h| {
            h.bundles
                .iter()
                .filter_map(|f| bundle_id(&side.manifest, f))
                .filter_map(|id| side.manifest.bundles.get(id).map(|b| b.role.clone()))
                .collect()
        })
        .unwrap_or_default()
    };
    let roles = if new.is_some() {
        roles_of(b, new)
    } else {
        roles_of(a, old)
    };
    Ok(Some(HostDiff {
        host: name.to_owned(),
        change,
        roles,
        ip,
        bundles,
        files,
        certificates,
        units,
        secrets_compared,
    }))
}

/// A host's secrets archive (its path and contents), when there is one to compare.
fn secrets_of<'s>(
    side: &'s Side,
    h: Option<&'s kiln_bundle::HostInfo>,
) -> Result<Option<(&'s str, &'s ArchiveContents)>, DiffError> {
    h.map(|h| side.archive(&h.secrets).map(|c| (h.secrets.as_str(), c)))
        .transpose()
}

/// Whether a secrets entry holds a certificate: a `.crt` file, or a kubeconfig (`.conf`)
/// with a client certificate.
fn holds_cert(path: &str) -> bool {
    path.starts_with("rootfs/") && (path.ends_with(".crt") || path.ends_with(".conf"))
}

fn identity(
    side: &Side,
    secrets: Option<(&str, &ArchiveContents)>,
    path: &str,
) -> Result<Option<kiln_pki::CertIdentity>, DiffError> {
    let Some((file, c)) = secrets else {
        return Ok(None);
    };
    let Some(bytes) = c.members.get(path) else {
        return Ok(None);
    };
    let found = if path.ends_with(".crt") {
        Some(kiln_pki::identify_pem(bytes))
    } else {
        kiln_pki::identify_kubeconfig(bytes)
    };
    found.transpose().map_err(|source| DiffError::Certificate {
        file: side.dir.join(file),
        member: path.to_owned(),
        source,
    })
}

fn cert_changes(
    a: &Side,
    b: &Side,
    old: Option<(&str, &ArchiveContents)>,
    new: Option<(&str, &ArchiveContents)>,
    files: &[FileChange],
) -> Result<Vec<CertChange>, DiffError> {
    let mut out = Vec::new();
    for f in files.iter().filter(|f| holds_cert(&f.path)) {
        let (o, n) = (identity(a, old, &f.path)?, identity(b, new, &f.path)?);
        // A kubeconfig can change around the same certificate (its server, say).
        if o == n {
            continue;
        }
        out.push(CertChange {
            path: format!(
                "/{}",
                f.path.trim_start_matches(ROOTFS).trim_start_matches('/')
            ),
            change: match (&o, &n) {
                (Some(_), Some(_)) => Change::Changed,
                (None, _) => Change::Added,
                (Some(_), None) => Change::Removed,
            },
            old: o,
            new: n,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_and_versions_come_from_deb_and_rpm_file_names() {
        let id = |f: &str| package_id(f);
        assert_eq!(
            id("nginx_1.22.1-9+deb12u12_amd64.deb"),
            (
                "nginx".into(),
                "amd64".into(),
                Some("1.22.1-9+deb12u12".into())
            )
        );
        assert_eq!(
            id("libc6_2%3a2.36-9_amd64.deb"),
            ("libc6".into(), "amd64".into(), Some("2:2.36-9".into()))
        );
        assert_eq!(
            id("net-snmp-libs-5.7.2-49.el7.x86_64.rpm"),
            (
                "net-snmp-libs".into(),
                "x86_64".into(),
                Some("5.7.2-49.el7".into())
            )
        );
        assert_eq!(id("odd.bin"), ("odd.bin".into(), String::new(), None));
    }

    fn line(path: &str, mode: u32, sha: char, size: u64) -> ManifestLine {
        ManifestLine {
            path: path.into(),
            mode,
            sha256: sha.to_string().repeat(64),
            size,
        }
    }

    #[test]
    fn a_mode_change_alone_is_a_change_and_equal_entries_are_left_out() {
        let old = [
            line("a", 0o644, 'a', 1),
            line("b", 0o755, 'b', 2),
            line("c", 0o644, 'c', 3),
        ];
        let new = [
            line("a", 0o644, 'a', 1),
            line("b", 0o750, 'b', 2),
            line("d", 0o600, 'd', 4),
        ];
        let got = file_changes(old.iter(), new.iter());
        let summary: Vec<(&str, Change)> =
            got.iter().map(|f| (f.path.as_str(), f.change)).collect();
        assert_eq!(
            summary,
            [
                ("b", Change::Changed),
                ("c", Change::Removed),
                ("d", Change::Added)
            ]
        );
        assert_eq!(got[0].old.as_ref().unwrap().mode, "0755");
        assert_eq!(got[0].new.as_ref().unwrap().mode, "0750");
    }
}
