//! Image tarballs: imported by a real containerd under their names and digests, read by
//! skopeo as docker-archive and oci-archive, byte-identical across writes.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use kiln_image::{
    image_file_name, write_image_archive, write_image_archive_file, Credentials, LockedImage,
    Platform, Reference, RegistryClient, RegistryMirrors,
};
use kiln_store::{NoProgress, Store};
use serde_json::Value;

use crate::fast_opts;
use crate::fixtures::Containerd;
use crate::pull::Seeded;
use crate::{have_tools, run};

const MTIME: u64 = 1_700_000_000;

/// a and b named as if from registry.k8s.io (a mirror setting points at the local
/// registry), and the amd64 image of multi as docker.io/team/multi:1; pulled into `store`.
fn pulled(s: &Seeded, store: &Store) -> Vec<LockedImage> {
    let mut mirrors = RegistryMirrors::new();
    let local = format!("http://{}", s.reg.addr);
    mirrors.add("registry.k8s.io", &[&local]).unwrap();
    mirrors.add("docker.io", &[local]).unwrap();
    let c = RegistryClient::new(mirrors, Credentials::none(), fast_opts()).unwrap();
    let amd64 = Platform::linux("amd64");
    let locked: Vec<LockedImage> = [
        "registry.k8s.io/team/a:1",
        "registry.k8s.io/team/b:1",
        "team/multi:1",
    ]
    .iter()
    .map(|r| c.resolve(&Reference::parse(r).unwrap(), &amd64).unwrap())
    .collect();
    c.pull(store, &locked, &NoProgress).unwrap();
    locked
}

fn skopeo_inspect(target: &str) -> Value {
    let out = run(Command::new("skopeo").args(["inspect", target]));
    serde_json::from_str(&out).unwrap()
}

