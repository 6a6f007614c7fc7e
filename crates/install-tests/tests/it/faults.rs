//! Faults of the host itself: a disk that fills while install.sh stages, a tool missing from
//! PATH, a clock outside the certificates' validity. Each run must fail at its step naming the
//! path, the tools or the dates, and leave the host as it was.

use std::path::Path;

use kiln_install_tests::fixture::{file, write_build, Build};
use kiln_install_tests::run::{tree_diff, Sandbox, Shell};
use kiln_install_tests::{require_root, require_tool};

use crate::common::{build, host, refused, roles};

/// Generation 2 of the common fixture plus `count` small files in the etcd role: their bytes
/// add up to a few KiB, but each takes a whole page of a tmpfs.
fn many_small_files(sb: &Sandbox, count: usize) -> Build {
    let mut roles = roles(2);
    let etcd = roles.iter_mut().find(|r| r.name == "etcd").unwrap();
    etcd.files
        .extend((0..count).map(|n| file(&format!("/var/lib/demo/many/f{n:04}"), 0o644, "x\n")));
    write_build(&sb.path().join("many"), &host(2), &roles)
}

/// Runs `build` with a fresh tmpfs of `size` mounted over `mountpoint` in a private mount
/// namespace (unshare), so only this run sees it; returns the outcome and what the tmpfs
/// held when install.sh had exited.
fn run_on_tmpfs(
    sb: &Sandbox,
    b: &Build,
    mountpoint: &Path,
    size: &str,
) -> (kiln_install_tests::run::Outcome, String) {
    require_root();
    require_tool("unshare", "util-linux");
    let left = sb.path().join("tmpfs-left");
    let script = format!(
        "mount -t tmpfs -o size={size},mode=0700 kiln-full '{mnt}' || exit 99\n\
         \"$@\"; rc=$?\nfind '{mnt}' -mindepth 1 >'{left}'\nexit $rc",
        mnt = mountpoint.display(),
        left = left.display()
    );
    let wrapper = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ];
    let dir = b.dir.display().to_string();
    let out = sb
        .command(&wrapper, Shell::Dash, &[&dir, &b.secrets_sha256], &[])
        .output()
        .expect("run unshare");
    let outcome = kiln_install_tests::run::Outcome::from(out);
    assert_ne!(
        outcome.status.code(),
        Some(99),
        "cannot mount a tmpfs\n{}",
        outcome.describe()
    );
    let left = std::fs::read_to_string(left).unwrap_or_default();
    (outcome, left)
}

/// The disk fills while install.sh stages an upgrade (a 1 MiB tmpfs over the staging folder,
/// bundles whose bytes fit but whose files need more pages, as blocks do on any file
/// system, so preflight's byte count passes): `KILN extract fail` names the staged path that
/// could not be written, the staging is emptied again, and the installed generation (files,
/// units, state) is untouched; without the small disk the same upgrade then succeeds.
#[test]
fn disk_full_while_staging_names_the_path_and_keeps_the_installed_generation() {
    let sb = Sandbox::new();
    sb.run(Shell::Dash, &build(&sb, "gen1", 1), &[]).expect_ok();
    let before = sb.tree();
    let gen2 = many_small_files(&sb, 400);
    let staging = sb.root.join("var/lib/kiln/staging");
    let (run, left) = run_on_tmpfs(&sb, &gen2, &staging, "1m");
    let etcd = &gen2.bundles[1];
    run.expect_fail(
        "extract",
        &format!(
            "{}: cannot write {}/{}.part/rootfs/var/lib/demo/many/f",
            etcd.0,
            staging.display(),
            etcd.1
        ),
    );
    assert!(
        run.stdout.contains(": No space left on device"),
        "{}",
        run.describe()
    );
    assert_eq!(
        left, "",
        "the failed run left staging behind on the full disk"
    );
    let diff = tree_diff(&before, &sb.tree(), false);
    assert!(
        diff.is_empty(),
        "the failed upgrade changed the installed host: {diff:#?}"
    );
    let done = sb.run(Shell::Dash, &gen2, &[]).expect_ok();
    assert!(done.ends_with("generation=2"), "{done}");
}

