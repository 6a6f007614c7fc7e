//! kiln-pki-layout: the crypto-free half of the cluster PKI.
//!
//! From the cluster's [`PkiInput`] it decides, without generating or reading any key, which
//! certificates every host wants (subjects, SANs, usages, signing CA), where each file lands on
//! the host (kubeadm's layout) and the API server URL kubeconfigs point at. kiln-plan builds a
//! [`Layout`] once per run; kiln-pki issues exactly what it lists.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod ca;
mod input;
#[cfg(test)]
mod kubeadm_tests;
mod layout;

pub use ca::CaId;
pub use input::{
    https_url, is_dns_name, role, url_host, KeyType, KubeletAuth, Lifetimes, PkiHost, PkiInput, San,
};
pub use layout::{
    Credential, FilePlan, HostLayout, LeafSpec, Source, BOOTSTRAP_GROUP, BOOTSTRAP_USER,
    KUBELET_PKI_DIR, KUBE_DIR, PKI_DIR,
};

/// Mode of private keys, tokens and kubeconfigs.
pub const MODE_SECRET: u32 = 0o600;
/// Mode of certificates and public keys.
pub const MODE_PUBLIC: u32 = 0o644;
/// Folder of the PKI state holding issued leaf certificates, one subfolder per host.
pub const ISSUED: &str = "issued";

/// The input cannot produce a valid PKI (bad host name, SAN, lifetime, no API endpoint, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PKI input: {field}: {reason}")]
pub struct InvalidInput {
    /// Which input field is wrong, e.g. `hosts[2].name`.
    pub field: String,
    /// Why it is wrong.
    pub reason: String,
}

impl InvalidInput {
    pub(crate) fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidInput {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A validated input and every host's certificates and files; only [`Layout::new`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    input: PkiInput,
    hosts: Vec<HostLayout>,
}

impl Layout {
    /// Validates `input` and lays out every host's certificates and files.
    pub fn new(input: PkiInput) -> Result<Layout, InvalidInput> {
        input.validate()?;
        let hosts = layout::hosts(&input);
        Ok(Layout { input, hosts })
    }

    /// The validated input.
    pub fn input(&self) -> &PkiInput {
        &self.input
    }

    /// Every input host (lb-only hosts included, with nothing), sorted by name.
    pub fn hosts(&self) -> &[HostLayout] {
        &self.hosts
    }

    /// The layout of host `name`, if it is an input host.
    pub fn host(&self, name: &str) -> Option<&HostLayout> {
        self.hosts.iter().find(|h| h.name == name)
    }
}
