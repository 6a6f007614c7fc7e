//! kiln's integration tests: the CLI over example and fixture clusters.

mod bad_input;
mod build;
mod cli_help;
mod common;
mod lab;
mod plan_snapshots;
mod profiles;
mod secrets;
mod seeds;
