//! The k8s example: real Kubernetes, flannel, crictl and CoreDNS binaries built from Go modules
//! by scripts/k8s-binaries (the set-up links them into catalog/files/), pinned in its kiln.lock
//! like every other artifact, and the flannel and CoreDNS images assembled from them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit::{have_tools, run, Containerd};

use crate::common::{kiln, repo};

/// The example's cluster.toml, rewritten to keep its PKI state and output in `tmp`.
fn k8s_cluster_in(tmp: &Path) -> PathBuf {
    let r = repo();
    let lock = fs::read_to_string(r.join("examples/k8s/kiln.lock")).unwrap();
    let store = r.join("examples/k8s/vendor/sha256");
    let missing: Vec<&str> = lock
        .lines()
        .filter_map(|l| l.strip_prefix("sha256 = \""))
        .map(|s| &s[..64])
        .filter(|s| !store.join(s).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "examples/k8s/vendor lacks {} pinned files: run scripts/setup (it builds the Go binaries \
         with scripts/k8s-binaries and runs `kiln fetch examples/k8s/cluster.toml`)",
        missing.len()
    );
    let text = fs::read_to_string(r.join("examples/k8s/cluster.toml"))
        .unwrap()
        .replace(
            "[paths]\n",
            &format!(
                "[paths]\nvendor = \"{0}/examples/k8s/vendor\"\nlock = \"{0}/examples/k8s/kiln.lock\"\n",
                r.display()
            ),
        )
        .replace("\"../../", &format!("\"{}/", r.display()));
    let cluster = tmp.join("cluster.toml");
    fs::write(&cluster, text).unwrap();
    cluster
}

/// Unpacks the one Debian 12 bundle of `role` under `build/bundles` (a build's
/// `out/<cluster>`) into `dest`.
pub(crate) fn unpack_bundle(build: &Path, role: &str, dest: &Path) -> PathBuf {
    let dir = build.join("bundles");
    let bundle = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{role}-debian12-"))
        })
        .unwrap_or_else(|| panic!("no {role} bundle in {}", dir.display()));
    let d = dest.join(role);
    fs::create_dir_all(&d).unwrap();
    run(Command::new("tar")
        .arg("xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&d));
    d
}

fn version_of(bin: &Path, args: &[&str]) -> String {
    run(Command::new(bin).args(args)).trim().to_string()
}

#[test]
fn k8s_example_bundles_the_pinned_go_binaries_with_their_real_versions_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = k8s_cluster_in(tmp.path());
    let out = tmp.path().join("out");
    kiln()
        .args(["build", "--offline", "--out"])
        .arg(&out)
        .arg(&cluster)
        .assert()
        .success();
    kiln().arg("verify").arg(out.join("k8s")).assert().success();

    let x = tmp.path().join("x");
    let master = unpack_bundle(&out.join("k8s"), "master", &x);
    let node = unpack_bundle(&out.join("k8s"), "node", &x);
    let bin = |root: &Path, name: &str| root.join("rootfs/usr/local/bin").join(name);
    // Stamped versions: kubeadm's and the kubelet's version checks depend on them.
    for (root, name) in [
        (&master, "kube-apiserver"),
        (&master, "kube-controller-manager"),
        (&master, "kube-scheduler"),
        (&node, "kubelet"),
        (&node, "kube-proxy"),
    ] {
        assert_eq!(
            version_of(&bin(root, name), &["--version"]),
            "Kubernetes v1.34.4",
            "{name} --version"
        );
    }
    let client = version_of(
        &bin(&master, "kubectl"),
        &["version", "--client", "-o", "json"],
    );
    assert!(
        client.contains("\"gitVersion\": \"v1.34.4\""),
        "kubectl version: {client}"
    );
    assert!(
        version_of(&bin(&node, "crictl"), &["--version"]).ends_with("v1.34.0"),
        "crictl version"
    );
    // The rendered add-ons name the images the node bundle carries, tag for tag.
    let cni = fs::read_to_string(master.join("rootfs/etc/kubernetes/addons/20-cni.yaml")).unwrap();
    assert!(cni.contains("image: docker.io/flannel/flannel:v0.28.4"));
    assert!(cni.contains("image: docker.io/flannel/flannel-cni-plugin:v0.9.1"));
    let dns =
        fs::read_to_string(master.join("rootfs/etc/kubernetes/addons/30-coredns.yaml")).unwrap();
    assert!(dns.contains("image: registry.k8s.io/coredns/coredns:v1.14.3"));

    // The assembled images import into a real containerd under those names.
    if !have_tools(
        "k8s_example_bundles_the_pinned_go_binaries_with_their_real_versions_offline",
        &["containerd", "ctr"],
    ) {
        return;
    }
    let ctrd = Containerd::start(&tmp.path().join("containerd"));
    let images = node.join("images");
    let mut tars: Vec<PathBuf> = fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    tars.sort();
    for t in &tars {
        ctrd.import(t);
    }
    let names: Vec<String> = ctrd.images().into_iter().map(|(n, _)| n).collect();
    for want in [
        "docker.io/flannel/flannel:v0.28.4",
        "docker.io/flannel/flannel-cni-plugin:v0.9.1",
        "registry.k8s.io/coredns/coredns:v1.14.3",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} not among {names:?}"
        );
    }
    // They run: flanneld and the iptables-nft it programs (with its libraries and extensions),
    // the CoreDNS binary, and the cp the DaemonSet's init containers call.
    let in_image = |image: &str, name: &str, cmd: &[&str]| -> String {
        run(Command::new("ctr")
            .arg("-a")
            .arg(&ctrd.sock)
            .args(["-n", "k8s.io", "run", "--rm", "--snapshotter", "native"])
            .args([image, name])
            .args(cmd))
    };
    let flannel = "docker.io/flannel/flannel:v0.28.4";
    in_image(flannel, "t-flanneld", &["/opt/bin/flanneld", "--version"]);
    assert_eq!(
        in_image(flannel, "t-iptables", &["iptables", "--version"]).trim(),
        "iptables v1.8.9 (nf_tables)"
    );
    let dns = in_image(
        "registry.k8s.io/coredns/coredns:v1.14.3",
        "t-coredns",
        &["/coredns", "-version"],
    );
    assert!(dns.contains("CoreDNS-1.14.3"), "coredns -version: {dns}");
    in_image(
        "docker.io/flannel/flannel-cni-plugin:v0.9.1",
        "t-cp",
        &["cp", "/flannel", "/flannel.copy"],
    );
}

