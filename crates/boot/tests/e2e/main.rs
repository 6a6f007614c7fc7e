//! VM tests: real QEMU guests booted from kiln seeds (minutes each).
//!
//! Ignored by a plain `cargo test` (it lists them as ignored, with how to
//! run them); `tests/e2e/run.sh` at the repository root runs them with
//! `KILN_E2E=1`, after building the guest image and the kiln binary.

#[path = "../support/mod.rs"]
mod support;

mod env;
mod fake;
mod golden;
mod k8s;
mod kubeadm;
mod lab;
mod upgrade;
