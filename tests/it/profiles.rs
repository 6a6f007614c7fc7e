//! Role profiles rendered for every OS: unit files, LB configs, snapshots, completeness.
//!
//! Every cluster here is examples/prod (CentOS 7), examples/ubuntu (Ubuntu 22.04) or a copy of
//! examples/prod with `os` (and maybe the network) changed, rendered with `kiln render` and
//! described by `kiln plan --json`. The external tools are Debian packages (systemd, nginx,
//! libnginx-mod-stream, keepalived, python3-yaml): a missing tool fails the test, naming the
//! package.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{kiln, repo};

/// What an OS package gives that kiln's units run or extend: (package, executables, units).
/// Package names are those the profiles list (EL and Debian spellings where they differ).
const OS_PACKAGES: &[(&str, &[&str], &[&str])] = &[
    ("nginx", &["/usr/sbin/nginx"], &["nginx.service"]),
    (
        "keepalived",
        &["/usr/sbin/keepalived"],
        &["keepalived.service"],
    ),
    (
        "chrony",
        &["/usr/sbin/chronyd", "/usr/bin/chronyc"],
        &["chronyd.service", "chrony.service"],
    ),
];

/// Executables every supported OS has in its base system (the shell units use for guards).
const BASE_SYSTEM: &[&str] = &["/bin/sh"];

/// A rendered cluster: `kiln render` output and `kiln plan --json`.
struct Rendered {
    label: String,
    tmp: tempfile::TempDir,
    plan: Value,
}

impl Rendered {
    /// The rendered copy of `path` from a bundle (`<id>`) or host (`hosts/<name>`) folder.
    fn text(&self, owner: &str, path: &str) -> String {
        let p = self
            .tmp
            .path()
            .join("out")
            .join(owner)
            .join("rootfs")
            .join(path.trim_start_matches('/'));
        fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {}: {e}", self.label, p.display()))
    }

    fn bundles(&self) -> &Vec<Value> {
        self.plan["bundles"].as_array().expect("bundles")
    }

    fn hosts(&self) -> &Vec<Value> {
        self.plan["hosts"].as_array().expect("hosts")
    }

    fn bundle(&self, id: &str) -> &Value {
        self.bundles()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap_or_else(|| panic!("{}: no bundle {id}", self.label))
    }

    /// A host's bundles, in install order.
    fn bundles_of(&self, host: &Value) -> Vec<&Value> {
        host["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| self.bundle(id.as_str().unwrap()))
            .collect()
    }

    /// Every rendered file a host receives: (owner folder, plan entry), bundles first.
    fn files_of<'a>(&'a self, host: &'a Value) -> Vec<(String, &'a Value)> {
        let mut out = Vec::new();
        for b in self.bundles_of(host) {
            out.extend(files(b).iter().map(|f| (str_of(&b["id"]).to_string(), f)));
        }
        let own = format!("hosts/{}", str_of(&host["name"]));
        out.extend(files(host).iter().map(|f| (own.clone(), f)));
        out
    }

    fn packages_of(&self, host: &Value) -> BTreeSet<String> {
        self.bundles_of(host)
            .iter()
            .flat_map(|b| strings(&b["packages"]))
            .collect()
    }

    fn images_of(&self, host: &Value) -> BTreeSet<String> {
        self.bundles_of(host)
            .iter()
            .flat_map(|b| strings(&b["images"]))
            .collect()
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, found {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| str_of(s).to_string()).collect())
        .unwrap_or_default()
}

fn files(v: &Value) -> &Vec<Value> {
    v["files"].as_array().expect("files")
}

fn mode(f: &Value) -> u32 {
    u32::from_str_radix(str_of(&f["mode"]), 8).unwrap()
}

fn is_content(f: &Value) -> bool {
    f["source"]["kind"] != "artifact"
}

fn is_unit(path: &str) -> bool {
    let units =
        path.starts_with("/etc/systemd/system/") || path.starts_with("/usr/lib/systemd/system/");
    units
        && [
            ".service", ".socket", ".timer", ".path", ".mount", ".target",
        ]
        .iter()
        .any(|s| path.ends_with(s))
}