/// `kiln render` of an example into a temp folder; returns the folder.
fn render(example: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    kiln()
        .arg("render")
        .arg(repo().join(format!("examples/{example}/cluster.toml")))
        .arg("--out")
        .arg(tmp.path())
        .assert()
        .success();
    tmp
}

fn rendered(tmp: &tempfile::TempDir, bundle: &str, path: &str) -> String {
    let p = tmp.path().join(bundle).join("rootfs").join(path);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Found by booting the cluster: CoreDNS exits ("no nameservers found") when its Corefile
/// forwards to /etc/resolv.conf and that file is empty, as on an air-gapped node without
/// `network.nameservers`. It forwards only when the cluster names nameservers.
#[test]
fn regression_coredns_forwards_only_when_the_cluster_has_nameservers() {
    let k8s = render("k8s");
    let corefile = rendered(
        &k8s,
        "master-debian12",
        "etc/kubernetes/addons/30-coredns.yaml",
    );
    assert!(corefile.contains("kubernetes cluster.local in-addr.arpa ip6.arpa"));
    assert!(!corefile.contains("forward ."), "{corefile}");
    let prod = render("prod");
    let corefile = rendered(
        &prod,
        "master-centos7",
        "etc/kubernetes/addons/30-coredns.yaml",
    );
    assert!(
        corefile.contains("forward . /etc/resolv.conf"),
        "{corefile}"
    );
}

/// flanneld picks the interface of the default route unless told otherwise, and an air-gapped
/// host without a gateway has none: it must use the node's own address (the kubelet's node IP).
#[test]
fn regression_flanneld_uses_the_node_address_not_the_default_route() {
    let k8s = render("k8s");
    let cni = rendered(&k8s, "master-debian12", "etc/kubernetes/addons/20-cni.yaml");
    assert!(cni.contains("\"--iface=$(HOST_IP)\""), "{cni}");
    assert!(cni.contains("fieldPath: status.hostIP"), "{cni}");
}

/// Found by the first real master+node build: the add-on manifests live in the master bundle,
/// but their pods (flannel, CoreDNS) run on the hosts with a container runtime, so the build
/// checks their images against each of those hosts' bundles (it used to demand them of the
/// master, which runs no pods, and so failed every cluster with add-ons). A node profile that
/// does not carry an add-on's image still fails the build, naming the node, the manifest's line
/// and the image, and writes nothing.
#[test]
fn regression_add_on_images_are_checked_against_the_nodes_that_run_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = k8s_cluster_in(tmp.path());
    // A copy of the profiles whose node profile leaves out the CoreDNS image.
    let profiles = tmp.path().join("profiles");
    run(Command::new("cp")
        .arg("-r")
        .arg(repo().join("profiles"))
        .arg(&profiles));
    let node = profiles.join("node/profile.toml");
    let text = fs::read_to_string(&node).unwrap();
    let line = "    \"registry.k8s.io/coredns/coredns:v{{versions.coredns}}\",\n";
    assert!(text.contains(line), "the node profile carries CoreDNS");
    fs::write(&node, text.replace(line, "")).unwrap();
    let c = fs::read_to_string(&cluster).unwrap().replace(
        &format!("profiles = \"{}/profiles\"", repo().display()),
        &format!("profiles = \"{}\"", profiles.display()),
    );
    assert!(c.contains(&format!("profiles = \"{}\"", profiles.display())));
    fs::write(&cluster, c).unwrap();

    let out = tmp.path().join("out");
    let r = kiln()
        .args(["build", "--offline", "--seed", "none", "--out"])
        .arg(&out)
        .arg(&cluster)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{e}");
    for host in ["node01", "node02"] {
        assert!(
            e.contains(&format!(
                "{host}: image registry.k8s.io/coredns/coredns:v1.14.3 named at /etc/kubernetes/addons/30-coredns.yaml:"
            )),
            "{e}"
        );
    }
    // The masters run no pods: nothing is asked of them.
    assert!(!e.contains("master01:"), "{e}");
    assert!(!out.join("k8s").exists());
}

/// The node profile's flannel images are conditional on `network.cni`; where they do not apply
/// the entries render empty and are dropped, not kept as an empty image reference.
#[test]
fn a_cluster_without_flannel_carries_no_flannel_images() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = k8s_cluster_in(tmp.path());
    let c = fs::read_to_string(&cluster).unwrap();
    assert!(c.contains("cni = \"flannel\""));
    fs::write(&cluster, c.replace("cni = \"flannel\"", "cni = \"none\"")).unwrap();
    let listed = kiln()
        .args(["images", "--json"])
        .arg(&cluster)
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let node: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["bundle"] == "node-debian12")
        .map(|r| r["image"].as_str().unwrap())
        .collect();
    assert_eq!(node, ["registry.k8s.io/coredns/coredns:v1.14.3"]);
}
