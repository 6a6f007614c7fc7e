//! Running the real tools; a missing tool fails the test, naming its Debian package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Debian's Python, which has PyYAML (python3-yaml) and cloud-init's modules.
pub const PYTHON: &str = "/usr/bin/python3";

/// The path of `name`, or a panic naming the Debian package to install.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&dirs)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("`{name}` not found: install the Debian package `{package}` (apt-get install -y {package})")
    })
}

/// Runs `cmd`, panicking with its command line, status and output unless it succeeds.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|err| panic!("cannot start {cmd:?}: {err}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `cmd` and returns its stdout as text.
pub fn run_text(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("UTF-8 output")
}

/// Debian's python3 with PyYAML and cloud-init importable, or a clear panic.
pub fn python() -> Command {
    assert!(
        Path::new(PYTHON).is_file(),
        "{PYTHON} not found: install the Debian packages `python3-yaml` and `cloud-init`"
    );
    let probe = Command::new(PYTHON)
        .args(["-c", "import yaml, cloudinit.util"])
        .output()
        .expect("run python3");
    assert!(
        probe.status.success(),
        "{PYTHON} cannot import yaml and cloudinit: install the Debian packages `python3-yaml` and `cloud-init`\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    Command::new(PYTHON)
}

/// `blkid -p -o export` of a regular file, as `KEY=value` lines.
pub fn blkid(image: &Path) -> String {
    run_text(
        Command::new(tool("blkid", "util-linux"))
            .args(["-p", "-o", "export"])
            .arg(image),
    )
}
