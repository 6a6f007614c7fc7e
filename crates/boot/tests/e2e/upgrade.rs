//! Day 2 on the lab: the hosts booted at generation 1 go to generation 2 (a changed etcd
//! template, a package more on the lb hosts, a changed site file on every host) in `kiln diff
//! --plan`'s rolling order, each shut down and started again on its own disk with its new seed;
//! then a generation 3 whose etcd no longer answers its health check is rolled back to 2 by
//! install.sh on the first host, and the upgrade stops there.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_boot::{upgrade, BootError, BootOptions, FailReason, Kept, UpgradeOptions};

use crate::env::kiln_bin;
use crate::lab::{copy_tree, find, kiln, runs, Problems};

/// The lab's inputs for generation `generation`, beside the generation 1 `lab` (same folder,
/// so the same PKI state and signing key): the profiles and overlays of `from` copied and
/// changed by `change`, the lock relocked offline from apt's local index, and a vendor store holding the
/// lab's and the k8s example's files (hard links), where the k8s example's `conntrack` is.
fn generation(
    lab: &Path,
    generation: u32,
    from: (&Path, &Path),
    extra_seeds: &str,
    change: &dyn Fn(&Path),
) -> PathBuf {
    let dir = lab.parent().unwrap();
    let inputs = dir.join(format!("gen{generation}"));
    let r = crate::env::repo();
    let (profiles, overlays) = from;
    copy_tree(profiles, &inputs.join("profiles"));
    copy_tree(overlays, &inputs.join("overlays"));
    change(&inputs);
    let vendor = inputs.join("vendor");
    for example in ["lab", "k8s"] {
        // -n: the stores are content-addressed, a file both hold is the same file.
        let from = r.join(format!("examples/{example}/vendor/."));
        let status = Command::new("cp")
            .args(["-a", "-l", "-n"])
            .arg(&from)
            .arg(&vendor)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "cp -al {} {}",
            from.display(),
            vendor.display()
        );
    }
    fs::copy(r.join("examples/lab/kiln.lock"), inputs.join("kiln.lock")).unwrap();
    let text = fs::read_to_string(lab).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "profiles" => format!("profiles = \"{}\"", inputs.join("profiles").display()),
            "overlays" if line.contains('/') => {
                format!("overlays = \"{}\"", inputs.join("overlays").display())
            }
            "vendor" => format!("vendor = \"{}\"", vendor.display()),
            "lock" => format!("lock = \"{}\"", inputs.join("kiln.lock").display()),
            _ => line.to_owned(),
        };
        out.push(line);
    }
    let text = out.join("\n").replacen(
        "overlays = [",
        &format!("generation = {generation}\noverlays = ["),
        1,
    );
    let text = text.replacen("[seeds]\n", &format!("[seeds]\n{extra_seeds}"), 1);
    let cluster = dir.join(format!("gen{generation}.toml"));
    fs::write(&cluster, text).unwrap();
    kiln(&["lock", "--offline"], &cluster);
    cluster
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", file.display());
    fs::write(file, text.replacen(from, to, 1)).unwrap();
}

/// `kiln diff --plan --json old new`: its steps' hosts, then the unchanged hosts.
fn plan_steps(old: &Path, new: &Path) -> (Vec<Vec<String>>, serde_json::Value) {
    let out = Command::new(kiln_bin())
        .args(["diff", "--plan", "--json"])
        .arg(old)
        .arg(new)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "kiln diff --plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| h.as_str().unwrap().to_owned())
            .collect()
    };
    let mut steps: Vec<Vec<String>> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| names(&s["hosts"]))
        .collect();
    steps.push(names(&plan["unchanged-hosts"]));
    steps.retain(|s| !s.is_empty());
    (steps, plan)
}

fn build(cluster: &Path, out: &Path) -> PathBuf {
    let out_arg = out.to_str().unwrap().to_owned();
    kiln(
        &["build", "--offline", "--seed-rerun", "--out", &out_arg],
        cluster,
    );
    out.join("lab")
}

