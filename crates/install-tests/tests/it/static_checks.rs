//! install.sh is portable POSIX sh: shellcheck clean, parsed by dash and busybox sh.

use std::process::Command;

use kiln_install_tests::{install_sh, require_tool};

fn check(argv: &[&str]) {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .arg(install_sh())
        .output()
        .expect("run checker");
    assert!(
        out.status.success(),
        "`{} install.sh` failed:\n{}{}",
        argv.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_sh_is_shellcheck_clean_as_posix_sh() {
    require_tool("shellcheck", "shellcheck");
    check(&["shellcheck", "-s", "sh"]);
}

#[test]
fn install_sh_parses_under_dash_and_busybox_sh() {
    require_tool("dash", "dash");
    require_tool("busybox", "busybox");
    check(&["dash", "-n"]);
    check(&["busybox", "sh", "-n"]);
}
