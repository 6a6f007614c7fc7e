//! Delta bundles (`kiln build --delta-from`) under dash and busybox sh: a host holding the base
//! rebuilds the new bundle from the delta and ends with the files a full install gives; a host
//! whose base differs refuses the delta and takes the full bundle (or fails naming both); a
//! delta whose files do not match the new MANIFEST is refused. In a systemd-nspawn guest, an
//! upgrade from a delta restarts what changed and a rollback to it rebuilds it from what was kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_bundle::contract::{self, DeltaRef};
use kiln_bundle::{BundleSpec, DeltaBase, Entry, Source, WrittenBundle, WrittenDelta};
use kiln_install_tests::fixture::{
    role_entries, secrets_entries_with_deltas, write_build, Build, Host, Plain, Role,
};
use kiln_install_tests::run::{Sandbox, Shell, STEPS};

use crate::common::{assert_installed, build, content_tree, host, roles};

fn entries(plain: Vec<Plain>) -> Vec<Entry> {
    plain
        .into_iter()
        .map(|(path, mode, content)| Entry {
            path,
            mode,
            source: Source::Bytes(content),
        })
        .collect()
}

/// A bundle written by kiln_bundle, as `write_bundle` described it (read back strictly).
fn written(path: &Path) -> WrittenBundle {
    let read = kiln_bundle::read_archive(path, &|_| false).unwrap();
    WrittenBundle {
        path: path.to_owned(),
        file_name: path.file_name().unwrap().to_str().unwrap().to_owned(),
        sha256: read.report.sha256,
        size: read.report.size,
        manifest: read.manifest,
    }
}

/// The delta in `dir` from bundle file `base` to bundle file `new`, whose entries are those
/// of `role` for `h`, as `kiln build --delta-from` writes it.
fn delta_between(dir: &Path, base: &Path, new: &Path, role: &Role, h: &Host) -> WrittenDelta {
    let (base, new) = (written(base), written(new));
    let from = DeltaBase {
        file: &base.file_name,
        sha256: &base.sha256,
        manifest: &base.manifest,
    };
    let id = format!("{}-{}", role.name, h.os);
    let new_entries = entries(role_entries(role, h));
    kiln_bundle::write_delta(dir, &id, &from, &new, &new_entries, 0)
        .unwrap()
        .expect("the bundle changed")
}

/// The secrets archive of `h` in `dir` pinning `bundles` and `deltas`; returns its sha256.
fn secrets(dir: &Path, h: &Host, bundles: &[(String, String)], deltas: &[DeltaRef]) -> String {
    let spec = BundleSpec {
        entries: entries(secrets_entries_with_deltas(h, bundles, deltas)),
        mtime: 0,
    };
    kiln_bundle::write_archive(&dir.join(contract::SECRETS), 0o600, &spec, true)
        .unwrap()
        .sha256
}

/// Generation 2 as a delta over generation 1's etcd bundle: `<sb>/gen2-delta` holds only the
/// secrets and the delta (common is unchanged: the host keeps it); `<sb>/medium/bundles` the
/// full bundles of generation 2, for a fallback. `tamper` may change the delta's entries.
struct DeltaBuild {
    build: Build,
    /// Its BUNDLES' delta line.
    delta: DeltaRef,
    delta_file: String,
    base_sha: String,
    medium: PathBuf,
}

