//! Two install.sh runs at once on one host: from its first write on, one holds the lock
//! (flock on the state folder) and the other waits a bounded time, then refuses naming the
//! holder; the runs never interleave. A lock left by a killed run is taken over.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use kiln_install_tests::fixture::{write_build, Build};
use kiln_install_tests::run::{markers, Outcome, Sandbox, Shell};

use crate::common::{build, content_tree, host, roles};

/// Generation `generation` whose etcd HEALTH takes `secs` seconds: the holder keeps the lock
/// that long after its files are in.
fn slow_build(sb: &Sandbox, name: &str, generation: u32, secs: u32) -> Build {
    let mut roles = roles(generation);
    roles[1].health = format!("sleep {secs}");
    write_build(&sb.path().join(name), &host(generation), &roles)
}

/// Starts install.sh for `b` under dash without waiting for it.
fn spawn(sb: &Sandbox, b: &Build, env: &[(&str, &str)]) -> Child {
    let dir = b.dir.display().to_string();
    sb.command(&[], Shell::Dash, &[&dir, &b.secrets_sha256], env)
        .env("KILN_HEALTH_TIMEOUT", "60")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn install.sh")
}

fn finish(child: Child) -> Outcome {
    Outcome::from(child.wait_with_output().expect("wait for install.sh"))
}

/// Waits until a run holds the lock (its pid is in lock.pid); returns that pid.
fn holder(sb: &Sandbox) -> String {
    let pid_file = sb.root.join("var/lib/kiln/lock.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            if !pid.trim().is_empty() {
                return pid.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "no run took the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A run's markers with what differs between equal runs removed: the sandbox's path and
/// the free space.
fn normalized(sb: &Sandbox, out: &Outcome) -> Vec<String> {
    let root = sb.root.display().to_string();
    out.markers()
        .iter()
        .map(|m| {
            let detail = m.detail.replace(&root, "ROOT");
            let detail = match detail.split_once(" free_kib=") {
                Some((head, _)) => head.to_string(),
                None => detail,
            };
            format!("{} {} {detail}", m.step, m.status)
        })
        .collect()
}

/// Both runs started together succeed; one's markers are a clean first run's, the other's a
/// clean rerun's (`staged=0 reused=3`, `unchanged`), the host equals a clean run's, the image
/// was imported once, and on the console both print to, the second run's first write
/// (`extract`) comes after the first run's `done`.
#[test]
fn two_runs_at_once_wait_on_the_lock_and_never_interleave() {
    let reference = Sandbox::new();
    let b = slow_build(&reference, "slow", 1, 3);
    let clean = reference.run(Shell::Dash, &b, &[]);
    clean.expect_ok();
    let rerun = reference.run(Shell::Dash, &b, &[]);
    assert!(rerun.expect_ok().ends_with(" unchanged"));
    let mut want = vec![
        normalized(&reference, &clean),
        normalized(&reference, &rerun),
    ];
    want.sort();

    let sb = Sandbox::new();
    let console = sb.path().join("console");
    let console_env = console.display().to_string();
    let env = [("KILN_CONSOLE", console_env.as_str())];
    let (a, c) = (spawn(&sb, &b, &env), spawn(&sb, &b, &env));
    let runs = [finish(a), finish(c)];
    for r in &runs {
        r.expect_ok();
    }
    let mut got: Vec<Vec<String>> = runs.iter().map(|r| normalized(&sb, r)).collect();
    got.sort();
    assert_eq!(
        got,
        want,
        "the runs differ from a clean run and its rerun\n{}\n{}",
        runs[0].describe(),
        runs[1].describe()
    );
    assert!(
        runs.iter().any(|r| r
            .stderr
            .contains("install.sh: waiting up to 60 s for the lock on ")),
        "neither run waited for the lock\n{}\n{}",
        runs[0].describe(),
        runs[1].describe()
    );
    assert_eq!(content_tree(&sb), content_tree(&reference));
    let imports = std::fs::read_to_string(&sb.ctr_log)
        .unwrap()
        .matches("import")
        .count();
    assert_eq!(imports, 1, "the image was imported {imports} times");
    let lines = markers(&std::fs::read_to_string(&console).unwrap());
    let first_done = lines
        .iter()
        .position(|m| m.step == "done" && !m.detail.ends_with(" unchanged"))
        .expect("the first run's done on the console");
    let second_extract = lines
        .iter()
        .position(|m| m.step == "extract" && m.detail.starts_with("staged=0 reused=3 "))
        .expect("the second run's extract on the console");
    assert!(
        first_done < second_extract,
        "the second run wrote before the first was done: {lines:#?}"
    );
}

/// With KILN_LOCK_WAIT=1 against a holder busy for longer, the second run refuses at its
/// first write, naming the lock and the holder's pid; the holder finishes undisturbed.
#[test]
fn a_run_that_waits_too_long_refuses_naming_the_lock_and_the_holder() {
    let sb = Sandbox::new();
    let b = slow_build(&sb, "slow", 1, 5);
    let first = spawn(&sb, &b, &[]);
    let pid = holder(&sb);
    assert_eq!(pid, first.id().to_string());
    let second = sb.run(Shell::Dash, &b, &[("KILN_LOCK_WAIT", "1")]);
    second.expect_fail(
        "extract",
        &format!(
            "another install.sh (pid {pid}) holds the lock on {}; gave up after 1 s (KILN_LOCK_WAIT)",
            sb.root.join("var/lib/kiln").display()
        ),
    );
    assert!(
        second.stderr.contains(&format!(
            "waiting up to 1 s for the lock on {}, held by install.sh pid {pid}",
            sb.root.join("var/lib/kiln").display()
        )),
        "{}",
        second.describe()
    );
    finish(first).expect_ok();
    let reference = Sandbox::new();
    reference.run(Shell::Dash, &b, &[]).expect_ok();
    assert_eq!(content_tree(&sb), content_tree(&reference));
}

/// A run that waited reads the state again once it holds the lock: generation 1 waiting on
/// a run installing generation 2 is refused as a downgrade, not installed over it.
#[test]
fn a_waiting_run_rechecks_the_generation_under_the_lock() {
    let sb = Sandbox::new();
    let gen2 = slow_build(&sb, "gen2", 2, 3);
    let gen1 = build(&sb, "gen1", 1);
    let first = spawn(&sb, &gen2, &[]);
    holder(&sb);
    let second = sb.run(Shell::Dash, &gen1, &[]);
    second.expect_fail(
        "extract",
        "generation 1 is older than the installed generation 2",
    );
    finish(first).expect_ok();
    crate::common::assert_installed(&sb, 2);
}

/// A run killed while holding the lock leaves its pid behind; the next run says it takes
/// the lock over from that pid and converges.
#[test]
fn a_lock_left_by_a_killed_run_is_taken_over_with_a_message() {
    let sb = Sandbox::new();
    let b = build(&sb, "gen1", 1);
    let killed = sb.run(Shell::Dash, &b, &[("KILN_TEST_KILL_AT", "extract")]);
    assert!(killed.status.code().is_none(), "{}", killed.describe());
    let pid = std::fs::read_to_string(sb.root.join("var/lib/kiln/lock.pid")).unwrap();
    let rerun = sb.run(Shell::Dash, &b, &[]);
    rerun.expect_ok();
    assert!(
        rerun.stderr.contains(&format!(
            "install.sh pid {} ended without releasing the lock on {} (killed?): taking it over",
            pid.trim(),
            sb.root.join("var/lib/kiln").display()
        )),
        "{}",
        rerun.describe()
    );
    assert!(!sb.root.join("var/lib/kiln/lock.pid").exists());
}
