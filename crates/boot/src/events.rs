//! Progress reported while hosts boot, for a caller to render (the CLI's
//! live per-host table). The library itself never prints.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use crate::marker::Marker;

/// Where a host is on its way to its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostPhase {
    /// Its overlay is being made and QEMU started.
    Starting,
    /// QEMU runs; no `KILN` marker yet.
    Booting,
    /// install.sh has printed markers, but not `KILN done ok`.
    Installing,
    /// `KILN done ok` seen; waiting for cloud-init to finish (later install
    /// runs of the same boot may still print markers, or fail).
    Finishing,
    /// Done and cloud-init finished: the role is up.
    Ready,
    /// It failed; see the report's failure.
    Failed,
}

impl HostPhase {
    /// `Ready` or `Failed`: nothing more will change.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Ready | Self::Failed)
    }

    /// A short lowercase word for tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Booting => "booting",
            Self::Installing => "installing",
            Self::Finishing => "finishing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for HostPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the live table: a host's phase and last step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// The phase.
    pub phase: HostPhase,
    /// The last marker as `<step> <status>`, e.g. `health ok`.
    pub last_step: Option<String>,
    /// Time since the host's QEMU was started.
    pub elapsed: Duration,
}

/// Receives boot progress. Every method has an empty default, so a caller
/// implements only what it shows; `()` ignores everything. Called from the
/// thread that runs [`crate::boot`].
pub trait BootEvents {
    /// The guests' private switch is listening on `socket`.
    fn switch_started(&self, socket: &Path) {
        let _ = socket;
    }

    /// A link service (`PORT=COMMAND`) runs as `pid` and accepts connections.
    fn link_service_ready(&self, service: &str, pid: u32) {
        let _ = (service, pid);
    }

    /// `host`'s QEMU runs as `pid`, its console going to `serial_log`.
    fn host_started(&self, host: &str, pid: u32, serial_log: &Path) {
        let _ = (host, pid, serial_log);
    }

    /// A console line of `host`, without escapes (for a verbose view).
    fn console_line(&self, host: &str, line: &str) {
        let _ = (host, line);
    }

    /// `host` printed a `KILN` marker.
    fn marker(&self, host: &str, marker: &Marker) {
        let _ = (host, marker);
    }

    /// `host`'s row changed.
    fn host_status(&self, host: &str, status: &HostStatus) {
        let _ = (host, status);
    }

    /// Boot is about to stop these guests (not called with `keep`).
    fn stopping(&self, hosts: &[String]) {
        let _ = hosts;
    }
}

/// Ignores every event.
impl BootEvents for () {}
