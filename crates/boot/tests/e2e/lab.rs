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

fn find<'a>(run: &'a [Marker], step: &str) -> &'a Marker {
    run.iter()
        .find(|m| m.step == step)
        .unwrap_or_else(|| panic!("no `KILN {step}` marker in {run:#?}"))
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

    for host in &report.hosts {
        assert_eq!(host.phase, HostPhase::Ready, "{}", host.name);
        let runs = runs(&host.serial_log);
        assert_eq!(
            runs.len(),
            2,
            "{}: expected two install runs (--seed-rerun), got {runs:#?}",
            host.name
        );
        for (i, run) in runs.iter().enumerate() {
            let steps: Vec<&str> = run.iter().map(|m| m.step.as_str()).collect();
            assert_eq!(
                steps,
                STEPS,
                "{} run {}: steps out of order",
                host.name,
                i + 1
            );
            assert!(
                run.iter().all(|m| m.status == kiln_boot::Status::Ok),
                "{run:#?}"
            );
        }
        let (first, second) = (&runs[0], &runs[1]);
        // `KILN health ok role=common,etcd …`: every role's HEALTH passed.
        let health = find(first, "health");
        let healthy: Vec<&str> = health
            .fields()
            .get("role")
            .unwrap_or(&"")
            .split(',')
            .collect();
        for role in &host.roles {
            assert!(healthy.contains(&role.as_str()), "{}: {health}", host.name);
        }
        assert!(
            !find(first, "done").has_word("unchanged"),
            "{}: first run changed nothing?",
            host.name
        );

        // The rerun is a no-op: nothing restarted, nothing imported, state as it was.
        let done = find(second, "done");
        assert!(
            done.has_word("unchanged"),
            "{}: rerun said `{done}`",
            host.name
        );
        assert_eq!(
            find(first, "done").fields().get("build"),
            done.fields().get("build")
        );
        let units = find(second, "units").fields();
        for key in ["enabled", "started", "restarted"] {
            assert_eq!(units.get(key), Some(&"0"), "{}: rerun {key}", host.name);
        }
        assert!(find(second, "state").has_word("unchanged"), "{}", host.name);
        let imported = find(second, "images").fields();
        assert!(
            matches!(imported.get("imported"), None | Some(&"0")),
            "{}",
            host.name
        );
    }

    // The runtime host imported its images into containerd, which answers and lists them.
    assert!(
        !images.is_empty(),
        "the lab's runtime role imports no image"
    );
    let runtime = report.host("runtime1").unwrap();
    let runs = runs(&runtime.serial_log);
    let first_images = find(&runs[0], "images").fields();
    assert_eq!(first_images.get("runtime"), Some(&"ctr"));
    assert_eq!(
        first_images
            .get("imported")
            .map(|n| n.parse::<usize>().unwrap()),
        Some(images.len())
    );
    let console = fs::read_to_string(&runtime.serial_log).unwrap();
    for image in &images {
        assert!(
            console.contains(image.as_str()),
            "runtime1's console never lists {image}: its health check should print `ctr -n k8s.io images ls` on the console"
        );
    }
}
