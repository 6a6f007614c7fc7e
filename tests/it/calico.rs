//! calico as the pod network (`network.cni = "calico"`, seed 003) on the kubeadm example: its
//! images are locked from a registry (a local docker-registry standing in for docker.io through
//! `[registry-mirrors]`, as a Harbor proxy project would), its CRDs from a site-supplied file,
//! and the completeness checks cover them: every host with a container runtime must carry every
//! image the rendered calico manifest runs, and the masters the CRDs their add-on service
//! applies first.
//! calico's real images cannot be had here, so calico does not run in a cluster in any test.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use kiln_testkit::{build_images, have_tools, push, remote_digest, Registry, RegistryAuth};

use crate::common::{kiln_local, repo, walk};

const VERSION: &str = "3.31.5";
const IMAGES: [&str; 3] = ["cni", "node", "kube-controllers"];

/// A CRD document of the kind calico's crds.yaml holds (the site supplies the real file).
const CRDS: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ippools.crd.projectcalico.org
spec:
  group: crd.projectcalico.org
  names: {kind: IPPool, listKind: IPPoolList, plural: ippools, singular: ippool}
  scope: Cluster
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
";

/// The kubeadm example switched to calico in `tmp`: its profiles copied (links resolved), a
/// catalog whose `files/` adds `calico/v<VERSION>/crds.yaml` to the repository's, the example's
/// lock as the starting point, docker.io mirrored by `registry`.
fn project(tmp: &Path, registry: &str) {
    let r = repo();
    let cp = Command::new("cp")
        .arg("-rL")
        .arg(r.join("examples/kubeadm/profiles"))
        .arg(tmp.join("profiles"))
        .status()
        .unwrap();
    assert!(cp.success(), "cp -rL the kubeadm example's profiles");
    let catalog = tmp.join("catalog");
    fs::create_dir_all(catalog.join("files/calico").join(format!("v{VERSION}"))).unwrap();
    for f in ["catalog.toml", "images.toml", "pins.toml"] {
        fs::copy(r.join("catalog").join(f), catalog.join(f)).unwrap();
    }
    for e in fs::read_dir(r.join("catalog/files")).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            symlink(e.path(), catalog.join("files").join(e.file_name())).unwrap();
        }
    }
    fs::write(
        catalog.join(format!("files/calico/v{VERSION}/crds.yaml")),
        CRDS,
    )
    .unwrap();
    fs::copy(r.join("examples/kubeadm/kiln.lock"), tmp.join("kiln.lock")).unwrap();

    let mut text = fs::read_to_string(r.join("examples/kubeadm/cluster.toml")).unwrap();
    for (needle, with) in [
        (
            "image-sources = [\"assemble\"]\n".to_string(),
            "image-sources = [\"assemble\", \"registry\"]\noverlays = [\"calico\"]\n".to_string(),
        ),
        (
            "\"../../overlays\"".into(),
            format!("\"{}\"", r.join("overlays").display()),
        ),
        ("\"../../catalog\"".into(), "\"catalog\"".into()),
        ("cni = \"flannel\"".into(), "cni = \"calico\"".into()),
        (
            "coredns = \"1.14.3\"\n".into(),
            format!("coredns = \"1.14.3\"\ncalico = \"{VERSION}\"\n"),
        ),
    ] {
        assert!(text.contains(&needle), "examples/kubeadm has no `{needle}`");
        text = text.replace(&needle, &with);
    }
    text.push_str(&format!(
        "\n[registry-mirrors]\n\"docker.io\" = [\"http://{registry}/hub/\"]\n"
    ));
    fs::write(tmp.join("cluster.toml"), text).unwrap();
}

