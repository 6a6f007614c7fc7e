//! The fixtures write the host contract through `kiln_bundle::contract`, the writer `kiln build`
//! uses: what install.sh reads here parses back to what the fixture meant.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use kiln_bundle::contract::{self, BundleMeta, BundleRef, HostMeta};
use kiln_install_tests::fixture::{bundle_meta, host_meta, write_build};

use crate::common::{host, roles};

/// Every member of a kiln archive (path → content) and the first member's path, read with a
/// plain tar reader.
fn members(path: &Path) -> (BTreeMap<String, Vec<u8>>, String) {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut out = BTreeMap::new();
    let mut first = None;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        first.get_or_insert_with(|| name.clone());
        out.insert(name, bytes);
    }
    (out, first.unwrap_or_default())
}

#[test]
fn fixture_builds_carry_the_contract_members_the_build_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (h, roles) = (host(2), roles(2));
    let b = write_build(dir.path(), &h, &roles);

    let (secrets, first) = members(&dir.path().join(contract::SECRETS));
    assert_eq!(first, contract::MANIFEST);
    assert_eq!(
        HostMeta::parse(&secrets[contract::HOST]).unwrap(),
        host_meta(&h)
    );
    let refs = contract::parse_bundles(&secrets[contract::BUNDLES]).unwrap();
    let want: Vec<BundleRef> = b
        .bundles
        .iter()
        .map(|(file, sha256)| BundleRef {
            sha256: sha256.clone(),
            file: file.clone(),
        })
        .collect();
    assert_eq!(refs, want);
    assert!(secrets.contains_key(&contract::rootfs_path("/etc/demo/pki/server.key")));

    for (role, r) in roles.iter().zip(&refs) {
        let (m, first) = members(&dir.path().join(&r.file));
        assert_eq!(first, contract::MANIFEST);
        let meta = BundleMeta::parse(&m[contract::BUNDLE]).unwrap();
        assert_eq!(meta, bundle_meta(role, &h));
        assert_eq!(
            contract::parse_lines(contract::UNITS, &m[contract::UNITS]).unwrap(),
            role.units
        );
        let images = contract::parse_lines(contract::IMAGES, &m[contract::IMAGES]).unwrap();
        assert_eq!(images.len(), role.images.len());
        assert!(images.iter().all(|i| m.contains_key(i)), "{images:?}");
        let health = contract::parse_health(&m[contract::HEALTH]).unwrap();
        assert_eq!(health.unwrap_or_default(), role.health);
        assert_eq!(
            m[contract::INSTALL_SH],
            std::fs::read(kiln_install_tests::install_sh()).unwrap()
        );
    }
}
