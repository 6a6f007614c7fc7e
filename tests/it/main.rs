//! kiln's integration tests: the CLI over example and fixture clusters.

mod bad_input;
mod build;
mod calico;
mod catalog;
mod cli_help;
mod common;
mod delta;
mod diff;
mod fetch;
mod golden;
mod images;
mod k8s;
mod kubeadm;
mod lab;
mod packages;
mod plan_snapshots;
mod profiles;
mod push;
mod registry;
mod sbom;
mod secrets;
mod seeds;
mod serve;
mod signed;
