//! What a boot produced: per-host outcomes, timings and, with `keep`, how
//! to stop what is still running.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::events::HostPhase;
use crate::marker::Marker;

/// How many console lines a failure carries.
pub const TAIL_LINES: usize = 30;

/// The outcome of [`crate::boot`].
#[derive(Debug, Clone)]
pub struct BootReport {
    /// The cluster's name from `vagrant.json`.
    pub cluster: String,
    /// Every booted host, in `vagrant.json`'s order.
    pub hosts: Vec<HostReport>,
    /// From the call to the last host's outcome (before stopping guests).
    pub elapsed: Duration,
    /// Where the serial logs are.
    pub log_dir: PathBuf,
    /// Set with `keep`: what is still running and how to stop it.
    pub kept: Option<Kept>,
}

impl BootReport {
    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&HostReport> {
        self.hosts.iter().find(|h| h.name == name)
    }
}

/// One host's outcome.
#[derive(Debug, Clone)]
pub struct HostReport {
    /// Host name.
    pub name: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Where it ended (`Ready` on success).
    pub phase: HostPhase,
    /// Every `KILN` marker it printed, in order.
    pub markers: Vec<Marker>,
    /// Its serial console log.
    pub serial_log: PathBuf,
    /// From its QEMU start to its first `KILN done ok`.
    pub done_after: Option<Duration>,
    /// From its QEMU start to cloud-init's final message after the done marker.
    pub ready_after: Option<Duration>,
    /// Why it failed, if it did.
    pub failure: Option<FailReason>,
}

/// Why a host failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// install.sh printed `KILN <step> fail …`.
    Marker(Marker),
    /// An upgrade failed (`failed`) and install.sh rolled the host back to the generation it
    /// had (`KILN rollback ok …`) or could not (`KILN rollback fail …`).
    RolledBack {
        /// The marker of the step that failed.
        failed: Marker,
        /// install.sh's `rollback` marker.
        rollback: Marker,
    },
    /// cloud-init finished but install.sh never printed `KILN done ok`.
    NoDoneMarker,
    /// The guest kernel panicked (the line).
    KernelPanic(String),
    /// cloud-init's final stage failed before `KILN done ok` (systemd's line).
    CloudInitFailed(String),
    /// The guest kernel could not read or write its disk (the line): the host could not
    /// write the guest's disk file.
    DiskError(String),
    /// QEMU (or, for a container host, systemd-nspawn) exited before the host was ready.
    QemuExited {
        /// Its exit status.
        status: String,
        /// The end of what it printed on stderr.
        stderr: String,
    },
    /// The host was not ready within the time limit.
    TimedOut(Duration),
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Marker(m) => write!(f, "install.sh reported `{m}`"),
            Self::RolledBack { failed, rollback } => {
                write!(f, "install.sh reported `{failed}`, then `{rollback}`")
            }
            Self::NoDoneMarker => {
                f.write_str("cloud-init finished but install.sh never printed `KILN done ok`")
            }
            Self::KernelPanic(line) => write!(f, "the guest kernel panicked: {line}"),
            Self::CloudInitFailed(line) => write!(f, "cloud-init failed: {line}"),
            Self::DiskError(line) => write!(
                f,
                "the guest's disk failed: {line} (QEMU could not write the guest's disk file; \
                 is the file system holding the boot's run folder full?)"
            ),
            Self::QemuExited { status, stderr } if stderr.is_empty() => {
                write!(f, "QEMU exited ({status}) before the host was ready")
            }
            Self::QemuExited { status, stderr } => write!(
                f,
                "QEMU exited ({status}) before the host was ready: {stderr}"
            ),
            Self::TimedOut(limit) => write!(
                f,
                "not ready within {}s (no `KILN done ok` and cloud-init final message)",
                limit.as_secs()
            ),
        }
    }
}

/// The first failed host, with the end of its console.
#[derive(Debug, Clone)]
pub struct HostFailure {
    /// Host name.
    pub host: String,
    /// What went wrong.
    pub reason: FailReason,
    /// Its serial console log.
    pub serial_log: PathBuf,
    /// Its last console lines (at most [`TAIL_LINES`]), without escapes.
    pub last_lines: Vec<String>,
}

impl fmt::Display for HostFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host {} failed: {}\nlast {} console lines of {}:",
            self.host,
            self.reason,
            self.last_lines.len(),
            self.serial_log.display()
        )?;
        for line in &self.last_lines {
            write!(f, "\n  | {line}")?;
        }
        Ok(())
    }
}

/// What `keep` left running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// Each guest's host name and QEMU pid.
    pub guests: Vec<(String, u32)>,
    /// The switch's pid.
    pub switch_pid: u32,
    /// The pid holding the containers' network namespace, if any host is a container.
    pub netns_pid: Option<u32>,
    /// Each link service (`PORT=COMMAND`) and its pid.
    pub services: Vec<(String, u32)>,
    /// The run folder (overlays, switch socket), to remove after stopping.
    pub run_dir: PathBuf,
    /// The guests that are systemd-nspawn containers (each has a cgroup of its own).
    pub containers: Vec<String>,
    /// The cluster booted (an upgrade must be a build of the same one).
    pub cluster: String,
}

impl Kept {
    /// A shell command that stops the guests and the switch and removes the
    /// run folder.
    pub fn stop_command(&self) -> String {
        let pids: Vec<String> = self
            .guests
            .iter()
            .map(|(_, pid)| pid.to_string())
            .chain([self.switch_pid.to_string()])
            .chain(self.services.iter().map(|(_, p)| p.to_string()))
            .chain(self.netns_pid.map(|p| p.to_string()))
            .collect();
        format!(
            "kill {} ; rm -rf {}",
            pids.join(" "),
            crate::process::shell_quote(&self.run_dir.to_string_lossy())
        )
    }

    /// Stops everything kept (SIGTERM, up to 10 s, then SIGKILL), removes
    /// the containers' cgroups and the run folder.
    pub fn stop(&self) {
        let pids: Vec<u32> = self
            .guests
            .iter()
            .map(|(_, pid)| *pid)
            .chain([self.switch_pid])
            .chain(self.services.iter().map(|(_, p)| *p))
            .chain(self.netns_pid)
            .collect();
        let alive = |pid: &u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
        for signal in [libc::SIGTERM, libc::SIGKILL] {
            for pid in pids.iter().filter(|p| alive(p)) {
                // SAFETY: kill(2) of a process this boot started and kept.
                unsafe {
                    libc::kill(*pid as libc::pid_t, signal);
                }
            }
            let until = std::time::Instant::now() + Duration::from_secs(10);
            while pids.iter().any(alive) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        crate::nspawn::remove_cgroups(
            self.guests
                .iter()
                .filter(|(n, _)| self.containers.contains(n))
                .map(|(n, pid)| (n.as_str(), *pid)),
        );
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}
