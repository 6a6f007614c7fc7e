//! [`upgrade`]: hosts a boot kept running go to another build of their cluster, step by step,
//! the way an air-gapped site delivers one with no SSH: each host is shut down in order, then
//! started again on the same disk with the new build's seed (cloud-init sees a new instance id,
//! which holds the build id, and runs install.sh again: the upgrade runs over what the last
//! generation left).

use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::BootError;
use crate::events::BootEvents;
use crate::layout::{cluster_dir, Layout};
use crate::options::BootOptions;
use crate::process::{Guard, Lifetime};
use crate::qemu;
use crate::report::{HostReport, Kept};
use crate::run::{
    follow, image_start, monitor_path, overlay_path, seed_dir, Guest, Kind, Launcher,
};

/// How long a host may take to shut down when asked, before it is killed.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(180);

/// Which build to go to, and in which steps.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// The new build's out folder (`OUT/<cluster>`, or `OUT` holding one cluster).
    pub out: PathBuf,
    /// The hosts to upgrade, step by step: a step's hosts restart together, the next step
    /// starts once each of them is ready, and a failed host ends the upgrade. `kiln diff
    /// --plan` gives the order (etcd members, masters and lb hosts one at a time).
    pub steps: Vec<Vec<String>>,
    /// Each host's console goes to `<log dir>/<host>-<name>.log`.
    pub name: String,
    /// How long a host may take to shut down (SIGTERM for a container, an ACPI power-down
    /// for a QEMU guest) before it is killed.
    pub stop_timeout: Duration,
}

impl UpgradeOptions {
    /// Going to the build in `out` in `steps`, logs named `<host>-upgrade.log`.
    pub fn new(out: impl Into<PathBuf>, steps: Vec<Vec<String>>) -> Self {
        Self {
            out: out.into(),
            steps,
            name: "upgrade".into(),
            stop_timeout: DEFAULT_STOP_TIMEOUT,
        }
    }
}

/// What an upgrade did, step by step.
#[derive(Debug, Clone)]
pub struct UpgradeReport {
    /// Each step's hosts as they ended, for the steps that ran.
    pub steps: Vec<Vec<HostReport>>,
    /// From the first stop to the last host ready (or failed).
    pub elapsed: Duration,
}

impl UpgradeReport {
    /// The host called `name`, in the last step that ran it.
    pub fn host(&self, name: &str) -> Option<&HostReport> {
        self.steps.iter().rev().flatten().find(|h| h.name == name)
    }
}

