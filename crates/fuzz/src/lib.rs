//! kiln-fuzz: a fuzz harness for kiln's parsers that runs on stable Rust.
//!
//! Each target ([`targets::TARGETS`]) feeds one input to a family of parsers. A run starts
//! from the committed seed corpus (`crates/fuzz/corpus/<target>/`), runs every seed, then
//! mutates them ([`mutate`]) for a fixed time with a seeded generator, so `--seed` repeats a
//! run. A panic, one input running longer than the timeout (10 s) or the live heap passing
//! the memory bound (512 MiB) is a finding: the input is saved, its path printed, and the
//! run fails. Built with `-C instrument-coverage --cfg kiln_fuzz_coverage`, inputs that
//! reach new code join the corpus ([`coverage`]).
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod alloc;
pub mod corpus;
pub mod coverage;
pub mod engine;
pub mod mutate;
pub mod rng;
pub mod targets;

pub use engine::{fuzz, replay, Finding, Options, Stats};
pub use targets::{find, Target, TARGETS};

/// Default time limit for one input, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;

/// Default bound on the live heap, in MiB.
pub const DEFAULT_MAX_MEMORY_MIB: usize = 512;
