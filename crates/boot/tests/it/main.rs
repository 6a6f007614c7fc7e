//! Fast tests of kiln-boot: `boot()` end to end with the real `qemu-img`
//! and `vde_switch` and a stand-in QEMU script that plays a guest's console.

#[path = "../support/mod.rs"]
mod support;

mod flow;
mod inputs;
mod upgrade;
