//! Snapshots of the rendered documents and digests of the images: any byte
//! change to what reaches a host shows up in review.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use cloud_init_config::*;

use crate::fixtures::seed;

fn sha256(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn rendered_documents() {
    for file in seed().render().unwrap() {
        insta::assert_snapshot!(file.name, String::from_utf8(file.bytes).unwrap());
    }
}

/// Writes both images of the seed carrying `bundle` (bytes) into `dir` and checks that the
/// digests the writers took while writing are those of the files' bytes; returns the paths.
fn images_with(dir: &std::path::Path, bundle: &[u8]) -> (PathBuf, PathBuf) {
    let path = dir.join("bundle");
    std::fs::write(&path, bundle).unwrap();
    let extra = [("kiln/node-0123abcd.tar.gz".to_owned(), path)];
    let time = Timestamp::from_unix(1_700_000_000).unwrap();
    let img = dir.join("cidata.img");
    let iso = dir.join("cidata.iso");
    let img_digest = write_vfat(&img, &seed(), &extra, time).unwrap();
    let iso_digest = write_iso(&iso, &seed(), &extra, time).unwrap();
    for (digest, path) in [(img_digest, &img), (iso_digest, &iso)] {
        assert_eq!(digest.sha256, sha256(path), "{}", path.display());
        assert_eq!(digest.size, std::fs::metadata(path).unwrap().len());
        assert!(digest.size > bundle.len() as u64);
    }
    (img, iso)
}

#[test]
fn image_digests() {
    let dir = tempfile::tempdir().unwrap();
    let (img, iso) = images_with(dir.path(), b"role bundle bytes\n");
    insta::assert_snapshot!(
        "image_digests",
        format!("cidata.img {}\ncidata.iso {}\n", sha256(&img), sha256(&iso))
    );
}

/// Images too large to build in memory (a seed carrying its bundles) are built in their file
/// and hashed from it: the digest returned is still the file's.
#[test]
fn large_image_digests_are_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::with_capacity(17 << 20);
    let mut x: u32 = 1;
    while bytes.len() < 17 << 20 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    images_with(dir.path(), &bytes);
}
