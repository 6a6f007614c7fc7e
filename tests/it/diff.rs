//! `kiln diff`: the lab built with one kind of change at a time and compared with its base
//! build, through the binary (human and JSON) and through the library; refused inputs.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_engine::diff::{Change, Diff, UnitAction};
use serde_json::Value;

use crate::common::{copy_tree, kiln, repo};

/// The lab in a temp folder: its own copies of profiles, catalog, lock and PKI state, so one
/// scenario can change any of them; artifacts from the set-up's vendor store.
pub(crate) struct Lab {
    tmp: tempfile::TempDir,
}

impl Lab {
    /// Writes the base project into `<tmp>/base`.
    pub(crate) fn new() -> Lab {
        let lab_lock = fs::read_to_string(repo().join("examples/lab/kiln.lock")).unwrap();
        let store = repo().join("examples/lab/vendor/sha256");
        let filled = lab_lock
            .lines()
            .filter_map(|l| l.strip_prefix("sha256 = \""))
            .all(|s| store.join(&s[..64]).is_file());
        assert!(
            filled,
            "examples/lab/vendor is not filled: run the set-up (README)"
        );
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        copy_tree(&repo().join("profiles"), &base.join("profiles"));
        fs::create_dir_all(base.join("catalog")).unwrap();
        for f in ["catalog.toml", "images.toml", "pins.toml"] {
            fs::copy(repo().join("catalog").join(f), base.join("catalog").join(f)).unwrap();
        }
        fs::write(base.join("kiln.lock"), lab_lock).unwrap();
        let r = repo();
        let text = fs::read_to_string(r.join("examples/lab/cluster.toml"))
            .unwrap()
            .replace("profiles = \"../../profiles\"\n", "")
            .replace("catalog = \"../../catalog\"\n", "")
            .replace("\"../../", &format!("\"{}/", r.display()))
            .replace(
                "[paths]\n",
                &format!(
                    "[paths]\nvendor = \"{}/examples/lab/vendor\"\n",
                    r.display()
                ),
            );
        fs::write(base.join("cluster.toml"), text).unwrap();
        Lab { tmp }
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// Builds project `name` into `<tmp>/<name>/out/lab`.
    pub(crate) fn build(&self, name: &str) -> PathBuf {
        let dir = self.dir(name);
        kiln()
            .current_dir(&dir)
            .args(["build", "--offline", "--seed", "none", "cluster.toml"])
            .assert()
            .success();
        dir.join("out/lab")
    }

    /// A copy of the base project (with the base build's PKI state, so nothing is reissued
    /// unless the change asks for it), changed by `edit`, then built.
    fn variant(&self, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
        self.prepare(name, edit);
        self.build(name)
    }

    /// The copy of the base project `variant` builds, changed by `edit`, not built.
    pub(crate) fn prepare(&self, name: &str, edit: impl FnOnce(&Path)) -> PathBuf {
        let (base, dir) = (self.dir("base"), self.dir(name));
        for sub in ["profiles", "catalog", "pki"] {
            copy_tree(&base.join(sub), &dir.join(sub));
        }
        for f in ["cluster.toml", "kiln.lock"] {
            fs::copy(base.join(f), dir.join(f)).unwrap();
        }
        edit(&dir);
        dir
    }
}

pub(crate) fn replace_in(file: &Path, from: &str, to: &str) {
    let t = fs::read_to_string(file).unwrap();
    assert!(t.contains(from), "{} has no {from:?}", file.display());
    fs::write(file, t.replacen(from, to, 1)).unwrap();
}

/// `kiln diff` with `args`: exit code, stdout, stderr.
fn diff(args: &[&Path], json: bool) -> (i32, String, String) {
    let mut c = kiln();
    c.arg("diff");
    if json {
        c.arg("--json");
    }
    let out = c.args(args).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// `kiln diff --plan`: exit code, stdout, stderr.
fn diff_plan(old: &Path, new: &Path) -> (i32, String, String) {
    let out = kiln()
        .arg("diff")
        .arg("--plan")
        .arg(old)
        .arg(new)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn build_id(out: &Path) -> String {
    let m: Value = serde_json::from_slice(&fs::read(out.join("MANIFEST.json")).unwrap()).unwrap();
    m["build-id"].as_str().unwrap().to_owned()
}

/// The human summary with what differs from run to run replaced: build ids, certificate
/// serials and the sizes of keys and certificates (the PKI state is new in every run), and
/// bundle file digests (they cover install.sh, which other changes touch).
fn stable(text: &str, old: &Path, new: &Path, json: &Value) -> String {
    let mut t: String = text
        .lines()
        .map(
            |l| match l.strip_prefix("  ").and_then(|b| b.split_once("  ")) {
                Some((path, _)) if path.ends_with(".key") || path.ends_with(".crt") => {
                    format!("  {path}  <size>\n")
                }
                _ => format!("{l}\n"),
            },
        )
        .collect();
    t = t
        .replace(&build_id(old)[..12], "<old build>")
        .replace(&build_id(new)[..12], "<new build>");
    for h in json["hosts"].as_array().unwrap() {
        for c in h["certificates"].as_array().unwrap() {
            for side in ["old", "new"] {
                if let Some(s) = c[side]["serial"].as_str() {
                    t = t.replace(s, "<serial>");
                }
            }
        }
    }
    // `bundles/<id>-<16 hex>.tar.gz`
    let mut out = String::new();
    for word in t.split_inclusive(' ') {
        match word.trim_end().strip_suffix(".tar.gz") {
            Some(stem) if stem.len() > 17 && stem.as_bytes()[stem.len() - 17] == b'-' => {
                out.push_str(&stem[..stem.len() - 16]);
                out.push_str("<digest>.tar.gz");
                out.push_str(&word[word.trim_end().len()..]);
            }
            _ => out.push_str(word),
        }
    }
    out
}

/// Runs both forms, checks they agree on the exit code, and returns (code, stable text, JSON).
fn both(old: &Path, new: &Path) -> (i32, String, Value) {
    let (code, text, err) = diff(&[old, new], false);
    assert!(err.is_empty(), "{err}");
    let (jcode, json, _) = diff(&[old, new], true);
    assert_eq!(code, jcode);
    let json: Value = serde_json::from_str(&json).unwrap();
    (code, stable(&text, old, new, &json), json)
}

#[test]
fn diff_of_the_lab_reports_each_kind_of_change_exactly() {
    let lab = Lab::new();
    let base = lab.build("base");

    // Identical: the folder and a copy of it.
    let copy = lab.dir("copy/lab");
    copy_tree(&base, &copy);
    let (code, text, json) = both(&base, &copy);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        text,
        "lab: no differences (build <old build>, generation 1)\n"
    );
    assert_eq!(json["identical"], true);
    assert_eq!(json["schema"], "kiln-diff/1");

    // A template, a package pin and an image.
    let changed = lab.variant("changed", |d| {
        replace_in(
            &d.join("profiles/etcd/etcd.service.hbs"),
            "RestartSec=5",
            "RestartSec=10",
        );
        let lock = d.join("kiln.lock");
        replace_in(
            &lock,
            "name = \"nginx\"\nversion = \"1.22.1-9+deb12u12\"",
            "name = \"nginx\"\nversion = \"1.22.1-9+deb12u13\"",
        );
        replace_in(
            &lock,
            "nginx/nginx_1.22.1-9+deb12u12_amd64.deb",
            "nginx/nginx_1.22.1-9+deb12u13_amd64.deb",
        );
        replace_in(
            &d.join("profiles/lb/profile.toml"),
            "dest = \"/etc/keepalived/check-nginx.sh\"\nmode = \"0755\"",
            "dest = \"/etc/keepalived/check-nginx.sh\"\nmode = \"0750\"",
        );
        replace_in(
            &d.join("catalog/images.toml"),
            "pause image assembled by kiln from catatonit",
            "pause image assembled by kiln from catatonit, generation 2",
        );
    });
    let (code, text, json) = both(&base, &changed);
    assert_eq!(code, 1);
    insta::assert_snapshot!("diff_lab_template_package_image", text);
    // The library gives the same answer, typed.
    let d: Diff = kiln_engine::diff::diff(&base, &changed).unwrap();
    assert!(!d.identical);
    let ids: Vec<&str> = d.bundles.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, ["etcd-debian12", "lb-debian12", "runtime-debian12"]);
    let etcd = &d.bundles[0];
    assert_eq!(etcd.files.len(), 1);
    assert_eq!(etcd.files[0].path, "rootfs/etc/systemd/system/etcd.service");
    assert_eq!(etcd.files[0].change, Change::Changed);
    let (o, n) = (
        etcd.files[0].old.as_ref().unwrap(),
        etcd.files[0].new.as_ref().unwrap(),
    );
    assert_eq!(n.size, o.size + 1);
    assert_eq!(etcd.units[0].unit, "etcd.service");
    assert_eq!(etcd.units[0].action, UnitAction::Restart);
    assert_eq!(etcd.units[0].because[0].how, "unit-file");
    let lb = &d.bundles[1];
    let check = lb
        .files
        .iter()
        .find(|f| f.path.ends_with("check-nginx.sh"))
        .unwrap();
    assert_eq!(check.change, Change::Changed);
    assert_eq!(check.old.as_ref().unwrap().mode, "0755");
    assert_eq!(check.new.as_ref().unwrap().mode, "0750");
    assert_eq!(
        check.old.as_ref().unwrap().sha256,
        check.new.as_ref().unwrap().sha256
    );
    assert_eq!(lb.packages.len(), 1);
    assert_eq!(lb.packages[0].name, "nginx");
    assert_eq!(
        lb.packages[0].old_version.as_deref(),
        Some("1.22.1-9+deb12u12")
    );
    assert_eq!(
        lb.packages[0].new_version.as_deref(),
        Some("1.22.1-9+deb12u13")
    );
    let runtime = &d.bundles[2];
    assert_eq!(runtime.images.len(), 1);
    assert_eq!(runtime.images[0].reference, "registry.k8s.io/pause:3.10.1");
    assert_ne!(runtime.images[0].old_digest, runtime.images[0].new_digest);
    assert_eq!(d.unchanged_bundles, ["common-debian12"]);
    assert_eq!(json["hosts"].as_array().unwrap().len(), 6);

    // Only the generation.
    let generation = lab.variant("generation", |d| {
        replace_in(
            &d.join("cluster.toml"),
            "name = \"lab\"\n",
            "name = \"lab\"\ngeneration = 2\n",
        );
    });
    let (code, text, json) = both(&base, &generation);
    assert_eq!(code, 1);
    insta::assert_snapshot!("diff_lab_generation", text);
    assert_eq!(json["old"]["generation"], 1);
    assert_eq!(json["new"]["generation"], 2);
    assert_eq!(json["unchanged-hosts"].as_array().unwrap().len(), 6);

    // An added etcd member: its own certificates, and every member's etcd.env names it.
    let host = lab.variant("host", |d| {
        let t = fs::read_to_string(d.join("cluster.toml")).unwrap();
        let t = t.replace(
            "[[host]]\nname = \"runtime1\"",
            "[[host]]\nname = \"etcd4\"\nip = \"10.77.0.14\"\nmac = \"52:54:00:77:00:14\"\nroles = [\"etcd\"]\n\n[[host]]\nname = \"runtime1\"",
        );
        fs::write(d.join("cluster.toml"), t).unwrap();
    });
    let (code, text, json) = both(&base, &host);
    assert_eq!(code, 1);
    insta::assert_snapshot!("diff_lab_added_host", text);
    let etcd4 = json["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "etcd4")
        .unwrap();
    assert_eq!(etcd4["change"], "added");
    assert_eq!(etcd4["certificates"].as_array().unwrap().len(), 4);

    // The upgrade plan of that change: etcd members one at a time, then lb, then the rest.
    let (code, plan, err) = diff_plan(&base, &host);
    assert_eq!(code, 1, "{err}");
    let plan = plan
        .replace(&build_id(&base)[..12], "<old build>")
        .replace(&build_id(&host)[..12], "<new build>");
    insta::assert_snapshot!("diff_plan_lab_added_host", plan);
    let p = kiln_engine::diff::upgrade_plan(&base, &host).unwrap();
    let steps: Vec<(Vec<String>, Option<String>)> = p
        .steps
        .iter()
        .map(|s| (s.hosts.clone(), s.one_at_a_time.clone()))
        .collect();
    let one = |h: &str, r: &str| (vec![h.to_owned()], Some(r.to_owned()));
    assert_eq!(
        steps,
        [
            one("etcd1", "etcd"),
            one("etcd2", "etcd"),
            one("etcd3", "etcd"),
            one("etcd4", "etcd"),
            one("lb1", "lb"),
            one("lb2", "lb"),
            (vec!["runtime1".to_owned()], None),
        ]
    );
    let etcd4 = p.hosts.iter().find(|h| h.host == "etcd4").unwrap();
    let units: Vec<&str> = etcd4.units.iter().map(|u| u.unit.as_str()).collect();
    // install.sh's order: the common bundle's units, then etcd's.
    assert_eq!(
        units,
        [
            "chrony.service",
            "kiln-firewall-reload.service",
            "etcd.service"
        ]
    );
    let (code, _, _) = diff_plan(&base, &copy);
    assert_eq!(code, 0);

    // Certificates reissued: every leaf falls in the renewal window.
    let certs = lab.variant("certs", |d| {
        let t = fs::read_to_string(d.join("cluster.toml")).unwrap();
        fs::write(
            d.join("cluster.toml"),
            format!("{t}\n[pki]\nleaf-days = 1000\nrenew-days = 900\n"),
        )
        .unwrap();
    });
    let (code, text, json) = both(&base, &certs);
    assert_eq!(code, 1);
    insta::assert_snapshot!("diff_lab_certificates", text);
    for h in json["hosts"].as_array().unwrap() {
        let reissued = h["certificates"].as_array().unwrap();
        assert_eq!(reissued.len(), 3, "{h}");
        for c in reissued {
            assert_eq!(c["change"], "changed");
            assert_ne!(c["old"]["serial"], c["new"]["serial"]);
            assert_ne!(
                c["old"]["sha256-fingerprint"],
                c["new"]["sha256-fingerprint"]
            );
            assert_eq!(c["old"]["subject"], c["new"]["subject"]);
        }
    }

    // Refused: another cluster's build, a tampered MANIFEST.json, not an out folder.
    let other = lab.variant("other", |d| {
        replace_in(
            &d.join("cluster.toml"),
            "name = \"lab\"\n",
            "name = \"lab2\"\n",
        );
    });
    let other = other.parent().unwrap().join("lab2");
    let (code, _, err) = diff(&[&base, &other], false);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{} is a build of cluster \"lab\" but {} of cluster \"lab2\"",
            base.display(),
            other.display()
        )),
        "{err}"
    );

    let tampered = lab.dir("tampered/lab");
    copy_tree(&base, &tampered);
    replace_in(
        &tampered.join("MANIFEST.json"),
        "\"generation\": 1",
        "\"generation\": 3",
    );
    let (code, out, err) = diff(&[&base, &tampered], true);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains(&format!("{}: failed verification", tampered.display())),
        "{err}"
    );
    assert!(err.contains("MANIFEST.json"), "{err}");

    let parent = base.parent().unwrap();
    let (code, _, err) = diff(&[parent, &base], false);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}: not an out folder: it has no MANIFEST.json",
            parent.display()
        )),
        "{err}"
    );
    let missing = lab.dir("nowhere/lab");
    let (code, _, err) = diff(&[&base, &missing], false);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("{}: not a folder", missing.display())),
        "{err}"
    );
}

