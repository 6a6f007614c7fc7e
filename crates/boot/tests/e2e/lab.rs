//! The lab example end to end: `kiln build` it, boot its six hosts together
//! (3 etcd members and 2 load balancers as systemd-nspawn containers, 1
//! container runtime as a QEMU guest) on their private link, and check on each serial console that the role came up and that
//! rerunning install.sh changed nothing; then that the load balancers' VIP
//! answers and moves to the other lb host when the keepalived holding it
//! stops (probes from `probe/`, added as an overlay, report it); then day 2
//! on the same hosts (`upgrade.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_boot::{boot, BootOptions, HostPhase, Marker};

use crate::env::{guest_image, kiln_bin, log_dir, print_timings, repo, require_e2e, Progress};

/// install.sh's steps, in the order each run prints them.
const STEPS: [&str; 13] = [
    "verify",
    "list",
    "preflight",
    "extract",
    "manifest",
    "prep",
    "packages",
    "install",
    "images",
    "units",
    "health",
    "state",
    "done",
];

/// The lab hosts booted as containers: all but runtime1.
const CONTAINERS: [&str; 5] = ["etcd1", "etcd2", "etcd3", "lb1", "lb2"];

/// This machine's address on the lab's private link, where the test's registry listens.
const LINK_ADDRESS: &str = "10.77.0.250";
/// The registry on the link, as the seeds name it.
const REGISTRY_SOURCE: &str = "oci+http://10.77.0.250:5000/kiln/lab";