/// The unit a drop-in (`…/<unit>.d/<name>.conf`) extends.
fn drop_in_target(path: &str) -> Option<&str> {
    let (dir, file) = path.rsplit_once('/')?;
    let unit = dir.rsplit_once('/')?.1.strip_suffix(".d")?;
    (file.ends_with(".conf") && path.starts_with("/etc/systemd/system/")).then_some(unit)
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "cluster.toml has no {from:?} to replace"
    );
    text.replacen(from, to, 1)
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Fails unless `tool` is on PATH, naming the Debian package that provides it.
fn require(tool: &str, package: &str) {
    let found = run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
        .status
        .success();
    assert!(
        found,
        "`{tool}` is not installed: these tests need it (apt-get install {package})"
    );
}

fn render(label: &str, cluster: &Path, tmp: tempfile::TempDir) -> Rendered {
    let out = tmp.path().join("out");
    let r = kiln()
        .arg("render")
        .arg(cluster)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "kiln render {label}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let p = kiln()
        .args(["plan", "--json"])
        .arg(cluster)
        .output()
        .unwrap();
    assert!(
        p.status.success(),
        "kiln plan {label}: {}",
        String::from_utf8_lossy(&p.stderr)
    );
    Rendered {
        label: label.to_string(),
        tmp,
        plan: serde_json::from_slice(&p.stdout).unwrap(),
    }
}

/// One of the examples, rendered from the checkout (which it does not change).
fn example(name: &str) -> Rendered {
    render(
        name,
        &repo().join(format!("examples/{name}/cluster.toml")),
        tempfile::tempdir().unwrap(),
    )
}

/// examples/prod on another OS (and `edit` applied), in a temporary folder.
fn prod_variant(label: &str, os: &str, edit: impl FnOnce(String) -> String) -> Rendered {
    let text = fs::read_to_string(repo().join("examples/prod/cluster.toml")).unwrap();
    let text = text.replace("= \"../../", &format!("= \"{}/", repo().display()));
    let text = edit(replace_once(
        &text,
        "os = \"centos7\"",
        &format!("os = \"{os}\""),
    ));
    let tmp = tempfile::tempdir().unwrap();
    let cluster = tmp.path().join("cluster.toml");
    fs::write(&cluster, text).unwrap();
    render(label, &cluster, tmp)
}

/// Every supported OS: the two examples, and examples/prod on the three other OSes.
fn every_os() -> Vec<Rendered> {
    let mut all = vec![example("prod"), example("ubuntu")];
    for os in ["rocky9", "ubuntu2404", "debian12"] {
        all.push(prod_variant(&format!("prod-{os}"), os, |t| t));
    }
    all
}

/// examples/prod brought up by kubeadm on `os`, with the kubeadm example's profiles: etcd stacked
/// on the masters (the roles that profile set runs), kubelets joining by kubeadm's token.
fn kubeadm_variant(os: &str) -> Rendered {
    kubeadm_variant_with(&format!("kubeadm-{os}"), os, |t| t)
}

/// [`kubeadm_variant`] with `edit` applied too.
fn kubeadm_variant_with(label: &str, os: &str, edit: fn(String) -> String) -> Rendered {
    prod_variant(label, os, |t| {
        let profiles = format!("profiles = \"{}/profiles\"", repo().display());
        let t = replace_once(
            &t,
            &profiles,
            &format!(
                "profiles = \"{}/examples/kubeadm/profiles\"",
                repo().display()
            ),
        );
        let t = replace_once(&t, "[pki]\nkubelet-auth = \"bootstrap-token\"\n", "");
        let t = replace_once(&t, "\n[paths]\n", "\nbootstrap = \"kubeadm\"\n\n[paths]\n");
        let t = replace_once(&t, "roles = [\"master\"]", "roles = [\"master\", \"etcd\"]");
        edit(t.replace("roles = [\"node\", \"etcd\"]", "roles = [\"node\"]"))
    })
}

/// calico as the pod network: its version, and the overlay that brings its CRDs.
fn calico(t: String) -> String {
    let t = replace_once(&t, "cni = \"flannel\"", "cni = \"calico\"");
    let t = replace_once(&t, "coredns = ", "calico = \"3.31.5\"\ncoredns = ");
    replace_once(&t, "\n[paths]\n", "\noverlays = [\"calico\"]\n\n[paths]\n")
}

/// [`calico`], with kube-proxy in nftables mode.
fn calico_nftables(t: String) -> String {
    replace_once(
        &calico(t),
        "kube-proxy-mode = \"ipvs\"",
        "kube-proxy-mode = \"nftables\"",
    )
}