/// Upgrades the hosts `kept` (left running by [`crate::boot`] with `keep`) to the build in
/// `up.out`, step by step; `opts` are the options the hosts were booted with (image, kernel,
/// root tree, tools, time limit per host, log folder).
///
/// A step's hosts are shut down (and waited for), then started on the same disk (a QEMU
/// guest's overlay, a container's upper folder) with the new build's seed and medium. A host is
/// ready when its new console shows `KILN done ok` and cloud-init's final message; when
/// install.sh fails it, the host is followed until install.sh's `KILN rollback ok|fail`, and
/// the upgrade stops there with [`BootError::UpgradeFailed`]: later steps are not started.
/// `kept` is updated with the new processes either way; the caller stops them.
pub fn upgrade(
    opts: &BootOptions,
    kept: &mut Kept,
    up: &UpgradeOptions,
    events: &dyn BootEvents,
) -> Result<UpgradeReport, BootError> {
    let started = Instant::now();
    if let Some(host) = opts.netboot.first() {
        // Its next generation would come from the network too, which this does not serve.
        return Err(BootError::Netboot {
            reason: format!(
                "host {host} was booted from the network: upgrading network-booted hosts is not supported yet"
            ),
        });
    }
    let dir = cluster_dir(&up.out)?;
    let layout = Layout::load(&dir)?;
    if layout.cluster != kept.cluster {
        return Err(BootError::OutFolder {
            path: dir,
            reason: format!(
                "a build of cluster {:?}, not of the booted cluster {:?}",
                layout.cluster, kept.cluster
            ),
        });
    }
    let wanted: Vec<String> = up.steps.iter().flatten().cloned().collect();
    let not_running: Vec<String> = wanted
        .iter()
        .filter(|h| !kept.guests.iter().any(|(g, _)| g == *h))
        .cloned()
        .collect();
    if !not_running.is_empty() {
        return Err(BootError::UnknownHosts {
            unknown: not_running,
            known: kept.guests.iter().map(|(g, _)| g.clone()).collect(),
        });
    }
    let plans = layout.plan(
        &dir,
        Some(&wanted),
        opts.seed,
        opts.memory_mb,
        &kept.containers,
    )?;
    let start = image_start(opts)?;
    let rootfs = match kept.containers.is_empty() {
        true => None,
        false => Some(
            std::path::absolute(opts.rootfs_path())
                .map_err(BootError::io("resolve", &opts.rootfs_path()))?,
        ),
    };
    let log_dir = opts.log_dir_path(&dir);
    std::fs::create_dir_all(&log_dir).map_err(BootError::io("create folder", &log_dir))?;
    let socket = kept.run_dir.join("vde.ctl");
    let launcher = Launcher {
        opts,
        image_start: Some(&start),
        rootfs: rootfs.as_deref(),
        netns: kept.netns_pid,
        socket: &socket,
        run_dir: &kept.run_dir,
        lifetime: Lifetime::Detached,
    };

    let mut report = UpgradeReport {
        steps: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for (number, step) in up.steps.iter().enumerate() {
        let mut guests = Vec::with_capacity(step.len());
        for name in step {
            let plan = plans
                .iter()
                .find(|p| &p.name == name)
                .expect("every step's host was planned");
            let kind = match kept.containers.contains(name) {
                true => Kind::Container(seed_dir(plan)?),
                false => Kind::Qemu(overlay_path(&kept.run_dir, name)),
            };
            guests.push(Guest::new(
                plan,
                kind,
                &log_dir,
                &format!("{name}-{}", up.name),
            )?);
        }
        for guest in &guests {
            stop_host(kept, &guest.plan.name, up.stop_timeout)?;
        }
        events.stopping(step);
        let mut guards: Vec<Guard> = Vec::with_capacity(guests.len());
        for guest in &mut guests {
            guest.monitor.await_rollback();
            let index = kept
                .guests
                .iter()
                .position(|(g, _)| *g == guest.plan.name)
                .expect("checked above");
            let mut guard = launcher.start(index, guest, events)?;
            // Kept, like the boot's: the caller stops it.
            kept.guests[index].1 = guard.pid_of();
            guard.disarm();
            guards.push(guard);
        }
        let failed = follow(&mut guests, &mut guards, opts.timeout, events);
        report
            .steps
            .push(guests.iter().map(Guest::report).collect());
        report.elapsed = started.elapsed();
        if let Some(i) = failed {
            return Err(BootError::UpgradeFailed {
                step: number + 1,
                failure: Box::new(guests[i].failure()),
                report: Box::new(report),
            });
        }
    }
    Ok(report)
}

/// Shuts kept host `name` down and waits until it is gone: a container halts on SIGTERM, a
/// QEMU guest is asked to power down through its monitor; after `timeout` it is killed.
fn stop_host(kept: &Kept, name: &str, timeout: Duration) -> Result<(), BootError> {
    let pid = kept
        .guests
        .iter()
        .find(|(g, _)| g == name)
        .map(|(_, p)| *p)
        .expect("checked by the caller");
    let container = kept.containers.iter().any(|c| c == name);
    if container {
        signal(pid, libc::SIGTERM);
    } else {
        let monitor = monitor_path(&kept.run_dir, name);
        if let Err(e) = qemu::system_powerdown(&monitor) {
            tracing::warn!(host = name, error = %e, monitor = %monitor.display(), "no power-down through the monitor; sending SIGTERM");
            signal(pid, libc::SIGTERM);
        }
    }
    tracing::info!(host = name, pid, "shutting down for the upgrade");
    if !wait_gone(pid, timeout) {
        tracing::warn!(host = name, pid, ?timeout, "still running; killing it");
        signal(pid, libc::SIGKILL);
        if !wait_gone(pid, Duration::from_secs(10)) {
            return Err(BootError::Io {
                action: "stop",
                path: PathBuf::from(format!("/proc/{pid}")),
                source: std::io::Error::other(format!(
                    "host {name} (pid {pid}) is still running after SIGKILL"
                )),
            });
        }
    }
    if container {
        crate::nspawn::remove_cgroups([(name, pid)]);
    }
    Ok(())
}

fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill(2) of a process this boot started and kept.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Waits up to `timeout` for `pid` to exit: reaped if it is this process's child (a kept
/// guest started here), else gone from the process table.
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with WNOHANG on one pid; the status is ours to read.
        let reaped = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        let gone = match reaped {
            0 => false,
            r if r == pid as libc::pid_t => true,
            // Not our child: gone when signal 0 finds no such process.
            // SAFETY: signal 0 only checks that the pid exists.
            _ => unsafe { libc::kill(pid as libc::pid_t, 0) != 0 },
        };
        if gone {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        sleep(Duration::from_millis(200));
    }
}
