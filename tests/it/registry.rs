//! A cluster whose images come from registries: a local docker-registry stands in for
//! registry.k8s.io and docker.io through `[registry-mirrors]` (as a Harbor proxy project
//! would), and the real kiln binary locks, fetches, builds and lists them; the bundled
//! tarballs import into a real containerd under their real names and locked digests.
//!
//! Only 127.0.0.1 is used: every kiln run gets an HTTP(S) proxy on a closed local port
//! for anything but 127.0.0.1, so a request that escaped the mirrors would fail.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_testkit::{build_images, have_tools, push, remote_digest, Containerd, Images, Registry};
use serde_json::Value;

use crate::common::{kiln, kiln_local, walk, Fixture};
use crate::secrets::entries;

const PAUSE: &str = "registry.k8s.io/pause:3.10.1";
const FLANNEL: &str = "docker.io/flannel/flannel:v0.28.4";

/// The lab fixture with registry images: the runtime role carries pause (a multi-arch
/// index, OCI) and flannel (Docker schema 2); both share their first two layers.
struct Mirrored {
    fx: Fixture,
    reg: Registry,
    images: Images,
    /// The digest the registry serves for flannel's tag.
    flannel_digest: String,
    _tmp: tempfile::TempDir,
}

impl Mirrored {
    /// Seeds the registry and writes the cluster, or `None` (skipped) without the tools.
    fn new(test: &str) -> Option<Mirrored> {
        let tools = ["docker-registry", "skopeo", "umoci", "containerd", "ctr"];
        if !have_tools(test, &tools) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let images = build_images(&tmp.path().join("images"));
        let reg = Registry::start(
            &tmp.path().join("registry"),
            kiln_testkit::RegistryAuth::None,
        );
        // Harbor-style proxy projects: `k8s` in front of registry.k8s.io, `hub` of docker.io.
        push(
            &images,
            "multi",
            &format!("{}/k8s/pause:3.10.1", reg.addr),
            &[],
        );
        let flannel = format!("{}/hub/flannel/flannel:v0.28.4", reg.addr);
        push(&images, "b", &flannel, &["--format", "v2s2"]);
        let flannel_digest = remote_digest(&flannel);

        let fx = Fixture::new(false);
        let profile = fx.dir.join("profiles/runtime/profile.toml");
        let text = fs::read_to_string(&profile).unwrap();
        let one = format!("images = [\"{PAUSE}\"]");
        assert!(
            text.contains(&one),
            "the runtime profile names the pause image"
        );
        fs::write(
            &profile,
            text.replace(&one, &format!("images = [\"{PAUSE}\", \"{FLANNEL}\"]")),
        )
        .unwrap();
        let addr = reg.addr.clone();
        fx.edit(|t| {
            assert!(t.contains("image-sources = [\"assemble\"]"));
            let t = t.replace(
                "image-sources = [\"assemble\"]",
                "image-sources = [\"registry\"]",
            );
            format!(
                "{t}\n[registry-mirrors]\n\"registry.k8s.io\" = [\"http://{addr}/k8s\"]\n\"docker.io\" = [\"http://{addr}/hub/\"]\n"
            )
        });
        Some(Mirrored {
            fx,
            reg,
            images,
            flannel_digest,
            _tmp: tmp,
        })
    }