/// Every supported OS plus the network branches examples/prod does not take: Calico with
/// nftables (on Rocky 9), no CNI with iptables (on Debian 12); and the kubeadm profiles on every
/// supported OS, and with calico (on Debian 12).
fn every_os_and_branch() -> Vec<Rendered> {
    let mut all = every_os();
    for os in ["centos7", "rocky9", "ubuntu2204", "ubuntu2404", "debian12"] {
        all.push(kubeadm_variant(os));
    }
    all.push(prod_variant(
        "calico-nftables-rocky9",
        "rocky9",
        calico_nftables,
    ));
    all.push(kubeadm_variant_with(
        "kubeadm-calico-debian12",
        "debian12",
        calico,
    ));
    all.push(prod_variant("none-iptables-debian12", "debian12", |t| {
        replace_once(
            &replace_once(&t, "cni = \"flannel\"", "cni = \"none\""),
            "kube-proxy-mode = \"ipvs\"",
            "kube-proxy-mode = \"iptables\"",
        )
    }));
    all
}

/// A command of a unit: its executable, and whether the unit tolerates its failure (`-` prefix),
/// which is how kiln's units reach for OS tools a host may lack (ufw, firewall-cmd, setenforce).
struct UnitCommand {
    exe: String,
    tolerated: bool,
}

/// Commands of a unit or drop-in: the first word of every Exec*= line, without prefixes.
fn unit_commands(text: &str) -> Vec<UnitCommand> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.trim().starts_with("Exec") {
            continue;
        }
        let prefixes = ['-', '@', ':', '+', '!'];
        let value = value.trim();
        let flags = &value[..value.len() - value.trim_start_matches(prefixes).len()];
        let exe = value
            .trim_start_matches(prefixes)
            .split_whitespace()
            .next()
            .unwrap_or("");
        if !exe.is_empty() {
            out.push(UnitCommand {
                exe: exe.to_string(),
                tolerated: flags.contains('-'),
            });
        }
        // Skip the continuation lines of a long command.
        let mut l = line;
        while l.trim_end().ends_with('\\') {
            l = lines.next().unwrap_or("");
        }
    }
    out
}

fn write_exec(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A root for `systemd-analyze verify --root`: systemd's own targets (from this machine), the
/// host's rendered files, stand-in executables at every artifact path and for the OS packages
/// its bundles list, and stand-ins for the OS units kiln's drop-ins extend. Returns the units to
/// verify, as paths inside the root.
fn verify_root(r: &Rendered, host: &Value, root: &Path) -> Vec<String> {
    let units_dir = root.join("usr/lib/systemd/system");
    fs::create_dir_all(&units_dir).unwrap();
    for e in fs::read_dir("/lib/systemd/system")
        .expect("/lib/systemd/system (package systemd)")
        .flatten()
    {
        let name = e.file_name().into_string().unwrap();
        if name.ends_with(".target") {
            // Copied, not linked: a link would point outside the root.
            if let Ok(bytes) = fs::read(e.path()) {
                fs::write(units_dir.join(&name), bytes).unwrap();
            }
        }
    }
    let mut units = Vec::new();
    let mut drop_ins = BTreeSet::new();
    for (owner, f) in r.files_of(host) {
        let path = str_of(&f["path"]);
        let dest = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        if is_content(f) {
            fs::write(&dest, r.text(&owner, path)).unwrap();
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode(f))).unwrap();
            if is_unit(path) {
                units.push(path.to_string());
            } else if let Some(unit) = drop_in_target(path) {
                drop_ins.insert(unit.to_string());
            }
        } else {
            write_exec(&dest, "#!/bin/sh\n# stand-in for a kiln artifact\n");
        }
    }
    for exe in BASE_SYSTEM {
        write_exec(
            &root.join(&exe[1..]),
            "#!/bin/sh\n# stand-in for the base system's executable\n",
        );
    }
    for pkg in r.packages_of(host) {
        for (_, exes, pkg_units) in OS_PACKAGES.iter().filter(|(p, ..)| *p == pkg) {
            for exe in exes.iter() {
                write_exec(
                    &root.join(&exe[1..]),
                    "#!/bin/sh\n# stand-in for an OS package's executable\n",
                );
            }
            for u in pkg_units.iter() {
                let text = format!("[Unit]\nDescription=Stand-in for {u} of package {pkg}\n\n[Service]\nExecStart={}\n", exes[0]);
                fs::write(units_dir.join(u), text).unwrap();
            }
        }
    }
    // A drop-in is verified through the unit it extends: kiln's own, or the OS package's stand-in.
    for unit in drop_ins {
        if units.iter().any(|u| u.ends_with(&format!("/{unit}"))) {
            continue;
        }
        let path = format!("/usr/lib/systemd/system/{unit}");
        assert!(root.join(&path[1..]).is_file(), "{}: host {} has a drop-in for {unit}, which neither its bundles nor their packages provide", r.label, host["name"]);
        units.push(path);
    }
    units
}

