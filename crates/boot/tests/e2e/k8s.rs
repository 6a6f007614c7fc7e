//! The k8s example end to end: `kiln build` it and boot its six hosts
//! together (two masters and two load balancers as systemd-nspawn
//! containers, the three etcd members among them here; two nodes as QEMU
//! guests) on their private link, from kiln's bundles alone. Each serial
//! console must show the role coming up and a rerun of install.sh changing
//! nothing; then the probes (`probe/` and `k8s-probe/`,
//! added as overlays) report that the nodes went Ready, pods run on both
//! nodes and reach each other, the Service answers on its ClusterIP from a
//! pod and from each node, DNS resolves, `kubectl logs` and `exec` work,
//! the API keeps answering through the VIP with a master's API server
//! stopped, and the VIP moves to the other load balancer when the
//! keepalived holding it stops.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_boot::BootOptions;

use crate::env::{guest_image, log_dir, repo, require_e2e};
use crate::lab::{
    boot_checked, build_with_plan, check_failover, check_runtime_images, overlays_with,
    plan_images, probe_lines, ProbeLines,
};

/// The hosts booted as containers; the nodes are QEMU guests.
const CONTAINERS: [&str; 4] = ["master01", "master02", "lb01", "lb02"];

/// What the first master's probe prints when everything works, in order.
const MASTER_STEPS: [&str; 10] = [
    "nodes=ready",
    "csrs=approved",
    "web=running",
    "logs=ok",
    "exec=ok",
    "pod-to-pod=ok",
    "clusterip-from-pod=ok",
    "dns-kubernetes=ok",
    "dns-service=ok",
    "api-with-master01-stopped=ok",
];

/// What each node's probe prints when everything works.
const NODE_STEPS: [&str; 3] = ["ipvs=web", "clusterip-from-node=ok", "pods-from-node=ok"];

/// The k8s example's cluster.toml, rewritten so its inputs are read from
/// the checkout and its PKI state lands in `dir`, with the e2e probes as two
/// more overlays and VRRP adverts every 3 s (the nodes are busy software
/// VMs).
fn k8s_in(dir: &Path) -> PathBuf {
    let r = repo();
    let overlays = overlays_with(dir, &[("probe", "e2e-probe"), ("k8s-probe", "e2e-k8s")]);
    let mut text = fs::read_to_string(r.join("examples/k8s/cluster.toml")).unwrap();
    for (needle, with) in [
        (
            "image-sources = [\"assemble\"]\n",
            "image-sources = [\"assemble\"]\noverlays = [\"e2e-probe\", \"e2e-k8s\"]\n".to_owned(),
        ),
        (
            "overlays = \"../../overlays\"",
            format!("overlays = \"{}\"", overlays.display()),
        ),
        (
            "[paths]\n",
            format!(
                "[paths]\nvendor = \"{0}/examples/k8s/vendor\"\nlock = \"{0}/examples/k8s/kiln.lock\"\n",
                r.display()
            ),
        ),
        (
            "lb_router_id = 78\n",
            "lb_router_id = 78\nlb_advert_int = 3\n".to_owned(),
        ),
        // The three etcd members on (native speed) containers, master01, master02 and lb02:
        // with two of them on TCG nodes, peers timed out on each other's TLS and the cluster
        // kept re-electing (term 234 in 15 min) and never served the API; with one, that node
        // took 700 s to pass its health and 11 min more for its rerun.
        (
            "roles = [\"master\"]\n",
            "roles = [\"master\", \"etcd\"]\n".to_owned(),
        ),
        (
            "roles = [\"lb\"]\nvars = { lb_priority = 100 }\n",
            "roles = [\"lb\", \"etcd\"]\nvars = { lb_priority = 100 }\n".to_owned(),
        ),
        (
            "name = \"node01\"\nip = \"10.78.0.11\"\nmac = \"52:54:00:78:00:11\"\nroles = [\"node\", \"etcd\"]\n",
            "name = \"node01\"\nip = \"10.78.0.11\"\nmac = \"52:54:00:78:00:11\"\nroles = [\"node\"]\n"
                .to_owned(),
        ),
        (
            "name = \"node02\"\nip = \"10.78.0.12\"\nmac = \"52:54:00:78:00:12\"\nroles = [\"node\", \"etcd\"]\n",
            "name = \"node02\"\nip = \"10.78.0.12\"\nmac = \"52:54:00:78:00:12\"\nroles = [\"node\"]\n"
                .to_owned(),
        ),
    ] {
        assert!(
            text.contains(needle),
            "the k8s example's cluster.toml has no `{needle}`"
        );
        text = text.replace(needle, &with);
    }
    let text = text.replace("\"../../", &format!("\"{}/", r.display()));
    let cluster = dir.join("cluster.toml");
    fs::write(&cluster, text).unwrap();
    cluster
}

