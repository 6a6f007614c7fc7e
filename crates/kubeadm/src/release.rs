//! What each kubeadm release pins: the pause image it checks the sandbox against and its
//! default etcd and CoreDNS tags, and the image list `kubeadm config images list` prints.

use crate::{Etcd, Settings, IMAGE_REPOSITORY};

/// Image tags one kubeadm minor release uses when the configuration does not override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// `major.minor`, e.g. `1.34`.
    pub minor: &'static str,
    /// `pause` tag (kubeadm has no setting for it).
    pub pause: &'static str,
    /// Default stacked-etcd tag.
    pub etcd: &'static str,
    /// Default CoreDNS tag.
    pub coredns: &'static str,
}

/// Releases whose tags were read from that release's own `kubeadm config images list`.
const RELEASES: &[Release] = &[Release {
    minor: "1.34",
    pause: "3.10.1",
    etcd: "3.6.5-0",
    coredns: "v1.12.1",
}];

/// A Kubernetes version kiln does not know kubeadm's image set of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "kubeadm bootstrap needs a Kubernetes release whose kubeadm image set kiln knows ({known}); found {version:?}"
)]
pub struct UnsupportedRelease {
    /// The version asked for.
    pub version: String,
    /// The minors kiln knows, comma-separated.
    pub known: String,
}

impl Release {
    /// The release of Kubernetes `version` (`1.34.4`).
    pub fn of(version: &str) -> Result<Release, UnsupportedRelease> {
        let mut parts = version.split('.');
        let minor = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(_)) => format!("{a}.{b}"),
            _ => String::new(),
        };
        RELEASES
            .iter()
            .find(|r| r.minor == minor)
            .copied()
            .ok_or_else(|| UnsupportedRelease {
                version: version.to_string(),
                known: RELEASES
                    .iter()
                    .map(|r| r.minor)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The `dns.imageTag` override: the CoreDNS version kiln's image carries.
pub(crate) fn coredns_tag(s: &Settings) -> Option<String> {
    s.coredns_version.as_ref().map(|v| format!("v{v}"))
}

/// The `etcd.local.imageTag` override: the etcd version kiln's image carries.
pub(crate) fn etcd_tag(s: &Settings) -> Option<String> {
    match &s.etcd {
        Etcd::Stacked {
            version: Some(v), ..
        } => Some(format!("{v}-0")),
        _ => None,
    }
}

/// Every image kubeadm runs for `settings`, in the order `kubeadm config images list` prints
/// them: the control plane, kube-proxy, CoreDNS, pause, and etcd when it is stacked.
pub fn images(settings: &Settings) -> Result<Vec<String>, UnsupportedRelease> {
    let release = Release::of(&settings.kubernetes_version)?;
    let k8s = format!("v{}", settings.kubernetes_version);
    let mut out: Vec<String> = [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kube-proxy",
    ]
    .iter()
    .map(|c| format!("{IMAGE_REPOSITORY}/{c}:{k8s}"))
    .collect();
    let coredns = coredns_tag(settings).unwrap_or_else(|| release.coredns.to_string());
    out.push(format!("{IMAGE_REPOSITORY}/coredns/coredns:{coredns}"));
    out.push(format!("{IMAGE_REPOSITORY}/pause:{}", release.pause));
    if let Etcd::Stacked { .. } = settings.etcd {
        let etcd = etcd_tag(settings).unwrap_or_else(|| release.etcd.to_string());
        out.push(format!("{IMAGE_REPOSITORY}/etcd:{etcd}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_minors_have_a_release() {
        assert_eq!(Release::of("1.34.4").unwrap().pause, "3.10.1");
        let e = Release::of("1.33.1").unwrap_err();
        assert_eq!(e.known, "1.34");
        assert!(Release::of("1.34").is_err());
    }
}