/// `kiln ARGS` in `dir` with only 127.0.0.1 reachable: exit code, stdout, stderr.
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = kiln_local().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn calico_images_are_locked_from_a_registry_and_every_host_running_pods_must_carry_them() {
    let test =
        "calico_images_are_locked_from_a_registry_and_every_host_running_pods_must_carry_them";
    if !have_tools(test, &["docker-registry", "skopeo", "umoci"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let images = build_images(&tmp.path().join("images"));
    let reg = Registry::start(&tmp.path().join("registry"), RegistryAuth::None);
    let dir = tmp.path().join("project");
    fs::create_dir_all(&dir).unwrap();
    project(&dir, &reg.addr);

    // Offline, the lock cannot pin calico's images: it names each and fails (keeping what it
    // could pin).
    let before = fs::read(dir.join("kiln.lock")).unwrap();
    let (code, _, err) = run(&dir, &["lock", "--offline", "cluster.toml"]);
    assert_eq!(code, Some(1), "kiln lock --offline: {err}");
    assert!(
        err.contains("3 image(s) still need a look-up on a connected machine"),
        "{err}"
    );
    for i in IMAGES {
        let r = format!("docker.io/calico/{i}:v{VERSION}");
        assert!(err.contains(&r), "no {r} in:\n{err}");
    }
    assert!(!fs::read_to_string(dir.join("kiln.lock"))
        .unwrap()
        .contains("docker.io/calico/"));

    // Through the mirror: each image pinned at the digest the registry serves, the CRDs at the
    // file's sha256, the rest of the example's lock kept.
    let mut served = Vec::new();
    for (i, tag) in IMAGES.iter().zip(["a", "b", "a"]) {
        let at = format!("{}/hub/calico/{i}:v{VERSION}", reg.addr);
        push(&images, tag, &at, &[]);
        served.push((
            format!("docker.io/calico/{i}:v{VERSION}"),
            remote_digest(&at),
        ));
    }
    let (code, _, err) = run(&dir, &["lock", "cluster.toml"]);
    assert_eq!(code, Some(0), "kiln lock: {err}");
    let lock: toml::Table = fs::read_to_string(dir.join("kiln.lock"))
        .unwrap()
        .parse()
        .unwrap();
    for (reference, digest) in &served {
        let entry = lock["image"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["reference"].as_str() == Some(reference))
            .unwrap_or_else(|| panic!("{reference} not locked"));
        assert_eq!(entry["manifest-digest"].as_str(), Some(digest.as_str()));
    }
    let crds = lock["artifact"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"].as_str() == Some("calico-crds"))
        .expect("calico-crds locked");
    let sha = kiln_testkit::sha(CRDS.as_bytes());
    assert!(
        crds.to_string().contains(&sha),
        "calico-crds pinned at {sha}: {crds}"
    );
    // Of the example's artifacts, only those of the flannel images are no longer needed.
    let names = |t: &toml::Table| -> std::collections::BTreeSet<String> {
        t["artifact"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let old: toml::Table = String::from_utf8(before).unwrap().parse().unwrap();
    let (old, new) = (names(&old), names(&lock));
    assert_eq!(
        new.difference(&old).collect::<Vec<_>>(),
        ["calico-crds"],
        "artifacts added"
    );
    assert_eq!(
        old.difference(&new).collect::<Vec<_>>(),
        ["busybox", "cni-flannel", "flanneld"],
        "artifacts dropped"
    );

    // The images every host running pods carries, from the registry at those digests.
    let (code, out, err) = run(&dir, &["images", "--json", "cluster.toml"]);
    assert_eq!(code, Some(0), "kiln images: {err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    for (reference, digest) in &served {
        let rows: Vec<_> = listed
            .iter()
            .filter(|r| r["image"].as_str() == Some(reference))
            .map(|r| {
                (
                    r["bundle"].as_str(),
                    r["source"].as_str(),
                    r["digest"].as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [(
                Some("kubeadm-debian12"),
                Some("registry"),
                Some(digest.as_str())
            )],
            "{reference}"
        );
    }

    // The rendered manifest runs exactly those images, from each pod host's own bundles;
    // the add-on service applies the CRDs first.
    let rendered = tmp.path().join("rendered");
    let (code, _, err) = run(
        &dir,
        &[
            "render",
            "cluster.toml",
            "--out",
            &rendered.to_string_lossy(),
        ],
    );
    assert_eq!(code, Some(0), "kiln render: {err}");
    let master = rendered.join("master-debian12/rootfs");
    let cni = fs::read_to_string(master.join("etc/kubernetes/addons/20-cni.yaml")).unwrap();
    let expected: Vec<String> = served.iter().map(|(r, _)| r.clone()).collect();
    let mut ran: Vec<String> = cni
        .lines()
        .filter_map(|l| l.trim().strip_prefix("image: "))
        .map(str::to_string)
        .collect();
    ran.sort();
    ran.dedup();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(ran, want);
    assert!(cni.contains("value: \"cidr=10.79.0.0/24\""), "{cni}");
    assert!(cni.contains("value: \"10.244.0.0/16\""), "{cni}");
    let unit = fs::read_to_string(master.join("etc/systemd/system/kiln-addons.service")).unwrap();
    let crds_at = unit.find("-f /etc/kubernetes/calico/crds.yaml").unwrap();
    assert!(crds_at < unit.find("-f /etc/kubernetes/addons/").unwrap());
    assert!(unit.contains("wait --for=condition=Established"));
    // The CRDs go to the masters only, from the calico overlay.
    let (code, out, err) = run(&dir, &["plan", "--json", "cluster.toml"]);
    assert_eq!(code, Some(0), "kiln plan: {err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let with_crds: Vec<&str> = plan["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["files"].as_array().unwrap().iter().any(|f| {
                f["path"] == "/etc/kubernetes/calico/crds.yaml"
                    && f.to_string().contains("calico-crds")
            })
        })
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(with_crds, ["master-debian12"]);

    // Completeness: a host with a container runtime (where calico's pods run) without
    // calico/node, or with it under another tag, or a master without the CRDs, is refused at
    // plan time, before anything is fetched, naming each host; nothing is written.
    let profile = dir.join("profiles/kubeadm/profile.toml");
    let text = fs::read_to_string(&profile).unwrap();
    let line = "    \"{{#if (eq network.cni \\\"calico\\\")}}docker.io/calico/node:v{{versions.calico}}{{/if}}\",\n";
    assert!(text.contains(line), "{text}");
    let other = line.replace("v{{versions.calico}}", "v3.31.4");
    for edit in ["", other.as_str()] {
        fs::write(&profile, text.replace(line, edit)).unwrap();
        let state = walk(&dir);
        let (code, _, err) = run(&dir, &["build", "--offline", "cluster.toml"]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("the build is incomplete"), "{err}");
        for host in ["master01", "node01", "node02"] {
            let want = format!(
                "{host}: image docker.io/calico/node:v{VERSION} named at /etc/kubernetes/addons/20-cni.yaml:"
            );
            assert!(err.contains(&want), "no `{want}` in:\n{err}");
        }
        assert_eq!(walk(&dir), state, "kiln build wrote files");
    }
    fs::write(&profile, text).unwrap();

    let cluster = fs::read_to_string(dir.join("cluster.toml")).unwrap();
    fs::write(
        dir.join("cluster.toml"),
        cluster.replace("overlays = [\"calico\"]\n", ""),
    )
    .unwrap();
    let state = walk(&dir);
    let (code, _, err) = run(&dir, &["plan", "cluster.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("master01: /etc/systemd/system/kiln-addons.service (in master-debian12) refers to /etc/kubernetes/calico/crds.yaml"),
        "{err}"
    );
    assert_eq!(walk(&dir), state, "kiln plan wrote files");
}