#[test]
fn every_unit_passes_systemd_analyze_verify_on_every_os() {
    require("systemd-analyze", "systemd");
    let mut checked = 0;
    for r in every_os_and_branch() {
        for host in r.hosts() {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("root");
            let units = verify_root(&r, host, &root);
            if units.is_empty() {
                continue;
            }
            let out = run(Command::new("systemd-analyze")
                .arg("verify")
                .arg("--man=no")
                .arg(format!("--root={}", root.display()))
                .args(&units));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.is_empty(),
                "{} host {}: systemd-analyze verify {units:?}:\n{stderr}",
                r.label,
                host["name"]
            );
            checked += units.len();
        }
    }
    assert!(checked > 100, "only {checked} units verified");
}

#[test]
fn every_unit_executable_is_shipped_or_from_an_os_package() {
    for r in every_os_and_branch() {
        for host in r.hosts() {
            let name = str_of(&host["name"]);
            let bundles = r.bundles_of(host);
            // Executable files the host's bundles deliver (artifacts and scripts).
            let shipped: BTreeSet<&str> = bundles
                .iter()
                .flat_map(|b| files(b))
                .filter(|f| mode(f) & 0o111 != 0)
                .map(|f| str_of(&f["path"]))
                .collect();
            let packages = r.packages_of(host);
            let from_packages: BTreeMap<&str, &str> = OS_PACKAGES
                .iter()
                .filter(|(p, ..)| packages.contains(*p))
                .flat_map(|(p, exes, _)| exes.iter().map(move |e| (*e, *p)))
                .collect();
            let package_units: BTreeSet<&str> = OS_PACKAGES
                .iter()
                .filter(|(p, ..)| packages.contains(*p))
                .flat_map(|(_, _, u)| u.iter().copied())
                .collect();
            let mut unit_files = BTreeSet::new();
            for (owner, f) in r.files_of(host) {
                let path = str_of(&f["path"]);
                if !is_content(f) || !(is_unit(path) || drop_in_target(path).is_some()) {
                    continue;
                }
                if is_unit(path) {
                    unit_files.insert(path.rsplit_once('/').unwrap().1.to_string());
                }
                let text = r.text(&owner, path);
                for UnitCommand { exe, tolerated } in unit_commands(&text) {
                    let ok = shipped.contains(exe.as_str())
                        || from_packages.contains_key(exe.as_str())
                        || BASE_SYSTEM.contains(&exe.as_str())
                        || (tolerated
                            && !exe.starts_with("/usr/local/")
                            && !exe.starts_with("/opt/"));
                    assert!(ok, "{}: host {name}: {path} (in {owner}) runs {exe}, which no bundle of the host ships and none of its packages {packages:?} provides", r.label);
                }
            }
            // Every unit a bundle enables is a unit file of the host's bundles or of its packages.
            for b in &bundles {
                for u in strings(&b["units"]) {
                    let ok = unit_files.contains(&u) || package_units.contains(u.as_str());
                    assert!(ok, "{}: host {name}: bundle {} enables {u}, which no bundle or package of the host provides", r.label, b["id"]);
                }
                // Health commands run on the host too: their absolute executables must be there.
                let health = b["health"].as_str().unwrap_or("");
                for cmd in health
                    .split(['&', '|', ';'])
                    .filter_map(|c| c.split_whitespace().next())
                {
                    let ok = !cmd.starts_with('/')
                        || shipped.contains(cmd)
                        || from_packages.contains_key(cmd);
                    assert!(ok, "{}: host {name}: the health command of {} runs {cmd}, which the host does not get", r.label, b["id"]);
                }
            }
        }
    }
}

/// Image references in a rendered file: containerd's sandbox image and manifests' `image:`.
fn image_references(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            l.strip_prefix("sandbox_image = ")
                .or_else(|| l.strip_prefix("image: "))
                .or_else(|| l.strip_prefix("- image: "))
        })
        .map(|v| v.trim().trim_matches('"').to_string())
        .collect()
}

