//! Bundle SBOMs: every SPDX document of the lab and k8s builds passes a real validator
//! (spdx-tools' `pyspdxtools`, installed by scripts/setup), lists exactly what its bundle
//! carries (checked against the bundle's own members and the lock, not a list written here),
//! is the same bytes in two builds, is checked by `kiln verify`, and `kiln sbom` prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{kiln, repo};

/// The example's cluster.toml with its state (PKI) in `tmp`, reading the repository's store,
/// lock, profiles and catalog.
fn example_in(example: &str, tmp: &Path) -> PathBuf {
    let r = repo();
    let ex = r.join("examples").join(example);
    let lock = fs::read_to_string(ex.join("kiln.lock")).unwrap();
    let store = ex.join("vendor/sha256");
    assert!(
        lock.lines()
            .filter_map(|l| l.strip_prefix("sha256 = \""))
            .all(|s| store.join(&s[..64]).is_file()),
        "examples/{example}/vendor is not filled: run scripts/setup"
    );
    let text = fs::read_to_string(ex.join("cluster.toml"))
        .unwrap()
        .replace(
            "[paths]\n",
            &format!(
                "[paths]\nvendor = \"{0}/vendor\"\nlock = \"{0}/kiln.lock\"\n",
                ex.display()
            ),
        )
        .replace("\"../../", &format!("\"{}/", r.display()));
    let cluster = tmp.join(format!("{example}.toml"));
    fs::write(&cluster, text).unwrap();
    cluster
}

/// `kiln build --offline` of `cluster` into `out`; returns `out/<cluster name>`.
fn build(cluster: &Path, out: &Path, name: &str) -> PathBuf {
    kiln()
        .args(["build", "--offline", "--seed", "dir", "--out"])
        .arg(out)
        .arg(cluster)
        .assert()
        .success();
    out.join(name)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text members of a bundle (MANIFEST, PACKAGES, IMAGE-DIGESTS, …), read with tar.
fn bundle_members(bundle: &Path) -> BTreeMap<String, String> {
    let gz = flate2::read::MultiGzDecoder::new(fs::File::open(bundle).unwrap());
    let mut out = BTreeMap::new();
    for e in tar::Archive::new(gz).entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if !path.contains('/') {
            let mut s = String::new();
            if e.read_to_string(&mut s).is_ok() {
                out.insert(path, s);
            }
        }
    }
    out
}

/// The SBOM's packages whose SPDX id starts with `SPDXRef-<kind>-`, in document order.
fn items<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    let prefix = format!("SPDXRef-{kind}-");
    doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["SPDXID"].as_str().unwrap().starts_with(&prefix))
        .collect()
}

fn checksum(p: &Value, algorithm: &str) -> Option<String> {
    p["checksums"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["algorithm"] == algorithm)
        .map(|c| c["checksumValue"].as_str().unwrap().to_owned())
}