fn delta_build(sb: &Sandbox, gen1: &Build, tamper: impl FnOnce(&mut Vec<Entry>)) -> DeltaBuild {
    let h2 = host(2);
    let medium = sb.path().join("medium");
    let full = write_build(&medium.join("bundles"), &h2, &roles(2));
    let dir = sb.path().join("gen2-delta");
    let base = gen1.dir.join(&gen1.bundles[1].0);
    let new = medium.join("bundles").join(&full.bundles[1].0);
    let mut d = delta_between(&dir, &base, &new, &roles(2)[1], &h2);
    assert_eq!(d.plan.changed, ["rootfs/etc/demo/demo.conf"]);
    // Every member of this delta is mode 0644, so it can be written again from its contents.
    let mut e: Vec<Entry> = kiln_bundle::read_archive(&d.path, &|_| true)
        .unwrap()
        .members
        .into_iter()
        .map(|(path, content)| Entry {
            path,
            mode: 0o644,
            source: Source::Bytes(content),
        })
        .collect();
    let before = e.clone();
    tamper(&mut e);
    if e != before {
        std::fs::remove_file(&d.path).unwrap();
        let spec = BundleSpec {
            entries: e,
            mtime: 0,
        };
        let w = kiln_bundle::write_bundle(&dir, "etcd-debian12-delta", &spec).unwrap();
        (d.file_name, d.sha256) = (w.file_name, w.sha256);
    }
    let delta = DeltaRef {
        for_sha256: full.bundles[1].1.clone(),
        sha256: d.sha256.clone(),
        file: d.file_name.clone(),
        base_sha256: gen1.bundles[1].1.clone(),
    };
    let secrets_sha256 = secrets(&dir, &h2, &full.bundles, std::slice::from_ref(&delta));
    DeltaBuild {
        build: Build {
            dir,
            secrets_sha256,
            bundles: full.bundles,
        },
        delta,
        delta_file: d.file_name,
        base_sha: gen1.bundles[1].1.clone(),
        medium,
    }
}

/// The tree under KILN_ROOT without kiln's own state (names of what was kept differ).
fn installed(sb: &Sandbox) -> BTreeMap<String, (char, u32, Option<String>)> {
    let mut tree = content_tree(sb);
    tree.retain(|p, _| !p.starts_with("var/lib/kiln"));
    tree
}

#[test]
fn a_host_holding_the_base_installs_the_delta_and_ends_as_a_full_install_does() {
    for shell in Shell::ALL {
        let sb = Sandbox::new();
        let gen1 = build(&sb, "gen1", 1);
        sb.run(shell, &gen1, &[]).expect_ok();
        let d = delta_build(&sb, &gen1, |_| {});
        let names: Vec<String> = std::fs::read_dir(&d.build.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "only the secrets and the delta: {names:?}");
        let run = sb.run(shell, &d.build, &[]);
        run.expect_ok();
        let verify = &run.markers()[0].detail;
        assert!(
            verify.contains(&format!("deltas={}:delta", d.build.bundles[1].0)),
            "{shell:?}: {verify}"
        );
        assert_installed(&sb, 2);
        // The same files as a host that installed generation 2's full bundles.
        let full = Sandbox::new();
        full.run(shell, &build(&full, "gen1", 1), &[]).expect_ok();
        let full2 = write_build(&full.path().join("gen2"), &host(2), &roles(2));
        full.run(shell, &full2, &[]).expect_ok();
        assert_eq!(installed(&sb), installed(&full), "{shell:?}");
        // Converged: a rerun changes nothing, and the delta and its base are kept for rollback.
        assert!(sb
            .run(shell, &d.build, &[])
            .expect_ok()
            .ends_with(" unchanged"));
        let kept = sb.root.join("var/lib/kiln/kept").join(&host(2).build_id);
        assert!(kept.join(&d.delta_file).is_file(), "{shell:?}");
        assert!(kept.join(&gen1.bundles[1].0).is_file(), "{shell:?}");
    }
}

#[test]
fn a_host_with_another_base_refuses_the_delta_and_takes_the_full_bundle() {
    for shell in Shell::ALL {
        let sb = Sandbox::new();
        let gen1 = build(&sb, "gen1", 1);
        // The host runs another generation-1 build: its etcd bundle is not the delta's base.
        let other = write_build(&sb.path().join("other"), &host(1), &roles(7));
        sb.run(shell, &other, &[]).expect_ok();
        let d = delta_build(&sb, &gen1, |_| {});
        let why = format!(
            "delta {} of {} is for base sha256 {}, this host has {}",
            d.delta_file, d.build.bundles[1].0, d.base_sha, other.bundles[1].1
        );
        // No full bundle anywhere: refused, naming the delta and the full bundle.
        let before = sb.tree();
        let run = sb.run(shell, &d.build, &[]);
        run.expect_fail("verify", &why);
        run.expect_fail(
            "verify",
            &format!(
                "missing bundle {}/{}",
                d.build.dir.display(),
                d.build.bundles[1].0
            ),
        );
        assert!(kiln_install_tests::run::tree_diff(&before, &sb.tree(), false).is_empty());
        // With a source holding the full bundles, the delta is passed over for them.
        let medium = d.medium.display().to_string();
        let run = sb.run_with(
            shell,
            &d.build,
            &["--source", "medium"],
            &[("KILN_BUNDLE_MEDIUM", &medium)],
        );
        run.expect_ok();
        assert!(run.stderr.contains(&why), "{shell:?}: {}", run.describe());
        assert!(run.markers()[0]
            .detail
            .contains(&format!("deltas={}:refused", d.build.bundles[1].0)));
        assert_installed(&sb, 2);
    }
}

