//! Running install.sh on this machine under a temporary KILN_ROOT, and reading its markers.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use crate::fixture::Build;

/// install.sh's steps, in marker order.
pub const STEPS: [&str; 13] = [
    "verify",
    "list",
    "preflight",
    "extract",
    "manifest",
    "prep",
    "packages",
    "install",
    "images",
    "units",
    "health",
    "state",
    "done",
];

/// A POSIX shell install.sh must run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shell {
    /// Debian's /bin/sh.
    Dash,
    /// BusyBox ash, as on minimal and embedded hosts.
    Busybox,
}

impl Shell {
    /// Both shells.
    pub const ALL: [Shell; 2] = [Shell::Dash, Shell::Busybox];

    /// Command and leading arguments that run a script.
    pub fn argv(self) -> &'static [&'static str] {
        match self {
            Shell::Dash => &["dash"],
            Shell::Busybox => &["busybox", "sh"],
        }
    }

    /// Fails the test if this shell is not installed.
    pub fn require(self) {
        match self {
            Shell::Dash => crate::require_tool("dash", "dash"),
            Shell::Busybox => crate::require_tool("busybox", "busybox"),
        }
    }
}

/// One `KILN <step> <status> <detail>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Step name.
    pub step: String,
    /// `ok` or `fail`.
    pub status: String,
    /// The rest of the line.
    pub detail: String,
}

/// The marker lines in `text`, in order.
pub fn markers(text: &str) -> Vec<Marker> {
    text.lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("KILN "))
        .map(|rest| {
            let mut w = rest.splitn(3, ' ');
            Marker {
                step: w.next().unwrap_or_default().into(),
                status: w.next().unwrap_or_default().into(),
                detail: w.next().unwrap_or_default().into(),
            }
        })
        .collect()
}

/// What one run of install.sh did.
#[derive(Debug)]
pub struct Outcome {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout (the markers).
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

impl From<std::process::Output> for Outcome {
    fn from(out: std::process::Output) -> Self {
        Outcome {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into(),
            stderr: String::from_utf8_lossy(&out.stderr).into(),
        }
    }
}

impl Outcome {
    /// The marker lines of stdout.
    pub fn markers(&self) -> Vec<Marker> {
        markers(&self.stdout)
    }

    /// stdout and stderr, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "status {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// Asserts a successful run: exit 0 and one `ok` marker per step, in order. Returns
    /// the `done` marker's detail.
    pub fn expect_ok(&self) -> String {
        let m = self.markers();
        let steps: Vec<&str> = m.iter().map(|m| m.step.as_str()).collect();
        assert!(
            self.status.success() && steps == STEPS && m.iter().all(|m| m.status == "ok"),
            "expected a successful run with one ok marker per step\n{}",
            self.describe()
        );
        m[12].detail.clone()
    }

