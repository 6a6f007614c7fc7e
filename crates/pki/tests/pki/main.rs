//! PKI tests against real tools: openssl checks every certificate, kubectl every kubeconfig.

#[path = "../common/mod.rs"]
mod common;

mod files;
mod openssl;
mod signing;
mod state;
