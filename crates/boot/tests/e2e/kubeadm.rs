//! The kubeadm example end to end (issue 11): `kiln build` it and boot its first master and one
//! node as QEMU guests on their private link, from kiln's seeds and bundles alone. kubelet runs
//! pods only on a real kernel (the containers' cgroups here are not delegated), so both hosts
//! are VMs. Each serial console must show the role coming up (`kubeadm init` on the master,
//! `kubeadm join` on the node, both from kiln's configuration and PKI) and a rerun of install.sh
//! changing nothing; then the probes (`kubeadm-probe/`, added as an overlay) report that both
//! hosts went Ready, kubeadm's control plane, kube-proxy, CoreDNS and flannel run, two pods on
//! two hosts reach each other, the Service answers on its ClusterIP, CoreDNS resolves, and
//! containerd pulled no image on either host.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_boot::BootOptions;

use crate::env::{guest_image, log_dir, repo, require_e2e, time_limit};
use crate::lab::{
    boot_checked, build_with_plan, check_runtime_images, overlays_with, plan_images, probe_lines,
};

/// What the first master's probes print when everything works, in order.
const MASTER_STEPS: [&str; 8] = [
    "kubeadm=init",
    "nodes=ready",
    "kube-system=running",
    "web=running",
    "pod-to-pod=ok",
    "clusterip-from-pod=ok",
    "dns-kubernetes=ok",
    "pulls=none",
];

/// What the node's probe prints when everything works.
const NODE_STEPS: [&str; 2] = ["kubeadm=join", "pulls=none"];

/// The kubeadm example's cluster.toml with its first master and first node only, its inputs
/// read from the checkout and its PKI state in `dir`, the probes as an overlay.
fn kubeadm_in(dir: &Path) -> PathBuf {
    let r = repo();
    let overlays = overlays_with(dir, &[("kubeadm-probe", "e2e-kubeadm")]);
    let mut text = fs::read_to_string(r.join("examples/kubeadm/cluster.toml")).unwrap();
    for (needle, with) in [
        (
            "image-sources = [\"assemble\"]\n".to_owned(),
            "image-sources = [\"assemble\"]\noverlays = [\"e2e-kubeadm\"]\n".to_owned(),
        ),
        (
            "overlays = \"../../overlays\"".to_owned(),
            format!("overlays = \"{}\"", overlays.display()),
        ),
        (
            "profiles = \"profiles\"".to_owned(),
            format!(
                "profiles = \"{0}/examples/kubeadm/profiles\"\nvendor = \"{0}/examples/kubeadm/vendor\"\nlock = \"{0}/examples/kubeadm/kiln.lock\"",
                r.display()
            ),
        ),
        // Two guests are what two cores can run: the master and one node.
        (
            "\n[[host]]\nname = \"node02\"\nip = \"10.79.0.12\"\nmac = \"52:54:00:79:00:12\"\nroles = [\"node\"]\n"
                .to_owned(),
            String::new(),
        ),
    ] {
        assert!(
            text.contains(&needle),
            "the kubeadm example's cluster.toml has no `{needle}`"
        );
        text = text.replace(&needle, &with);
    }
    // The node's kubeadm join waits for the master's init, which takes minutes of TCG: install.sh
    // gives each role's health 40 minutes here (15 by default).
    text.push_str("\n[seeds]\nhealth-wait-seconds = 2400\n");
    let text = text.replace("\"../../", &format!("\"{}/", r.display()));
    let cluster = dir.join("cluster.toml");
    fs::write(&cluster, text).unwrap();
    cluster
}

/// A probe is finished when it printed its last step or a failure.
fn finished(lines: &[String]) -> bool {
    lines.iter().any(|l| {
        l.starts_with("pulls=") || ["=no", "=not", "-not-"].iter().any(|end| l.contains(end))
    })
}

#[test]
#[ignore = "VM test (about 20 min): run tests/e2e/run.sh"]
fn kubeadm_cluster_inits_joins_and_serves_pods_with_nothing_pulled() {
    require_e2e();
    let image = guest_image();
    let tmp = tempfile::tempdir().unwrap();
    let cluster = kubeadm_in(tmp.path());
    let (out, plan) = build_with_plan(&cluster, tmp.path(), "kubeadm");

    let mut opts = BootOptions::new(&out, image);
    // Within CI's budget when run.sh gives a deadline.
    opts.timeout = time_limit(Duration::from_secs(40 * 60));
    // containerd, the control plane's static pods, flannel, CoreDNS and the pods: more than the
    // default 1 GiB (the master's layout asks 2 CPUs and 2 GiB for kubeadm's preflight).
    opts.memory_mb = Some(2048);
    // The master's nine images, unpacked, and a rerun's staging outgrow the image's 2 GiB.
    opts.disk_gb = Some(6);
    opts.log_dir = Some(log_dir("kubeadm"));
    opts.keep = true;
    let (report, guests, mut problems) = boot_checked(&opts, 2);
    let host = |name: &str| report.host(name).unwrap();
    check_runtime_images(
        host("master01"),
        &plan_images(&plan, &["runtime", "kubeadm", "master", "etcd"]),
        &mut problems,
    );
    check_runtime_images(
        host("node01"),
        &plan_images(&plan, &["runtime", "kubeadm"]),
        &mut problems,
    );

    let until = Instant::now() + time_limit(Duration::from_secs(40 * 60));
    let (master, node) = loop {
        let master = probe_lines(host("master01"));
        let node = probe_lines(host("node01"));
        if (finished(&master) && finished(&node)) || Instant::now() > until {
            eprintln!("master01 probe: {master:?}");
            eprintln!("node01 probe: {node:?}");
            break (master, node);
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    drop(guests);

    for (name, lines, steps) in [
        ("master01", &master, &MASTER_STEPS[..]),
        ("node01", &node, &NODE_STEPS[..]),
    ] {
        // `pulls=none` is followed by the number of images containerd holds.
        let ok = lines.len() == steps.len()
            && lines
                .iter()
                .zip(steps)
                .all(|(l, s)| l == s || (*s == "pulls=none" && l.starts_with("pulls=none ")));
        problems.check(ok, || {
            format!("{name}'s probe printed {lines:?}, expected {steps:?}")
        });
    }
    assert!(
        problems.0.is_empty(),
        "{} problem(s) on the consoles (logs in {}):\n- {}",
        problems.0.len(),
        report.log_dir.display(),
        problems.0.join("\n- ")
    );
}
