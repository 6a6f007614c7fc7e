//! Errors of `boot`; each names the file, host or command at fault.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::report::{BootReport, HostFailure};

/// Why a boot could not start or did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// A file-system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `read`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// `vagrant.json` is not the JSON `kiln build` writes.
    #[error("cannot parse {}: {source}", path.display())]
    LayoutJson {
        /// The `vagrant.json` file.
        path: PathBuf,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// `vagrant.json` parsed but holds a value boot cannot use.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The `vagrant.json` file.
        path: PathBuf,
        /// What is wrong, naming the host and key.
        reason: String,
    },
    /// The out folder has no `vagrant.json` (or several clusters).
    #[error("{}: {reason}", path.display())]
    OutFolder {
        /// The folder given as `out`.
        path: PathBuf,
        /// What was expected there.
        reason: String,
    },
    /// A host failed during an upgrade; later steps were not started.
    #[error("upgrade step {step}: {failure}")]
    UpgradeFailed {
        /// The step (1-based) the host was in.
        step: usize,
        /// The host and why.
        failure: Box<HostFailure>,
        /// Every step that ran, with the failed one.
        report: Box<crate::upgrade::UpgradeReport>,
    },
    /// Hosts asked for that the cluster does not have.
    #[error("unknown host(s) {}; the cluster has {}", unknown.join(", "), known.join(", "))]
    UnknownHosts {
        /// The names not found.
        unknown: Vec<String>,
        /// Every host of the cluster.
        known: Vec<String>,
    },
    /// The guests' disk size is outside what boot accepts.
    #[error("disk size {gb} GiB: a guest disk must be {min}..={max} GiB")]
    DiskSize {
        /// The size asked for.
        gb: u32,
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
    /// `--link-address`/`--link-service` options that cannot work together or with the hosts.
    #[error("{reason}")]
    LinkOption {
        /// What is wrong.
        reason: String,
    },
    /// Network-booted hosts asked for in a way that cannot work.
    #[error("{reason}")]
    Netboot {
        /// What is wrong, naming the host.
        reason: String,
    },
    /// The image cannot be started as asked (`--firmware`).
    #[error("{reason}")]
    Firmware {
        /// What is wrong, naming the image.
        reason: String,
    },
    /// An input file the boot needs is not there.
    #[error("{what} {} does not exist{hint}", path.display())]
    Missing {
        /// What the file is, e.g. `kernel`.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to get it, starting with `; ` (or empty).
        hint: String,
    },
    /// A program could not be started.
    #[error("cannot run `{command}`: {source}{hint}")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
        /// Which package provides the program, when it is missing.
        hint: String,
    },
    /// A command exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// The switch did not create its socket in time.
    #[error("`{command}` did not create {} within {waited:?}: {stderr}", socket.display())]
    SwitchNotReady {
        /// The switch's command line.
        command: String,
        /// The control socket it should have created.
        socket: PathBuf,
        /// How long boot waited.
        waited: Duration,
        /// What the switch printed.
        stderr: String,
    },
    /// A unix socket path is longer than the kernel accepts.
    #[error("socket path {} is {len} bytes, over the limit of {max}; set TMPDIR to a shorter folder", path.display())]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest accepted.
        max: usize,
    },
    /// A host failed (a `KILN … fail` marker, a timeout, QEMU exiting, a
    /// kernel panic); the report covers every host at that moment.
    #[error("{failure}")]
    HostFailed {
        /// The first host that failed, with its last console lines.
        failure: Box<HostFailure>,
        /// Every host's state when boot gave up.
        report: Box<BootReport>,
    },
}

impl BootError {
    /// A closure building [`BootError::Io`] for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
