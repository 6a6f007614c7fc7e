//! The kubeadm bootstrap (issue 11) proven against the real kubeadm of the pinned release, built
//! by scripts/k8s-binaries into catalog/files/: every host's rendered configuration validates,
//! kubeadm's image list is kiln's, and kubeadm's certs and kubeconfig phases find kiln's PKI
//! complete and generate nothing. Also: bad `bootstrap` settings are refused at their key.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_pki::{PkiOptions, SecretFile, SystemClock};

use crate::bad_input::pos_of;
use crate::common::{kiln_in, repo, walk};

/// The HA shape kubeadm is checked on: the k8s example's six hosts (two masters behind the lb
/// VIP, three etcd members, two nodes, two lb hosts) brought up by kubeadm with the kubeadm
/// example's profiles, input paths made absolute, its PKI state in `tmp`.
fn cluster_in(tmp: &Path, edit: impl FnOnce(String) -> String) -> PathBuf {
    let r = repo();
    let text = fs::read_to_string(r.join("examples/k8s/cluster.toml")).unwrap();
    let mut text = text
        .replace("\"../../", &format!("\"{}/", r.display()))
        .replace(
            &format!("profiles = \"{}/profiles\"", r.display()),
            &format!("profiles = \"{}/examples/kubeadm/profiles\"", r.display()),
        );
    for (needle, with) in [
        (
            "image-sources = [\"assemble\"]\n",
            "image-sources = [\"assemble\"]\nbootstrap = \"kubeadm\"\n",
        ),
        ("[pki]\nkubelet-auth = \"bootstrap-token\"\n", ""),
    ] {
        assert!(text.contains(needle), "examples/k8s has no `{needle}`");
        text = text.replace(needle, with);
    }
    let cluster = tmp.join("cluster.toml");
    fs::write(&cluster, edit(text)).unwrap();
    cluster
}

/// The example with stacked etcd: the two masters are the etcd members, the nodes are not.
fn stacked(text: String) -> String {
    text.replace("roles = [\"master\"]", "roles = [\"master\", \"etcd\"]")
        .replace("roles = [\"node\", \"etcd\"]", "roles = [\"node\"]")
}

/// A planned and issued cluster: the plan's kubeadm settings and every host's secret files.
struct Issued {
    settings: kiln_kubeadm::Settings,
    /// The plan's kubeadm images.
    images: Vec<String>,
    /// containerd's configuration in the runtime bundle.
    containerd: String,
    hosts: BTreeMap<String, Vec<SecretFile>>,
    ips: BTreeMap<String, std::net::IpAddr>,
}

fn issue(tmp: &Path, edit: impl FnOnce(String) -> String) -> Issued {
    let project = kiln_load::project(&cluster_in(tmp, edit)).unwrap();
    let plan = kiln_plan::plan(&project).unwrap();
    let out = kiln_pki::ensure_layout(
        &project.cluster.paths.pki,
        &plan.pki,
        &SystemClock,
        &PkiOptions::default(),
    )
    .unwrap();
    let containerd = plan
        .bundles
        .iter()
        .find(|b| b.id == "runtime-debian12")
        .and_then(|b| {
            b.files
                .iter()
                .find(|f| f.path == "/etc/containerd/config.toml")
        })
        .map(|f| match &f.source {
            kiln_plan::FileSource::Content { bytes, .. } => {
                String::from_utf8(bytes.clone()).unwrap()
            }
            other => panic!("containerd's configuration is {other:?}"),
        })
        .expect("the runtime bundle's /etc/containerd/config.toml");
    Issued {
        images: plan.kubeadm_images.clone(),
        containerd,
        settings: plan.pki.input().kubeadm.clone().expect("kubeadm settings"),
        hosts: out.hosts,
        ips: plan.hosts.iter().map(|h| (h.name.clone(), h.ip)).collect(),
    }
}

impl Issued {
    fn file(&self, host: &str, path: &str) -> &[u8] {
        &self.hosts[host]
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{host} has no {path}"))
            .bytes
    }

    /// Writes `host`'s files under `prefix` (on the host) into `dir`, paths relative to it.
    fn lay_out(&self, host: &str, prefix: &str, dir: &Path) {
        for f in &self.hosts[host] {
            if let Some(rel) = f.path.strip_prefix(prefix) {
                let dest = dir.join(rel.trim_start_matches('/'));
                fs::create_dir_all(dest.parent().unwrap()).unwrap();
                fs::write(dest, &f.bytes).unwrap();
            }
        }
    }
}

