//! install.sh under a temporary KILN_ROOT with KILN_NO_SYSTEMCTL=1, under dash and busybox
//! sh: what a run installs, that a rerun changes nothing, upgrades, EL prep, and a kill -9
//! after every step's marker followed by a rerun.

use kiln_install_tests::fixture::{file, write_build, Host, Role};
use kiln_install_tests::run::{tree_diff, Sandbox, Shell, STEPS};

use crate::common::{assert_installed, build, content_tree, expected_files};

#[test]
fn first_run_installs_every_file_with_its_manifest_mode() {
    for shell in Shell::ALL {
        let sb = Sandbox::new();
        let b = build(&sb, "gen1", 1);
        let run = sb.run(shell, &b, &[]);
        let done = run.expect_ok();
        assert_eq!(
            done,
            format!(
                "role=common,etcd build={} generation=1",
                crate::common::host(1).build_id
            ),
            "{shell:?}"
        );
        assert_installed(&sb, 1);
        // Swap stays off across reboots: the fstab line is commented out.
        let fstab = std::fs::read_to_string(sb.root.join("etc/fstab")).unwrap();
        assert_eq!(
            fstab,
            "UUID=0000 / ext4 defaults 0 1\n#kiln-swap-off# /swapfile none swap sw 0 0\n"
        );
        let state = std::fs::read_to_string(sb.root.join("var/lib/kiln/state")).unwrap();
        let bundles: Vec<String> = b.bundles.iter().map(|(n, s)| format!("{s}:{n}")).collect();
        assert_eq!(
            state,
            format!(
                "KILN_CLUSTER=lab\nKILN_HOST=etcd1\nKILN_BUILD_ID={}\nKILN_GENERATION=1\nKILN_ROLES=common,etcd\nKILN_SECRETS_SHA256={}\nKILN_BUNDLES={}\n",
                crate::common::host(1).build_id,
                b.secrets_sha256,
                bundles.join(",")
            )
        );
        let ctr = std::fs::read_to_string(&sb.ctr_log).unwrap();
        assert!(
            ctr.contains("-n k8s.io images import ") && ctr.contains("/images/pause.tar"),
            "{ctr}"
        );
        // Nothing but the expected files, the state and the staging copies were written.
        let extra: Vec<String> = sb
            .tree()
            .into_iter()
            .filter(|(p, s)| s.kind == 'f' && !expected_files(1).contains_key(p))
            .map(|(p, _)| p)
            .filter(|p| {
                !p.starts_with("var/lib/kiln/") && p != "etc/os-release" && p != "etc/fstab"
            })
            .collect();
        assert!(extra.is_empty(), "unexpected files: {extra:?}");
    }
}

#[test]
fn second_run_reports_unchanged_and_modifies_no_file() {
    for shell in Shell::ALL {
        let sb = Sandbox::new();
        let b = build(&sb, "gen1", 1);
        sb.run(shell, &b, &[]).expect_ok();
        let before = sb.tree();
        std::thread::sleep(std::time::Duration::from_millis(20)); // a rewrite would show in mtimes
        let again = sb.run(shell, &b, &[]);
        assert!(
            again.expect_ok().ends_with(" unchanged"),
            "{shell:?}: {}",
            again.describe()
        );
        let diff = tree_diff(&before, &sb.tree(), false);
        assert!(
            diff.is_empty(),
            "{shell:?}: the rerun changed files: {diff:#?}"
        );
        let imports = std::fs::read_to_string(&sb.ctr_log)
            .unwrap()
            .matches("import")
            .count();
        assert_eq!(imports, 1, "{shell:?}: the image was imported again");
    }
}