#[test]
fn image_tarballs_import_into_containerd_by_name_and_digest_and_skopeo_reads_them() {
    let test = "image_tarballs_import_into_containerd_by_name_and_digest_and_skopeo_reads_them";
    if !have_tools(test, &["containerd", "ctr"]) {
        return;
    }
    let Some(s) = Seeded::new(test) else { return };
    let store = s.store("vendor");
    let locked = pulled(&s, &store);
    let out = s.dir.join("out/images");

    let mut files = Vec::new();
    for image in &locked {
        let path = out.join(image_file_name(&image.reference));
        let written =
            write_image_archive_file(&store, std::slice::from_ref(image), MTIME, &path).unwrap();
        assert_eq!(written.size, fs::metadata(&path).unwrap().len());
        assert_eq!(written.sha256, crate::sha(&fs::read(&path).unwrap()));
        files.push(path);
    }
    assert_eq!(
        files[0].file_name().unwrap().to_str().unwrap(),
        "registry.k8s.io_team_a_1.tar"
    );
    let combined = out.join("combined.tar");
    write_image_archive_file(&store, &locked, MTIME, &combined).unwrap();

    // The layout: sorted entries, every shared blob once, both index.json and manifest.json.
    let mut archive = tar::Archive::new(fs::File::open(&combined).unwrap());
    let entries: Vec<(String, u64, u32, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                String::from_utf8(e.path_bytes().into_owned()).unwrap(),
                h.mtime().unwrap(),
                h.mode().unwrap(),
                h.uid().unwrap() + h.gid().unwrap(),
            )
        })
        .collect();
    let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    let blobs: BTreeSet<String> = locked
        .iter()
        .flat_map(|i| i.blobs())
        .map(|(d, _)| format!("blobs/sha256/{}", d.hex()))
        .collect();
    // 3 manifests + 3 configs + 3 distinct layers, once each.
    assert_eq!(blobs.len(), 9);
    assert_eq!(paths.len(), 2 + blobs.len() + 3, "{paths:#?}");
    assert!(paths.ends_with(&["index.json", "manifest.json", "oci-layout"]));
    assert!(entries.iter().all(|e| e.1 == MTIME && e.3 == 0));

    // containerd imports each under its full name and its locked manifest digest.
    let ctd = Containerd::start(&s.dir.join("containerd"));
    for f in &files {
        ctd.import(f);
    }
    let want: Vec<(String, String)> = {
        let mut v: Vec<(String, String)> = locked
            .iter()
            .map(|i| (i.reference.to_string(), i.manifest_digest.to_string()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ctd.images(), want);
    assert_eq!(want[0].0, "docker.io/team/multi:1");
    // The combined archive imports the same three images.
    let ctd2 = Containerd::start(&s.dir.join("containerd2"));
    ctd2.import(&combined);
    assert_eq!(ctd2.images(), want);

    // skopeo reads each tarball both ways.
    for (f, image) in files.iter().zip(&locked) {
        let oci = skopeo_inspect(&format!("oci-archive:{}", f.display()));
        assert_eq!(oci["Digest"], image.manifest_digest.as_str());
        assert_eq!(oci["Architecture"], "amd64");
        let docker = skopeo_inspect(&format!("docker-archive:{}", f.display()));
        assert_eq!(
            docker["Layers"].as_array().unwrap().len(),
            image.layers.len()
        );
    }
    // In a combined archive skopeo picks an image by name; its OCI transport (skopeo 1.9)
    // only looks at entries with OCI media types, so b (Docker schema 2) is found through
    // the docker-archive side. Single-image archives are read whatever the media type.
    let (a, b) = (&locked[0], &locked[1]);
    let oci = skopeo_inspect(&format!(
        "oci-archive:{}:{}",
        combined.display(),
        a.reference
    ));
    assert_eq!(oci["Digest"], a.manifest_digest.as_str());
    let docker = skopeo_inspect(&format!(
        "docker-archive:{}:{}",
        combined.display(),
        b.reference
    ));
    assert_eq!(docker["Layers"].as_array().unwrap().len(), 3);
}

#[test]
fn image_tarballs_are_byte_identical_across_writes_and_stores() {
    let Some(s) = Seeded::new("image_tarballs_are_byte_identical_across_writes_and_stores") else {
        return;
    };
    let store1 = s.store("vendor1");
    let store2 = s.store("vendor2");
    let locked1 = pulled(&s, &store1);
    let locked2 = pulled(&s, &store2);
    assert_eq!(locked1, locked2);

    let mut first = Vec::new();
    write_image_archive(&store1, &locked1, MTIME, &mut first).unwrap();
    let path = s.dir.join("again.tar");
    let written = write_image_archive_file(&store2, &locked2, MTIME, &path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), first);
    assert_eq!(written.sha256, crate::sha(&first));

    // The order images are given in does not matter for the blobs, but names the
    // index entries in that order; the same list gives the same bytes.
    let mut again = Vec::new();
    write_image_archive(&store1, &locked1, MTIME, &mut again).unwrap();
    assert_eq!(again, first);
    let mut other_mtime = Vec::new();
    write_image_archive(&store1, &locked1, MTIME + 1, &mut other_mtime).unwrap();
    assert_ne!(other_mtime, first);

    // A lock entry that does not match its (verified) manifest is refused.
    let mut tampered = locked1[0].clone();
    tampered.layers.swap(0, 1);
    let msg = write_image_archive(&store1, &[tampered], MTIME, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does not match kiln.lock"), "{msg}");

    // A blob missing from the store is named, and nothing lands under the final name.
    let cfg = &locked1[0].config_digest;
    fs::remove_file(store1.blob_path(cfg.hex())).unwrap();
    let target = s.dir.join("broken.tar");
    let msg = write_image_archive_file(&store1, &locked1, MTIME, &target)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(cfg.as_str()) && msg.contains("registry.k8s.io/team/a:1"),
        "{msg}"
    );
    assert!(!target.exists());
    assert!(
        fs::read_dir(&s.dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".image-")),
        "temp file left behind"
    );
}