fn purl(p: &Value) -> String {
    p["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Validates `file` with spdx-tools.
fn validate(file: &Path) {
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(file)
        .output()
        .expect("run pyspdxtools");
    assert!(
        out.status.success(),
        "pyspdxtools -i {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks every bundle's SBOM of build `dir` against the bundle, the lock and the plan;
/// returns the SBOMs' bytes by file name.
fn check_build(dir: &Path, cluster: &Path, lock_path: &Path) -> BTreeMap<String, Vec<u8>> {
    let manifest = json(&dir.join("MANIFEST.json"));
    let lock: toml::Value = toml::from_str(&fs::read_to_string(lock_path).unwrap()).unwrap();
    let plan: Value = serde_json::from_slice(
        &kiln()
            .args(["plan", "--json"])
            .arg(cluster)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let sums = fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let mut docs = BTreeMap::new();
    for (id, b) in manifest["bundles"].as_object().unwrap() {
        let name = format!("{id}.spdx.json");
        let file = dir.join(&name);
        validate(&file);
        let bytes = fs::read(&file).unwrap();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        assert_eq!(manifest["outputs"][&name]["sha256"], sha.as_str(), "{name}");
        assert!(sums.contains(&format!("{sha}  {name}\n")), "{name}");
        let doc: Value = serde_json::from_slice(&bytes).unwrap();

        // The document describes the bundle, which contains every other package.
        let bundle_file = b["file"].as_str().unwrap();
        let bundle = &items(&doc, "Bundle")[0];
        assert_eq!(
            checksum(bundle, "SHA256").unwrap(),
            manifest["outputs"][bundle_file]["sha256"].as_str().unwrap()
        );
        assert_eq!(
            bundle["packageFileName"].as_str().unwrap(),
            bundle_file.rsplit('/').next().unwrap()
        );
        let rels = doc["relationships"].as_array().unwrap();
        assert_eq!(rels[0]["relationshipType"], "DESCRIBES");
        assert_eq!(rels[0]["relatedSpdxElement"], bundle["SPDXID"]);
        let contained: BTreeSet<&str> = rels[1..]
            .iter()
            .map(|r| {
                assert_eq!(r["relationshipType"], "CONTAINS");
                assert_eq!(r["spdxElementId"], bundle["SPDXID"]);
                r["relatedSpdxElement"].as_str().unwrap()
            })
            .collect();
        let others: BTreeSet<&str> = doc["packages"].as_array().unwrap()[1..]
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap())
            .collect();
        assert_eq!(contained, others, "{name}");

        let members = bundle_members(&dir.join(bundle_file));
        // rootfs and packages/ paths → sha256, from the bundle's own MANIFEST.
        let in_bundle: BTreeMap<&str, &str> = members["MANIFEST"]
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[3], f[0])
            })
            .collect();

        // OS packages: PACKAGES' files in order, each the lock's [[package]] of that file.
        let locked_packages = lock["package"].as_array().map_or(&[][..], |v| v);
        let expected: Vec<&toml::Value> = members["PACKAGES"]
            .lines()
            .map(|l| {
                let file = l.strip_prefix("packages/").unwrap();
                locked_packages
                    .iter()
                    .find(|p| {
                        p["filename"]
                            .as_str()
                            .unwrap()
                            .ends_with(&format!("/{file}"))
                    })
                    .unwrap_or_else(|| panic!("{file} is not in the lock"))
            })
            .collect();
        let listed = items(&doc, "Package");
        assert_eq!(listed.len(), expected.len(), "{name}: packages");
        for (p, l) in listed.iter().zip(&expected) {
            let file = l["filename"].as_str().unwrap().rsplit('/').next().unwrap();
            assert_eq!(p["name"].as_str(), l["name"].as_str());
            assert_eq!(p["versionInfo"].as_str(), l["version"].as_str());
            assert_eq!(p["packageFileName"].as_str(), Some(file));
            let sha = checksum(p, "SHA256").unwrap();
            assert_eq!(Some(sha.as_str()), l["sha256"].as_str());
            assert_eq!(in_bundle[format!("packages/{file}").as_str()], sha);
            let arch = l["arch"].as_str().unwrap();
            assert!(
                purl(p).starts_with("pkg:deb/debian/")
                    && purl(p).ends_with(&format!("?arch={arch}&distro=debian-12")),
                "{}",
                purl(p)
            );
        }

        // Images: exactly IMAGE-DIGESTS' references and digests.
        let expected: BTreeSet<(String, String)> = members
            .get("IMAGE-DIGESTS")
            .map_or("", String::as_str)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f[1].to_owned(), f[2].to_owned())
            })
            .collect();
        let listed: BTreeSet<(String, String)> = items(&doc, "Image")
            .iter()
            .map(|p| {
                let digest = format!("sha256:{}", checksum(p, "SHA256").unwrap());
                assert!(purl(p).starts_with("pkg:oci/"), "{}", purl(p));
                assert!(
                    purl(p).contains(&format!("@{digest}?")) && purl(p).contains("repository_url="),
                    "{}",
                    purl(p)
                );
                (p["name"].as_str().unwrap().to_owned(), digest)
            })
            .collect();
        assert_eq!(listed, expected, "{name}: images");

        // Artifacts: the plan's artifact files of this bundle, with the lock's version and
        // pins, each installed path with the sha256 the bundle's MANIFEST gives it.
        let plan_bundle = plan["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|pb| pb["id"] == id.as_str())
            .unwrap();
        let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for f in plan_bundle["files"].as_array().unwrap() {
            if f["source"]["kind"] == "artifact" {
                expected
                    .entry(f["source"]["name"].as_str().unwrap())
                    .or_default()
                    .push(f["path"].as_str().unwrap());
            }
        }
        let listed = items(&doc, "Artifact");
        let names: Vec<&str> = listed.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            expected.keys().copied().collect::<Vec<_>>(),
            "{name}"
        );
        for p in listed {
            let n = p["name"].as_str().unwrap();
            let l = lock["artifact"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["name"].as_str() == Some(n))
                .unwrap();
            assert_eq!(p["versionInfo"].as_str(), l["version"].as_str(), "{n}");
            for (algorithm, key) in [("SHA256", "sha256"), ("SHA512", "sha512")] {
                let pinned = l.get(key).and_then(|v| v.as_str());
                assert_eq!(checksum(p, algorithm).as_deref(), pinned, "{n} {key}");
            }
            let comment = p["comment"].as_str().unwrap();
            for path in &expected[n] {
                let sha = in_bundle[format!("rootfs{path}").as_str()];
                assert!(
                    comment.contains(&format!("{path} (sha256 {sha})")),
                    "{n}: {comment}"
                );
            }
        }
        docs.insert(name, bytes);
    }
    docs
}

