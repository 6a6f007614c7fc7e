//! Fixtures shared by the local tests: two roles and a host, in two generations.

use std::collections::BTreeMap;

use kiln_install_tests::fixture::{file, write_build, Build, Host, Role};
use kiln_install_tests::run::{tree_diff, Sandbox, Shell};

/// The `common` and `etcd` roles of `generation` (only etcd's demo.conf differs).
pub fn roles(generation: u32) -> Vec<Role> {
    let mut common = Role::new("common");
    common.files = vec![
        file("/etc/common.conf", 0o644, "from the common bundle\n"),
        file(
            "/etc/sysctl.d/90-kiln-test.conf",
            0o644,
            "net.ipv4.ip_forward = 1\n",
        ),
        file(
            "/etc/modules-load.d/kiln-test.conf",
            0o644,
            "# for tests\nbr_netfilter\n",
        ),
    ];
    let mut etcd = Role::new("etcd");
    etcd.files = vec![
        file(
            "/etc/demo/demo.conf",
            0o644,
            format!("generation={generation}\n"),
        ),
        file("/usr/local/bin/demo", 0o755, "#!/bin/sh\necho demo\n"),
        file("/etc/demo/private.conf", 0o640, "group readable\n"),
        file("/usr/local/lib/demo/tool", 0o750, "#!/bin/sh\n"),
        file("/var/lib/demo/owner-only", 0o700, "#!/bin/sh\n"),
        file(
            "/etc/systemd/system/demo.service",
            0o644,
            "[Service]\nExecStart=/usr/local/bin/demo\n",
        ),
    ];
    etcd.units = vec!["demo.service".into()];
    etcd.images = vec![("pause.tar".into(), b"not really an image\n".to_vec())];
    etcd.health = "true".into();
    vec![common, etcd]
}

/// Host etcd1 of `generation`, with a key, a certificate and an override of a role file.
pub fn host(generation: u32) -> Host {
    let mut h = Host::new("etcd1", generation);
    h.files
        .push(file("/etc/demo/pki/server.key", 0o600, "PRIVATE KEY\n"));
    h.files
        .push(file("/etc/demo/pki/server.crt", 0o644, "CERTIFICATE\n"));
    // Host scope wins over the role bundle (layering: profile → … → host).
    h.files
        .push(file("/etc/common.conf", 0o644, "host override\n"));
    h
}

/// Writes generation `generation` into `sandbox`'s folder `name`.
pub fn build(sandbox: &Sandbox, name: &str, generation: u32) -> Build {
    write_build(
        &sandbox.path().join(name),
        &host(generation),
        &roles(generation),
    )
}

/// Path → (mode, content) every converged host of `generation` has.
pub fn expected_files(generation: u32) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for f in roles(generation)
        .iter()
        .flat_map(|r| r.files.clone())
        .chain(host(generation).files)
    {
        out.insert(
            f.path.trim_start_matches('/').to_string(),
            (f.mode, f.content),
        );
    }
    out
}

/// Asserts every expected file of `generation` is installed under `sandbox` with its mode.
pub fn assert_installed(sandbox: &Sandbox, generation: u32) {
    use std::os::unix::fs::PermissionsExt;
    for (path, (mode, content)) in expected_files(generation) {
        let p = sandbox.root.join(&path);
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{path} not installed: {e}"));
        assert_eq!(got, content, "content of {path}");
        let got_mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            got_mode, mode,
            "mode of {path}: {got_mode:o}, want {mode:o}"
        );
    }
}

/// The tree under KILN_ROOT without modification times (what "converged" compares).
pub fn content_tree(sandbox: &Sandbox) -> BTreeMap<String, (char, u32, Option<String>)> {
    sandbox
        .tree()
        .into_iter()
        .map(|(p, s)| (p, (s.kind, s.mode, s.sha256)))
        .collect()
}

/// Runs `build` under each shell and asserts a refusal at `step` mentioning `needle` that left
/// the root as it was, folder times included.
pub fn refused(sb: &Sandbox, b: &Build, env: &[(&str, &str)], step: &str, needle: &str) {
    for shell in Shell::ALL {
        let before = sb.tree();
        sb.run(shell, b, env).expect_fail(step, needle);
        let diff = tree_diff(&before, &sb.tree(), true);
        assert!(
            diff.is_empty(),
            "{shell:?}: a refused run (at {step}) changed files under KILN_ROOT: {diff:#?}"
        );
    }
}
