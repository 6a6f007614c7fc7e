//! The lab example end to end: `kiln build` it, boot its four hosts together
//! (3 etcd members, 1 container runtime) on their private link, and check on
//! each serial console that the role came up and that rerunning install.sh
//! changed nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_boot::{boot, BootOptions, HostPhase, Marker};

use crate::env::{expect_boot, guest_image, kiln_bin, log_dir, repo, require_e2e, Progress};

/// install.sh's steps, in the order each run prints them.
const STEPS: [&str; 13] = [
    "verify",
    "list",
    "extract",
    "manifest",
    "preflight",
    "prep",
    "packages",
    "install",
    "images",
    "units",
    "health",
    "state",
    "done",
];

/// The lab's cluster.toml, rewritten so its inputs are read from the
/// checkout and its PKI state lands in `dir` (tests never write into the
/// checkout).
fn lab_in(dir: &Path) -> PathBuf {
    let r = repo();
    let text = fs::read_to_string(r.join("examples/lab/cluster.toml"))
        .unwrap()
        .replace(
            "[paths]\n",
            &format!(
                "[paths]\nvendor = \"{0}/examples/lab/vendor\"\nlock = \"{0}/examples/lab/kiln.lock\"\n",
                r.display()
            ),
        )
        .replace("\"../../", &format!("\"{}/", r.display()));
    let lab = dir.join("cluster.toml");
    fs::write(&lab, text).unwrap();
    lab
}