#[test]
fn lab_sboms_validate_list_each_bundle_exactly_and_are_reproducible() {
    if !kiln_testkit::have_tools(
        "lab_sboms_validate_list_each_bundle_exactly_and_are_reproducible",
        &["pyspdxtools"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cluster = example_in("lab", tmp.path());
    let lock = repo().join("examples/lab/kiln.lock");
    let first = build(&cluster, &tmp.path().join("out0"), "lab");
    let second = build(&cluster, &tmp.path().join("out1"), "lab");
    let a = check_build(&first, &cluster, &lock);
    assert_eq!(a.len(), 4, "{:?}", a.keys());
    assert_eq!(a, check_build(&second, &cluster, &lock));
}

#[test]
fn k8s_sboms_validate_and_list_each_bundle_exactly() {
    if !kiln_testkit::have_tools(
        "k8s_sboms_validate_and_list_each_bundle_exactly",
        &["pyspdxtools"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cluster = example_in("k8s", tmp.path());
    let dir = build(&cluster, &tmp.path().join("out"), "k8s");
    let docs = check_build(&dir, &cluster, &repo().join("examples/k8s/kiln.lock"));
    // Every image the k8s bundles carry is in some SBOM.
    let images: usize = docs
        .values()
        .map(|d| items(&serde_json::from_slice(d).unwrap(), "Image").len())
        .sum();
    assert!(images >= 3, "{images} images");
}

#[test]
fn kiln_sbom_prints_and_copies_and_refuses_what_is_not_a_build() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = example_in("lab", tmp.path());
    let dir = build(&cluster, &tmp.path().join("out"), "lab");
    let lb = fs::read(dir.join("lb-debian12.spdx.json")).unwrap();

    let out = kiln()
        .arg("sbom")
        .arg(&dir)
        .args(["--bundle", "lb-debian12"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, lb);

    let list = kiln().arg("sbom").arg(&dir).output().unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    let doc: Value = serde_json::from_slice(&lb).unwrap();
    assert!(
        list.contains(&format!(
            "lb-debian12  {}  0 artifacts, {} packages, 0 images",
            dir.join("lb-debian12.spdx.json").display(),
            items(&doc, "Package").len()
        )),
        "{list}"
    );

    let copies = tmp.path().join("copies");
    kiln()
        .arg("sbom")
        .arg(&dir)
        .arg("--output")
        .arg(&copies)
        .assert()
        .success();
    let mut copied: Vec<String> = fs::read_dir(&copies)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    copied.sort();
    assert_eq!(
        copied,
        [
            "common-debian12.spdx.json",
            "etcd-debian12.spdx.json",
            "lb-debian12.spdx.json",
            "runtime-debian12.spdx.json"
        ]
    );
    assert_eq!(fs::read(copies.join("lb-debian12.spdx.json")).unwrap(), lb);

    let fails = |args: &[&str], path: &Path| -> String {
        let out = kiln().arg("sbom").arg(path).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let e = fails(&["--bundle", "lb"], &dir);
    assert!(
        e.contains(&format!(
            "{} has no bundle \"lb\"; its bundles are: common-debian12, etcd-debian12, lb-debian12, runtime-debian12",
            dir.display()
        )),
        "{e}"
    );
    let e = fails(&[], tmp.path());
    assert!(
        e.contains(&format!(
            "{} is not an out folder of kiln build (out/CLUSTER-NAME): it has no MANIFEST.json",
            tmp.path().display()
        )),
        "{e}"
    );
    let e = fails(&[], &tmp.path().join("nowhere"));
    assert!(
        e.contains("nowhere is not an out folder of kiln build (out/CLUSTER-NAME): no such folder"),
        "{e}"
    );

    // A changed SBOM: kiln verify names it, and kiln sbom refuses to print it.
    let file = dir.join("lb-debian12.spdx.json");
    let edited =
        String::from_utf8(lb.clone())
            .unwrap()
            .replacen("\"name\": \"", "\"name\": \"x", 2);
    fs::write(&file, edited).unwrap();
    let out = kiln().arg("verify").arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8(out.stderr).unwrap();
    assert!(e.contains("lb-debian12.spdx.json"), "{e}");
    let e = fails(&["--bundle", "lb-debian12"], &dir);
    assert!(
        e.contains("lb-debian12.spdx.json: sha256 ")
            && e.contains("the SBOM was changed after the build"),
        "{e}"
    );
}

/// An EL bundle (which the examples with a filled store do not have): rpm purls with their
/// epoch, an artifact pinned only by sha512 with its download URL, a registry image. The
/// document still validates.
#[test]
fn an_el_bundle_sbom_has_rpm_purls_sha512_pins_and_download_urls() {
    use kiln_engine::sbom::{self, ArtifactItem, BuildRef, BundleSbom, ImageItem};
    use kiln_spec::{LockedArtifact, LockedPackage, OsId, SourceKind};
    if !kiln_testkit::have_tools(
        "an_el_bundle_sbom_has_rpm_purls_sha512_pins_and_download_urls",
        &["pyspdxtools"],
    ) {
        return;
    }
    let sha512 = "ab".repeat(64);
    let url = "https://dl.k8s.io/v1.34.4/kubernetes-server-linux-amd64.tar.gz";
    let kubelet = LockedArtifact {
        name: "kubelet".into(),
        version: "1.34.4".into(),
        arch: "amd64".into(),
        source: SourceKind::Https,
        urls: vec![url.into()],
        package: None,
        package_version: None,
        archive: "tar.gz".into(),
        member: Some("kubernetes/server/bin/kubelet".into()),
        sha256: None,
        sha512: Some(sha512.clone()),
        size: None,
    };
    let rpm = |name: &str, version: &str| LockedPackage {
        os: "centos7".into(),
        name: name.into(),
        version: version.into(),
        arch: "x86_64".into(),
        source: SourceKind::Https,
        urls: vec![format!("https://mirror.example.com/centos/7/{name}.rpm")],
        filename: format!("{name}-{version}.x86_64.rpm"),
        sha256: "cd".repeat(32),
        size: Some(1),
    };
    let packages = [
        rpm("libnl3", "3.2.28-4.el7"),
        rpm("net-snmp-libs", "1:5.7.2-49.el7"),
    ];
    let image: kiln_image::LockedImage = serde_json::from_value(serde_json::json!({
        "reference": "registry.k8s.io/pause:3.10.1",
        "manifest-digest": format!("sha256:{}", "ef".repeat(32)),
        "manifest-size": 1,
        "media-type": "application/vnd.oci.image.manifest.v1+json",
        "config-digest": format!("sha256:{}", "01".repeat(32)),
        "config-size": 1,
        "layers": [],
        "platform": "linux/amd64",
    }))
    .unwrap();
    let doc = sbom::document(&BundleSbom {
        build: BuildRef {
            cluster: "prod",
            build_id: &"9".repeat(64),
            generation: 3,
            source_date_epoch: 1_700_000_000,
        },
        id: "node-centos7",
        role: "node",
        os: OsId::Centos7,
        arch: "amd64",
        file_name: "node-centos7-0123456789abcdef.tar.gz",
        sha256: &"0123456789abcdef".repeat(4),
        artifacts: vec![ArtifactItem {
            locked: &kubelet,
            installed: vec![("/usr/local/bin/kubelet".into(), "23".repeat(32))],
        }],
        packages: &packages,
        images: vec![ImageItem {
            image: &image,
            assembled: false,
        }],
    });
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("node-centos7.spdx.json");
    fs::write(&file, &doc).unwrap();
    validate(&file);
    let v: Value = serde_json::from_slice(&doc).unwrap();
    assert_eq!(v["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        v["documentNamespace"],
        format!(
            "https://kiln.invalid/spdx/prod/{}/node-centos7",
            "9".repeat(64)
        )
    );
    let a = items(&v, "Artifact")[0];
    assert_eq!(a["downloadLocation"], url);
    assert_eq!(checksum(a, "SHA512").unwrap(), sha512);
    assert_eq!(checksum(a, "SHA256"), None);
    let p = items(&v, "Package");
    assert_eq!(
        purl(p[0]),
        "pkg:rpm/centos/libnl3@3.2.28-4.el7?arch=x86_64&distro=centos-7"
    );
    assert_eq!(
        purl(p[1]),
        "pkg:rpm/centos/net-snmp-libs@5.7.2-49.el7?arch=x86_64&distro=centos-7&epoch=1"
    );
    assert_eq!(
        p[1]["downloadLocation"],
        "https://mirror.example.com/centos/7/net-snmp-libs.rpm"
    );
    let i = items(&v, "Image")[0];
    assert_eq!(
        purl(i),
        format!(
            "pkg:oci/pause@sha256:{}?arch=amd64&repository_url=registry.k8s.io/pause&tag=3.10.1",
            "ef".repeat(32)
        )
    );
    assert_eq!(i["sourceInfo"], "pulled from its registry by digest");
}