/// Staging on its own small file system (a 64 KiB tmpfs over the staging folder) that cannot
/// hold the upgrade's bytes is refused by preflight, naming that mount and the sizes, before
/// anything is written.
#[test]
fn staging_without_room_is_refused_by_preflight_before_anything_is_written() {
    let sb = Sandbox::new();
    sb.run(Shell::Dash, &build(&sb, "gen1", 1), &[]).expect_ok();
    let mut roles = roles(2);
    roles[1]
        .files
        .push(file("/var/lib/demo/big", 0o644, vec![b'x'; 256 * 1024]));
    let gen2 = write_build(&sb.path().join("big"), &host(2), &roles);
    let staging = sb.root.join("var/lib/kiln/staging");
    let before = sb.tree();
    let (run, left) = run_on_tmpfs(&sb, &gen2, &staging, "64k");
    run.expect_fail(
        "preflight",
        &format!("KiB free on {0} (for {0}), need ", staging.display()),
    );
    assert_eq!(left, "", "preflight wrote into staging");
    assert_eq!(tree_diff(&before, &sb.tree(), true), Vec::<String>::new());
}

/// The same fault where files are installed: a tmpfs over /var/lib/demo, where the upgrade's
/// small files go. The copies are made beside their targets before any is switched in, so
/// the first one that does not fit fails `install` naming it, the copies are removed, and no
/// installed file or the state changed.
#[test]
fn disk_full_while_installing_names_the_file_and_switches_nothing() {
    let sb = Sandbox::new();
    sb.run(Shell::Dash, &build(&sb, "gen1", 1), &[]).expect_ok();
    let gen2 = many_small_files(&sb, 400);
    let target = sb.root.join("var/lib/demo");
    let before = sb.tree();
    let (run, left) = run_on_tmpfs(&sb, &gen2, &target, "1m");
    run.expect_fail(
        "install",
        &format!("cannot write {}/many/.f", target.display()),
    );
    assert!(
        run.stdout.contains("No space left on device"),
        "{}",
        run.describe()
    );
    assert!(
        !left.contains(".kiln-new"),
        "copies left on the full disk:\n{left}"
    );
    // Outside the tmpfs: the installed generation 1 and its state are as they were; the only
    // additions are generation 2's staging (a cache, reused by the next run).
    let diff: Vec<String> = tree_diff(&before, &sb.tree(), false)
        .into_iter()
        .filter(|d| !d.starts_with("added var/lib/kiln/staging/"))
        .collect();
    assert!(diff.is_empty(), "the failed install changed: {diff:#?}");
    let state = std::fs::read_to_string(sb.root.join("var/lib/kiln/state")).unwrap();
    assert!(state.contains("KILN_GENERATION=1\n"), "{state}");
}

/// Generation 2 with images (ctr or docker), units (systemctl) and a health check (timeout),
/// plus `packages` (dpkg) in the etcd role.
fn needy_build(sb: &Sandbox, name: &str, packages: bool) -> Build {
    let mut roles = roles(2);
    if packages {
        roles[1].packages = vec![(
            "demo_1.0_all.deb".into(),
            b"not read before preflight".to_vec(),
        )];
    }
    write_build(&sb.path().join(name), &host(2), &roles)
}

/// Every missing tool a host's roles need is named in one `KILN preflight fail`, with what
/// needs it, before anything is written: on a fresh host and on one with a generation
/// installed (the tree, folder times included, is unchanged). Packages may bring the
/// container runtime, so with packages only dpkg is required of them.
#[test]
fn missing_tools_are_all_named_by_preflight_before_anything_is_written() {
    let missing = [
        "dpkg",
        "dpkg-deb",
        "dpkg-query",
        "ctr",
        "docker",
        "systemctl",
        "timeout",
    ];
    let cases = [
        (
            false,
            "missing tools: ctr or docker (images), systemctl (units), timeout (health check)",
        ),
        (
            true,
            "missing tools: dpkg (packages), dpkg-deb (packages), dpkg-query (packages), \
             systemctl (units), timeout (health check)",
        ),
    ];
    for (packages, want) in cases {
        for installed in [false, true] {
            let sb = Sandbox::new();
            if installed {
                sb.run(Shell::Dash, &build(&sb, "gen1", 1), &[]).expect_ok();
            }
            let b = needy_build(&sb, "needy", packages);
            let path = sb.path_without(&missing);
            let env = [("PATH", path.as_str()), ("KILN_NO_SYSTEMCTL", "0")];
            refused(&sb, &b, &env, "preflight", want);
        }
    }
}