#[test]
fn a_delta_whose_files_do_not_match_the_new_manifest_is_refused() {
    for shell in Shell::ALL {
        let sb = Sandbox::new();
        let gen1 = build(&sb, "gen1", 1);
        sb.run(shell, &gen1, &[]).expect_ok();
        let d = delta_build(&sb, &gen1, |e| {
            let conf = e
                .iter_mut()
                .find(|e| e.path == "tree/rootfs/etc/demo/demo.conf")
                .unwrap();
            conf.source = Source::Bytes(b"generation=666\n".to_vec());
        });
        let run = sb.run(shell, &d.build, &[]);
        run.expect_fail("manifest", &format!("{}: digest mismatch", d.delta_file));
        // The host keeps generation 1's files.
        assert_installed(&sb, 1);
    }
}

#[test]
fn a_delta_upgrade_killed_after_every_step_marker_converges_on_rerun() {
    let shell = Shell::Dash;
    let reference = Sandbox::new();
    let gen1 = build(&reference, "gen1", 1);
    reference.run(shell, &gen1, &[]).expect_ok();
    let d = delta_build(&reference, &gen1, |_| {});
    reference.run(shell, &d.build, &[]).expect_ok();
    let state = |sb: &Sandbox| std::fs::read_to_string(sb.root.join("var/lib/kiln/state")).unwrap();
    for step in STEPS {
        let sb = Sandbox::new();
        sb.run(shell, &gen1, &[]).expect_ok();
        let killed = sb.run(shell, &d.build, &[("KILN_TEST_KILL_AT", step)]);
        let last = killed.markers().pop().expect("a marker before the kill");
        assert!(
            killed.status.code().is_none() && last.step == step && last.status == "ok",
            "expected a kill right after `KILN {step} ok`\n{}",
            killed.describe()
        );
        sb.run(shell, &d.build, &[]).expect_ok();
        assert_eq!(installed(&sb), installed(&reference), "killed after {step}");
        assert_eq!(state(&sb), state(&reference), "killed after {step}");
    }
}

#[test]
fn in_a_guest_an_upgrade_from_a_delta_converges_and_a_rollback_to_it_rebuilds_it() {
    use crate::guest::{assert_ok, assert_rolled_back, install, Fixture};
    let fx = Fixture::new();
    // Generation 2 as the secrets and the demo bundle's delta over generation 1's, nothing else.
    let (gen1, gen2) = (&fx.builds[0], &fx.builds[1]);
    let dir = fx.kiln().join("gen2d");
    let h2 = crate::guest::host(2);
    let d = delta_between(
        &dir,
        &gen1.dir.join(&gen1.bundles[1].0),
        &gen2.dir.join(&gen2.bundles[1].0),
        &crate::guest::roles(fx.tmp.path(), 2)[1],
        &h2,
    );
    let delta = DeltaRef {
        for_sha256: gen2.bundles[1].1.clone(),
        sha256: d.sha256.clone(),
        file: d.file_name.clone(),
        base_sha256: gen1.bundles[1].1.clone(),
    };
    let secrets_sha256 = secrets(&dir, &h2, &gen2.bundles, &[delta]);
    let command =
        format!("sh /kiln/install.sh --dir /kiln/gen2d --secrets-sha256 {secrets_sha256}");
    // What a host converged to generation 2 shows, its state naming the delta it came from
    // and these secrets (their BUNDLES has the delta line).
    let expected = fx
        .expected(2)
        .replace(
            &format!("{}:{}", gen2.bundles[1].1, gen2.bundles[1].0),
            &format!("{}:{}", gen2.bundles[1].1, d.file_name),
        )
        .replace(&gen2.secrets_sha256, &secrets_sha256);
    // (The staging lines are sorted by digest, and the secrets' digest changed.)
    let lines = |s: String| {
        let mut l: Vec<String> = s.lines().map(str::to_owned).collect();
        l.sort();
        l
    };
    let expected = lines(expected);

    let g = fx.boot(&[]);
    assert_ok(&install(&g, &fx.command(1), ""));
    let up = install(&g, &command, "");
    assert_ok(&up);
    let m = kiln_install_tests::run::markers(&up.1);
    assert!(
        m[0].detail
            .contains(&format!("deltas={}:delta", gen2.bundles[1].0)),
        "{}",
        up.1
    );
    // The service whose configuration changed restarts, as after a full upgrade.
    assert!(m[9].detail.contains(" restarted=1 "), "{}", up.1);
    assert_eq!(lines(fx.probe(&g)), expected, "{}", up.1);
    assert!(assert_ok(&install(&g, &command, "")).ends_with(" unchanged"));

    // A broken generation 3 rolls back to 2, rebuilt from the kept delta and its base.
    let broken = install(&g, &fx.command(3), "KILN_HEALTH_WAIT=5");
    assert_rolled_back(&broken);
    let rerun = kiln_install_tests::run::markers(&broken.1);
    let verify = rerun.iter().rfind(|m| m.step == "verify").unwrap();
    assert!(
        verify
            .detail
            .contains(&format!("deltas={}:delta", gen2.bundles[1].0)),
        "{}",
        broken.1
    );
    assert_eq!(lines(fx.probe(&g)), expected, "{}", broken.1);
}