#[test]
fn diff_compares_a_pulled_folder_by_its_bundles() {
    let test = "diff_compares_a_pulled_folder_by_its_bundles";
    if !kiln_testkit::have_tools(test, &["docker-registry"]) {
        return;
    }
    let fx = crate::common::Fixture::new(false);
    fx.lock();
    let build = || {
        kiln()
            .current_dir(&fx.dir)
            .args(["build", "--seed", "none", "cluster.toml"])
            .assert()
            .success();
    };
    build();
    let built = fx.dir.join("out/lab");
    let reg =
        kiln_testkit::Registry::start(&fx.dir.join("registry"), kiln_testkit::RegistryAuth::None);
    let target = format!("http://{}/kiln/lab", reg.addr);
    kiln()
        .arg("push")
        .arg(&built)
        .arg(&target)
        .assert()
        .success();
    let pulled_out = fx.dir.join("pulled");
    kiln()
        .arg("pull")
        .arg(&target)
        .arg(&pulled_out)
        .assert()
        .success();
    let pulled = pulled_out.join("lab");

    // The same build, pulled: nothing differs.
    let (code, text, err) = diff(&[&pulled, &built], false);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains(": no differences"), "{text}");

    // A rebuilt etcd bundle: the pulled side has no hosts/, so hosts are compared by bundles.
    let old_built = fx.dir.join("old-built");
    copy_tree(&built, &old_built);
    replace_in(
        &fx.dir.join("profiles/etcd/etcd.service.hbs"),
        "RestartSec=5",
        "RestartSec=7",
    );
    build();
    let (code, json, err) = diff(&[&pulled, &built], true);
    assert_eq!(code, 1, "{err}");
    let d: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(d["old"]["pulled"], true);
    assert_eq!(d["new"]["pulled"], false);
    let bundles: Vec<&str> = d["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(bundles, ["etcd-debian12"]);
    let hosts: Vec<(&str, &Value)> = d["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), &h["secrets-compared"]))
        .collect();
    let f = Value::Bool(false);
    assert_eq!(hosts, [("etcd1", &f), ("etcd2", &f), ("etcd3", &f)]);
    // Against the build folder it was pulled from, the same bundles differ, and host files too.
    let (code, text, _) = diff(&[&old_built, &built], false);
    assert_eq!(code, 1);
    let (_, pulled_text, _) = diff(&[&pulled, &built], false);
    assert!(
        pulled_text.contains("(a pulled folder has no hosts/"),
        "{pulled_text}"
    );
    assert!(text.contains("bundle etcd-debian12 (changed;"), "{text}");
}

/// `kiln boot --upgrade-to` plans the upgrade before anything boots: a folder that is not a
/// build of the cluster is refused naming it, and no guest, run folder or log is made.
#[test]
fn boot_upgrade_to_a_folder_that_is_not_a_build_is_refused_before_booting() {
    let lab = Lab::new();
    let out = lab.build("base");
    let image = lab.dir("guest.qcow2");
    fs::write(&image, "not booted").unwrap();
    let bogus = lab.dir("not-a-build");
    fs::create_dir_all(&bogus).unwrap();
    let before = crate::common::tree_state(&out);
    let o = kiln()
        .current_dir(lab.dir("base"))
        .args(["boot", "cluster.toml", "--image"])
        .arg(&image)
        .arg("--upgrade-to")
        .arg(&bogus)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "planning the upgrade from out/lab to {0}: {0}: not an out folder",
            bogus.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        crate::common::tree_state(&out),
        before,
        "the out folder changed"
    );
    assert!(!out.join("boot").exists());
}
