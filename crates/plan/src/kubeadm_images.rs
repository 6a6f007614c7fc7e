//! Completeness against kubeadm itself: with `bootstrap = "kubeadm"`, every image kubeadm runs
//! (the list `kubeadm config images list` prints for the cluster's configuration) is in the
//! bundles of the hosts that run it, under exactly kubeadm's name and tag. kubeadm's
//! `imagePullPolicy: Never` would otherwise stop `kubeadm init` on the host, at first boot.
//!
//! - A master runs every image of the list: the control plane as static pods, kube-proxy and
//!   pause on its kubelet, CoreDNS (which tolerates the control-plane taint), and etcd when it
//!   is stacked.
//! - A node runs kube-proxy (a DaemonSet) and pause; CoreDNS may land there too.
//! - No bundle carries one of those repositories under another tag: that image would never run,
//!   and kubeadm would look for the one it names.

use std::collections::BTreeSet;

use crate::{BundlePlan, HostPlan};

/// The images that run on every host of the Kubernetes cluster, by repository (without tag).
const EVERY_HOST: &[&str] = &["/kube-proxy", "/pause", "/coredns/coredns"];

/// One host's difference from kubeadm's list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageMiss {
    /// Host.
    pub host: String,
    /// kubeadm's image reference it lacks.
    pub wanted: String,
    /// The same repository under another tag, where a bundle of the host carries one (and which).
    pub instead: Option<(String, String)>,
}

impl std::fmt::Display for ImageMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.instead {
            None => write!(
                f,
                "{}: kubeadm runs {}, which none of its bundles carries (add it to a profile's `images`)",
                self.host, self.wanted
            ),
            Some((bundle, have)) => write!(
                f,
                "{}: kubeadm runs {}, but bundle {bundle} carries {have} instead (kubeadm would not find it)",
                self.host, self.wanted
            ),
        }
    }
}

/// The repository of an image reference: everything before the tag or digest.
fn repository(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// Every way the hosts' bundles differ from `wanted` (kubeadm's list), sorted.
pub fn check(wanted: &[String], bundles: &[BundlePlan], hosts: &[HostPlan]) -> Vec<ImageMiss> {
    let mut misses = BTreeSet::new();
    for h in hosts {
        let is = |r: &str| h.roles.iter().any(|x| x == r);
        let runs: Vec<&String> = if is("master") {
            wanted.iter().collect()
        } else if is("node") {
            wanted
                .iter()
                .filter(|w| EVERY_HOST.iter().any(|e| repository(w).ends_with(e)))
                .collect()
        } else {
            Vec::new()
        };
        let carried: Vec<(&str, &str)> = h
            .bundles
            .iter()
            .filter_map(|id| bundles.iter().find(|b| &b.id == id))
            .flat_map(|b| b.images.iter().map(move |i| (b.id.as_str(), i.as_str())))
            .collect();
        for w in runs {
            if carried.iter().any(|(_, i)| i == w) {
                continue;
            }
            let instead = carried
                .iter()
                .find(|(_, i)| repository(i) == repository(w))
                .map(|(b, i)| (b.to_string(), i.to_string()));
            misses.insert(ImageMiss {
                host: h.name.clone(),
                wanted: w.clone(),
                instead,
            });
        }
        // A kubeadm repository under another tag, on a host that runs that image or not.
        for (b, i) in &carried {
            if let Some(w) = wanted
                .iter()
                .find(|w| repository(w) == repository(i) && w.as_str() != *i)
            {
                misses.insert(ImageMiss {
                    host: h.name.clone(),
                    wanted: w.clone(),
                    instead: Some((b.to_string(), i.to_string())),
                });
            }
        }
    }
    misses.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_the_tag_but_not_a_registry_port() {
        assert_eq!(
            repository("registry.k8s.io/kube-proxy:v1.34.4"),
            "registry.k8s.io/kube-proxy"
        );
        assert_eq!(
            repository("reg:5000/coredns/coredns:v1.14.3"),
            "reg:5000/coredns/coredns"
        );
        assert_eq!(repository("reg:5000/pause"), "reg:5000/pause");
        assert_eq!(repository("r/x@sha256:00"), "r/x");
    }
}
