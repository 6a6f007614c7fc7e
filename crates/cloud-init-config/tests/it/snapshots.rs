//! Snapshots of the rendered documents and digests of the images: any byte
//! change to what reaches a host shows up in review.

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

#[test]
fn image_digests() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::write(&bundle, b"role bundle bytes\n").unwrap();
    let extra = [("kiln/node-0123abcd.tar.gz".to_owned(), bundle)];
    let time = Timestamp::from_unix(1_700_000_000).unwrap();
    let img = dir.path().join("cidata.img");
    let iso = dir.path().join("cidata.iso");
    write_vfat(&img, &seed(), &extra, time).unwrap();
    write_iso(&iso, &seed(), &extra, time).unwrap();
    insta::assert_snapshot!(
        "image_digests",
        format!("cidata.img {}\ncidata.iso {}\n", sha256(&img), sha256(&iso))
    );
}
