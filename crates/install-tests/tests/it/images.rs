//! install.sh and a combined image archive (`kiln build --images combined`): imported into
//! a real containerd (a test process with its own root and socket, which `ctr` finds through
//! CONTAINERD_ADDRESS), every image checked against IMAGE-DIGESTS, and the archive skipped
//! when containerd already has its images with their pinned digests.

use std::path::Path;

use kiln_image::{AssembleFile, AssembleSpec, ImageConfig, LockedImage, Platform, Reference};
use kiln_install_tests::fixture::{machine_arch, write_build, Build, Host, Role};
use kiln_install_tests::require_tool;
use kiln_install_tests::run::{Sandbox, Shell};
use kiln_store::Store;
use kiln_testkit::Containerd;

const PAUSE: &str = "registry.k8s.io/pause:3.10.1";
const HELPER: &str = "docker.io/site/helper:1";

/// Two assembled images with the same single layer (different configs), and the combined
/// archive holding both.
fn combined_archive(dir: &Path) -> (Vec<u8>, Vec<LockedImage>) {
    let store = Store::open(&dir.join("store")).unwrap();
    let file = dir.join("tool");
    std::fs::write(&file, b"#!/bin/sh\nexec sleep infinity\n").unwrap();
    let image = |reference: &str, entrypoint: &str| {
        let spec = AssembleSpec {
            reference: Reference::parse(reference).unwrap(),
            platform: Platform::linux(machine_arch()),
            files: vec![AssembleFile {
                path: "/tool".into(),
                source: file.clone(),
                mode: 0o755,
            }],
            config: ImageConfig {
                entrypoint: vec!["/tool".into(), entrypoint.into()],
                ..ImageConfig::default()
            },
            created: 1_700_000_000,
        };
        kiln_image::assemble(&store, &spec).unwrap()
    };
    let images = vec![image(PAUSE, "pause"), image(HELPER, "help")];
    assert_eq!(images[0].layers, images[1].layers, "one shared layer");
    let mut tar = Vec::new();
    kiln_image::write_image_archive(&store, &images, 1_700_000_000, &mut tar).unwrap();
    (tar, images)
}

/// A build whose runtime bundle carries `images/runtime.tar` with IMAGE-DIGESTS `digests`.
fn build(sb: &Sandbox, name: &str, tar: &[u8], digests: &[(&str, &str)]) -> Build {
    let mut role = Role::new("runtime");
    role.images = vec![("runtime.tar".into(), tar.to_vec())];
    role.image_digests = digests
        .iter()
        .map(|(r, d)| format!("images/runtime.tar {r} {d}"))
        .collect();
    write_build(&sb.path().join(name), &Host::new("etcd1", 1), &[role])
}

/// A sandbox whose `ctr` is the real one.
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.stubs.join("ctr")).unwrap();
    sb
}

#[test]
fn a_combined_archive_imports_every_image_and_is_skipped_when_containerd_has_them() {
    require_tool("containerd", "containerd");
    require_tool("ctr", "containerd");
    let tmp = tempfile::tempdir().unwrap();
    let (tar, images) = combined_archive(tmp.path());
    let ctd = Containerd::start(&tmp.path().join("containerd"));
    let sock = ctd.sock.display().to_string();
    let env = [
        ("CONTAINERD_ADDRESS", sock.as_str()),
        ("CONTAINERD_SNAPSHOTTER", "native"),
    ];
    let pinned: Vec<(&str, &str)> = images
        .iter()
        .zip([PAUSE, HELPER])
        .map(|(i, r)| (r, i.manifest_digest.as_str()))
        .collect();
    let refs = format!("refs={PAUSE}@{},{HELPER}@{}", pinned[0].1, pinned[1].1);

    // First run: one import brings both images, under their names and pinned digests.
    let sb = sandbox();
    let b = build(&sb, "b", &tar, &pinned);
    let run = sb.run(Shell::Dash, &b, &env);
    run.expect_ok();
    let line = format!("KILN images ok imported=1 present=0 runtime=ctr {refs}\n");
    assert!(run.stdout.contains(&line), "{}", run.describe());
    let mut want: Vec<(String, String)> = pinned
        .iter()
        .map(|(r, d)| (r.to_string(), d.to_string()))
        .collect();
    want.sort();
    assert_eq!(ctd.images(), want);

    // A rerun knows the archive from its state.
    let again = sb.run(Shell::Dash, &b, &env);
    assert!(
        again.expect_ok().ends_with(" unchanged"),
        "{}",
        again.describe()
    );
    assert!(again
        .stdout
        .contains("KILN images ok imported=0 present=1 "));

    // A host without that state whose containerd already has both images skips it too.
    let fresh = sandbox();
    let run = fresh.run(Shell::Busybox, &build(&fresh, "b", &tar, &pinned), &env);
    run.expect_ok();
    let line = format!("KILN images ok imported=0 present=1 runtime=ctr {refs}\n");
    assert!(run.stdout.contains(&line), "{}", run.describe());

    // An archive whose images do not carry the pinned digests is imported, then refused.
    let wrong = [pinned[0], (HELPER, pinned[0].1)];
    let bad = sandbox();
    let run = bad.run(Shell::Dash, &build(&bad, "b", &tar, &wrong), &env);
    run.expect_fail(
        "images",
        &format!(
            "image {HELPER} from images/runtime.tar is not in containerd with digest {}",
            pinned[0].1
        ),
    );
}