/// The real kubeadm of the example's Kubernetes version, or `None` (a skip, or a failure
/// under KILN_REQUIRE_TOOLS) when the set-up has not built it.
fn kubeadm(test: &str) -> Option<PathBuf> {
    let text = fs::read_to_string(repo().join("examples/kubeadm/cluster.toml")).unwrap();
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("kubernetes = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("versions.kubernetes in the example");
    let bin = repo().join(format!(
        "catalog/files/kubernetes/v{version}/linux-amd64/kubeadm"
    ));
    let why = format!(
        "needs {} (scripts/k8s-binaries --link builds it)",
        bin.display()
    );
    kiln_testkit::ready(test, bin.is_file(), &why).then_some(bin)
}

/// kubeadm with its home and kubeconfig in `tmp` (it needs no root and no network here).
fn kubeadm_command(bin: &Path, tmp: &Path) -> Command {
    let home = tmp.join("home");
    fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &home)
        .env("KUBECONFIG", home.join("kubeconfig"));
    cmd
}

/// Runs kubeadm as [`kubeadm_command`] sets it up.
fn run_kubeadm(bin: &Path, tmp: &Path, args: &[&str]) -> Output {
    kubeadm_command(bin, tmp).args(args).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().to_path_buf(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Runs a kubeadm phase over `dir` and asserts it found everything and wrote nothing.
fn generates_nothing(bin: &Path, tmp: &Path, dir: &Path, args: &[&str], what: &str) -> String {
    let before = tree(dir);
    assert!(
        !before.is_empty(),
        "{what}: nothing laid out in {}",
        dir.display()
    );
    let text = ok(&run_kubeadm(bin, tmp, args), what);
    let after = tree(dir);
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let changed: Vec<_> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        added.is_empty() && changed.is_empty(),
        "{what}: kubeadm added {added:?} and changed {changed:?}:\n{text}"
    );
    text
}

/// `kubeadm init phase certs all` and `kubeconfig` (all, or the named phases) on `host`'s own
/// files, with `config` as its configuration.
fn phases_find_everything(
    bin: &Path,
    tmp: &Path,
    issued: &Issued,
    host: &str,
    config: &Path,
    kubeconfigs: &[&str],
) {
    let certs = tmp.join(format!("{host}-pki"));
    issued.lay_out(host, "/etc/kubernetes/pki", &certs);
    // kubeadm takes the certificate folder from the configuration only (no --cert-dir with
    // --config): the host's configuration, pointed at the laid-out copy.
    let with_certs = tmp.join(format!("{host}-kubeadm-certs.yaml"));
    let text = fs::read_to_string(config).unwrap();
    assert!(
        text.contains("certificatesDir: /etc/kubernetes/pki\n"),
        "{text}"
    );
    let text = text.replace(
        "certificatesDir: /etc/kubernetes/pki\n",
        &format!("certificatesDir: {}\n", certs.display()),
    );
    fs::write(&with_certs, text).unwrap();
    let cfg = with_certs.to_str().unwrap();
    let text = generates_nothing(
        bin,
        tmp,
        &certs,
        &["init", "phase", "certs", "all", "--config", cfg],
        &format!("{host}: kubeadm init phase certs all"),
    );
    assert!(
        text.contains("Using existing ca certificate authority"),
        "{text}"
    );
    assert!(
        text.contains("Using existing apiserver certificate and key"),
        "{text}"
    );

    let kube = tmp.join(format!("{host}-kube"));
    fs::create_dir_all(&kube).unwrap();
    for name in kubeconfigs {
        let conf = format!("{name}.conf");
        let bytes = issued.file(host, &format!("/etc/kubernetes/{conf}"));
        fs::write(kube.join(&conf), bytes).unwrap();
    }
    let phases: Vec<&str> = if kubeconfigs.len() == 5 {
        vec!["all"]
    } else {
        kubeconfigs.to_vec()
    };
    for phase in phases {
        let text = generates_nothing(
            bin,
            tmp,
            &kube,
            &[
                "init",
                "phase",
                "kubeconfig",
                phase,
                "--config",
                cfg,
                "--kubeconfig-dir",
                kube.to_str().unwrap(),
            ],
            &format!("{host}: kubeadm init phase kubeconfig {phase}"),
        );
        assert!(text.contains("Using existing kubeconfig file"), "{text}");
    }
}

/// Everything the real kubeadm checks of one cluster shape.
fn kubeadm_accepts(test: &str, edit: fn(String) -> String, stacked_etcd: bool) {
    let Some(bin) = kubeadm(test) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let issued = issue(tmp.path(), edit);
    assert_eq!(
        matches!(issued.settings.etcd, kiln_kubeadm::Etcd::Stacked { .. }),
        stacked_etcd
    );

    // Every host of the cluster gets a configuration kubeadm validates.
    let mut configs = BTreeMap::new();
    for host in ["master01", "master02", "node01", "node02"] {
        let path = tmp.path().join(format!("{host}-kubeadm.yaml"));
        fs::write(&path, issued.file(host, kiln_kubeadm::CONFIG_PATH)).unwrap();
        ok(
            &run_kubeadm(
                &bin,
                tmp.path(),
                &["config", "validate", "--config", path.to_str().unwrap()],
            ),
            &format!("{host}: kubeadm config validate"),
        );
        configs.insert(host, path);
    }
    // Nodes pin the cluster CA as kubeadm's documentation computes it with openssl, and join
    // with the token the first master's InitConfiguration creates.
    let ca = tmp.path().join("ca.crt");
    fs::write(&ca, issued.file("master01", "/etc/kubernetes/pki/ca.crt")).unwrap();
    let pin = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -pubkey -noout -in \"$1\" | openssl pkey -pubin -outform der | sha256sum",
        )
        .arg("sh")
        .arg(&ca)
        .output()
        .unwrap();
    let pin = ok(&pin, "openssl's CA pin");
    let pin = format!("sha256:{}", pin.split_whitespace().next().unwrap());
    let init =
        String::from_utf8(issued.file("master01", kiln_kubeadm::CONFIG_PATH).to_vec()).unwrap();
    let token = init
        .lines()
        .find_map(|l| l.trim().strip_prefix("- token: "))
        .expect("a bootstrap token in the InitConfiguration");
    for host in ["master02", "node01", "node02"] {
        let join =
            String::from_utf8(issued.file(host, kiln_kubeadm::CONFIG_PATH).to_vec()).unwrap();
        assert!(
            join.contains(&format!("    - {pin}\n")),
            "{host}: no {pin} in\n{join}"
        );
        assert!(
            join.contains(&format!("    token: {token}\n")),
            "{host}: another token in\n{join}"
        );
    }
    for lb in ["lb01", "lb02"] {
        assert!(issued.hosts[lb].is_empty(), "{lb} has secrets");
    }

    // kubeadm's image list for the first master's configuration is kiln's.
    let listed = ok(
        &run_kubeadm(
            &bin,
            tmp.path(),
            &[
                "config",
                "images",
                "list",
                "--config",
                configs["master01"].to_str().unwrap(),
            ],
        ),
        "kubeadm config images list",
    );
    let listed: Vec<&str> = listed
        .lines()
        .filter(|l| l.starts_with(kiln_kubeadm::IMAGE_REPOSITORY))
        .collect();
    let kiln_list = &issued.images;
    assert_eq!(
        &listed, kiln_list,
        "kubeadm's image list against kiln's plan"
    );
    // The runtime's sandbox is the pause image kubeadm checks for.
    let pause = kiln_list.iter().find(|i| i.contains("/pause:")).unwrap();
    assert!(
        issued
            .containerd
            .contains(&format!("sandbox_image = \"{pause}\"")),
        "containerd's sandbox_image is not {pause}:\n{}",
        issued.containerd
    );
    assert_eq!(
        kiln_list.iter().any(|i| i.contains("/etcd:")),
        stacked_etcd,
        "{kiln_list:?}"
    );

    // The static pods kubeadm writes for that configuration: the controller manager and the
    // scheduler with kiln's patient leader election; the controller manager still runs the
    // bootstrap signer, which signs cluster-info for the nodes' token discovery.
    let pods = tmp.path().join("dry-run");
    fs::create_dir_all(&pods).unwrap();
    ok(
        &kubeadm_command(&bin, tmp.path())
            .env("KUBEADM_INIT_DRYRUN_DIR", &pods)
            .args([
                "init",
                "phase",
                "control-plane",
                "all",
                "--dry-run",
                "--config",
            ])
            .arg(&configs["master01"])
            .output()
            .unwrap(),
        "kubeadm init phase control-plane all --dry-run",
    );
    for pod in ["kube-controller-manager", "kube-scheduler"] {
        let manifest = fs::read_to_string(pods.join(format!("{pod}.yaml"))).unwrap();
        for flag in [
            "--leader-elect=true",
            "--leader-elect-lease-duration=60s",
            "--leader-elect-renew-deadline=40s",
            "--leader-elect-retry-period=10s",
        ] {
            assert!(
                manifest.contains(&format!("- {flag}\n")),
                "{pod}: no {flag}:\n{manifest}"
            );
        }
    }
    let kcm = fs::read_to_string(pods.join("kube-controller-manager.yaml")).unwrap();
    assert!(kcm.contains("bootstrapsigner"), "{kcm}");

    // The first master: kubeadm's certs and kubeconfig phases generate nothing.
    phases_find_everything(
        &bin,
        tmp.path(),
        &issued,
        "master01",
        &configs["master01"],
        &[
            "admin",
            "super-admin",
            "controller-manager",
            "scheduler",
            "kubelet",
        ],
    );

    // The second master joins on its own pre-issued files: rendered as kubeadm's init would see
    // that host, its certificates and component kubeconfigs are complete too.
    let token = "abcdef.0123456789abcdef";
    let as_init = kiln_kubeadm::render(
        &issued.settings,
        &kiln_kubeadm::Member {
            name: "master02",
            ip: issued.ips["master02"],
            role: kiln_kubeadm::Role::Init,
        },
        &kiln_kubeadm::JoinSecrets {
            token,
            ca_cert_hash: "sha256:00",
        },
    )
    .unwrap();
    let as_init_path = tmp.path().join("master02-as-init.yaml");
    fs::write(&as_init_path, as_init).unwrap();
    phases_find_everything(
        &bin,
        tmp.path(),
        &issued,
        "master02",
        &as_init_path,
        &["admin", "controller-manager", "scheduler"],
    );
}

