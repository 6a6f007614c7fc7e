//! A pause image assembled from Debian's catatonit: reproducible, importable, runnable config.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use kiln_image::{
    assemble, write_image_archive_file, AssembleFile, AssembleSpec, ImageConfig, Platform,
    Reference, OCI_LAYER_GZIP,
};
use kiln_store::Store;
use serde_json::Value;

use crate::fixtures::Containerd;
use crate::{have_tools, run};

const CATATONIT: &str = "/usr/bin/catatonit";

/// This machine's architecture in Go's naming.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The lab's pause image: `registry.k8s.io/pause:3.10.1` from catatonit.
pub fn pause_spec(source: &Path) -> AssembleSpec {
    AssembleSpec {
        reference: Reference::parse("registry.k8s.io/pause:3.10.1").unwrap(),
        platform: Platform::linux(host_arch()),
        files: vec![AssembleFile {
            path: "/catatonit".to_owned(),
            source: source.to_owned(),
            mode: 0o755,
        }],
        config: ImageConfig {
            entrypoint: vec!["/catatonit".to_owned(), "-P".to_owned()],
            user: Some("65535:65535".to_owned()),
            labels: BTreeMap::from([(
                "io.kiln.assembled-from".to_owned(),
                "debian catatonit".to_owned(),
            )]),
            ..ImageConfig::default()
        },
        created: 1_700_000_000,
    }
}

#[test]
fn pause_image_from_catatonit_is_reproducible_and_imports_into_containerd() {
    let test = "pause_image_from_catatonit_is_reproducible_and_imports_into_containerd";
    if !have_tools(test, &["catatonit", "containerd", "ctr", "skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let spec = pause_spec(Path::new(CATATONIT));
    let store1 = Store::open(&dir.join("vendor1")).unwrap();
    let store2 = Store::open(&dir.join("vendor2")).unwrap();
    let one = assemble(&store1, &spec).unwrap();
    let two = assemble(&store2, &spec).unwrap();
    assert_eq!(one, two, "same spec, same digests");
    assert_eq!(
        assemble(&store1, &spec).unwrap(),
        one,
        "idempotent in one store"
    );
    assert_eq!(one.layers.len(), 1);
    assert_eq!(one.layers[0].media_type, OCI_LAYER_GZIP);
    assert_eq!(
        fs::read_dir(store1.root().join("sha256")).unwrap().count(),
        3
    );
    assert_eq!(fs::read_dir(store1.root().join("tmp")).unwrap().count(), 0);

    // The layer holds exactly /catatonit, executable, owned by root, with the fixed mtime.
    let layer = fs::File::open(store1.blob_path(one.layers[0].digest.hex())).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut entries = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        let h = e.header();
        entries.push((
            e.path().unwrap().display().to_string(),
            h.mode().unwrap(),
            h.uid().unwrap(),
            h.mtime().unwrap(),
            bytes == fs::read(CATATONIT).unwrap(),
        ));
    }
    assert_eq!(
        entries,
        vec![("catatonit".to_owned(), 0o755, 0, 1_700_000_000, true)]
    );

    // Tarball twice: identical; containerd imports it under its real name and digest.
    let a = dir.join("a/pause.tar");
    let b = dir.join("b/pause.tar");
    write_image_archive_file(&store1, std::slice::from_ref(&one), 1_700_000_000, &a).unwrap();
    write_image_archive_file(&store2, std::slice::from_ref(&two), 1_700_000_000, &b).unwrap();
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let ctd = Containerd::start(&dir.join("containerd"));
    ctd.import(&a);
    assert_eq!(
        ctd.images(),
        vec![(
            "registry.k8s.io/pause:3.10.1".to_owned(),
            one.manifest_digest.to_string()
        )]
    );

    // skopeo sees the config: entrypoint, user, labels, platform, created.
    let out = run(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", a.display())));
    let config: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/catatonit", "-P"])
    );
    assert_eq!(config["config"]["User"], "65535:65535");
    assert_eq!(
        config["config"]["Labels"]["io.kiln.assembled-from"],
        "debian catatonit"
    );
    assert_eq!(config["architecture"], host_arch());
    assert_eq!(config["os"], "linux");
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
    let docker = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("docker-archive:{}", a.display())));
    assert!(docker.contains("\"Architecture\""), "{docker}");
}

#[test]
fn assembled_image_changes_digest_with_its_inputs() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tool");
    fs::write(&file, b"#!/bin/sh\necho hi\n").unwrap();
    let store = Store::open(&tmp.path().join("vendor")).unwrap();
    let mut spec = pause_spec(&file);
    spec.files[0].path = "usr/local/bin/tool".to_owned();
    let base = assemble(&store, &spec).unwrap();

    let mut later = spec.clone();
    later.created += 1;
    assert_ne!(
        assemble(&store, &later).unwrap().manifest_digest,
        base.manifest_digest
    );
    let mut user = spec.clone();
    user.config.user = None;
    let other = assemble(&store, &user).unwrap();
    assert_ne!(other.config_digest, base.config_digest);
    assert_eq!(
        other.layers, base.layers,
        "the layer does not depend on the config"
    );

    // Parent folders are in the layer, before the file.
    let layer = fs::File::open(store.blob_path(base.layers[0].digest.hex())).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let paths: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        paths,
        vec!["usr/", "usr/local/", "usr/local/bin/", "usr/local/bin/tool"]
    );

    let missing = tmp.path().join("nope");
    spec.files[0].source = missing.clone();
    let msg = assemble(&store, &spec).unwrap_err().to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
}