fn kiln(args: &[&str], lab: &Path) -> String {
    let bin = kiln_bin();
    let out = Command::new(&bin).args(args).arg(lab).output().unwrap();
    assert!(
        out.status.success(),
        "`{} {} {}` failed:\n{}",
        bin.display(),
        args.join(" "),
        lab.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each install run's markers: a run ends at its `done` marker.
fn runs(log: &Path) -> Vec<Vec<Marker>> {
    let text = fs::read_to_string(log).unwrap();
    let mut runs = vec![Vec::new()];
    for line in text.lines() {
        let Some(m) = Marker::parse(&kiln_boot::clean_line(line)) else {
            continue;
        };
        if !STEPS.contains(&m.step.as_str()) {
            continue;
        }
        let done = m.step == "done";
        runs.last_mut().unwrap().push(m);
        if done {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

fn find<'a>(run: &'a [Marker], step: &str) -> Option<&'a Marker> {
    run.iter().find(|m| m.step == step)
}

#[test]
#[ignore = "VM test (about 10 min): run tests/e2e/run.sh"]
fn lab_hosts_reach_their_roles_and_a_rerun_changes_nothing() {
    require_e2e();
    let image = guest_image();
    let tmp = tempfile::tempdir().unwrap();
    let lab = lab_in(tmp.path());
    let help = Command::new(kiln_bin())
        .args(["build", "--help"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--seed-rerun"),
        "`kiln build` has no --seed-rerun: the e2e test needs seeds that run install.sh twice"
    );
    let out_root = tmp.path().join("out");
    let out_arg = out_root.to_str().unwrap().to_owned();
    kiln(
        &["build", "--offline", "--seed-rerun", "--out", &out_arg],
        &lab,
    );
    let out = out_root.join("lab");

    // What the build planned: every etcd member's health covers the whole
    // cluster, and the runtime's images.
    let plan: serde_json::Value = serde_json::from_str(&kiln(&["plan", "--json"], &lab)).unwrap();
    let bundles = plan["bundles"].as_array().unwrap();
    let bundle = |role: &str| {
        bundles
            .iter()
            .find(|b| b["role"] == role)
            .unwrap_or_else(|| panic!("no {role} bundle in the plan"))
    };
    let etcd_health = bundle("etcd")["health"].as_str().unwrap();
    assert!(
        etcd_health.contains("endpoint health --cluster"),
        "{etcd_health}"
    );
    assert!(etcd_health.contains("--cacert="), "{etcd_health}");
    let images: Vec<String> = bundle("runtime")["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();

    let mut opts = BootOptions::new(&out, image);
    opts.timeout = Duration::from_secs(13 * 60);
    opts.log_dir = Some(log_dir("lab"));
    let report = expect_boot(boot(&opts, &Progress::new()));
    assert_eq!(report.hosts.len(), 4);

    let mut problems = Problems::default();
    for host in &report.hosts {
        check_host(host, &mut problems);
    }
    check_runtime_images(report.host("runtime1").unwrap(), &images, &mut problems);
    assert!(
        problems.0.is_empty(),
        "{} problem(s) on the consoles (logs in {}):\n- {}",
        problems.0.len(),
        report.log_dir.display(),
        problems.0.join("\n- ")
    );
}

/// Everything wrong, collected so that one (slow) run reports all of it.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }
}

/// Both install runs printed every step, in order, all `ok`; the first
/// found every role healthy; the second changed nothing.
fn check_host(host: &kiln_boot::HostReport, p: &mut Problems) {
    let name = &host.name;
    p.check(host.phase == HostPhase::Ready, || {
        format!("{name}: {}", host.phase)
    });
    let runs = runs(&host.serial_log);
    if runs.len() != 2 {
        p.check(false, || {
            format!(
                "{name}: {} install runs, expected 2 (--seed-rerun)",
                runs.len()
            )
        });
        return;
    }
    for (i, run) in runs.iter().enumerate() {
        let steps: Vec<&str> = run.iter().map(|m| m.step.as_str()).collect();
        p.check(steps == STEPS, || {
            format!("{name} run {}: steps {steps:?}, expected {STEPS:?}", i + 1)
        });
        for m in run.iter().filter(|m| m.status != kiln_boot::Status::Ok) {
            p.check(false, || format!("{name} run {}: `{m}`", i + 1));
        }
    }
    let (first, second) = (&runs[0], &runs[1]);
    let (Some(health), Some(done1), Some(done2)) = (
        find(first, "health"),
        find(first, "done"),
        find(second, "done"),
    ) else {
        return;
    };
    // `KILN health ok role=common,etcd …`: every role's HEALTH passed.
    let healthy: Vec<&str> = health
        .fields()
        .get("role")
        .unwrap_or(&"")
        .split(',')
        .collect();
    for role in &host.roles {
        p.check(healthy.contains(&role.as_str()), || {
            format!("{name}: role {role} not in `{health}`")
        });
    }
    p.check(!done1.has_word("unchanged"), || {
        format!("{name}: the first run changed nothing: `{done1}`")
    });
    p.check(
        done1.fields().get("build") == done2.fields().get("build"),
        || format!("{name}: the runs installed different builds"),
    );

    // The rerun is a no-op: nothing started, enabled, restarted or imported, the state as it was.
    p.check(done2.has_word("unchanged"), || {
        format!("{name}: the rerun changed something: `{done2}`")
    });
    if let Some(units) = find(second, "units") {
        for key in ["enabled", "started", "restarted"] {
            p.check(units.fields().get(key) == Some(&"0"), || {
                format!("{name}: the rerun's `{units}` has {key} != 0")
            });
        }
    }
    if let Some(state) = find(second, "state") {
        p.check(state.has_word("unchanged"), || {
            format!("{name}: rerun `{state}`")
        });
    }
    if let Some(images) = find(second, "images") {
        p.check(
            matches!(images.fields().get("imported"), None | Some(&"0")),
            || format!("{name}: rerun `{images}`"),
        );
    }
}

/// The runtime host imported the planned images into containerd, which
/// answers and lists them on the console.
fn check_runtime_images(host: &kiln_boot::HostReport, images: &[String], p: &mut Problems) {
    p.check(!images.is_empty(), || {
        "the lab's runtime role imports no image".to_owned()
    });
    let runs = runs(&host.serial_log);
    if let Some(m) = runs.first().and_then(|r| find(r, "images")) {
        let fields = m.fields();
        p.check(fields.get("runtime") == Some(&"ctr"), || {
            format!("{}: `{m}`, expected runtime=ctr", host.name)
        });
        p.check(
            fields.get("imported").and_then(|n| n.parse::<usize>().ok()) == Some(images.len()),
            || format!("{}: `{m}`, expected imported={}", host.name, images.len()),
        );
    }
    let console = fs::read_to_string(&host.serial_log).unwrap_or_default();
    for image in images {
        p.check(console.contains(image.as_str()), || {
            format!(
                "{}: the console never lists {image} (containerd's image list, \
                 e.g. `ctr -n k8s.io images ls -q` from the runtime HEALTH, must reach the console)",
                host.name
            )
        });
    }
}
