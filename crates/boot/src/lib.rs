//! `kiln boot`: boots a built cluster's hosts under QEMU, each from its
//! cloud-init seed, on a private network that only the guests share, and
//! follows the `KILN` markers install.sh prints on each serial console.
//!
//! ```no_run
//! use kiln_boot::{boot, BootOptions};
//!
//! let opts = BootOptions::new("out/lab", "/var/tmp/kiln-guest/disk.qcow2");
//! let report = boot(&opts, &())?;
//! for host in &report.hosts {
//!     println!("{} {} after {:?}", host.name, host.phase, host.ready_after);
//! }
//! # Ok::<(), kiln_boot::BootError>(())
//! ```
//!
//! Guests run under software emulation (`-accel tcg`), with no user-mode
//! network and no path outside the machine: one `vde_switch` on a unix
//! socket in a private run folder is their only link. The base image is
//! never written (each guest has a copy-on-write overlay in the run folder). Hosts named in
//! [`BootOptions::netboot`] boot from the network instead, as bare machines: an empty disk,
//! no kernel or seed, the NIC's iPXE ROM, and a link service (`kiln serve --dhcp`) to answer.
//! Serial logs go to `<out>.boot/<host>.log` beside the build ([`default_log_dir`]), QEMU's
//! own messages to `<host>.qemu.log` beside them.
//!
//! The library never prints: progress goes to a [`BootEvents`] and to
//! `tracing`, the outcome to a [`BootReport`] or a [`BootError`].
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod error;
mod events;
mod follow;
mod layout;
mod link;
mod marker;
mod monitor;
mod nspawn;
mod options;
mod process;
mod qemu;
mod report;
mod run;
mod upgrade;

pub use error::BootError;
pub use events::{BootEvents, HostPhase, HostStatus};
pub use layout::{cluster_dir, HostPlan, Layout, LayoutHost, DEFAULT_MEMORY_MB, LAYOUT_FILE};
pub use link::{LinkAddress, LinkParseError, LinkService};
pub use marker::{clean_line, FinalMessage, Marker, Status, CLOUD_INIT_FINAL_DEFAULT, MARKER_WORD};
pub use options::{
    default_log_dir, BootOptions, Firmware, SeedKind, Tools, UnknownSeedKind, DEFAULT_TIMEOUT,
    GUEST_DISK,
};
pub use report::{BootReport, FailReason, HostFailure, HostReport, Kept, TAIL_LINES};
pub use run::boot;
pub use upgrade::{upgrade, UpgradeOptions, UpgradeReport, DEFAULT_STOP_TIMEOUT};
