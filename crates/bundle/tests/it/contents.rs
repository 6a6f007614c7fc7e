//! read_archive: the MANIFEST and the chosen members of a bundle, with verify's checks.

use kiln_bundle::{read_archive, write_bundle, VerifyError};

use crate::common::*;

/// A fixture bundle written into `out` (sources in `src`).
fn written(out: &std::path::Path, src: &std::path::Path) -> kiln_bundle::WrittenBundle {
    write_bundle(out, "master", &fixture_spec(src, false, 0o644, 0)).unwrap()
}

#[test]
fn read_archive_keeps_only_the_chosen_members_and_lists_every_entry() {
    let (out, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let written = written(out.path(), src.path());
    let small = |l: &kiln_bundle::ManifestLine| l.size < 1000 && l.path.starts_with("rootfs/");
    let got = read_archive(&written.path, &small).unwrap();
    assert_eq!(got.manifest, written.manifest);
    assert_eq!(got.report.sha256, written.sha256);
    let files = fixture_files();
    let want: Vec<(&str, &[u8])> = files
        .iter()
        .filter(|(p, _, c, _)| c.len() < 1000 && p.starts_with("rootfs/"))
        .map(|(p, _, c, _)| (p.as_str(), c.as_slice()))
        .collect();
    let kept: Vec<(&str, &[u8])> = got
        .members
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    let mut want = want;
    want.sort();
    assert_eq!(kept, want);
    assert!(kept.iter().any(|(p, _)| *p == "rootfs/etc/kiln/empty"));
}

#[test]
fn read_archive_refuses_what_verify_refuses() {
    let (out, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let written = written(out.path(), src.path());
    let mut bytes = std::fs::read(&written.path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    let bad = put(out.path(), "bad.tar.gz", &bytes);
    let err = read_archive(&bad, &|_| true).unwrap_err();
    assert!(
        matches!(err, VerifyError::Gzip { ref file, .. } if *file == bad),
        "{err:?}"
    );
}