    /// `kiln ARGS` in the project, with only 127.0.0.1 reachable; asserts success, returns stdout.
    fn kiln(&self, args: &[&str]) -> String {
        let out = kiln_local()
            .current_dir(&self.fx.dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kiln {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// (reference, manifest digest) the registry serves for each image, sorted.
    fn served(&self) -> Vec<(String, String)> {
        vec![
            (FLANNEL.to_string(), self.flannel_digest.clone()),
            (PAUSE.to_string(), self.images.a_amd64.clone()),
        ]
    }

    /// How many times the registry served the blob `digest`.
    fn blob_gets(&self, digest: &str) -> usize {
        let log = fs::read_to_string(self.reg.storage.with_file_name("registry.log")).unwrap();
        log.lines()
            .filter(|l| {
                l.contains("response completed")
                    && l.contains("http.request.method=GET")
                    && l.contains(&format!("/blobs/{digest}"))
            })
            .count()
    }
}

/// The runtime bundle of an out folder.
fn runtime_bundle(out: &Path) -> PathBuf {
    walk(&out.join("bundles"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("runtime-debian12"))
        .expect("a runtime bundle")
}

/// `IMAGE-DIGESTS` of every bundle of an out folder: (bundle file, path, reference, digest).
fn image_digests(out: &Path) -> Vec<(String, String, String, String)> {
    let mut rows = Vec::new();
    for b in walk(&out.join("bundles")) {
        let e = entries(&b);
        let text = &e.iter().find(|x| x.0 == "IMAGE-DIGESTS").unwrap().2;
        for line in String::from_utf8(text.clone()).unwrap().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 3, "{line}");
            let name = b.file_name().unwrap().to_string_lossy().into_owned();
            rows.push((name, f[0].into(), f[1].into(), f[2].into()));
        }
    }
    rows
}

/// The members `images/…` of a bundle, written into `dir`; returns their paths.
fn extract_images(bundle: &Path, dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    entries(bundle)
        .into_iter()
        .filter_map(|(p, _, bytes)| {
            let name = p.strip_prefix("images/")?;
            let file = dir.join(name);
            fs::write(&file, bytes).unwrap();
            Some(file)
        })
        .collect()
}

#[test]
fn a_cluster_pulls_its_images_through_registry_mirrors_and_bundles_them_by_name_and_digest() {
    let test =
        "a_cluster_pulls_its_images_through_registry_mirrors_and_bundles_them_by_name_and_digest";
    let Some(m) = Mirrored::new(test) else { return };

    // lock: tags resolved through the mirrors to the index and the amd64 manifest.
    m.kiln(&["lock", "cluster.toml"]);
    let lock: toml::Table = fs::read_to_string(m.fx.dir.join("kiln.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let locked: Vec<(String, String)> = lock["image"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let r = i["reference"].as_str().unwrap().to_string();
            (r, i["manifest-digest"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(locked, m.served());
    let pause = lock["image"].as_array().unwrap()[1].as_table().unwrap();
    assert_eq!(
        pause["index-digest"].as_str(),
        Some(m.images.multi.as_str())
    );
    assert_eq!(pause["platform"].as_str(), Some("linux/amd64"));

    // fetch: every blob into vendor/, the layers both images share downloaded once.
    let fetched = m.kiln(&["fetch", "cluster.toml"]);
    assert!(fetched.contains(", 2 image(s) pulled"), "{fetched}");
    let big = &m.images.big_layer;
    assert!(m.fx.dir.join("vendor/sha256").join(&big[7..]).is_file());
    assert_eq!(m.blob_gets(big), 1, "the shared layer was downloaded once");

    // build: the runtime bundle carries both, listed with the locked digests.
    m.kiln(&["build", "--seed", "none", "cluster.toml"]);
    let out = m.fx.dir.join("out/lab");
    let digests = image_digests(&out);
    let bundled: Vec<(String, String)> = digests
        .iter()
        .map(|d| (d.2.clone(), d.3.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(bundled, m.served());
    assert!(digests.iter().all(|d| d.0.starts_with("runtime-debian12-")));
    assert_eq!(
        digests.iter().map(|d| d.1.as_str()).collect::<Vec<_>>(),
        [
            "images/registry.k8s.io_pause_3.10.1.tar",
            "images/docker.io_flannel_flannel_v0.28.4.tar"
        ]
    );

    // kiln images lists exactly what was bundled, in both forms.
    let rows: Value = serde_json::from_str(&m.kiln(&["images", "--json", "cluster.toml"])).unwrap();
    let listed: Vec<(String, String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["source"], "registry");
            let s = |k: &str| r[k].as_str().unwrap().to_string();
            (s("bundle"), s("image"), s("digest"))
        })
        .collect();
    let want: Vec<(String, String, String)> = digests
        .iter()
        .map(|d| ("runtime-debian12".into(), d.2.clone(), d.3.clone()))
        .collect();
    assert_eq!(listed, want);
    let text = m.kiln(&["images", "cluster.toml"]);
    assert_eq!(text.lines().count(), 2, "{text}");
    for (l, (bundle, image, digest)) in text.lines().zip(&want) {
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(cols, [bundle, image, "registry", digest], "{text}");
    }

    // The tarballs import into containerd under their real names and locked digests.
    let tars = extract_images(&runtime_bundle(&out), &m.fx.dir.join("../tars"));
    assert_eq!(tars.len(), 2);
    let ctd = Containerd::start(&m.fx.dir.join("../containerd"));
    for t in &tars {
        ctd.import(t);
    }
    assert_eq!(ctd.images(), m.served());

    // A second build, from a store filled by a second pull, gives identical tarballs.
    fs::rename(m.fx.dir.join("vendor"), m.fx.dir.join("../vendor-first")).unwrap();
    m.kiln(&["build", "--seed", "none", "--out", "out2", "cluster.toml"]);
    let again = extract_images(
        &runtime_bundle(&m.fx.dir.join("out2/lab")),
        &m.fx.dir.join("../tars2"),
    );
    assert_eq!(again.len(), 2);
    for (a, b) in tars.iter().zip(&again) {
        assert_eq!(a.file_name(), b.file_name());
        assert!(
            fs::read(a).unwrap() == fs::read(b).unwrap(),
            "{} differs",
            b.display()
        );
    }
    assert_eq!(
        m.blob_gets(big),
        2,
        "the second store pulled the shared layer once"
    );
}

#[test]
fn build_images_combined_puts_each_shared_layer_once_in_one_archive_per_role() {
    let test = "build_images_combined_puts_each_shared_layer_once_in_one_archive_per_role";
    let Some(m) = Mirrored::new(test) else { return };
    m.kiln(&["lock", "cluster.toml"]);
    m.kiln(&[
        "build",
        "--seed",
        "none",
        "--out",
        "per-image",
        "cluster.toml",
    ]);
    let combined = ["build", "--seed", "none", "--images", "combined"];
    m.kiln(&[&combined[..], &["--out", "combined", "cluster.toml"]].concat());

    // The option is an input: another build id, another runtime bundle.
    let build_id = |out: &str| -> String {
        let text = fs::read_to_string(m.fx.dir.join(out).join("lab/MANIFEST.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["build-id"].as_str().unwrap().to_string()
    };
    assert_ne!(build_id("per-image"), build_id("combined"));
    let out = m.fx.dir.join("combined/lab");
    let bundle = runtime_bundle(&out);
    assert_ne!(
        bundle.file_name(),
        runtime_bundle(&m.fx.dir.join("per-image/lab")).file_name()
    );

    // One archive, listed in IMAGES; IMAGE-DIGESTS names every image in it.
    let e = entries(&bundle);
    let member = |name: &str| String::from_utf8(e.iter().find(|x| x.0 == name).unwrap().2.clone());
    assert_eq!(member("IMAGES").unwrap(), "images/runtime.tar\n");
    let digests = image_digests(&out);
    assert!(digests.iter().all(|d| d.1 == "images/runtime.tar"));
    let mut bundled: Vec<(String, String)> =
        digests.iter().map(|d| (d.2.clone(), d.3.clone())).collect();
    bundled.sort();
    assert_eq!(bundled, m.served());

    // Each shared blob once: the archive is smaller than the two per-image ones by the
    // shared layers, and names every image in index.json and manifest.json.
    let tars = extract_images(&bundle, &m.fx.dir.join("../combined-tars"));
    assert_eq!(tars.len(), 1);
    let per_image = extract_images(
        &runtime_bundle(&m.fx.dir.join("per-image/lab")),
        &m.fx.dir.join("../per-image-tars"),
    );
    let size = |p: &PathBuf| fs::metadata(p).unwrap().len();
    let saved = per_image.iter().map(size).sum::<u64>() - size(&tars[0]);
    assert!(saved >= m.images.big_layer_size, "{saved} bytes saved");
    let mut paths = Vec::new();
    let mut index = Value::Null;
    let mut docker = Value::Null;
    for f in tar::Archive::new(fs::File::open(&tars[0]).unwrap())
        .entries()
        .unwrap()
    {
        let f = f.unwrap();
        let p = f.path().unwrap().display().to_string();
        match p.as_str() {
            "index.json" => index = serde_json::from_reader(f).unwrap(),
            "manifest.json" => docker = serde_json::from_reader(f).unwrap(),
            _ => {}
        }
        paths.push(p);
    }
    let big = format!("blobs/sha256/{}", &m.images.big_layer[7..]);
    assert_eq!(paths.iter().filter(|p| **p == big).count(), 1, "{paths:#?}");
    assert_eq!(paths.iter().collect::<BTreeSet<_>>().len(), paths.len());
    let names: Vec<(String, String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let a = &i["annotations"];
            let s = |v: &Value| v.as_str().unwrap().to_string();
            (
                s(&a["io.containerd.image.name"]),
                s(&a["org.opencontainers.image.ref.name"]),
                s(&i["digest"]),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (PAUSE.into(), PAUSE.into(), m.images.a_amd64.clone()),
            (FLANNEL.into(), FLANNEL.into(), m.flannel_digest.clone())
        ]
    );
    assert_eq!(docker[0]["RepoTags"][0], PAUSE);
    assert_eq!(docker[1]["RepoTags"][0], FLANNEL);

    // containerd imports both from it under their names and locked digests; skopeo reads
    // each image out of it (pause is OCI, flannel Docker schema 2: see kiln-image's tests).
    let ctd = Containerd::start(&m.fx.dir.join("../containerd"));
    ctd.import(&tars[0]);
    assert_eq!(ctd.images(), m.served());
    let inspect = |target: String| -> Value {
        let out =
            kiln_testkit::run(std::process::Command::new("skopeo").args(["inspect", &target]));
        serde_json::from_str(&out).unwrap()
    };
    let archive = tars[0].display();
    let pause = inspect(format!("oci-archive:{archive}:{PAUSE}"));
    assert_eq!(pause["Digest"], m.images.a_amd64.as_str());
    let flannel = inspect(format!("docker-archive:{archive}:{FLANNEL}"));
    assert_eq!(flannel["Layers"].as_array().unwrap().len(), 3);

    // The other bundles carry no image and no archive.
    for b in walk(&out.join("bundles")).iter().filter(|b| **b != bundle) {
        let e = entries(b);
        assert!(
            e.iter().all(|x| !x.0.starts_with("images/")),
            "{}",
            b.display()
        );
        assert!(e.iter().any(|x| x.0 == "IMAGES" && x.2.is_empty()));
    }
}

#[test]
fn an_unknown_images_form_is_a_usage_error_naming_the_valid_ones() {
    let fx = Fixture::small();
    let r = kiln()
        .current_dir(&fx.dir)
        .args(["build", "--images", "zip", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        e.contains("invalid value 'zip' for '--images <IMAGES>'")
            && e.contains("[possible values: per-image, combined]"),
        "{e}"
    );
    assert!(!fx.dir.join("out").exists());
}