#[test]
fn every_image_a_rendered_file_names_is_in_the_bundles_of_the_hosts_that_run_it() {
    for r in every_os_and_branch() {
        // Add-on manifests are applied from the masters; their pods run wherever a runtime is.
        let runtimes: Vec<&Value> = r
            .hosts()
            .iter()
            .filter(|h| r.bundles_of(h).iter().any(|b| b["role"] == "runtime"))
            .collect();
        for host in r.hosts() {
            for (owner, f) in r.files_of(host) {
                let path = str_of(&f["path"]);
                if !is_content(f) {
                    continue;
                }
                for image in image_references(&r.text(&owner, path)) {
                    let targets = if path.starts_with("/etc/kubernetes/addons/") {
                        runtimes.clone()
                    } else {
                        vec![host]
                    };
                    assert!(
                        !targets.is_empty(),
                        "{}: {path} names {image} but no host has a container runtime",
                        r.label
                    );
                    for t in targets {
                        assert!(r.images_of(t).contains(&image), "{}: {path} (in {owner}) names {image}, which the bundles of host {} do not carry", r.label, t["name"]);
                    }
                }
            }
        }
    }
}

/// The rendered files of a bundle or host, in plan order, as one text to snapshot.
fn tree_text(r: &Rendered, owner: &str, entry: &Value) -> String {
    let mut s = String::new();
    for f in files(entry) {
        let path = str_of(&f["path"]);
        let src = &f["source"];
        if is_content(f) {
            s.push_str(&format!(
                "=== {path} {} ({})\n{}",
                str_of(&f["mode"]),
                str_of(&src["origin"]),
                r.text(owner, path)
            ));
        } else {
            s.push_str(&format!(
                "=== {path} {} (artifact {} {})\n",
                str_of(&f["mode"]),
                str_of(&src["name"]),
                str_of(&src["version"])
            ));
        }
    }
    s
}

fn snapshot_example(name: &str) {
    let r = example(name);
    for b in r.bundles() {
        let id = str_of(&b["id"]);
        insta::assert_snapshot!(format!("{name}__{id}"), tree_text(&r, id, b));
    }
    let hosts: String = r
        .hosts()
        .iter()
        .map(|h| {
            format!(
                "##### host {}\n{}",
                str_of(&h["name"]),
                tree_text(&r, &format!("hosts/{}", str_of(&h["name"])), h)
            )
        })
        .collect();
    insta::assert_snapshot!(format!("{name}__hosts"), hosts);
}

#[test]
fn rendered_files_of_prod() {
    snapshot_example("prod");
}

#[test]
fn rendered_files_of_ubuntu() {
    snapshot_example("ubuntu");
}

/// Absolute paths of the test machine the LB configs name, moved into `dir`.
fn relocate(text: &str, dir: &Path) -> String {
    text.replace("/var/log/nginx/", &format!("{}/log/", dir.display()))
        .replace(
            "pid /run/nginx.pid;",
            &format!("pid {}/nginx.pid;", dir.display()),
        )
        .replace("/etc/keepalived/", &format!("{}/", dir.display()))
}

fn has_conf(folder: &str) -> bool {
    fs::read_dir(folder)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".conf"))
        })
        .unwrap_or(false)
}

/// nginx.conf made checkable on this machine: logs and pid in `dir`; a `user` this machine
/// lacks (EL's nginx) becomes root; another distribution's module folder becomes this one's.
fn nginx_for_this_machine(text: &str, dir: &Path) -> String {
    let mut out = String::new();
    for line in relocate(text, dir).lines() {
        let mut line = line.to_string();
        if let Some(user) = line
            .strip_prefix("user ")
            .map(|u| u.trim_end_matches(';').to_string())
        {
            if !run(Command::new("getent").args(["passwd", &user]))
                .status
                .success()
            {
                line = "user root;".into();
            }
        }
        if let Some(glob) = line
            .strip_prefix("include ")
            .map(|g| g.trim_end_matches(';').to_string())
        {
            if !has_conf(glob.trim_end_matches("/*.conf")) {
                let here = ["/etc/nginx/modules-enabled", "/usr/share/nginx/modules"]
                    .into_iter()
                    .find(|d| has_conf(d));
                line = format!("include {}/*.conf;", here.expect("a folder of nginx module configurations (apt-get install libnginx-mod-stream)"));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        !out.contains("/var/") && !out.contains("/run/"),
        "nginx.conf still writes outside the test folder:\n{out}"
    );
    out
}

fn nginx_accepts(label: &str, conf: &str) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("log")).unwrap();
    let file = tmp.path().join("nginx.conf");
    fs::write(&file, nginx_for_this_machine(conf, tmp.path())).unwrap();
    let out = run(Command::new("nginx")
        .args(["-t", "-q", "-e", "stderr", "-c"])
        .arg(&file));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let hint = if stderr.contains("unknown directive \"stream\"") {
        " (apt-get install libnginx-mod-stream)"
    } else {
        ""
    };
    assert!(
        out.status.success() && stderr.is_empty(),
        "{label}: nginx -t rejects the rendered nginx.conf{hint}:\n{stderr}\n{}",
        fs::read_to_string(&file).unwrap()
    );
}

