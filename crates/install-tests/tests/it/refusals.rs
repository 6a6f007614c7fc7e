//! What install.sh refuses, and that a refusal changes nothing: mix-and-match, another
//! host's secrets, an older generation, corrupted or inconsistent archives, a host the
//! bundles cannot run on, bad usage.

use kiln_install_tests::archive::{manifest_for, write_tar_gz, RawEntry};
use kiln_install_tests::fixture::{role_entries, write_build, write_secrets, Build};
use kiln_install_tests::run::{Sandbox, Shell};

use crate::common::{build, host, refused, roles};

#[test]
fn bundle_of_another_build_under_a_listed_name_is_refused_at_verify() {
    let sb = Sandbox::new();
    let ours = build(&sb, "ours", 1);
    let mut other_roles = roles(1);
    other_roles[1].files[0].content = b"generation=1 but another build\n".to_vec();
    let theirs = write_build(&sb.path().join("theirs"), &host(1), &other_roles);
    // Mix and match: their etcd bundle where ours is expected.
    std::fs::copy(
        theirs.dir.join(&theirs.bundles[1].0),
        ours.dir.join(&ours.bundles[1].0),
    )
    .unwrap();
    refused(&sb, &ours, &[], "verify", "bundle from another build?");
    std::fs::remove_file(ours.dir.join(&ours.bundles[1].0)).unwrap();
    refused(&sb, &ours, &[], "verify", "missing bundle");
}

#[test]
fn secrets_for_another_host_are_refused_at_verify() {
    let sb = Sandbox::new();
    let b = build(&sb, "b", 1);
    refused(
        &sb,
        &b,
        &[("KILN_EXPECT_HOST", "etcd2")],
        "verify",
        "secrets are for host etcd1, this host is etcd2",
    );
}

#[test]
fn older_generation_is_refused_unless_downgrade_is_allowed() {
    let sb = Sandbox::new();
    sb.run(Shell::Dash, &build(&sb, "gen2", 2), &[]).expect_ok();
    let gen1 = build(&sb, "gen1", 1);
    refused(
        &sb,
        &gen1,
        &[],
        "verify",
        "generation 1 is older than the installed generation 2",
    );
    let done = sb
        .run(Shell::Busybox, &gen1, &[("KILN_ALLOW_DOWNGRADE", "1")])
        .expect_ok();
    assert!(done.ends_with("generation=1"), "{done}");
    crate::common::assert_installed(&sb, 1);
}

#[test]
fn corrupted_byte_in_a_bundle_is_refused_at_verify() {
    let sb = Sandbox::new();
    let b = build(&sb, "b", 1);
    let path = b.dir.join(&b.bundles[1].0);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    refused(
        &sb,
        &b,
        &[],
        "verify",
        &format!("but this host's BUNDLES pins {}", b.bundles[1].1),
    );
}

#[test]
fn secrets_not_matching_the_pinned_digest_are_refused_at_verify() {
    let sb = Sandbox::new();
    let mut b = build(&sb, "b", 1);
    b.secrets_sha256 = "0".repeat(64);
    refused(&sb, &b, &[], "verify", "secrets.tar.gz has sha256");
    b.secrets_sha256 = "not-a-digest".into();
    refused(
        &sb,
        &b,
        &[],
        "verify",
        "--secrets-sha256 must be 64 lowercase hex digits",
    );
}

#[test]
fn manifest_not_matching_the_content_is_refused_before_install() {
    let sb = Sandbox::new();
    let dir = sb.path().join("b");
    std::fs::create_dir_all(&dir).unwrap();
    let h = host(1);
    let mut bundles = Vec::new();
    for (n, role) in roles(1).iter().enumerate() {
        let mut entries: Vec<RawEntry> = role_entries(role, &h)
            .iter()
            .map(|(p, m, c)| RawEntry::file(p, *m, c))
            .collect();
        let mut manifest = manifest_for(&entries);
        if n == 1 {
            // The MANIFEST pins other bytes for demo.conf than the archive carries.
            let kiln_install_tests::archive::Kind::File(text) = &mut manifest.kind else {
                unreachable!()
            };
            let good = kiln_install_tests::sha256_hex(b"generation=1\n");
            *text = String::from_utf8(text.clone())
                .unwrap()
                .replace(&good, &"e".repeat(64))
                .into_bytes();
        }
        entries.insert(0, manifest);
        let name = format!("{}-debian12-{:016}.tar.gz", role.name, n);
        let sha = write_tar_gz(&dir.join(&name), &entries);
        bundles.push((name, sha));
    }
    let secrets_sha256 = write_secrets(&dir, &h, &bundles);
    let b = Build {
        dir,
        secrets_sha256,
        bundles,
    };
    for shell in Shell::ALL {
        sb.run(shell, &b, &[]).expect_fail(
            "manifest",
            "digest mismatch: rootfs/etc/demo/demo.conf: FAILED",
        );
        assert!(
            !sb.root.join("etc/demo").exists(),
            "{shell:?}: files were installed from a bad bundle"
        );
    }
}

#[test]
fn preflight_refuses_a_host_the_bundles_cannot_run_on_before_any_change() {
    let sb = Sandbox::new();
    let check = |b: &Build, env: &[(&str, &str)], needle: &str| {
        for shell in Shell::ALL {
            sb.run(shell, b, env).expect_fail("preflight", needle);
            assert!(
                !sb.root.join("etc/demo").exists(),
                "{shell:?}: files were installed"
            );
            assert_eq!(
                std::fs::read_to_string(sb.root.join("etc/fstab")).unwrap(),
                kiln_install_tests::run::FSTAB
            );
        }
    };
    let mut h = host(1);
    h.arch = "riscv64".into();
    check(
        &write_build(&sb.path().join("arch"), &h, &roles(1)),
        &[],
        "bundles are for riscv64",
    );
    let mut h = host(1);
    h.not_after = Some(1000);
    check(
        &write_build(&sb.path().join("expired"), &h, &roles(1)),
        &[],
        "after the certificates' notAfter",
    );
    let mut h = host(1);
    h.not_before = Some(4_102_444_800); // 2100-01-01
    check(
        &write_build(&sb.path().join("early"), &h, &roles(1)),
        &[],
        "before the certificates' notBefore",
    );
    let b = build(&sb, "family", 1);
    std::fs::write(
        sb.root.join("etc/os-release"),
        "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
    check(
        &b,
        &[],
        "OS family is el (rocky 9.3), bundles are for debian",
    );
}

#[test]
fn usage_errors_are_reported_as_a_verify_failure() {
    let sb = Sandbox::new();
    let b = build(&sb, "b", 1);
    let dir = b.dir.display().to_string();
    sb.run_args(Shell::Dash, &["/nonexistent", &b.secrets_sha256], &[])
        .expect_fail("verify", "--dir DIR");
    let out = std::process::Command::new("dash")
        .arg(kiln_install_tests::install_sh())
        .args(["--dir", &dir, "--bogus"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("KILN verify fail usage: unknown argument --bogus"));
}