/// Generation 2, rolling: every host upgraded, healthy, the rerun a no-op; then generation 3,
/// rolled back on its first host.
pub(crate) fn day_two(
    lab: &Path,
    gen1: &Path,
    opts: &BootOptions,
    kept: &mut Kept,
    p: &mut Problems,
) {
    let dir = lab.parent().unwrap();
    let repo_profiles = crate::env::repo().join("profiles");
    let gen2 = generation(
        lab,
        2,
        (&repo_profiles, &dir.join("overlays")),
        "",
        &|inputs| {
            edit(
                &inputs.join("profiles/etcd/etcd.env.hbs"),
                "ETCD_SNAPSHOT_COUNT=10000",
                "ETCD_SNAPSHOT_COUNT=5000",
            );
            edit(
                &inputs.join("profiles/lb/profile.toml"),
                "packages = [\"nginx\", \"libnginx-mod-stream\", \"keepalived\"]",
                "packages = [\"nginx\", \"libnginx-mod-stream\", \"keepalived\", \"conntrack\"]",
            );
            let site = inputs.join("overlays/site-example/files/etc/kiln/site.txt");
            let text = fs::read_to_string(&site).unwrap();
            fs::write(&site, format!("{text}Generation 2.\n")).unwrap();
        },
    );
    let out2 = build(&gen2, &dir.join("out2"));
    let (steps, plan) = plan_steps(gen1, &out2);
    eprintln!("generation 2 steps: {steps:?}");
    let want: Vec<Vec<String>> = [
        &["etcd1"][..],
        &["etcd2"],
        &["etcd3"],
        &["lb1"],
        &["lb2"],
        &["runtime1"],
    ]
    .iter()
    .map(|s| s.iter().map(|h| h.to_string()).collect())
    .collect();
    p.check(steps == want, || {
        format!("generation 2's plan: steps {steps:?}, expected {want:?}: {plan}")
    });
    let up = UpgradeOptions {
        name: "gen2".into(),
        ..UpgradeOptions::new(&out2, steps)
    };
    let report = match upgrade(opts, kept, &up, &crate::env::Progress::new()) {
        Ok(r) => r,
        Err(BootError::UpgradeFailed { failure, .. }) => panic!("generation 2: {failure}"),
        Err(e) => panic!("generation 2: {e}"),
    };
    eprintln!("generation 2 rolled out in {:.0?}", report.elapsed);
    let build2 = build_id(&out2);
    for host in report.steps.iter().flatten() {
        crate::lab::check_host(host, p);
        let runs = runs(&host.serial_log);
        let Some(first) = runs.first() else { continue };
        let name = &host.name;
        if let Some(done) = find(first, "done") {
            p.check(
                done.fields().get("generation") == Some(&"2")
                    && done.fields().get("build") == Some(&build2.as_str()),
                || format!("{name}: `{done}`, expected generation=2 build={build2}"),
            );
        }
        let units = find(first, "units")
            .map(|m| m.to_string())
            .unwrap_or_default();
        let packages = find(first, "packages")
            .map(|m| m.to_string())
            .unwrap_or_default();
        if name.starts_with("etcd") {
            // The changed etcd.env restarts etcd, one member at a time: the plan says so, and
            // install.sh restarted units (etcd's, and the common bundle's, whose file changed).
            let planned = plan["hosts"]
                .as_array()
                .and_then(|hosts| hosts.iter().find(|h| h["host"] == name.as_str()))
                .and_then(|h| h["units"].as_array())
                .is_some_and(|units| {
                    units
                        .iter()
                        .any(|u| u["unit"] == "etcd.service" && u["action"] == "restart")
                });
            p.check(planned, || {
                format!("{name}: the plan does not restart etcd.service: {plan}")
            });
            let restarted = find(first, "units")
                .and_then(|m| {
                    m.fields()
                        .get("restarted")
                        .and_then(|n| n.parse::<u32>().ok())
                })
                .unwrap_or(0);
            p.check(restarted >= 1, || {
                format!("{name}: the changed etcd.env did not restart etcd: `{units}`")
            });
        }
        if name.starts_with("lb") {
            // conntrack and its two libraries.
            p.check(packages.contains("installed=3"), || {
                format!("{name}: conntrack was not installed: `{packages}`")
            });
        }
    }

    // Generation 3: etcd stops listening on 127.0.0.1, where its health check asks.
    let (gen2_profiles, gen2_overlays) = (dir.join("gen2/profiles"), dir.join("gen2/overlays"));
    let from = (gen2_profiles.as_path(), gen2_overlays.as_path());
    let gen3 = generation(lab, 3, from, "health-wait-seconds = 60\n", &|inputs| {
        edit(
            &inputs.join("profiles/etcd/etcd.env.hbs"),
            "ETCD_LISTEN_CLIENT_URLS=https://{{host.ip}}:2379,https://127.0.0.1:2379",
            "ETCD_LISTEN_CLIENT_URLS=https://{{host.ip}}:2379",
        );
    });
    let out3 = build(&gen3, &dir.join("out3"));
    let (steps, _) = plan_steps(&out2, &out3);
    eprintln!("generation 3 steps: {steps:?}");
    p.check(
        steps.first().map(Vec::as_slice) == Some(&["etcd1".to_owned()][..]),
        || format!("generation 3's plan starts with {steps:?}, expected etcd1 alone"),
    );
    let up = UpgradeOptions {
        name: "gen3".into(),
        stop_timeout: Duration::from_secs(180),
        ..UpgradeOptions::new(&out3, steps)
    };
    match upgrade(opts, kept, &up, &crate::env::Progress::new()) {
        Ok(_) => p.check(false, || {
            "generation 3 (etcd unhealthy) was not refused".into()
        }),
        Err(BootError::UpgradeFailed {
            step,
            failure,
            report,
        }) => {
            eprintln!("generation 3 stopped as expected: {failure}");
            p.check(step == 1 && failure.host == "etcd1", || {
                format!(
                    "generation 3 failed at step {step} on {}, expected etcd1 in step 1",
                    failure.host
                )
            });
            match &failure.reason {
                FailReason::RolledBack { failed, rollback } => {
                    p.check(failed.step == "health", || {
                        format!("generation 3 failed at `{failed}`, expected the health step")
                    });
                    p.check(
                        rollback.status == kiln_boot::Status::Ok
                            && rollback.fields().get("generation") == Some(&"2")
                            && rollback.fields().get("build") == Some(&build2.as_str()),
                        || {
                            format!(
                                "`{rollback}`: expected `rollback ok generation=2 build={build2}`"
                            )
                        },
                    );
                }
                other => p.check(false, || {
                    format!("generation 3: {other}, expected a rollback")
                }),
            }
            p.check(report.steps.len() == 1, || {
                format!(
                    "generation 3 went on after its failed step: {} steps",
                    report.steps.len()
                )
            });
            let later = crate::env::log_dir("lab").join("etcd2-gen3.log");
            p.check(!later.exists(), || {
                format!(
                    "{} exists: etcd2 was upgraded after etcd1 failed",
                    later.display()
                )
            });
        }
        Err(e) => panic!("generation 3: {e}"),
    }
}

fn build_id(out: &Path) -> String {
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("MANIFEST.json")).unwrap()).unwrap();
    manifest["build-id"]
        .as_str()
        .unwrap_or_else(|| panic!("no build id in {}", out.join("MANIFEST.json").display()))
        .to_owned()
}
