//! Images in bundles: assembled offline, deterministic, listed, and nothing left to pull.

use std::fs;

use crate::common::{kiln, walk, Fixture};
use crate::secrets::entries;

#[test]
fn the_runtime_bundle_carries_the_pause_image_its_config_names() {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "--seed", "none", "cluster.toml"])
        .assert()
        .success();
    let bundle = walk(&fx.dir.join("out/lab/bundles"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("runtime-debian12"))
        .unwrap();
    let e = entries(&bundle);
    let digests =
        String::from_utf8(e.iter().find(|x| x.0 == "IMAGE-DIGESTS").unwrap().2.clone()).unwrap();
    let line = digests.lines().next().expect("one image");
    let parts: Vec<&str> = line.split(' ').collect();
    assert_eq!(parts[0], "images/registry.k8s.io_pause_3.10.1.tar");
    assert_eq!(parts[1], "registry.k8s.io/pause:3.10.1");
    assert!(
        parts[2].starts_with("sha256:") && parts[2].len() == 71,
        "{line}"
    );
    let tar = &e
        .iter()
        .find(|x| x.0 == parts[0])
        .expect("tarball in bundle")
        .2;
    // An OCI layout that also carries docker-archive's manifest.json, named by its reference.
    let mut names = Vec::new();
    let mut index = String::new();
    for f in tar::Archive::new(&tar[..]).entries().unwrap() {
        let mut f = f.unwrap();
        let p = f.path().unwrap().display().to_string();
        if p == "index.json" {
            std::io::Read::read_to_string(&mut f, &mut index).unwrap();
        }
        names.push(p);
    }
    for want in ["oci-layout", "index.json", "manifest.json"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    assert!(
        index.contains("\"io.containerd.image.name\":\"registry.k8s.io/pause:3.10.1\"")
            || index.contains("registry.k8s.io/pause:3.10.1"),
        "{index}"
    );
    assert!(
        index.contains(parts[2]),
        "index.json points at the listed digest: {index}"
    );
    let listed = kiln()
        .current_dir(&fx.dir)
        .args(["images", "--json", "cluster.toml"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows[0]["image"], "registry.k8s.io/pause:3.10.1");
    assert_eq!(rows[0]["source"], "assemble");
}

#[test]
fn a_rendered_config_naming_an_image_no_bundle_carries_fails_the_build() {
    let fx = Fixture::small();
    let p = fx.dir.join("profiles/runtime/config.toml.hbs");
    let t = fs::read_to_string(&p).unwrap();
    assert!(
        t.contains("sandbox_image = \""),
        "the containerd config names a sandbox image"
    );
    let at = t.find("sandbox_image = \"").unwrap() + "sandbox_image = \"".len();
    let end = at + t[at..].find('"').unwrap();
    fs::write(
        &p,
        format!("{}registry.k8s.io/pause:9.9{}", &t[..at], &t[end..]),
    )
    .unwrap();
    // Found at plan time, before anything is locked or fetched, by lock and build alike.
    let before = walk(&fx.dir);
    for args in [
        &["lock", "cluster.toml"][..],
        &["build", "--seed", "none", "cluster.toml"],
    ] {
        let r = kiln().current_dir(&fx.dir).args(args).output().unwrap();
        assert_eq!(r.status.code(), Some(1), "{args:?}");
        let e = String::from_utf8_lossy(&r.stderr);
        assert!(
            e.contains(
                "runtime1: image registry.k8s.io/pause:9.9 named at /etc/containerd/config.toml:"
            ),
            "{args:?}: {e}"
        );
        assert_eq!(walk(&fx.dir), before, "{args:?} wrote files");
    }
}
