//! `kiln build --delta-from`: the lab built again with a changed template and a removed file
//! writes a delta for exactly the bundles that changed, each holding only what changed, the
//! removal list and the new MANIFEST, pinned in the hosts' BUNDLES; a base that is not an out
//! folder, or is a build of another cluster, is refused before anything is written; deltas go
//! through push and pull, and a pulled folder is a base.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command as Process;

use kiln_bundle::contract::{self, DELTA, DELTA_MANIFEST, DELTA_REMOVED};
use kiln_bundle::{BuildManifest, ManifestLine};
use kiln_testkit::{have_tools, Registry, RegistryAuth};

use crate::common::{copy_tree, kiln, tree_state, Fixture};
use crate::diff::{replace_in, Lab};

fn manifest(out: &Path) -> BuildManifest {
    kiln_bundle::read_build_manifest(out).expect("MANIFEST.json")
}

/// Every member of the archive at `path`, read by the strict reader.
fn members(path: &Path) -> BTreeMap<String, Vec<u8>> {
    kiln_bundle::read_archive(path, &|_| true).unwrap().members
}

fn manifest_text(lines: &[ManifestLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{} {:04o} {} {}\n", l.sha256, l.mode, l.size, l.path))
        .collect()
}

/// `kiln build --delta-from base` in project `dir`: exit code and stderr.
fn build_from(dir: &Path, base: &Path) -> (Option<i32>, String) {
    let out = kiln()
        .current_dir(dir)
        .args([
            "build",
            "--offline",
            "--seed",
            "none",
            "cluster.toml",
            "--delta-from",
        ])
        .arg(base)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn a_template_change_and_a_removed_file_give_deltas_of_exactly_those() {
    let lab = Lab::new();
    let base = lab.build("base");
    let dir = lab.prepare("changed", |d| {
        replace_in(
            &d.join("profiles/etcd/etcd.service.hbs"),
            "RestartSec=5",
            "RestartSec=10",
        );
        replace_in(
            &d.join("profiles/lb/profile.toml"),
            "[[template]]\nsrc = \"nginx-restart.conf.hbs\"\ndest = \"/etc/systemd/system/nginx.service.d/kiln.conf\"\n",
            "",
        );
    });
    let (code, err) = build_from(&dir, &base);
    assert_eq!(code, Some(0), "{err}");
    let out = dir.join("out/lab");
    let (old, new) = (manifest(&base), manifest(&out));
    // Only the two bundles that changed have a delta; the others are equal on both sides.
    let ids: Vec<&str> = new.deltas.keys().map(String::as_str).collect();
    assert_eq!(ids, ["etcd-debian12", "lb-debian12"]);
    for (id, b) in &new.bundles {
        let same = old.outputs[&old.bundles[id].file] == new.outputs[&b.file];
        assert_eq!(same, !new.deltas.contains_key(id), "{id}");
    }
    assert_eq!(new.inputs["(delta base)"], old.build_id);
    // The deltas are outputs like the others: kiln verify checks them.
    kiln().arg("verify").arg(&out).assert().success();

    let etcd = &new.deltas["etcd-debian12"];
    let base_etcd = &old.bundles["etcd-debian12"].file;
    assert_eq!(etcd.base_sha256, old.outputs[base_etcd].sha256);
    assert_eq!(etcd.base_file, base_etcd.trim_start_matches("bundles/"));
    let m = members(&out.join(&etcd.file));
    let names: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            DELTA,
            DELTA_MANIFEST,
            DELTA_REMOVED,
            "tree/rootfs/etc/systemd/system/etcd.service"
        ]
    );
    assert_eq!(m[DELTA_REMOVED], b"");
    assert!(
        String::from_utf8_lossy(&m["tree/rootfs/etc/systemd/system/etcd.service"])
            .contains("RestartSec=10")
    );
    let full = kiln_bundle::read_archive(&out.join(&new.bundles["etcd-debian12"].file), &|_| false)
        .unwrap();
    assert_eq!(
        String::from_utf8(m[DELTA_MANIFEST].clone()).unwrap(),
        manifest_text(&full.manifest)
    );
    let meta = String::from_utf8(m[DELTA].clone()).unwrap();
    assert!(meta.contains(&format!("KILN_DELTA_FOR_SHA256={}\n", full.report.sha256)));
    let full_size = new.outputs[&new.bundles["etcd-debian12"].file].size;
    assert!(
        new.outputs[&etcd.file].size * 20 < full_size,
        "a delta is small"
    );

    let lb = members(&out.join(&new.deltas["lb-debian12"].file));
    assert_eq!(
        String::from_utf8(lb[DELTA_REMOVED].clone()).unwrap(),
        "rootfs/etc/systemd/system/nginx.service.d/kiln.conf\n"
    );
    assert!(
        !lb.keys().any(|k| k.starts_with("tree/rootfs/")),
        "{:?}",
        lb.keys()
    );

    // Each host's BUNDLES pins the deltas of its own bundles to their bases.
    for (host, want) in [
        ("etcd1", vec!["etcd-debian12"]),
        ("lb1", vec!["lb-debian12"]),
        ("runtime1", vec![]),
    ] {
        let secrets = out.join(&new.hosts[host].secrets);
        let listed = kiln_bundle::read_archive(&secrets, &|l| l.path == contract::BUNDLES).unwrap();
        let text = &listed.members[contract::BUNDLES];
        let deltas = contract::parse_deltas(text).unwrap();
        let got: Vec<&str> = deltas
            .iter()
            .map(|d| {
                new.deltas
                    .iter()
                    .find(|(_, i)| i.file.ends_with(&d.file))
                    .map(|(id, _)| id.as_str())
                    .unwrap()
            })
            .collect();
        assert_eq!(got, want, "{host}");
        for d in &deltas {
            let id = got[0];
            assert_eq!(d.base_sha256, new.deltas[id].base_sha256);
            assert_eq!(d.for_sha256, new.outputs[&new.bundles[id].file].sha256);
            assert_eq!(d.sha256, new.outputs[&new.deltas[id].file].sha256);
        }
        // The full bundles' lines are still those an install.sh without deltas reads.
        assert_eq!(
            contract::parse_bundles(text).unwrap().len(),
            new.hosts[host].bundles.len()
        );
    }
}

