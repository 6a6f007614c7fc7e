//! `upgrade()` with the stand-in QEMU of `flow.rs`: kept hosts restart step by step with the
//! new build's seed, a rolled-back host stops the upgrade, and bad input stops nothing.

use kiln_boot::{boot, upgrade, BootError, FailReason, HostPhase, Kept, UpgradeOptions};

use crate::flow::{running, script, Rig, FINAL};
use crate::support::{fake_out, FakeHost};

/// Each host's script: generation 1 from the first build's seed, else what `second` says.
fn host(second: &[&str]) -> String {
    format!(
        "case $seed in\n*/out2/*)\n{}\n;;\n*)\n{}\n;;\nesac\n",
        script(second),
        script(&["KILN done ok role=test build=b1 generation=1", FINAL])
    )
}

fn booted(rig: &Rig) -> Kept {
    let mut opts = rig.options();
    opts.keep = true;
    let report = boot(&opts, &()).unwrap();
    report.kept.expect("kept")
}

fn pid_of(kept: &Kept, host: &str) -> u32 {
    kept.guests.iter().find(|(h, _)| h == host).unwrap().1
}

#[test]
fn hosts_restart_step_by_step_and_a_rollback_stops_the_upgrade() {
    let done2 = ["KILN done ok role=test build=b2 generation=2", FINAL];
    let health = "KILN health fail role=test unhealthy after 3 tries in 9 s: refused";
    let rollback = "KILN rollback ok generation=1 build=b1 (generation 2 build b2 was unhealthy)";
    let rig = Rig::new(&[
        ("etcd1", &host(&done2)),
        (
            "etcd2",
            &host(&[
                health,
                "KILN done ok role=test build=b1 generation=1",
                rollback,
            ]),
        ),
        ("runtime1", &host(&done2)),
    ]);
    let mut kept = booted(&rig);
    let before: Vec<(String, u32)> = kept.guests.clone();
    let names = ["etcd1", "etcd2", "runtime1"];
    let fakes: Vec<FakeHost> = names
        .iter()
        .enumerate()
        .map(|(i, n)| FakeHost::new(n, 11 + i as u8))
        .collect();
    let out2 = fake_out(&rig.tmp.path().join("out2"), "lab", &fakes);
    let steps = vec![
        vec!["etcd1".into()],
        vec!["etcd2".into()],
        vec!["runtime1".into()],
    ];
    let up = UpgradeOptions::new(&out2, steps);
    let opts = rig.options();
    let err = upgrade(&opts, &mut kept, &up, &()).unwrap_err();
    let BootError::UpgradeFailed {
        step,
        failure,
        report,
    } = err
    else {
        panic!("{err}");
    };
    assert_eq!((step, failure.host.as_str()), (2, "etcd2"));
    assert_eq!(
        failure.reason,
        FailReason::RolledBack {
            failed: kiln_boot::Marker::parse(health).unwrap(),
            rollback: kiln_boot::Marker::parse(rollback).unwrap(),
        }
    );
    assert!(failure.serial_log.ends_with("lab.boot/etcd2-upgrade.log"));
    // etcd1 went first and is ready on generation 2, etcd2 failed; runtime1 was not touched.
    assert_eq!(report.steps.len(), 2);
    let etcd1 = report.host("etcd1").unwrap();
    assert_eq!(etcd1.phase, HostPhase::Ready);
    assert!(etcd1
        .markers
        .iter()
        .any(|m| m.fields().get("generation") == Some(&"2")));
    for h in ["etcd1", "etcd2"] {
        let old = before.iter().find(|(n, _)| n == h).unwrap().1;
        assert!(!running(old), "{h}'s first QEMU still runs");
        assert_ne!(pid_of(&kept, h), old, "{h} was not started again");
        assert!(running(pid_of(&kept, h)), "{h} does not run");
    }
    let runtime = before.iter().find(|(n, _)| n == "runtime1").unwrap().1;
    assert_eq!(pid_of(&kept, "runtime1"), runtime);
    assert!(running(runtime));
    assert!(!kiln_boot::default_log_dir(&rig.out)
        .join("runtime1-upgrade.log")
        .exists());
    // The new processes are the kept ones: stopping stops them.
    kept.stop();
    for h in names {
        assert!(!running(pid_of(&kept, h)), "{h} still runs after stop");
    }
}

#[test]
fn another_clusters_build_or_a_host_not_running_changes_nothing() {
    let rig = Rig::new(&[("etcd1", &host(&[])), ("etcd2", &host(&[]))]);
    let mut kept = booted(&rig);
    let before = kept.guests.clone();
    let other = fake_out(
        &rig.tmp.path().join("out2"),
        "prod",
        &[FakeHost::new("etcd1", 11)],
    );
    let opts = rig.options();
    let e = upgrade(
        &opts,
        &mut kept,
        &UpgradeOptions::new(&other, vec![vec!["etcd1".into()]]),
        &(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a build of cluster \"prod\", not of the booted cluster \"lab\""),
        "{e}"
    );
    let same = fake_out(
        &rig.tmp.path().join("out3"),
        "lab",
        &[FakeHost::new("etcd1", 11), FakeHost::new("etcd2", 12)],
    );
    let steps = vec![vec!["etcd1".into()], vec!["etcd9".into()]];
    let e = upgrade(&opts, &mut kept, &UpgradeOptions::new(&same, steps), &())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "unknown host(s) etcd9; the cluster has etcd1, etcd2");
    assert_eq!(kept.guests, before);
    for (h, pid) in &before {
        assert!(running(*pid), "{h} was stopped");
    }
    kept.stop();
}