/// A tool install.sh needs to read the archives at all (tar, sha256sum, flock) is named
/// before the first step, as the only marker: `KILN preflight fail missing tools: …`.
#[test]
fn missing_base_tools_are_named_before_the_archives_are_read() {
    let sb = Sandbox::new();
    let b = build(&sb, "gen1", 1);
    let path = sb.path_without(&["flock", "sha256sum", "tar"]);
    for shell in Shell::ALL {
        let before = sb.tree();
        let run = sb.run(shell, &b, &[("PATH", path.as_str())]);
        let m = run.markers();
        assert!(
            !run.status.success()
                && m.len() == 1
                && m[0].step == "preflight"
                && m[0].status == "fail"
                && m[0].detail
                    == "missing tools: flock (every run), sha256sum (every run), tar (every run)",
            "{shell:?}\n{}",
            run.describe()
        );
        assert_eq!(tree_diff(&before, &sb.tree(), true), Vec::<String>::new());
    }
}

/// Today's UTC date as `YYYY-MM-DD`, from the machine's `date`.
fn today() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The clock far before the certificates' notBefore, or after their notAfter, is refused by
/// preflight with both dates, before anything is written. The real clock and `date` are
/// used: a time namespace cannot move CLOCK_REALTIME (only the monotonic and boot clocks),
/// setting the machine's clock would disturb everything else on it, and a `date` shim would
/// test the shim. So the certificates move instead: a notBefore in 2100 against today's
/// clock is exactly a clock 74 years behind for the comparison install.sh makes.
#[test]
fn clock_outside_the_certificates_validity_is_refused_with_the_dates() {
    let cases = [
        (
            ("KILN_NOT_BEFORE", "4102444800"),
            "before the certificates' notBefore 2100-01-01T00:00:00Z (4102444800): set the clock",
        ),
        (
            ("KILN_NOT_AFTER", "946684800"),
            "after the certificates' notAfter 2000-01-01T00:00:00Z (946684800): the certificates expired",
        ),
    ];
    for ((key, value), needle) in cases {
        for installed in [false, true] {
            let sb = Sandbox::new();
            if installed {
                sb.run(Shell::Dash, &build(&sb, "gen1", 1), &[]).expect_ok();
            }
            let mut h = host(2);
            // The typed fields `kiln build` fills from the host's certificates.
            match key {
                "KILN_NOT_AFTER" => h.not_after = Some(value.parse().unwrap()),
                _ => h.not_before = Some(value.parse().unwrap()),
            }
            let b = write_build(&sb.path().join("clock"), &h, &roles(2));
            for shell in Shell::ALL {
                let before = sb.tree();
                let day = today();
                let run = sb.run(shell, &b, &[]);
                run.expect_fail("preflight", needle);
                let detail = &run.markers()[2].detail;
                let now = detail
                    .strip_prefix("the clock says ")
                    .unwrap_or_else(|| panic!("{shell:?}: no clock in `{detail}`"));
                assert!(
                    now.starts_with(&format!("{day}T"))
                        || now.starts_with(&format!("{}T", today())),
                    "{shell:?}: the host's time is not today's UTC date ({day}): `{detail}`"
                );
                let diff = tree_diff(&before, &sb.tree(), true);
                assert!(
                    diff.is_empty(),
                    "{shell:?} {key}: written before the clock was checked: {diff:#?}"
                );
            }
        }
    }
}

/// The copy of a converged generation kept for rollback never takes the room a rerun needs:
/// with the kept folder on a small file system (a 64 KiB tmpfs, where the bundles cannot be
/// hard-linked), the install succeeds, says on stderr why nothing was kept, and leaves the
/// tmpfs empty; on the host's own file system the next run keeps it (by hard links).
#[test]
fn a_kept_copy_without_room_is_skipped_and_the_install_still_succeeds() {
    let sb = Sandbox::new();
    let gen1 = build(&sb, "gen1", 1);
    let kept = sb.root.join("var/lib/kiln/kept");
    std::fs::create_dir_all(&kept).unwrap();
    let (run, left) = run_on_tmpfs(&sb, &gen1, &kept, "64k");
    let done = run.expect_ok();
    assert!(done.ends_with("generation=1"), "{done}");
    assert!(
        run.stderr
            .contains("install.sh: cannot keep generation 1 in ")
            && run.stderr.contains("would leave less than a rerun needs"),
        "{}",
        run.describe()
    );
    assert_eq!(left, "", "a partial copy was left on the small file system");
    sb.run(Shell::Dash, &gen1, &[]).expect_ok();
    let builds: Vec<String> = std::fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(builds, [host(1).build_id], "{builds:?}");
}