#[test]
fn kubeadm_finds_external_etcd_clusters_pki_complete_and_lists_kilns_images() {
    kubeadm_accepts(
        "kubeadm_finds_external_etcd_clusters_pki_complete_and_lists_kilns_images",
        |t| t,
        false,
    );
}

#[test]
fn kubeadm_finds_stacked_etcd_clusters_pki_complete_and_lists_kilns_images() {
    kubeadm_accepts(
        "kubeadm_finds_stacked_etcd_clusters_pki_complete_and_lists_kilns_images",
        stacked,
        true,
    );
}

#[test]
fn bad_bootstrap_settings_are_refused_at_their_key_and_change_nothing() {
    type Edit = fn(String) -> String;
    let cases: [(&str, Edit, &str, &[&str]); 7] = [
        (
            "unknown bootstrap",
            |t| t.replace("bootstrap = \"kubeadm\"", "bootstrap = \"kubeadmm\""),
            "\"kubeadmm\"",
            &[
                "`bootstrap`",
                "unknown bootstrap \"kubeadmm\"; expected one of binary, kubeadm",
            ],
        ),
        (
            "kubeadm at another version",
            |t| {
                t.replace(
                    "kubernetes = \"1.34.4\"\n",
                    "kubernetes = \"1.34.4\"\nkubeadm = \"1.34.3\"\n",
                )
            },
            "\"1.34.3\"",
            &[
                "`versions.kubeadm`",
                "runs kubeadm at the cluster's Kubernetes version \"1.34.4\", found \"1.34.3\"",
            ],
        ),
        (
            "kubelet at another version",
            |t| {
                t.replace(
                    "kubernetes = \"1.34.4\"\n",
                    "kubernetes = \"1.34.4\"\nkubelet = \"1.33.0\"\n",
                )
            },
            "\"1.33.0\"",
            &["`versions.kubelet`", "found \"1.33.0\""],
        ),
        (
            "two masters without an endpoint",
            |t| t.replace("[lb]\nvip = \"10.78.0.100\"\nport = 6443\n", ""),
            "\"kubeadm\"",
            &[
                "`bootstrap`",
                "with 2 masters needs one controlPlaneEndpoint",
            ],
        ),
        (
            "no etcd host",
            |t| t.replace(", \"etcd\"]", "]"),
            "\"kubeadm\"",
            &["`bootstrap`", "needs etcd hosts"],
        ),
        (
            "kubelet auth, which kubeadm does itself",
            |t| {
                t.replacen(
                    "[lb]\n",
                    "[pki]\nkubelet-auth = \"certificates\"\n\n[lb]\n",
                    1,
                )
            },
            "\"certificates\"",
            &[
                "`pki.kubelet-auth`",
                "applies to bootstrap = \"binary\" only",
            ],
        ),
        (
            "misspelt key",
            |t| t.replace("bootstrap = ", "bootstarp = "),
            "bootstarp",
            &["unknown field `bootstarp`"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, edit, at, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let cluster = cluster_in(tmp.path(), edit);
        let text = fs::read_to_string(&cluster).unwrap();
        let (code, stderr) = kiln_in(tmp.path(), &["check", "cluster.toml"]);
        let mut want: Vec<String> = expect.iter().map(|s| s.to_string()).collect();
        want.push(pos_of(&text, at));
        let missing: Vec<&String> = want
            .iter()
            .filter(|w| !stderr.contains(w.as_str()))
            .collect();
        if code != Some(1) || !missing.is_empty() {
            failures.push(format!(
                "{name}: exit {code:?}, missing {missing:?} in:\n{stderr}"
            ));
        }
        if tmp.path().join("pki").exists() {
            failures.push(format!("{name}: a PKI state was created"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The kubeadm example (stacked etcd) with its profiles copied into `tmp` (links resolved) and
/// `edit` applied to one of them, its other inputs read from the checkout.
fn example_with_profile(tmp: &Path, profile: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let r = repo();
    let profiles = tmp.join("profiles");
    let cp = Command::new("cp")
        .arg("-rL")
        .arg(r.join("examples/kubeadm/profiles"))
        .arg(&profiles)
        .status()
        .unwrap();
    assert!(cp.success(), "cp -rL the kubeadm example's profiles");
    let toml = profiles.join(profile).join("profile.toml");
    let text = fs::read_to_string(&toml).unwrap();
    let edited = edit(text.clone());
    assert_ne!(
        edited, text,
        "the edit of {profile}'s profile changed nothing"
    );
    fs::write(&toml, edited).unwrap();
    let text = fs::read_to_string(r.join("examples/kubeadm/cluster.toml"))
        .unwrap()
        .replace("\"../../", &format!("\"{}/", r.display()))
        .replace(
            "profiles = \"profiles\"",
            &format!(
                "profiles = \"{}\"\nlock = \"{1}/examples/kubeadm/kiln.lock\"\nvendor = \"{1}/examples/kubeadm/vendor\"",
                profiles.display(),
                r.display()
            ),
        );
    let cluster = tmp.join("cluster.toml");
    fs::write(&cluster, text).unwrap();
    cluster
}

/// `kiln build` refuses bundles that lack an image `kubeadm config images list` names for a
/// host, or carry it under another tag, naming the host, the image and the bundle, before it
/// writes anything.
#[test]
fn bundles_that_differ_from_kubeadms_image_list_are_refused_and_nothing_is_written() {
    type Edit = fn(String) -> String;
    let cases: [(&str, &str, Edit, &[&str]); 2] = [
        (
            "the scheduler's image left out",
            "master",
            |t| t.replace("    \"registry.k8s.io/kube-scheduler:v{{versions.kubernetes}}\",\n", ""),
            &["master01: kubeadm runs registry.k8s.io/kube-scheduler:v1.34.4, which none of its bundles carries"],
        ),
        (
            "kube-proxy under another tag",
            "kubeadm",
            |t| {
                t.replace(
                    "registry.k8s.io/kube-proxy:v{{versions.kubernetes}}",
                    "registry.k8s.io/kube-proxy:v1.34.3",
                )
            },
            &[
                "master01: kubeadm runs registry.k8s.io/kube-proxy:v1.34.4, but bundle kubeadm-debian12 carries registry.k8s.io/kube-proxy:v1.34.3 instead",
                "node01: kubeadm runs registry.k8s.io/kube-proxy:v1.34.4, but bundle kubeadm-debian12",
                "node02: kubeadm runs registry.k8s.io/kube-proxy:v1.34.4",
            ],
        ),
    ];
    for (name, profile, edit, expect) in cases {
        let tmp = tempfile::tempdir().unwrap();
        example_with_profile(tmp.path(), profile, edit);
        let before = walk(tmp.path());
        let (code, stderr) = kiln_in(tmp.path(), &["build", "--offline", "cluster.toml"]);
        assert_eq!(code, Some(1), "{name}: kiln build: {stderr}");
        assert!(
            stderr.contains("the bundles differ from the images kubeadm runs"),
            "{name}: {stderr}"
        );
        for e in expect {
            assert!(stderr.contains(e), "{name}: no `{e}` in:\n{stderr}");
        }
        assert_eq!(walk(tmp.path()), before, "{name}: kiln build wrote files");
    }
}

/// Every kind of rule kube-proxy writes in iptables mode, each match and target extension once:
/// the Service DNAT, masquerading marks, the random endpoint choice, the REJECT of Services
/// without endpoints, the localnet firewall, and the INVALID drop with its nfacct counter, which
/// every full sync writes where the kernel has nfacct (the counter kube-proxy creates first). The DNAT comes before MASQUERADE, as in kube-proxy's
/// partial syncs (only the changed Service chains): iptables loads a target's extension by its
/// name, and the library behind `libxt_MASQUERADE.so` also defines DNAT, which hid that the image
/// lacked `libxt_DNAT.so` (the kubeadm e2e then found no ClusterIP answering: flannel could not
/// reach the API).
const KUBE_PROXY_RULES: &str = r#"*filter
:KUBE-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "default/none has no endpoints" -m tcp --dport 80 -j REJECT --reject-with icmp-port-unreachable
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j RETURN
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
:KUBE-SEP-A - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
-A KUBE-SEP-A -s 10.79.0.10/32 -m comment --comment "default/kubernetes:https" -j KUBE-MARK-MASQ
-A KUBE-SEP-A -p tcp -m comment --comment "default/kubernetes:https" -m tcp -j DNAT --to-destination 10.79.0.10:6443
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/kubernetes:https -> 10.79.0.10:6443" -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-A
-A KUBE-SERVICES -p udp -m udp --dport 53 -j RETURN
-A KUBE-SERVICES -p sctp -m sctp --dport 9 -j RETURN
-A KUBE-SERVICES -p tcp -m multiport --dports 80,443 -j RETURN
-A KUBE-SERVICES -m recent --name kiln --set -j RETURN
COMMIT
"#;

/// The kube-proxy image kiln assembles for kubeadm loads every rule kube-proxy writes in
/// iptables mode: its own iptables-restore, in a chroot of the image's layer, in a network
/// namespace of its own, then iptables-save lists the Service's DNAT.
#[test]
fn the_assembled_kube_proxy_image_loads_kube_proxys_iptables_rules() {
    let test = "the_assembled_kube_proxy_image_loads_kube_proxys_iptables_rules";
    if !kiln_testkit::have_tools(test, &["unshare", "chroot", "nfacct"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let (code, stderr) = kiln_in(
        &repo().join("examples/kubeadm"),
        &[
            "build",
            "--offline",
            "--seed",
            "none",
            "--out",
            &out.to_string_lossy(),
            "cluster.toml",
        ],
    );
    assert_eq!(code, Some(0), "kiln build examples/kubeadm: {stderr}");
    let bundle = crate::k8s::unpack_bundle(&out.join("kubeadm"), "kubeadm", tmp.path());
    // The image's OCI layout, then its one layer as the chroot.
    let layout = tmp.path().join("layout");
    fs::create_dir_all(&layout).unwrap();
    kiln_testkit::run(
        Command::new("tar")
            .arg("xf")
            .arg(bundle.join("images/registry.k8s.io_kube-proxy_v1.34.4.tar"))
            .arg("-C")
            .arg(&layout),
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("manifest.json")).unwrap()).unwrap();
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let root = tmp.path().join("root");
    fs::create_dir_all(&root).unwrap();
    kiln_testkit::run(
        Command::new("tar")
            .arg("xf")
            .arg(layout.join(layers[0].as_str().unwrap()))
            .arg("-C")
            .arg(&root),
    );
    // iptables-restore, then iptables-save of the same tables, in one network namespace; the
    // image has no shell, so the host's runs the two, each chrooted into the image.
    let rules = tmp.path().join("rules");
    fs::write(&rules, KUBE_PROXY_RULES).unwrap();
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c"])
        .arg(format!(
            "nfacct add ct_state_invalid_dropped_pkts && chroot {root} /usr/sbin/iptables-restore && chroot {root} /usr/sbin/iptables-save",
            root = root.display()
        ))
        .stdin(fs::File::open(&rules).unwrap())
        .output()
        .unwrap();
    let saved = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "iptables-restore in the kube-proxy image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        saved.contains("-j DNAT --to-destination 10.79.0.10:6443"),
        "{saved}"
    );
    assert!(saved.contains("--probability 0.50000000000"), "{saved}");
    assert!(saved.contains("-j MASQUERADE --random-fully"), "{saved}");
    assert!(
        saved.contains("-m nfacct --nfacct-name  ct_state_invalid_dropped_pkts -j DROP"),
        "{saved}"
    );
}
