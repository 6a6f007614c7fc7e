//! Tests of install.sh: static checks, runs under a temporary root with dash and busybox
//! sh (happy path, idempotence, refusals, hostile archives, kills, faults of the host: a full
//! disk, missing tools, a wrong clock, two runs at once), and systemd-nspawn
//! guests booting the guest image (cloud-init happy path, kill -9 at every step boundary
//! and at random points, each followed by a rerun that must converge).

mod common;
mod contract;
mod delta;
mod faults;
mod guest;
mod hostile;
mod images;
mod local;
mod lock;
mod refusals;
mod sign;
mod sources;
mod static_checks;