#[test]
fn a_signed_build_with_a_delta_line_installs_from_the_delta_and_an_altered_line_is_refused() {
    crate::sign::needs_openssl();
    let sb = Sandbox::new();
    let gen1 = build(&sb, "gen1", 1);
    sb.run(Shell::Dash, &gen1, &[]).expect_ok();
    // From generation 2 on the host takes only builds signed by its cluster's key.
    let (signer, public) = crate::sign::cluster_key(&sb, "demo");
    crate::sign::place_key(&sb, &public);
    let d = delta_build(&sb, &gen1, |_| {});
    let h2 = host(2);
    let refs = kiln_install_tests::fixture::bundle_refs(&d.build.bundles);
    // Signs `deltas` as kiln does (HOST, then BUNDLES as written) but writes `written` ones.
    let signed_secrets = |deltas: &[DeltaRef], written: &[DeltaRef]| {
        let members = contract::HostMembers {
            meta: kiln_install_tests::fixture::host_meta(&h2),
            bundles: &refs,
            deltas,
        };
        let mut e = entries(secrets_entries_with_deltas(&h2, &d.build.bundles, written));
        e.push(contract::HostMembers::signature_entry(
            signer.sign(&members.signed_text()),
        ));
        let spec = BundleSpec {
            entries: e,
            mtime: 0,
        };
        let path = d.build.dir.join(contract::SECRETS);
        kiln_bundle::write_archive(&path, 0o600, &spec, true)
            .unwrap()
            .sha256
    };
    // A delta line whose base was changed after signing: refused before anything is used.
    let mut altered = d.delta.clone();
    altered.base_sha256 = "0".repeat(64);
    let tampered = Build {
        secrets_sha256: signed_secrets(std::slice::from_ref(&d.delta), &[altered]),
        ..d.build.clone()
    };
    sb.run(Shell::Dash, &tampered, &[])
        .expect_fail("verify", "signature of HOST and BUNDLES does not verify");
    // As signed: verified, then installed from the delta.
    let signed = Build {
        secrets_sha256: signed_secrets(
            std::slice::from_ref(&d.delta),
            std::slice::from_ref(&d.delta),
        ),
        ..d.build.clone()
    };
    let run = sb.run(Shell::Dash, &signed, &[]);
    run.expect_ok();
    let verify = &run.markers()[0].detail;
    assert!(
        verify.contains(&format!("deltas={}:delta", d.build.bundles[1].0)),
        "{verify}"
    );
    assert!(
        run.stderr.contains("HOST and BUNDLES signed by"),
        "{}",
        run.describe()
    );
    assert_installed(&sb, 2);
}