/// The lab's cluster.toml, rewritten so its inputs are read from the
/// checkout and its PKI state lands in `dir` (tests never write into the
/// checkout), with the e2e probes as one more overlay, and with seeds that carry
/// no bundles: every host takes each bundle from the registry on the link, else from
/// the shared bundle medium (runtime1's QEMU guest mounts bundles.iso by its label;
/// the containers get `bundles/` bound where the mounted medium would be).
fn lab_in(dir: &Path) -> PathBuf {
    let r = repo();
    let overlays = overlays_with(dir, &[("probe", "e2e-probe")]);
    let text = fs::read_to_string(r.join("examples/lab/cluster.toml")).unwrap();
    for needle in [
        "overlays = [\"site-example\"]",
        "overlays = \"../../overlays\"",
    ] {
        assert!(
            text.contains(needle),
            "the lab's cluster.toml has no `{needle}`"
        );
    }
    let text = text
        .replace(
            "overlays = [\"site-example\"]",
            "overlays = [\"site-example\", \"e2e-probe\"]",
        )
        .replace(
            "overlays = \"../../overlays\"",
            &format!("overlays = \"{}\"", overlays.display()),
        )
        .replace(
            "[paths]\n",
            &format!(
                "[paths]\nvendor = \"{0}/examples/lab/vendor\"\nlock = \"{0}/examples/lab/kiln.lock\"\n",
                r.display()
            ),
        )
        .replace("\"../../", &format!("\"{}/", r.display()))
        .replacen(
            "[network]",
            &format!("[seeds]\ncarry-bundles = false\nbundle-sources = [\"{REGISTRY_SOURCE}\", \"medium\"]\n\n[network]"),
            1,
        );
    let lab = dir.join("cluster.toml");
    fs::write(&lab, text).unwrap();
    lab
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// `kiln build --offline --seed-rerun` of `cluster` into `dir/out`, and `kiln plan --json` of
/// it: the cluster's out folder (`dir/out/<name>`) and the plan.
pub(crate) fn build_with_plan(
    cluster: &Path,
    dir: &Path,
    name: &str,
) -> (PathBuf, serde_json::Value) {
    let out_root = dir.join("out");
    let out_arg = out_root.to_str().unwrap().to_owned();
    kiln(
        &["build", "--offline", "--seed-rerun", "--out", &out_arg],
        cluster,
    );
    let plan = serde_json::from_str(&kiln(&["plan", "--json"], cluster)).unwrap();
    (out_root.join(name), plan)
}

/// The images the plan's bundles of `roles` carry, in bundle order.
pub(crate) fn plan_images(plan: &serde_json::Value, roles: &[&str]) -> Vec<String> {
    plan["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| roles.iter().any(|r| b["role"] == *r))
        .flat_map(|b| b["images"].as_array().unwrap().iter())
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

/// `dir/overlays`: the repository's overlays plus each e2e probe folder
/// (`crates/boot/tests/e2e/<probe>`) as the overlay `<name>`.
pub(crate) fn overlays_with(dir: &Path, probes: &[(&str, &str)]) -> PathBuf {
    let r = repo();
    let overlays = dir.join("overlays");
    copy_tree(&r.join("overlays"), &overlays);
    for (probe, name) in probes {
        copy_tree(
            &r.join("crates/boot/tests/e2e").join(probe),
            &overlays.join(name),
        );
    }
    overlays
}

pub(crate) fn kiln(args: &[&str], lab: &Path) -> String {
    let bin = kiln_bin();
    let out = Command::new(&bin).args(args).arg(lab).output().unwrap();
    assert!(
        out.status.success(),
        "`{} {} {}` failed:\n{}",
        bin.display(),
        args.join(" "),
        lab.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each install run's markers: a run ends at its `done` marker.
pub(crate) fn runs(log: &Path) -> Vec<Vec<Marker>> {
    let text = fs::read_to_string(log).unwrap();
    let mut runs = vec![Vec::new()];
    for line in text.lines() {
        let Some(m) = Marker::parse(&kiln_boot::clean_line(line)) else {
            continue;
        };
        if !STEPS.contains(&m.step.as_str()) {
            continue;
        }
        let done = m.step == "done";
        runs.last_mut().unwrap().push(m);
        if done {
            runs.push(Vec::new());
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

pub(crate) fn find<'a>(run: &'a [Marker], step: &str) -> Option<&'a Marker> {
    run.iter().find(|m| m.step == step)
}

#[test]
#[ignore = "VM test (about 25 min: the lab, then day 2): run tests/e2e/run.sh"]
fn lab_hosts_reach_their_roles_a_rerun_changes_nothing_and_the_vip_fails_over() {
    require_e2e();
    let image = guest_image();
    let tmp = tempfile::tempdir().unwrap();
    let lab = lab_in(tmp.path());
    let help = Command::new(kiln_bin())
        .args(["build", "--help"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--seed-rerun"),
        "`kiln build` has no --seed-rerun: the e2e test needs seeds that run install.sh twice"
    );
    let out_root = tmp.path().join("out");
    let out_arg = out_root.to_str().unwrap().to_owned();
    kiln(
        &["build", "--offline", "--seed-rerun", "--out", &out_arg],
        &lab,
    );
    let out = out_root.join("lab");
    assert!(out.join("bundles.iso").is_file(), "no shared bundle medium");
    let (link_service, from_medium) = registry_on_link(&out, &tmp.path().join("registry"));

    // What the build planned: every etcd member's health covers the whole
    // cluster, and the runtime's images.
    let plan: serde_json::Value = serde_json::from_str(&kiln(&["plan", "--json"], &lab)).unwrap();
    let bundles = plan["bundles"].as_array().unwrap();
    let bundle = |role: &str| {
        bundles
            .iter()
            .find(|b| b["role"] == role)
            .unwrap_or_else(|| panic!("no {role} bundle in the plan"))
    };
    let etcd_health = bundle("etcd")["health"].as_str().unwrap();
    assert!(
        etcd_health.contains("endpoint health --cluster"),
        "{etcd_health}"
    );
    assert!(etcd_health.contains("--cacert="), "{etcd_health}");
    let images: Vec<String> = bundle("runtime")["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();

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
    // Six QEMU guests sharing two emulated cores took 21 min to install and more than 30
    // to rerun on CI (stop 18): the etcd and lb hosts run as systemd-nspawn containers of
    // the same image on the same link, and runtime1, whose role needs a kernel of its
    // own (modules, sysctls, containerd's snapshots), stays a QEMU guest.
    opts.containers = CONTAINERS.map(String::from).to_vec();
    opts.link_address = Some(format!("{LINK_ADDRESS}/24").parse().unwrap());
    opts.link_services = vec![link_service];
    opts.timeout = Duration::from_secs(30 * 60);
    opts.log_dir = Some(log_dir("lab"));
    // Kept running after the boot: the VIP probes go on once every host is ready.
    opts.keep = true;
    let (report, guests) = boot_kept(&opts);
    assert_eq!(report.hosts.len(), 6);

    let mut problems = Problems::default();
    for host in &report.hosts {
        check_host(host, &mut problems);
        // Nor install.sh: each seed's runcmd took it from the registry on the link first.
        let console = fs::read_to_string(&host.serial_log).unwrap_or_default();
        let fetched_install_sh = format!("install.sh: install.sh fetched from {REGISTRY_SOURCE}");
        problems.check(console.contains(&fetched_install_sh), || {
            format!("{}: no `{fetched_install_sh}` on the console", host.name)
        });
        // The seeds carry no bundles: each host's first run took each from the registry on
        // the link, but the one the registry lacks from the medium.
        let first = runs(&host.serial_log)
            .into_iter()
            .next()
            .unwrap_or_default();
        if let Some(verify) = find(&first, "verify") {
            let text = verify.to_string();
            let fetched: Vec<&str> = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("fetched="))
                .map(|list| list.split(',').collect())
                .unwrap_or_default();
            problems.check(!fetched.is_empty(), || {
                format!("{}: no bundle was fetched: `{verify}`", host.name)
            });
            for entry in fetched {
                let (file, source) = entry.split_once('@').unwrap_or((entry, ""));
                let want = match file == from_medium {
                    true => "medium",
                    false => REGISTRY_SOURCE,
                };
                problems.check(source == want, || {
                    format!("{}: {file} came from {source:?}, not {want}", host.name)
                });
            }
        }
    }
    check_runtime_images(report.host("runtime1").unwrap(), &images, &mut problems);
    let lbs = ["lb1", "lb2"].map(|h| report.host(h).unwrap());
    let client = report.host("runtime1").unwrap();
    let probes = follow_probes(&lbs, client, &macs, Duration::from_secs(20 * 60));
    check_failover(["lb1", "lb2"], &probes, &macs, &mut problems);
    // Day 2 on the same hosts (their disks kept): generation 2 rolling, generation 3 rolled back.
    let mut guests = guests;
    let kept = guests.0.as_mut().expect("the boot kept its hosts");
    crate::upgrade::day_two(&lab, &out, &opts, kept, &mut problems);
    drop(guests);
    assert!(
        problems.0.is_empty(),
        "{} problem(s) on the consoles (logs in {}):\n- {}",
        problems.0.len(),
        report.log_dir.display(),
        problems.0.join("\n- ")
    );
}

/// Pushes the build in `out` to a registry on 127.0.0.1 (storage in `dir`), deletes the
/// runtime bundle from it (a source that lacks a bundle: install.sh must take that one from the
/// next source), and returns the link service serving that storage on the hosts' link and the
/// file name of the deleted bundle.
fn registry_on_link(out: &Path, dir: &Path) -> (kiln_boot::LinkService, String) {
    use kiln_testkit::{Registry, RegistryAuth};
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("MANIFEST.json")).unwrap()).unwrap();
    let (file, sha) = manifest["bundles"]
        .as_object()
        .unwrap()
        .values()
        .find(|b| b["role"] == "runtime")
        .map(|b| {
            let file = b["file"].as_str().unwrap();
            let sha = manifest["outputs"][file]["sha256"].as_str().unwrap();
            (file.to_owned(), sha.to_owned())
        })
        .expect("a runtime bundle in MANIFEST.json");
    let storage = {
        let registry = Registry::start(dir, RegistryAuth::None);
        let target = format!("http://{}/kiln/lab", registry.addr);
        let push = Command::new(kiln_bin())
            .args(["push", out.to_str().unwrap(), &target])
            .output()
            .unwrap();
        assert!(
            push.status.success(),
            "kiln push {target} failed:\n{}",
            String::from_utf8_lossy(&push.stderr)
        );
        let url = format!("http://{}/v2/kiln/lab/blobs/sha256:{sha}", registry.addr);
        let delete = Command::new("curl")
            .args(["-fsS", "-X", "DELETE", &url])
            .output()
            .unwrap();
        assert!(
            delete.status.success(),
            "DELETE {url}: {}",
            String::from_utf8_lossy(&delete.stderr)
        );
        registry.storage.clone()
    };
    let config = dir.join("link.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {LINK_ADDRESS}:5000\n",
            storage.display()
        ),
    )
    .unwrap();
    let service = format!("5000=docker-registry serve {}", config.display())
        .parse()
        .unwrap();
    let name = Path::new(&file).file_name().unwrap().to_str().unwrap();
    (service, name.to_owned())
}

/// [`boot_kept`], then: there are `hosts` hosts, and each came up as [`check_host`] wants.
pub(crate) fn boot_checked(
    opts: &BootOptions,
    hosts: usize,
) -> (kiln_boot::BootReport, Guests, Problems) {
    let (report, guests) = boot_kept(opts);
    assert_eq!(report.hosts.len(), hosts);
    let mut problems = Problems::default();
    for host in &report.hosts {
        check_host(host, &mut problems);
    }
    (report, guests, problems)
}

/// Boots with `opts` (which keep the guests), prints the timings, and
/// returns the report with the guests to stop; a failed boot stops them and
/// panics with the failure.
pub(crate) fn boot_kept(opts: &BootOptions) -> (kiln_boot::BootReport, Guests) {
    match boot(opts, &Progress::new()) {
        Ok(report) => {
            print_timings(&report);
            let guests = Guests(report.kept.clone());
            (report, guests)
        }
        Err(kiln_boot::BootError::HostFailed { failure, report }) => {
            print_timings(&report);
            drop(Guests(report.kept.clone()));
            panic!("{failure}")
        }
        Err(e) => panic!("boot failed: {e}"),
    }
}

/// The guests `keep` left running, stopped when dropped (also when the test
/// panics).
pub(crate) struct Guests(pub(crate) Option<kiln_boot::Kept>);

impl Drop for Guests {
    fn drop(&mut self) {
        if let Some(kept) = self.0.take() {
            kept.stop();
        }
    }
}

/// One probe's console lines, `KILN-E2E <host> <words>` with the prefix and
/// host taken off.
pub(crate) type ProbeLines = Vec<String>;

pub(crate) fn probe_lines(host: &kiln_boot::HostReport) -> ProbeLines {
    let prefix = format!("KILN-E2E {} ", host.name);
    fs::read_to_string(&host.serial_log)
        .unwrap_or_default()
        .lines()
        .map(kiln_boot::clean_line)
        .filter_map(|l| {
            l.find(&prefix)
                .map(|at| l[at + prefix.len()..].trim().to_owned())
        })
        .collect()
}

/// The MAC of `host` as the client probe prints it.
pub(crate) fn via(macs: &[(String, String)], host: &str) -> String {
    let mac = macs
        .iter()
        .find(|(h, _)| h == host)
        .map(|(_, m)| m)
        .unwrap();
    format!("vip-via={mac}")
}

/// The probes' lines of both lb hosts and the client, read until both lb
/// probes have finished and the client reaches the VIP through the host
/// that took it over (or `limit` passes).
fn follow_probes(
    lbs: &[&kiln_boot::HostReport; 2],
    client: &kiln_boot::HostReport,
    macs: &[(String, String)],
    limit: Duration,
) -> ([ProbeLines; 2], ProbeLines) {
    let until = Instant::now() + limit;
    loop {
        let lines = (*lbs).map(probe_lines);
        let client_lines = probe_lines(client);
        // An lb probe ends with its `…-after-…` line or a failure (`=no`,
        // `never`, `still`, `lost`).
        let lb_done = |l: &ProbeLines| {
            l.iter().any(|w| {
                ["-after-", "=no", "never", "still", "lost"]
                    .iter()
                    .any(|end| w.contains(end))
            })
        };
        let taken_by = lbs
            .iter()
            .zip(&lines)
            .find(|(_, l)| l.iter().any(|w| w == "vip=acquired"))
            .map(|(h, _)| via(macs, &h.name));
        let client_done = taken_by.is_some() && client_lines.last() == taken_by.as_ref();
        let finished = lines.iter().all(lb_done) && (client_done || taken_by.is_none());
        if finished || Instant::now() > until {
            for (host, l) in lbs.iter().zip(&lines) {
                eprintln!("{} probe: {l:?}", host.name);
            }
            eprintln!("{} probe: {client_lines:?}", client.name);
            return (lines, client_lines);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Exactly one lb host held the VIP first, stopped its keepalived and let it
/// go; the other took it over; the VIP answered before and after (the
/// holder saw the client's sessions in nginx's log before it stopped); the
/// client last reached the VIP through the host that took it over.
pub(crate) fn check_failover(
    names: [&str; 2],
    probes: &([ProbeLines; 2], ProbeLines),
    macs: &[(String, String)],
    p: &mut Problems,
) {
    let (lbs, client) = probes;
    let holders: Vec<usize> = (0..2)
        .filter(|&i| lbs[i].first().map(String::as_str) == Some("vip=held answers=yes"))
        .collect();
    if holders.len() != 1 {
        p.check(false, || {
            format!(
                "exactly one lb host must hold the VIP first: {} {:?}, {} {:?}",
                names[0], lbs[0], names[1], lbs[1]
            )
        });
        return;
    }
    let (held, other) = (holders[0], 1 - holders[0]);
    let expect = |i: usize, want: &[&str], p: &mut Problems| {
        p.check(lbs[i] == want, || {
            format!(
                "{}'s probe printed {:?}, expected {want:?}",
                names[i], lbs[i]
            )
        });
    };
    expect(
        held,
        &[
            "vip=held answers=yes",
            "clients=seen",
            "stopping keepalived",
            "vip=released",
            "vip-after-stop answers=yes",
        ],
        p,
    );
    expect(
        other,
        &[
            "vip=peer answers=yes",
            "vip=acquired",
            "vip-after-move answers=yes",
        ],
        p,
    );
    let lb_macs = [via(macs, names[0]), via(macs, names[1])];
    p.check(
        !client.is_empty() && client.iter().all(|l| lb_macs.contains(l)),
        || format!("the client's probe printed {client:?}: expected the VIP answering through {lb_macs:?}"),
    );
    let want = via(macs, names[other]);
    p.check(client.last() == Some(&want), || {
        format!(
            "the client's probe printed {client:?}: after the failover the VIP must answer through {} ({want})",
            names[other]
        )
    });
}

/// Everything wrong, collected so that one (slow) run reports all of it.
#[derive(Default)]
pub(crate) struct Problems(pub(crate) Vec<String>);

impl Problems {
    pub(crate) fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }
}

/// Both install runs printed every step, in order, all `ok`; the first
/// found every role healthy; the second changed nothing.
pub(crate) fn check_host(host: &kiln_boot::HostReport, p: &mut Problems) {
    let name = &host.name;
    p.check(host.phase == HostPhase::Ready, || {
        format!("{name}: {}", host.phase)
    });
    let console = fs::read_to_string(&host.serial_log).unwrap_or_default();
    let invalid = crate::env::invalid_cloud_config(&console);
    p.check(invalid.is_empty(), || {
        format!("{name}: cloud-init's configuration breaks its schema: {invalid:?}")
    });
    let runs = runs(&host.serial_log);
    if runs.len() != 2 {
        p.check(false, || {
            format!(
                "{name}: {} install runs, expected 2 (--seed-rerun)",
                runs.len()
            )
        });
        return;
    }
    for (i, run) in runs.iter().enumerate() {
        let steps: Vec<&str> = run.iter().map(|m| m.step.as_str()).collect();
        p.check(steps == STEPS, || {
            format!("{name} run {}: steps {steps:?}, expected {STEPS:?}", i + 1)
        });
        for m in run.iter().filter(|m| m.status != kiln_boot::Status::Ok) {
            p.check(false, || format!("{name} run {}: `{m}`", i + 1));
        }
    }
    let (first, second) = (&runs[0], &runs[1]);
    let (Some(health), Some(done1), Some(done2)) = (
        find(first, "health"),
        find(first, "done"),
        find(second, "done"),
    ) else {
        return;
    };
    // `KILN health ok role=common,etcd …`: every role's HEALTH passed.
    let healthy: Vec<&str> = health
        .fields()
        .get("role")
        .unwrap_or(&"")
        .split(',')
        .collect();
    for role in &host.roles {
        p.check(healthy.contains(&role.as_str()), || {
            format!("{name}: role {role} not in `{health}`")
        });
    }
    p.check(!done1.has_word("unchanged"), || {
        format!("{name}: the first run changed nothing: `{done1}`")
    });
    p.check(
        done1.fields().get("build") == done2.fields().get("build"),
        || format!("{name}: the runs installed different builds"),
    );

    // The rerun is a no-op: nothing started, enabled, restarted or imported, the state as it was.
    p.check(done2.has_word("unchanged"), || {
        format!("{name}: the rerun changed something: `{done2}`")
    });
    if let Some(units) = find(second, "units") {
        for key in ["enabled", "started", "restarted"] {
            p.check(units.fields().get(key) == Some(&"0"), || {
                format!("{name}: the rerun's `{units}` has {key} != 0")
            });
        }
    }
    if let Some(state) = find(second, "state") {
        p.check(state.has_word("unchanged"), || {
            format!("{name}: rerun `{state}`")
        });
    }
    if let Some(images) = find(second, "images") {
        p.check(
            matches!(images.fields().get("imported"), None | Some(&"0")),
            || format!("{name}: rerun `{images}`"),
        );
    }
}

/// The runtime host imported the planned images into containerd, which
/// answers and lists them on the console.
pub(crate) fn check_runtime_images(
    host: &kiln_boot::HostReport,
    images: &[String],
    p: &mut Problems,
) {
    p.check(!images.is_empty(), || {
        format!("{}: its runtime role imports no image", host.name)
    });
    let runs = runs(&host.serial_log);
    if let Some(m) = runs.first().and_then(|r| find(r, "images")) {
        let fields = m.fields();
        p.check(fields.get("runtime") == Some(&"ctr"), || {
            format!("{}: `{m}`, expected runtime=ctr", host.name)
        });
        p.check(
            fields.get("imported").and_then(|n| n.parse::<usize>().ok()) == Some(images.len()),
            || format!("{}: `{m}`, expected imported={}", host.name, images.len()),
        );
    }
    let console = fs::read_to_string(&host.serial_log).unwrap_or_default();
    for image in images {
        p.check(console.contains(image.as_str()), || {
            format!(
                "{}: the console never lists {image} (containerd's image list, \
                 e.g. `ctr -n k8s.io images ls -q` from the runtime HEALTH, must reach the console)",
                host.name
            )
        });
    }
}
