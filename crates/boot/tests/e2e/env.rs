//! What the VM tests need from their runner, and a progress printer.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kiln_boot::{BootEvents, HostStatus, Marker};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Refuses to run unless asked for with `KILN_E2E=1`, so an
/// `--include-ignored` run does not start minutes of VMs by surprise.
pub fn require_e2e() {
    assert_eq!(
        std::env::var("KILN_E2E").as_deref(),
        Ok("1"),
        "VM tests run only with KILN_E2E=1; use tests/e2e/run.sh"
    );
}

/// `limit`, or less when the runner gave a deadline (`KILN_E2E_DEADLINE`, seconds since the
/// epoch: tests/e2e/run.sh sets it from CI's budget) that comes sooner.
pub fn time_limit(limit: Duration) -> Duration {
    let Some(deadline) = std::env::var("KILN_E2E_DEADLINE").ok().map(|d| {
        d.parse::<u64>()
            .expect("KILN_E2E_DEADLINE: seconds since the epoch")
    }) else {
        return limit;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    limit.min(Duration::from_secs(deadline.saturating_sub(now)))
}

/// The guest image folder (disk.qcow2, vmlinuz, initrd.img): `KILN_GUEST`,
/// else what `tests/e2e/guest-image.sh` prints on its last line.
pub fn guest_image() -> PathBuf {
    let dir = match std::env::var_os("KILN_GUEST") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = repo().join("tests/e2e/guest-image.sh");
            let out = Command::new(&script)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                out.status.success(),
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            PathBuf::from(
                stdout
                    .lines()
                    .last()
                    .expect("guest-image.sh printed nothing")
                    .trim(),
            )
        }
    };
    for file in ["disk.qcow2", "vmlinuz", "initrd.img"] {
        assert!(
            dir.join(file).is_file(),
            "guest image folder {} has no {file}",
            dir.display()
        );
    }
    dir.join("disk.qcow2")
}

/// The `kiln` binary: `KILN_BIN`, else `<target>/release/kiln`.
pub fn kiln_bin() -> PathBuf {
    let bin = match std::env::var_os("KILN_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join("target"))
            .join("debug/kiln"),
    };
    assert!(
        bin.is_file(),
        "{} does not exist: run `cargo build -p kiln` (tests/e2e/run.sh does)",
        bin.display()
    );
    bin
}

/// cloud-init's own word that the configuration it ran with (the image's `cloud.cfg.d` and the
/// seed's user-data, merged) breaks its schema: with it a key may be ignored, so no console may
/// show it.
pub const INVALID_CLOUD_CONFIG: &str = "Invalid cloud-config provided";

/// The console lines of `console` (a host's serial log) where cloud-init found its merged
/// configuration invalid (see [`INVALID_CLOUD_CONFIG`]).
pub fn invalid_cloud_config(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter(|l| l.contains(INVALID_CLOUD_CONFIG))
        .collect()
}

/// Where a VM test keeps its serial logs: outside its temp folder, so they
/// are still there to read when it fails (`$TMPDIR/kiln-e2e-logs/<test>`,
/// emptied first).
pub fn log_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("kiln-e2e-logs").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    eprintln!("serial logs in {}", dir.display());
    dir
}

/// Prints each host's progress on stderr with the time since it started,
/// so a runner with `--nocapture` shows a live log.
pub struct Progress {
    started: Instant,
    markers: Cell<usize>,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            markers: Cell::new(0),
        }
    }

    fn at(&self) -> String {
        format!("[{:6.1}s]", self.started.elapsed().as_secs_f64())
    }
}

impl BootEvents for Progress {
    fn switch_started(&self, socket: &Path) {
        eprintln!("{} switch on {}", self.at(), socket.display());
    }
    fn host_started(&self, host: &str, pid: u32, serial_log: &Path) {
        eprintln!(
            "{} {host}: QEMU pid {pid}, console {}",
            self.at(),
            serial_log.display()
        );
    }
    fn marker(&self, host: &str, marker: &Marker) {
        self.markers.set(self.markers.get() + 1);
        eprintln!("{} {host}: {marker}", self.at());
    }
    fn host_status(&self, host: &str, status: &HostStatus) {
        eprintln!(
            "{} {host}: {} ({}) after {:.1}s",
            self.at(),
            status.phase,
            status.last_step.as_deref().unwrap_or("-"),
            status.elapsed.as_secs_f64()
        );
    }
    fn stopping(&self, hosts: &[String]) {
        eprintln!("{} stopping {}", self.at(), hosts.join(", "));
    }
}

/// Prints the report's timings as a table.
pub fn print_timings(report: &kiln_boot::BootReport) {
    eprintln!("host        done after   ready after");
    for h in &report.hosts {
        let secs = |d: Option<std::time::Duration>| {
            d.map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()))
        };
        eprintln!(
            "{:<11} {:>10}   {:>11}",
            h.name,
            secs(h.done_after),
            secs(h.ready_after)
        );
    }
    eprintln!("all hosts: {:.1}s", report.elapsed.as_secs_f64());
}

/// Unwraps a boot result, printing a host failure in full.
pub fn expect_boot(
    result: Result<kiln_boot::BootReport, kiln_boot::BootError>,
) -> kiln_boot::BootReport {
    match result {
        Ok(report) => {
            print_timings(&report);
            report
        }
        Err(kiln_boot::BootError::HostFailed { failure, report }) => {
            print_timings(&report);
            panic!("{failure}")
        }
        Err(e) => panic!("boot failed: {e}"),
    }
}