/// A probe is finished when it printed its last step or a failure.
fn finished(lines: &ProbeLines, last: &str) -> bool {
    lines.iter().any(|l| {
        l == last
            || ["=no", "=none", "=not", "never", "still", "lost"]
                .iter()
                .any(|end| l.contains(end))
    })
}

/// A node's console carries two probes: the VIP client's `vip-via=` lines
/// and the node probe's.
fn split_node(lines: ProbeLines) -> (ProbeLines, ProbeLines) {
    lines.into_iter().partition(|l| l.starts_with("vip-via="))
}

#[test]
#[ignore = "VM test (about 15 min): run tests/e2e/run.sh"]
fn k8s_cluster_serves_pods_services_and_dns_and_survives_a_master_and_an_lb_stopping() {
    require_e2e();
    let image = guest_image();
    let tmp = tempfile::tempdir().unwrap();
    let cluster = k8s_in(tmp.path());
    let (out, plan) = build_with_plan(&cluster, tmp.path(), "k8s");
    let node_images = plan_images(&plan, &["runtime", "node"]);
    let macs: Vec<(String, String)> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let field = |k: &str| h[k].as_str().unwrap().to_owned();
            (field("name"), field("mac").to_lowercase())
        })
        .collect();

    let mut opts = BootOptions::new(&out, image);
    // Software emulation is too slow for a control plane on two cores: the masters and
    // load balancers are systemd-nspawn containers of the same image on the same link; the
    // nodes, whose roles need a kernel of their own (modules, sysctls, IPVS, containerd,
    // flannel's VXLAN), are QEMU guests.
    opts.containers = CONTAINERS.map(String::from).to_vec();
    opts.timeout = Duration::from_secs(30 * 60);
    // A node running containerd, flannel, CoreDNS and pods needs more than the default 1 GiB.
    opts.memory_mb = Some(2048);
    opts.log_dir = Some(log_dir("k8s"));
    // Kept running after the boot: the probes go on once every host is ready.
    opts.keep = true;
    let (report, guests, mut problems) = boot_checked(&opts, 6);
    let host = |name: &str| report.host(name).unwrap();
    for node in ["node01", "node02"] {
        check_runtime_images(host(node), &node_images, &mut problems);
    }

    // Follow the probes until each has finished (or the limit passes).
    let until = Instant::now() + Duration::from_secs(30 * 60);
    let lbs = ["lb01", "lb02"];
    let (master, nodes, lb_lines, client) = loop {
        let master = probe_lines(host("master01"));
        let nodes: Vec<(ProbeLines, ProbeLines)> = ["node01", "node02"]
            .map(|n| split_node(probe_lines(host(n))))
            .into();
        let lb_lines = lbs.map(|h| probe_lines(host(h)));
        let client = nodes[0].0.clone();
        let lb_done = lb_lines.iter().all(|l| {
            finished(l, "vip-after-stop answers=yes") || finished(l, "vip-after-move answers=yes")
        });
        let taken_by = lbs
            .iter()
            .zip(&lb_lines)
            .find(|(_, l)| l.iter().any(|w| w == "vip=acquired"))
            .map(|(h, _)| crate::lab::via(&macs, h));
        let client_done = taken_by.is_none() || client.last() == taken_by.as_ref();
        let done = finished(&master, MASTER_STEPS[MASTER_STEPS.len() - 1])
            && nodes
                .iter()
                .all(|(_, n)| finished(n, NODE_STEPS[NODE_STEPS.len() - 1]))
            && lb_done
            && client_done;
        if done || Instant::now() > until {
            eprintln!("master01 probe: {master:?}");
            for (name, (_, n)) in ["node01", "node02"].iter().zip(&nodes) {
                eprintln!("{name} probe: {n:?}");
            }
            for (name, l) in lbs.iter().zip(&lb_lines) {
                eprintln!("{name} probe: {l:?}");
            }
            eprintln!("node01 VIP client: {client:?}");
            break (master, nodes, lb_lines, client);
        }
        std::thread::sleep(Duration::from_secs(5));
    };
    drop(guests);

    problems.check(master == MASTER_STEPS, || {
        format!("master01's probe printed {master:?}, expected {MASTER_STEPS:?}")
    });
    for (name, (_, lines)) in ["node01", "node02"].iter().zip(&nodes) {
        problems.check(*lines == NODE_STEPS, || {
            format!("{name}'s probe printed {lines:?}, expected {NODE_STEPS:?}")
        });
    }
    check_failover(lbs, &(lb_lines, client), &macs, &mut problems);
    assert!(
        problems.0.is_empty(),
        "{} problem(s) on the consoles (logs in {}):\n- {}",
        problems.0.len(),
        report.log_dir.display(),
        problems.0.join("\n- ")
    );
}
