//! systemd-nspawn guests booting the rootfs of tests/e2e/guest-image.sh (a few seconds per
//! boot, so the kill matrix fits in CI). There is no systemd or machined on the test
//! machine, so nspawn runs with `--register=no --keep-unit` and commands enter the guest
//! with nsenter.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{repo_root, require_root, require_tool};

/// The guest image's rootfs, built (or reused from its cache) once per test process.
pub fn guest_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        require_root();
        require_tool("mmdebstrap", "mmdebstrap");
        require_tool("mke2fs", "e2fsprogs");
        require_tool("qemu-img", "qemu-utils");
        let script = repo_root().join("tests/e2e/guest-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .expect("run guest-image.sh");
        assert!(
            out.status.success(),
            "{} failed ({})",
            script.display(),
            out.status
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("guest-image.sh prints its folder")
                .trim(),
        );
        let rootfs = dir.join("rootfs");
        assert!(
            rootfs.join("usr/lib/systemd/systemd").exists(),
            "no systemd in {}",
            rootfs.display()
        );
        rootfs
    })
}

/// A booted guest; halted (SIGTERM to nspawn) when dropped.
pub struct Guest {
    child: Child,
    leader: u32,
    tmp: tempfile::TempDir,
}

/// PATH inside the guest.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl Guest {
    /// Boots the guest image with a throw-away overlay (`--volatile=overlay`), no network,
    /// hostname `hostname` and the read-only binds (host path, guest path); returns once
    /// systemd has finished booting (including cloud-init's final stage).
    pub fn boot(hostname: &str, binds_ro: &[(&Path, &str)]) -> Guest {
        require_tool("systemd-nspawn", "systemd-container");
        require_tool("nsenter", "util-linux");
        let rootfs = guest_rootfs();
        let tmp = tempfile::tempdir().expect("temp dir");
        let console = File::create(tmp.path().join("console.log")).expect("console log");
        let mut cmd = Command::new("systemd-nspawn");
        cmd.args([
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--boot",
            "--private-network",
            "--quiet",
        ])
        .arg(format!("--hostname={hostname}"))
        .arg("-D")
        .arg(rootfs);
        for (host, guest) in binds_ro {
            cmd.arg(format!("--bind-ro={}:{guest}", host.display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .expect("spawn systemd-nspawn");
        let mut g = Guest {
            child,
            leader: 0,
            tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!(
                    "systemd-nspawn exited ({status}) before the guest booted\n{}",
                    g.console()
                );
            }
            // The guest's PID 1 is the child of nspawn that runs systemd (a short-lived
            // helper child comes first).
            g.leader = children(g.child.id())
                .into_iter()
                .find(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "systemd")
                })
                .unwrap_or(0);
            let mut state = String::new();
            if g.leader != 0 {
                let out = g.exec("systemctl is-system-running --wait", 90);
                state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if state == "running" || state == "degraded" {
                    return g;
                }
            }
            assert!(
                Instant::now() < deadline,
                "guest did not finish booting ({state})\n{}",
                g.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `script` with sh inside the guest (root, clean environment), at most `secs`.
    pub fn exec(&self, script: &str, secs: u32) -> Output {
        Command::new("timeout")
            .args([
                "-s",
                "KILL",
                &secs.to_string(),
                "nsenter",
                "-t",
                &self.leader.to_string(),
                "-a",
                "-r",
                "-w",
                "--",
            ])
            .args([
                "/usr/bin/env",
                "-i",
                &format!("PATH={GUEST_PATH}"),
                "LC_ALL=C",
                "sh",
                "-c",
                script,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// Runs `script` inside the guest, asserts it succeeded and returns its stdout.
    pub fn sh(&self, script: &str) -> String {
        // Generous: a whole install.sh run on a loaded 2-core machine can take a minute or more.
        let out = self.exec(script, 300);
        assert!(
            out.status.success(),
            "in the guest: `{script}` failed ({})\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into()
    }

    /// Everything the guest printed on its console so far.
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("console.log")).unwrap_or_default()
    }

    /// Waits until the console shows a line containing `needle`; false after `secs`.
    pub fn wait_console(&self, needle: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.console().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        // SIGTERM halts the guest cleanly; SIGKILL would leave its processes running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}