    /// Asserts a refusal: non-zero exit, `ok` markers for the steps before `step`, then
    /// `KILN <step> fail …` containing `needle` as the last marker.
    pub fn expect_fail(&self, step: &str, needle: &str) {
        let m = self.markers();
        let at = STEPS.iter().position(|s| *s == step).expect("known step");
        let ok_before = m.len() == at + 1
            && m[..at]
                .iter()
                .zip(STEPS)
                .all(|(m, s)| m.step == s && m.status == "ok")
            && m[at].step == step
            && m[at].status == "fail"
            && m[at].detail.contains(needle);
        assert!(
            !self.status.success() && ok_before,
            "expected `KILN {step} fail …{needle}…`\n{}",
            self.describe()
        );
    }
}

/// A temporary KILN_ROOT with a Debian 12 /etc/os-release and an fstab with a swap line,
/// plus a stub `ctr` on PATH that records its arguments.
pub struct Sandbox {
    tmp: tempfile::TempDir,
    /// KILN_ROOT.
    pub root: PathBuf,
    /// Folder put first on PATH.
    pub stubs: PathBuf,
    /// Where the stub ctr appends its arguments, one call a line.
    pub ctr_log: PathBuf,
}

/// The fstab every sandbox starts with.
pub const FSTAB: &str = "UUID=0000 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n";

impl Sandbox {
    /// A fresh sandbox.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("root");
        let stubs = tmp.path().join("stubs");
        let ctr_log = tmp.path().join("ctr.log");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&stubs).unwrap();
        std::fs::create_dir_all(tmp.path().join("tmp")).unwrap();
        std::fs::write(
            root.join("etc/os-release"),
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/fstab"), FSTAB).unwrap();
        let ctr = stubs.join("ctr");
        std::fs::write(
            &ctr,
            format!("#!/bin/sh\necho \"$*\" >>'{}'\n", ctr_log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&ctr, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self {
            tmp,
            root,
            stubs,
            ctr_log,
        }
    }

    /// Folder of temporary build outputs for this sandbox.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs install.sh under `shell` for `build` with KILN_NO_SYSTEMCTL=1, host etcd1, fast
    /// health retries, and `env` on top.
    pub fn run(&self, shell: Shell, build: &Build, env: &[(&str, &str)]) -> Outcome {
        self.run_args(
            shell,
            &[&build.dir.display().to_string(), &build.secrets_sha256],
            env,
        )
    }

    /// Like [`Sandbox::run`] with `extra` arguments after `--dir` and `--secrets-sha256`
    /// (e.g. `--source URL`).
    pub fn run_with(
        &self,
        shell: Shell,
        build: &Build,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Outcome {
        let args = [&build.dir.display().to_string(), &build.secrets_sha256];
        let out = self
            .command(&[], shell, &[args[0], args[1]], env)
            .args(extra)
            .output()
            .expect("run install.sh");
        Outcome::from(out)
    }

    /// Like [`Sandbox::run`] with `--dir args[0] --secrets-sha256 args[1]`.
    pub fn run_args(&self, shell: Shell, args: &[&str; 2], env: &[(&str, &str)]) -> Outcome {
        let out = self
            .command(&[], shell, args, env)
            .output()
            .expect("run install.sh");
        Outcome::from(out)
    }

    /// The command [`Sandbox::run_args`] runs, behind `wrapper` (a command line that ends by
    /// running its arguments, e.g. `unshare … sh -c '…; exec "$@"' sh`), to spawn or wrap.
    pub fn command(
        &self,
        wrapper: &[&str],
        shell: Shell,
        args: &[&str; 2],
        env: &[(&str, &str)],
    ) -> Command {
        shell.require();
        let argv: Vec<&str> = wrapper.iter().chain(shell.argv()).copied().collect();
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .arg(crate::install_sh())
            .args(["--dir", args[0], "--secrets-sha256", args[1]])
            .env_clear()
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.stubs.display()),
            )
            .env("TMPDIR", self.tmp.path().join("tmp"))
            .env("KILN_ROOT", &self.root)
            .env("KILN_NO_SYSTEMCTL", "1")
            .env("KILN_EXPECT_HOST", "etcd1")
            .env("KILN_HEALTH_TRIES", "2")
            .env("KILN_HEALTH_INTERVAL", "0")
            .envs(env.iter().copied());
        cmd
    }

    /// A PATH holding every command of the system folders but `missing` (and the sandbox's
    /// stub ctr unless `ctr` is missing).
    pub fn path_without(&self, missing: &[&str]) -> String {
        let bin = self
            .path()
            .join(format!("bin-without-{}", missing.join("-")));
        std::fs::create_dir_all(&bin).unwrap();
        let dirs = [
            self.stubs.as_path(),
            Path::new("/usr/local/sbin"),
            Path::new("/usr/local/bin"),
            Path::new("/usr/sbin"),
            Path::new("/usr/bin"),
            Path::new("/sbin"),
            Path::new("/bin"),
        ];
        for dir in dirs {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let link = bin.join(&name);
                if missing.contains(&name.as_str()) || link.symlink_metadata().is_ok() {
                    continue;
                }
                std::os::unix::fs::symlink(e.path(), link).unwrap();
            }
        }
        bin.display().to_string()
    }

    /// The state of every file and folder under KILN_ROOT.
    pub fn tree(&self) -> Tree {
        tree(&self.root)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// One path's state: type, mode, content digest (files), modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// `f` file, `d` folder, `l` link, `o` other.
    pub kind: char,
    /// Permission bits.
    pub mode: u32,
    /// sha256 of a file's content.
    pub sha256: Option<String>,
    /// mtime in nanoseconds.
    pub mtime_ns: i64,
}

/// Paths (relative to the root) → state.
pub type Tree = BTreeMap<String, FileState>;

/// Every path under `root`, recursively, links not followed.
pub fn tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let ft = md.file_type();
            let kind = if ft.is_file() {
                'f'
            } else if ft.is_dir() {
                'd'
            } else if ft.is_symlink() {
                'l'
            } else {
                'o'
            };
            let sha256 = ft
                .is_file()
                .then(|| crate::sha256_hex(&std::fs::read(&p).expect("read")));
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                FileState {
                    kind,
                    mode: md.mode() & 0o7777,
                    sha256,
                    mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
                },
            );
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// The paths that differ between two trees, described; folder mtimes count only if
/// `folder_mtimes` (a rerun may create and remove its lock folder, a refusal must not).
pub fn tree_diff(before: &Tree, after: &Tree, folder_mtimes: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (path, a) in before {
        match after.get(path) {
            None => out.push(format!("removed {path}")),
            Some(b) if a == b => {}
            Some(b) if a.kind == 'd' && b.kind == 'd' && a.mode == b.mode && !folder_mtimes => {}
            Some(b) => out.push(format!("changed {path}: {a:?} -> {b:?}")),
        }
    }
    out.extend(
        after
            .keys()
            .filter(|p| !before.contains_key(*p))
            .map(|p| format!("added {p}")),
    );
    out
}