#[test]
fn upgrade_replaces_only_the_changed_file() {
    let sb = Sandbox::new();
    sb.run(Shell::Dash, &build(&sb, "gen1", 1), &[]).expect_ok();
    let before = sb.tree();
    let run = sb.run(Shell::Dash, &build(&sb, "gen2", 2), &[]);
    let done = run.expect_ok();
    assert!(done.ends_with("generation=2"), "{done}");
    let files = expected_files(2).len();
    assert!(
        run.stdout
            .contains(&format!("KILN install ok files={files} changed=1 modes=0")),
        "{}",
        run.describe()
    );
    assert_installed(&sb, 2);
    let after = sb.tree();
    assert_eq!(
        after["usr/local/bin/demo"], before["usr/local/bin/demo"],
        "an unchanged file was rewritten"
    );
    assert_ne!(after["etc/demo/demo.conf"], before["etc/demo/demo.conf"]);
    // The staging copies of generation 1 are gone once generation 2 is recorded.
    let staging: Vec<String> = std::fs::read_dir(sb.root.join("var/lib/kiln/staging"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(staging.len(), 3, "{staging:?}");
}

#[test]
fn el_prep_sets_selinux_permissive_and_comments_out_swap() {
    let sb = Sandbox::new();
    std::fs::write(
        sb.root.join("etc/os-release"),
        "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(sb.root.join("etc/selinux")).unwrap();
    std::fs::write(
        sb.root.join("etc/selinux/config"),
        "SELINUX=enforcing\nSELINUXTYPE=targeted\n",
    )
    .unwrap();
    let mut host = Host::new("etcd1", 1);
    host.os = "rocky9".into();
    host.family = "el".into();
    let mut role = Role::new("node");
    role.files = vec![file("/etc/node.conf", 0o644, "x\n")];
    let b = write_build(&sb.path().join("b"), &host, &[role]);
    sb.run(Shell::Busybox, &b, &[]).expect_ok();
    let selinux = std::fs::read_to_string(sb.root.join("etc/selinux/config")).unwrap();
    assert_eq!(selinux, "SELINUX=permissive\nSELINUXTYPE=targeted\n");
    assert!(std::fs::read_to_string(sb.root.join("etc/fstab"))
        .unwrap()
        .contains("#kiln-swap-off# /swapfile"));
    assert!(sb
        .run(Shell::Dash, &b, &[])
        .expect_ok()
        .ends_with(" unchanged"));
}

/// Kills install.sh under `shell` right after each step's marker, then reruns it: the
/// tree must equal an uninterrupted run's and the image be imported once.
fn kill_after_every_step_marker(shell: Shell) {
    let reference = Sandbox::new();
    let b = build(&reference, "gen1", 1); // read-only input, shared by every sandbox
    reference.run(shell, &b, &[]).expect_ok();
    let want = content_tree(&reference);
    for step in STEPS {
        let sb = Sandbox::new();
        let killed = sb.run(shell, &b, &[("KILN_TEST_KILL_AT", step)]);
        let last = killed.markers().pop().expect("a marker before the kill");
        assert!(
            killed.status.code().is_none() && last.step == step && last.status == "ok",
            "{shell:?}: expected a kill right after `KILN {step} ok`\n{}",
            killed.describe()
        );
        sb.run(shell, &b, &[]).expect_ok();
        assert_eq!(
            content_tree(&sb),
            want,
            "{shell:?}: killed after {step}, the rerun did not converge"
        );
        let imports = std::fs::read_to_string(&sb.ctr_log)
            .unwrap()
            .matches("import")
            .count();
        assert_eq!(
            imports, 1,
            "{shell:?}: killed after {step}: image imported {imports} times"
        );
    }
}

#[test]
fn kill_after_every_step_marker_then_rerun_converges_under_dash() {
    kill_after_every_step_marker(Shell::Dash);
}

#[test]
fn kill_after_every_step_marker_then_rerun_converges_under_busybox_sh() {
    kill_after_every_step_marker(Shell::Busybox);
}

/// A run killed after its files are renamed into place, before it records them: the next run,
/// of the generation still installed, removes the file only the killed one had (CI's random
/// kills found it left behind).
#[test]
fn files_switched_in_by_a_killed_run_of_another_generation_are_removed_by_the_next_run() {
    for shell in Shell::ALL {
        let reference = Sandbox::new();
        let gen1 = build(&reference, "gen1", 1);
        reference.run(shell, &gen1, &[]).expect_ok();
        let outside_state = |sb: &Sandbox| {
            let mut t = content_tree(sb);
            t.retain(|p, _| !p.starts_with("var/lib/kiln"));
            t
        };
        let want = outside_state(&reference);

        let sb = Sandbox::new();
        sb.run(shell, &gen1, &[]).expect_ok();
        let mut roles = crate::common::roles(2);
        roles[1]
            .files
            .push(file("/etc/demo/only-in-2.conf", 0o644, "generation 2\n"));
        let gen2 = write_build(&sb.path().join("gen2"), &crate::common::host(2), &roles);
        let killed = sb.run(shell, &gen2, &[("KILN_TEST_KILL_AT", "switched")]);
        let last = killed.markers().pop().expect("markers before the kill");
        assert!(
            killed.status.code().is_none() && last.step == "packages",
            "{shell:?}: expected a kill inside the install step\n{}",
            killed.describe()
        );
        assert!(sb.root.join("etc/demo/only-in-2.conf").exists());

        let rerun = sb.run(shell, &gen1, &[]);
        rerun.expect_ok();
        assert!(
            rerun.stdout.contains(" removed=1\n"),
            "{shell:?}: {}",
            rerun.describe()
        );
        assert_installed(&sb, 1);
        assert_eq!(
            outside_state(&sb),
            want,
            "{shell:?}: the rerun of generation 1 did not converge"
        );
    }
}

#[test]
fn under_kiln_root_units_are_enabled_offline_with_systemctl_root() {
    kiln_install_tests::require_tool("systemctl", "systemd");
    let sb = Sandbox::new();
    let mut role = Role::new("node");
    role.files = vec![file(
        "/etc/systemd/system/kiln-offline.service",
        0o644,
        "[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n",
    )];
    role.units = vec!["kiln-offline.service".into()];
    let b = write_build(&sb.path().join("b"), &Host::new("etcd1", 1), &[role]);
    let run = sb.run(Shell::Dash, &b, &[("KILN_NO_SYSTEMCTL", "0")]);
    run.expect_ok();
    assert!(
        run.stdout
            .contains("KILN units ok units=kiln-offline.service enabled=1 started=0 restarted=0"),
        "{}",
        run.describe()
    );
    let link = sb
        .root
        .join("etc/systemd/system/multi-user.target.wants/kiln-offline.service");
    assert!(
        link.symlink_metadata().is_ok(),
        "{} missing",
        link.display()
    );
    let again = sb.run(Shell::Dash, &b, &[("KILN_NO_SYSTEMCTL", "0")]);
    assert!(
        again.expect_ok().ends_with(" unchanged"),
        "{}",
        again.describe()
    );
}

/// A role's HEALTH is retried for KILN_HEALTH_WAIT seconds of wall time, not a fixed number
/// of tries: a master waiting for its etcd peers (hosts that boot minutes later) passed its
/// 60th try unhealthy and failed its install (k8s e2e, master02). With the tries uncapped, a
/// check that first passes on its 80th try succeeds; with a 1 s budget, one never passing
/// fails and says how long it waited.
#[test]
fn health_waits_by_wall_time_not_by_a_count_of_tries() {
    let shell = Shell::ALL[0];
    let sb = Sandbox::new();
    let count = sb.path().join("health-tries");
    let mut roles = crate::common::roles(1);
    let etcd = roles.iter_mut().find(|r| r.name == "etcd").unwrap();
    etcd.health = format!(
        "n=$(($(cat {0} 2>/dev/null || echo 0) + 1)); echo $n >{0}; [ $n -ge 80 ]",
        count.display()
    );
    let b = write_build(&sb.path().join("slow"), &crate::common::host(1), &roles);
    let run = sb.run(
        shell,
        &b,
        &[("KILN_HEALTH_TRIES", ""), ("KILN_HEALTH_WAIT", "120")],
    );
    run.expect_ok();
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "80");

    let sb = Sandbox::new();
    let etcd = roles.iter_mut().find(|r| r.name == "etcd").unwrap();
    etcd.health = "false".into();
    let b = write_build(&sb.path().join("never"), &crate::common::host(1), &roles);
    let run = sb.run(
        shell,
        &b,
        &[
            ("KILN_HEALTH_TRIES", ""),
            ("KILN_HEALTH_WAIT", "1"),
            ("KILN_HEALTH_INTERVAL", "0.2"),
        ],
    );
    run.expect_fail("health", "role=etcd unhealthy after ");
    assert!(run.stdout.contains(" tries in "), "{}", run.describe());
}
