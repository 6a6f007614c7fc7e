//! Targets over kiln-spec: cluster.toml with its whole project, profiles, overlays, the
//! catalog files and the lock.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kiln_spec::model::{Arch, OsId};
use kiln_spec::{catalog, images, pins, ImageSourceKind, Lock, SourceKind};

use super::{text, Ctx};

/// Where the input sits: the lab example's place, so its `../../profiles` paths resolve.
fn cluster_path(ctx: &Ctx) -> PathBuf {
    ctx.files().root().join("examples/fuzz/cluster.toml")
}

/// cluster.toml parsed, then validated with every profile, overlay and catalog it names.
pub(super) fn cluster(ctx: &Ctx, data: &[u8]) {
    let path = cluster_path(ctx);
    let files = ctx.files().with(&path, text(data));
    match kiln_spec::project::validate(&path, &files) {
        Ok(project) => {
            let roles: Vec<String> = project.profiles.keys().cloned().collect();
            let _ = project.host_roles(&roles);
        }
        Err(diags) => {
            let _ = diags.to_string();
        }
    }
}

/// A profile.toml; its templates are read from the repository's profiles (any role's).
pub(super) fn profile(ctx: &Ctx, data: &[u8]) {
    let Some(text) = text(data) else { return };
    let files = ctx.files();
    let file = files.root().join("profiles/master/profile.toml");
    let read = |p: &Path| files.read(p).or_else(|_| files.any_profile_file(p));
    if let Err(diags) = kiln_spec::profile::load_profile("master", &file, text, &read) {
        diags.iter().for_each(|d| drop(d.to_string()));
    }
}

/// An overlay.toml with the site-example overlay's templates and files/ tree.
pub(super) fn overlay(ctx: &Ctx, data: &[u8]) {
    let Some(text) = text(data) else { return };
    let files = ctx.files();
    let dir = files.root().join("overlays/site-example");
    let tree = vec![(
        "etc/kiln/site.txt".to_owned(),
        0o644,
        dir.join("files/etc/kiln/site.txt"),
    )];
    let read = |p: &Path| files.read(p);
    let file = dir.join("overlay.toml");
    if let Err(diags) = kiln_spec::profile::load_overlay("site-example", &file, text, &read, tree) {
        diags.iter().for_each(|d| drop(d.to_string()));
    }
}

/// The input as catalog.toml (then every artifact resolved), as pins.toml beside a small
/// catalog, as images.toml (then every image's source chosen), and as an upstream checksum
/// table for `kiln catalog import-checksums` (then rendered as pins.toml and read back).
pub(super) fn catalog(_ctx: &Ctx, data: &[u8]) {
    let Some(text) = text(data) else { return };
    let (cat_file, pins_file) = (
        Path::new("catalog/catalog.toml"),
        Path::new("catalog/pins.toml"),
    );
    match catalog::parse(cat_file, text, pins_file, None) {
        Ok(cat) => resolve_all(&cat),
        Err(d) => drop(d.to_string()),
    }
    match catalog::parse(cat_file, SMALL_CATALOG, pins_file, Some(text)) {
        Ok(cat) => resolve_all(&cat),
        Err(d) => drop(d.to_string()),
    }
    match images::parse(Path::new("catalog/images.toml"), text) {
        Ok(imgs) => {
            for name in imgs.image.keys() {
                let _ = imgs.choose(name, &ImageSourceKind::ALL);
            }
        }
        Err(d) => drop(d.to_string()),
    }
    match pins::import_table(text) {
        Ok(table) => {
            let rendered = pins::render(&table, &["fuzz.yml".to_owned()]);
            if let Err(d) = catalog::parse(cat_file, SMALL_CATALOG, pins_file, Some(&rendered)) {
                panic!("pins.toml rendered from an imported table does not parse: {d}\n{rendered}");
            }
        }
        Err(e) => drop(e.to_string()),
    }
}

/// A catalog with an https and an apt source and no pins table, for the pins.toml input.
const SMALL_CATALOG: &str = r#"
[artifact.etcd]
version = "etcd"
[[artifact.etcd.source]]
kind = "https"
url = "https://github.com/etcd-io/etcd/releases/download/v{version}/etcd-v{version}-linux-{arch}.tar.gz"
member = "etcd-v{version}-linux-{arch}/etcd"
checksum-url = "https://github.com/etcd-io/etcd/releases/download/v{version}/SHA256SUMS"
[[artifact.etcd.source]]
kind = "apt"
package = "etcd-server"
member = "usr/bin/etcd"
"#;

fn resolve_all(cat: &catalog::Catalog) {
    let versions: BTreeMap<String, String> = cat
        .artifact
        .values()
        .map(|a| (a.version.clone(), "1.2.3".to_owned()))
        .collect();
    for name in cat.artifact.keys() {
        for arch in [Arch::Amd64, Arch::Arm64] {
            match cat.resolve(name, &versions, arch, &SourceKind::ALL) {
                Ok(r) => drop(r.has_checksum_source()),
                Err(e) => drop(e.to_string()),
            }
        }
    }
    let requested: Vec<String> = cat.rpms.iter().map(|r| r.name.clone()).collect();
    for os in [OsId::Centos7, OsId::Rocky9] {
        let _ = catalog::rpm_closure(&cat.rpms, os, Arch::Amd64, &requested, &BTreeSet::new());
    }
}

/// kiln.lock parsed; the text kiln writes for a lock that parses must parse back and be
/// written the same again (`to_toml` sorts and dedups, so the first write may reorder).
pub(super) fn lock(_ctx: &Ctx, data: &[u8]) {
    let Some(text) = text(data) else { return };
    let file = Path::new("kiln.lock");
    let lock = match Lock::parse(file, text) {
        Ok(lock) => lock,
        Err(d) => return drop(d.to_string()),
    };
    let written = lock.to_toml();
    match Lock::parse(file, &written) {
        Ok(back) => assert!(
            back.to_toml() == written,
            "lock changed on a round trip:\n{written}"
        ),
        Err(d) => panic!("a lock kiln wrote does not parse: {d}\n{written}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds must get through validation, or mutants never reach the deeper checks.
    #[test]
    fn example_clusters_validate_through_the_in_memory_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let ctx = Ctx::new(root.clone(), std::env::temp_dir());
        for name in ["lab", "k8s", "prod", "ubuntu", "golden"] {
            let text = std::fs::read_to_string(root.join(format!("examples/{name}/cluster.toml")))
                .unwrap();
            let path = cluster_path(&ctx);
            let files = ctx.files().with(&path, Some(&text));
            if let Err(d) = kiln_spec::project::validate(&path, &files) {
                panic!("{name}: {d}");
            }
        }
    }

    #[test]
    fn every_profile_seed_loads_with_its_templates() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let ctx = Ctx::new(root.clone(), std::env::temp_dir());
        let files = ctx.files();
        let file = files.root().join("profiles/master/profile.toml");
        let read = |p: &Path| files.read(p).or_else(|_| files.any_profile_file(p));
        for role in ["common", "etcd", "lb", "master", "node", "runtime"] {
            let text = std::fs::read_to_string(root.join(format!("profiles/{role}/profile.toml")))
                .unwrap();
            if let Err(d) = kiln_spec::profile::load_profile("master", &file, &text, &read) {
                panic!("{role}: {d:?}");
            }
        }
    }
}