#[test]
fn nginx_accepts_the_rendered_lb_config_on_every_os() {
    require("nginx", "nginx libnginx-mod-stream");
    let mut all = every_os();
    // lb.backends replaces the masters (the lab points the lb hosts at etcd).
    all.push(prod_variant("backends-debian12", "debian12", |t| {
        replace_once(
            &t,
            "port = 6443\n",
            "port = 6443\nbackends = [\"192.168.80.11:2379\", \"192.168.80.12:2379\"]\n",
        )
    }));
    for r in all {
        let b = r
            .bundles()
            .iter()
            .find(|b| b["role"] == "lb")
            .expect("an lb bundle");
        let conf = r.text(str_of(&b["id"]), "/etc/nginx/nginx.conf");
        let backends: Vec<&str> = conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .filter(|v| !v.starts_with('{'))
            .collect();
        let want = if r.label.starts_with("backends") {
            ["192.168.80.11:2379", "192.168.80.12:2379"]
        } else {
            ["192.168.80.10:6443", "192.168.80.20:6443"]
        };
        assert_eq!(
            backends
                .iter()
                .map(|b| b.split_whitespace().next().unwrap())
                .collect::<Vec<_>>(),
            want,
            "{}",
            r.label
        );
        nginx_accepts(&r.label, &conf);
    }
}

/// An interface of this machine: keepalived -t insists the VRRP interface exists here.
fn local_interface() -> String {
    let names = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let mut names: Vec<String> = names.into_iter().filter(|n| n != "lo").collect();
    names.sort();
    names
        .into_iter()
        .next()
        .expect("keepalived -t needs a network interface other than lo on this machine")
}

