//! Hostile archives: install.sh must refuse each one from the listing alone, before writing
//! anything, whether it comes as a role bundle or as the host's secrets.

use kiln_install_tests::archive::{manifest_for, write_tar_gz, Kind, RawEntry};
use kiln_install_tests::fixture::{
    role_entries, secrets_entries, write_role, write_secrets, Build,
};
use kiln_install_tests::run::{tree_diff, Sandbox, Shell};

use crate::common::{host, roles};

/// (case, hostile entries to add, text the `KILN list fail` marker must contain).
fn cases(victim: &str) -> Vec<(&'static str, Vec<RawEntry>, &'static str)> {
    let raw = |name: &str, kind: Kind| RawEntry {
        name: name.into(),
        mode: 0o644,
        kind,
    };
    let file = |name: &str| RawEntry::file(name, 0o644, b"pwned\n");
    vec![
        ("absolute path", vec![file(victim)], "absolute path"),
        (
            "dot-dot",
            vec![file(&format!("rootfs/../../../../../../..{victim}"))],
            "`..` component",
        ),
        (
            "symlink",
            vec![raw(
                "rootfs/etc/shadow-link",
                Kind::Symlink("/etc/shadow".into()),
            )],
            "not a regular file",
        ),
        (
            "hardlink",
            vec![raw("rootfs/etc/hard", Kind::Hardlink("BUNDLE".into()))],
            "not a regular file",
        ),
        (
            "char device",
            vec![raw("rootfs/dev/null2", Kind::CharDevice)],
            "not a regular file",
        ),
        (
            "fifo",
            vec![raw("rootfs/run/fifo", Kind::Fifo)],
            "not a regular file",
        ),
        (
            "directory",
            vec![raw("rootfs/etc/", Kind::Dir)],
            "not a regular file",
        ),
        (
            "duplicate",
            vec![file("rootfs/etc/twice"), file("rootfs/etc/twice")],
            "duplicate entry rootfs/etc/twice",
        ),
        (
            "dot component",
            vec![file("rootfs/./etc/x")],
            "empty or `.` component",
        ),
        (
            "newline in name",
            vec![file("rootfs/etc/a\nb")],
            "unexpected character",
        ),
        (
            "space in name",
            vec![file("rootfs/etc/a b")],
            "not a regular file",
        ),
    ]
}

fn raw_entries(plain: Vec<(String, u32, Vec<u8>)>) -> Vec<RawEntry> {
    plain
        .iter()
        .map(|(p, m, c)| RawEntry::file(p, *m, c))
        .collect()
}

#[test]
fn hostile_role_bundles_are_refused_at_list_before_any_write() {
    let sb = Sandbox::new();
    let victim = sb.path().join("pwned-by-bundle").display().to_string();
    let h = host(1);
    for (case, hostile, needle) in cases(&victim) {
        let dir = sb.path().join(case.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let common = write_role(&dir, &roles(1)[0], &h);
        // The etcd bundle carries the hostile entries; BUNDLES pins its real digest, so
        // verify passes and only the listing can catch it.
        let mut entries = raw_entries(role_entries(&roles(1)[1], &h));
        entries.insert(0, manifest_for(&entries));
        entries.extend(hostile);
        let name = "etcd-debian12-0000000000000000.tar.gz".to_string();
        let sha = write_tar_gz(&dir.join(&name), &entries);
        let bundles = vec![common, (name.clone(), sha)];
        let secrets_sha256 = write_secrets(&dir, &h, &bundles);
        let b = Build {
            dir,
            secrets_sha256,
            bundles,
        };
        for shell in Shell::ALL {
            let before = sb.tree();
            let run = sb.run(shell, &b, &[]);
            run.expect_fail("list", &format!("{name}: {needle}"));
            let diff = tree_diff(&before, &sb.tree(), true);
            assert!(
                diff.is_empty(),
                "{case} ({shell:?}): written under KILN_ROOT before the refusal: {diff:#?}"
            );
            assert!(
                !std::path::Path::new(&victim).exists(),
                "{case} ({shell:?}): wrote {victim}"
            );
        }
    }
}

#[test]
fn hostile_secrets_are_refused_at_list_before_any_write() {
    let sb = Sandbox::new();
    let victim = sb.path().join("pwned-by-secrets").display().to_string();
    let h = host(1);
    for (case, hostile, needle) in cases(&victim) {
        let dir = sb.path().join(case.replace(' ', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let bundles: Vec<_> = roles(1).iter().map(|r| write_role(&dir, r, &h)).collect();
        let mut entries = raw_entries(secrets_entries(&h, &bundles));
        entries.insert(0, manifest_for(&entries));
        entries.extend(hostile);
        let secrets_sha256 = write_tar_gz(&dir.join("secrets.tar.gz"), &entries);
        let b = Build {
            dir,
            secrets_sha256,
            bundles,
        };
        let before = sb.tree();
        sb.run(Shell::Dash, &b, &[])
            .expect_fail("list", &format!("secrets.tar.gz: {needle}"));
        let diff = tree_diff(&before, &sb.tree(), true);
        assert!(
            diff.is_empty(),
            "{case}: written under KILN_ROOT before the refusal: {diff:#?}"
        );
        assert!(
            !std::path::Path::new(&victim).exists(),
            "{case}: wrote {victim}"
        );
    }
}