#[test]
fn a_base_that_is_not_an_out_folder_or_of_another_cluster_is_refused_before_any_write() {
    let lab = Lab::new();
    let other = lab.prepare("other", |d| {
        replace_in(&d.join("cluster.toml"), "name = \"lab\"", "name = \"lab2\"");
    });
    let other_out = {
        kiln()
            .current_dir(&other)
            .args(["build", "--offline", "--seed", "none", "cluster.toml"])
            .assert()
            .success();
        other.join("out/lab2")
    };
    let dir = lab.prepare("refused", |_| {});
    let not_out = lab.dir("empty");
    fs::create_dir_all(&not_out).unwrap();
    let before = tree_state(&dir);
    let (code, err) = build_from(&dir, &not_out);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "--delta-from {}: not a base for deltas",
            not_out.display()
        )) && err.contains("not an out folder: it has no MANIFEST.json"),
        "{err}"
    );
    let (code, err) = build_from(&dir, &other_out);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "--delta-from {}: a build of cluster \"lab2\", but cluster.toml builds \"lab\"",
            other_out.display()
        )),
        "{err}"
    );
    // Nothing was written: no out folder, no PKI change.
    assert_eq!(tree_state(&dir), before);
    assert!(!dir.join("out").exists());
}

#[test]
fn a_build_with_deltas_goes_through_push_and_pull_and_the_pulled_folder_is_a_base() {
    let test = "a_build_with_deltas_goes_through_push_and_pull_and_the_pulled_folder_is_a_base";
    if !have_tools(test, &["docker-registry", "curl"]) {
        return;
    }
    let fx = Fixture::new(false);
    fx.lock();
    let build = |args: &[&str]| {
        kiln()
            .current_dir(&fx.dir)
            .args(["build", "--seed", "none", "cluster.toml"])
            .args(args)
            .assert()
            .success();
    };
    build(&[]);
    let base = fx.dir.join("base/lab");
    copy_tree(&fx.dir.join("out/lab"), &base);
    let unit = fx.dir.join("profiles/etcd/etcd.service.hbs");
    replace_in(&unit, "RestartSec=5", "RestartSec=10");
    build(&["--delta-from", &base.display().to_string()]);
    let out = fx.dir.join("out/lab");
    let m = manifest(&out);
    let delta = &m.deltas["etcd-debian12"];

    // Pushed like a bundle (a host fetches it by digest), pulled back, verified.
    let reg = Registry::start(&fx.dir.join("registry"), RegistryAuth::None);
    let target = format!("http://{}/kiln/lab", reg.addr);
    kiln()
        .args(["push"])
        .arg(&out)
        .arg(&target)
        .assert()
        .success();
    let sha = &m.outputs[&delta.file].sha256;
    let blob = Process::new("curl")
        .args([
            "-fsS",
            &format!("http://{}/v2/kiln/lab/blobs/sha256:{sha}", reg.addr),
        ])
        .output()
        .unwrap();
    assert!(blob.status.success());
    assert_eq!(blob.stdout, fs::read(out.join(&delta.file)).unwrap());
    let pulled = fx.dir.join("pulled");
    kiln()
        .arg("pull")
        .arg(&target)
        .arg(&pulled)
        .assert()
        .success();
    kiln()
        .arg("verify")
        .arg(pulled.join("lab"))
        .assert()
        .success();

    // The pulled folder serves as the next build's base.
    replace_in(&unit, "RestartSec=10", "RestartSec=20");
    build(&["--delta-from", &pulled.join("lab").display().to_string()]);
    let next = manifest(&out);
    assert_eq!(next.deltas["etcd-debian12"].base_build_id, m.build_id);
    assert_eq!(
        next.deltas["etcd-debian12"].base_sha256,
        m.outputs[&m.bundles["etcd-debian12"].file].sha256
    );
}