#[test]
fn keepalived_accepts_the_rendered_config_of_every_lb_host_on_every_os() {
    require("keepalived", "keepalived");
    let iface = local_interface();
    for r in every_os() {
        let b = r
            .bundles()
            .iter()
            .find(|b| b["role"] == "lb")
            .expect("an lb bundle");
        let check = r.text(str_of(&b["id"]), "/etc/keepalived/check-nginx.sh");
        for host in r
            .hosts()
            .iter()
            .filter(|h| strings(&h["roles"]).contains(&"lb".to_string()))
        {
            let name = str_of(&host["name"]);
            let tmp = tempfile::tempdir().unwrap();
            // keepalived runs the check only if root owns it and nobody else may write it.
            write_exec(&tmp.path().join("check-nginx.sh"), &check);
            let conf = r.text(&format!("hosts/{name}"), "/etc/keepalived/keepalived.conf");
            let peers: Vec<&str> = r
                .hosts()
                .iter()
                .filter(|h| {
                    h["roles"].as_array().unwrap().contains(&Value::from("lb")) && h["name"] != name
                })
                .map(|h| str_of(&h["ip"]))
                .collect();
            assert!(
                peers
                    .iter()
                    .all(|p| conf.contains(&format!("        {p}\n")))
                    && !conf.contains(&format!("        {}\n", str_of(&host["ip"]))),
                "{}: {name}: unicast peers must be the other lb hosts:\n{conf}",
                r.label
            );
            let conf: String = relocate(&conf, tmp.path())
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("interface ") {
                        format!("    interface {iface}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            let file = tmp.path().join("keepalived.conf");
            fs::write(&file, &conf).unwrap();
            let out = run(Command::new("keepalived").args(["-t", "-f"]).arg(&file));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.is_empty(),
                "{}: {name}: keepalived -t rejects the rendered keepalived.conf:\n{stderr}\n{conf}",
                r.label
            );
        }
    }
}

/// The VRRP advert interval: 1 s unless `vars.lb_advert_int` sets it (the lab's busy VMs use 3 s).
#[test]
fn keepalived_adverts_every_second_unless_lb_advert_int_says_otherwise() {
    let advert = |r: &Rendered, host: &str| -> Vec<String> {
        r.text(&format!("hosts/{host}"), "/etc/keepalived/keepalived.conf")
            .lines()
            .filter(|l| l.trim_start().starts_with("advert_int"))
            .map(|l| l.trim().to_owned())
            .collect()
    };
    let lab = example("lab");
    for host in ["lb1", "lb2"] {
        assert_eq!(advert(&lab, host), ["advert_int 3"], "lab {host}");
    }
    for r in every_os() {
        for host in r
            .hosts()
            .iter()
            .filter(|h| strings(&h["roles"]).contains(&"lb".to_string()))
        {
            let name = str_of(&host["name"]);
            assert_eq!(advert(&r, name), ["advert_int 1"], "{} {name}", r.label);
        }
    }
}

#[test]
fn network_choices_change_what_the_node_and_master_bundles_render() {
    let r = prod_variant("calico-nftables-rocky9", "rocky9", calico_nftables);
    let cni = r.text("master-rocky9", "/etc/kubernetes/addons/20-cni.yaml");
    assert!(
        cni.contains("kind: DaemonSet\nmetadata:\n  name: calico-node\n")
            && cni.contains("- name: CALICO_IPV4POOL_CIDR\n              value: \"10.244.0.0/16\"")
            && cni.contains("- name: CALICO_IPV4POOL_VXLAN\n              value: \"Always\"")
            && !cni.contains("flannel"),
        "{cni}"
    );
    let node01 = r.hosts().iter().find(|h| h["name"] == "node01").unwrap();
    let node = r.images_of(node01);
    for i in ["cni", "node", "kube-controllers"] {
        assert!(
            node.contains(&format!("docker.io/calico/{i}:v3.31.5")),
            "{node:?}"
        );
    }
    assert!(!node.iter().any(|i| i.contains("flannel")), "{node:?}");
    let ipvs = r.text("node-rocky9", "/etc/modules-load.d/kiln-ipvs.conf");
    assert!(!ipvs.contains("ip_vs"), "{ipvs}");
    assert!(r
        .text("node-rocky9", "/etc/kubernetes/kube-proxy.yaml")
        .contains("mode: nftables"));
    let prod = example("prod");
    let ipvs = prod.text("node-centos7", "/etc/modules-load.d/kiln-ipvs.conf");
    assert!(
        ipvs.contains("ip_vs_rr\n") && ipvs.contains("nf_conntrack_ipv4\n"),
        "{ipvs}"
    );
    let flannel = prod.text("master-centos7", "/etc/kubernetes/addons/20-cni.yaml");
    assert!(
        flannel.contains("\"Network\": \"10.244.0.0/16\"")
            && flannel.contains("\"EnableNFTables\": false"),
        "{flannel}"
    );
    let ubuntu = example("ubuntu");
    assert!(ubuntu
        .text("node-ubuntu2204", "/var/lib/kubelet/config.yaml")
        .contains("resolvConf: /run/systemd/resolve/resolv.conf"));
    assert!(!ubuntu
        .text("node-ubuntu2204", "/etc/modules-load.d/kiln-ipvs.conf")
        .contains("nf_conntrack_ipv4"));
}

/// Parses every YAML file (and the JSON of ConfigMaps in them) and every XML file given.
const PARSE_CHECK: &str = r#"
import json, sys, xml.dom.minidom
import yaml
for path in sys.argv[1:]:
    try:
        if path.endswith(".xml"):
            xml.dom.minidom.parse(path)
            continue
        for doc in yaml.safe_load_all(open(path)):
            data = doc.get("data") if isinstance(doc, dict) else None
            for key, value in (data or {}).items():
                if key.endswith(".json"):
                    json.loads(value)
    except Exception as e:
        sys.exit(f"{path}: {e}")
"#;

#[test]
fn every_rendered_yaml_json_toml_and_xml_file_parses() {
    require("python3", "python3 python3-yaml");
    for r in every_os_and_branch() {
        let mut checked = Vec::new();
        for f in crate::common::walk(&r.tmp.path().join("out")) {
            let name = f.to_string_lossy().to_string();
            if name.ends_with(".toml") {
                let text = fs::read_to_string(&f).unwrap();
                if let Err(e) = text.parse::<toml::Table>() {
                    panic!("{}: {name}: {e}", r.label);
                }
            } else if [".yaml", ".yml", ".xml"].iter().any(|e| name.ends_with(e)) {
                checked.push(name);
            }
        }
        assert!(!checked.is_empty(), "{}: no YAML or XML rendered", r.label);
        let out = run(Command::new("python3")
            .arg("-c")
            .arg(PARSE_CHECK)
            .args(&checked));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("No module named 'yaml'") {
            " (apt-get install python3-yaml)"
        } else {
            ""
        };
        assert!(
            out.status.success(),
            "{}: a rendered file does not parse{hint}:\n{stderr}",
            r.label
        );
    }
}

/// The first etcd member of a new cluster is ready only once a quorum has joined; hosts boot
/// at different times, so its start must wait minutes, not systemd's default 90 s (the k8s
/// e2e's first master, [master, etcd], failed its install waiting for its peers, the nodes).
#[test]
fn etcd_waits_for_its_peers_for_minutes_before_its_start_fails_and_pre_votes() {
    for r in every_os().iter().chain([&example("lab"), &example("k8s")]) {
        for b in r.bundles().iter().filter(|b| b["role"] == "etcd") {
            let id = str_of(&b["id"]);
            let unit = r.text(id, "/etc/systemd/system/etcd.service");
            assert!(
                unit.contains("\nType=notify\n"),
                "{} {id}:\n{unit}",
                r.label
            );
            let timeout = unit
                .lines()
                .find_map(|l| l.strip_prefix("TimeoutStartSec="))
                .unwrap_or_else(|| panic!("{} {id}: no TimeoutStartSec:\n{unit}", r.label));
            let minutes: u32 = timeout
                .strip_suffix("min")
                .and_then(|m| m.parse().ok())
                .unwrap_or_else(|| panic!("{} {id}: TimeoutStartSec={timeout}", r.label));
            assert!(minutes >= 10, "{} {id}: TimeoutStartSec={timeout}", r.label);
        }
        // A member on a stalled host must not depose a working leader when it is back.
        for h in r
            .hosts()
            .iter()
            .filter(|h| strings(&h["roles"]).contains(&"etcd".to_string()))
        {
            let name = str_of(&h["name"]);
            let env = r.text(&format!("hosts/{name}"), "/etc/kiln/etcd.env");
            assert!(
                env.contains("\nETCD_PRE_VOTE=true\n"),
                "{} {name}:\n{env}",
                r.label
            );
        }
    }
}

/// Every shell script the profiles render (a `#!/bin/sh` or `#!/bin/bash` file in a bundle or a
/// host folder), on every OS and branch, passes shellcheck for its shell, and the `sh` ones parse
/// with dash (Debian's /bin/sh).
#[test]
fn every_rendered_shell_script_passes_shellcheck_and_dash() {
    require("shellcheck", "shellcheck");
    require("dash", "dash");
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = BTreeSet::new();
    let mut failures = Vec::new();
    for r in every_os_and_branch() {
        for host in r.hosts() {
            for (owner, f) in r.files_of(host) {
                if !is_content(f) {
                    continue;
                }
                let path = str_of(&f["path"]);
                let text = r.text(&owner, path);
                let shell = match text.lines().next() {
                    Some("#!/bin/sh") => "sh",
                    Some("#!/bin/bash") => "bash",
                    _ => continue,
                };
                if !seen.insert(text.clone()) {
                    continue;
                }
                let file = tmp.path().join(format!("script-{}", seen.len()));
                fs::write(&file, &text).unwrap();
                let mut checks = vec![Command::new("shellcheck")];
                checks[0].args(["-s", shell]).arg(&file);
                if shell == "sh" {
                    let mut dash = Command::new("dash");
                    dash.arg("-n").arg(&file);
                    checks.push(dash);
                }
                for mut c in checks {
                    let out = run(&mut c);
                    if !out.status.success() {
                        failures.push(format!(
                            "{} {owner}:{path}: {:?}:\n{}{}",
                            r.label,
                            c.get_program(),
                            String::from_utf8_lossy(&out.stdout),
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // keepalived's check-nginx.sh and kiln-kubeadm at least.
    assert!(seen.len() >= 2, "only {} scripts found", seen.len());
}
