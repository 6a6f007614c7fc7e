//! install.sh in systemd-nspawn guests booting the guest image (tests/e2e/guest-image.sh):
//! through cloud-init's runcmd as in production, then killed with SIGKILL right after every
//! step's marker and at random points, each kill followed by a rerun that must converge to
//! the same host: same files and modes, unit enabled and serving the current
//! configuration, package at its version, image loaded, state, no leftovers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kiln_install_tests::fixture::{file, write_build, Build, Host, Role};
use kiln_install_tests::guest::Guest;
use kiln_install_tests::run::{markers, STEPS};
use kiln_install_tests::{require_tool, sha256_hex};

/// Bytes of the test image tarball (loaded by the role's stand-in runtime).
const IMAGE: &[u8] = b"a stand-in image tarball\n";

/// A stand-in for `docker` shipped by the common role: it records what it loads, so the
/// images step runs (and is killed) for real without a container runtime in the guest.
const FAKE_DOCKER: &str =
    "#!/bin/sh\n# Test stand-in for a container runtime: records the digests it loads.\n\
[ \"$1\" = load ] && [ \"$2\" = -i ] || exit 2\nmkdir -p /var/lib/fake-docker\n\
sha256sum <\"$3\" | cut -c1-64 >>/var/lib/fake-docker/loaded\n";

/// The service reads its configuration once, at start, like a real daemon: it serves the
/// configuration it started with, so HEALTH fails unless it was restarted after a change.
const SERVICE: &str = "#!/bin/sh\nset -e\nmkdir -p /run/kiln-demo\ncp /etc/kiln-demo/demo.conf /run/kiln-demo/index.html\n\
cd /run/kiln-demo\nexec python3 -m http.server --bind 127.0.0.1 8080\n";

const HEALTH: &str = "#!/bin/sh\nexec python3 -c 'import sys, urllib.request\n\
served = urllib.request.urlopen(\"http://127.0.0.1:8080/index.html\", timeout=2).read()\n\
sys.exit(served != open(\"/etc/kiln-demo/demo.conf\", \"rb\").read())'\n";

const UNIT: &str = "[Unit]\nDescription=kiln install.sh test service\n\n[Service]\nExecStart=/usr/local/bin/kiln-demo\n\n\
[Install]\nWantedBy=multi-user.target\n";

/// etcd1's address in the fixture's plan (`KILN_IP`).
const ADDRESS: &str = "10.77.0.11";

/// A unit whose condition never holds (as chrony's CAP_SYS_TIME in a container): started,
/// it stays inactive, which is neither a change nor a failure.
const ELSEWHERE_UNIT: &str =
    "[Unit]\nDescription=kiln install.sh test service that runs elsewhere\n\
ConditionPathExists=/kiln-nowhere\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n\n\
[Install]\nWantedBy=multi-user.target\n";

/// A unit every generation has whose files never change: an upgrade must not restart it.
const IDLE_UNIT: &str = "[Unit]\nDescription=kiln install.sh test service that never changes\n\n\
[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n\n\
[Install]\nWantedBy=multi-user.target\n";

/// A unit only generation 1 has: an upgrade to 2 must stop and disable it and remove its file.
const RETIRED_UNIT: &str =
    "[Unit]\nDescription=kiln install.sh test service of generation 1 only\n\n\
[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n\n\
[Install]\nWantedBy=multi-user.target\n";

/// A tiny real .deb of `version`.
fn deb(dir: &Path, version: &str) -> Vec<u8> {
    require_tool("dpkg-deb", "dpkg");
    let root = dir.join(format!("deb-{version}"));
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join("usr/share/kiln-demo-pkg")).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!("Package: kiln-demo-pkg\nVersion: {version}\nArchitecture: all\nMaintainer: kiln tests <kiln@example.invalid>\nDescription: install.sh test package\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("usr/share/kiln-demo-pkg/version"),
        format!("{version}\n"),
    )
    .unwrap();
    let out = dir.join(format!("kiln-demo-pkg_{version}_all.deb"));
    let st = Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zgzip", "--build"])
        .arg(&root)
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .expect("dpkg-deb");
    assert!(
        st.status.success(),
        "dpkg-deb: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(out).unwrap()
}

/// The roles of `generation`: demo.conf and the package version change, generation 1
/// alone has a unit (kiln-demo-old.service) and a file (legacy.conf), and generation 3 is
/// broken (its health check fails) and alone has gen3.conf.
pub(crate) fn roles(dir: &Path, generation: u32) -> Vec<Role> {
    let mut common = Role::new("common");
    common.files = vec![
        file("/etc/kiln-demo/common.conf", 0o644, "common\n"),
        file("/usr/local/bin/docker", 0o755, FAKE_DOCKER),
        // Containers cannot load modules: install.sh notes it and goes on.
        file(
            "/etc/modules-load.d/kiln-demo.conf",
            0o644,
            "br_netfilter\n",
        ),
        file(
            "/etc/sysctl.d/90-kiln-demo.conf",
            0o644,
            "net.ipv4.ip_forward = 1\n",
        ),
    ];
    common.images = vec![("demo.tar".into(), IMAGE.to_vec())];
    let mut demo = Role::new("demo");
    demo.files = vec![
        file("/usr/local/bin/kiln-demo", 0o755, SERVICE),
        file("/usr/local/bin/kiln-demo-health", 0o750, HEALTH),
        file("/etc/systemd/system/kiln-demo.service", 0o644, UNIT),
        file(
            "/etc/systemd/system/kiln-demo-elsewhere.service",
            0o644,
            ELSEWHERE_UNIT,
        ),
        file(
            "/etc/systemd/system/kiln-demo-idle.service",
            0o644,
            IDLE_UNIT,
        ),
        file(
            "/etc/kiln-demo/demo.conf",
            0o644,
            format!("generation={generation}\n"),
        ),
    ];
    if generation == 1 {
        demo.files.extend([
            file(
                "/etc/kiln-demo/legacy.conf",
                0o644,
                "gone in generation 2\n",
            ),
            file(
                "/etc/systemd/system/kiln-demo-old.service",
                0o644,
                RETIRED_UNIT,
            ),
        ]);
        demo.units.push("kiln-demo-old.service".into());
    }
    let version = format!("{generation}.0");
    demo.packages = vec![(
        format!("kiln-demo-pkg_{version}_all.deb"),
        deb(dir, &version),
    )];
    demo.units.splice(
        0..0,
        [
            "kiln-demo.service".into(),
            "kiln-demo-elsewhere.service".into(),
            "kiln-demo-idle.service".into(),
        ],
    );
    demo.health = "/usr/local/bin/kiln-demo-health".into();
    if generation == 3 {
        // A broken generation: its health check fails, so install.sh rolls back.
        demo.files.push(file(
            "/etc/kiln-demo/gen3.conf",
            0o644,
            "only in generation 3\n",
        ));
        demo.health = "echo generation 3 is broken >&2; false".into();
    }
    vec![common, demo]
}

pub(crate) fn host(generation: u32) -> Host {
    let mut h = Host::new("etcd1", generation);
    h.files
        .push(file("/etc/kiln-demo/token", 0o600, "not a real token\n"));
    h
}

/// Generations 1 to 3 of the demo build, bound read-only at /kiln in the guest.
pub(crate) struct Fixture {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) builds: Vec<Build>,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let kiln = tmp.path().join("kiln");
        let builds = (1..=3)
            .map(|g| {
                write_build(
                    &kiln.join(format!("gen{g}")),
                    &host(g),
                    &roles(tmp.path(), g),
                )
            })
            .collect();
        std::fs::copy(kiln_install_tests::install_sh(), kiln.join("install.sh")).unwrap();
        Self { tmp, builds }
    }

    pub(crate) fn kiln(&self) -> PathBuf {
        self.tmp.path().join("kiln")
    }

    pub(crate) fn boot(&self, extra: &[(&Path, &str)]) -> Guest {
        let kiln = self.kiln();
        let mut binds = vec![(kiln.as_path(), "/kiln")];
        binds.extend_from_slice(extra);
        let g = Guest::boot("etcd1", &binds);
        // The host's planned address (KILN_IP), which install.sh's preflight requires; the
        // cloud-init test's seed adds it at boot, before its runcmd.
        g.sh(&format!("ip addr replace {ADDRESS}/32 dev lo"));
        g
    }

    /// The command line the seed's runcmd runs for `generation`.
    pub(crate) fn command(&self, generation: u32) -> String {
        let sha = &self.builds[generation as usize - 1].secrets_sha256;
        format!("sh /kiln/install.sh --dir /kiln/gen{generation} --secrets-sha256 {sha}")
    }

    /// What `probe` prints on a host converged to `generation`.
    pub(crate) fn expected(&self, generation: u32) -> String {
        let b = &self.builds[generation as usize - 1];
        let files: std::collections::BTreeMap<String, String> = roles(self.tmp.path(), generation)
            .iter()
            .flat_map(|r| r.files.clone())
            .chain(host(generation).files)
            .map(|f| (f.path, format!("{:o} {}", f.mode, sha256_hex(&f.content))))
            .collect();
        let mut s: String = self
            .paths()
            .iter()
            .map(|p| match files.get(p) {
                Some(f) => format!("file {p} {f}\n"),
                None => format!("file {p} absent\n"),
            })
            .collect();
        s += "unit enabled active\n";
        s += match generation {
            1 => "old-unit wanted active\n",
            _ => "old-unit unwanted inactive\n",
        };
        s += &format!(
            "served {}\n",
            sha256_hex(format!("generation={generation}\n").as_bytes())
        );
        s += &format!("pkg ii {generation}.0\n");
        s += &format!("loaded {}\n", sha256_hex(IMAGE));
        s += "statedir files images kept staging state units\n";
        let mut staging: Vec<&String> = b
            .bundles
            .iter()
            .map(|(_, sha)| sha)
            .chain([&b.secrets_sha256])
            .collect();
        staging.sort();
        s += &staging
            .iter()
            .map(|d| format!("staging {d}\n"))
            .collect::<String>();
        let bundles: Vec<String> = b
            .bundles
            .iter()
            .map(|(n, sha)| format!("{sha}:{n}"))
            .collect();
        let h = host(generation);
        s += &format!(
            "state KILN_CLUSTER=lab\nstate KILN_HOST=etcd1\nstate KILN_BUILD_ID={}\nstate KILN_GENERATION={generation}\n\
             state KILN_ROLES=common,demo\nstate KILN_SECRETS_SHA256={}\nstate KILN_BUNDLES={}\n",
            h.build_id,
            b.secrets_sha256,
            bundles.join(",")
        );
        s += &format!("images {} docker\n", sha256_hex(IMAGE));
        s
    }

    /// Every file path of every generation, sorted.
    fn paths(&self) -> Vec<String> {
        let paths: std::collections::BTreeSet<String> = [1, 2, 3]
            .into_iter()
            .flat_map(|g| {
                roles(self.tmp.path(), g)
                    .into_iter()
                    .flat_map(|r| r.files)
                    .chain(host(g).files)
                    .map(|f| f.path)
            })
            .collect();
        paths.into_iter().collect()
    }

    /// The converged state of the guest, in the form of [`Fixture::expected`].
    pub(crate) fn probe(&self, g: &Guest) -> String {
        g.sh(&format!(
            r#"for p in {}; do if [ -e "$p" ]; then printf 'file %s %s %s\n' "$p" "$(stat -c %a "$p")" "$(sha256sum <"$p" | cut -c1-64)"; else printf 'file %s absent\n' "$p"; fi; done
printf 'unit %s %s\n' "$(systemctl is-enabled kiln-demo.service)" "$(systemctl is-active kiln-demo.service)"
w=unwanted; [ ! -L /etc/systemd/system/multi-user.target.wants/kiln-demo-old.service ] || w=wanted
printf 'old-unit %s %s\n' "$w" "$(systemctl is-active kiln-demo-old.service || :)"
printf 'served %s\n' "$(python3 -c 'import hashlib, urllib.request; print(hashlib.sha256(urllib.request.urlopen("http://127.0.0.1:8080/index.html", timeout=2).read()).hexdigest())' 2>/dev/null || echo none)"
printf 'pkg %s\n' "$(dpkg-query -W -f='${{db:Status-Abbrev}}${{Version}}' kiln-demo-pkg 2>/dev/null)"
sort -u /var/lib/fake-docker/loaded | sed 's/^/loaded /'
printf 'statedir %s\n' "$(ls /var/lib/kiln | tr '\n' ' ' | sed 's/ $//')"
ls /var/lib/kiln/staging | sed 's/^/staging /'
sed 's/^/state /' /var/lib/kiln/state
sed 's/^/images /' /var/lib/kiln/images
find /etc /usr/local /var/lib -xdev -name '*.kiln-new' | sed 's/^/leftover /'
true"#,
            self.paths().join(" ")
        ))
    }
}

/// One install.sh run in the guest: (exit code, markers and messages).
pub(crate) fn install(g: &Guest, command: &str, env: &str) -> (i32, String) {
    let out = g.sh(&format!(
        "{env} KILN_HEALTH_INTERVAL=0.2 {command} 2>&1; echo \"EXIT=$?\""
    ));
    let (text, code) = out.trim_end().rsplit_once("EXIT=").expect("exit line");
    (code.parse().unwrap(), text.to_string())
}

/// Asserts a complete, successful run and returns its `done` detail.
pub(crate) fn assert_ok((code, text): &(i32, String)) -> String {
    let m = markers(text);
    let steps: Vec<&str> = m.iter().map(|m| m.step.as_str()).collect();
    assert!(
        *code == 0 && steps == STEPS && m.iter().all(|m| m.status == "ok"),
        "expected a successful run:\n{text}"
    );
    m[12].detail.clone()
}

#[test]
fn cloud_init_runcmd_installs_the_role_and_a_rerun_changes_nothing() {
    let fx = Fixture::new();
    let seed = fx.tmp.path().join("seed");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: kiln-install-test\nlocal-hostname: etcd1\n",
    )
    .unwrap();
    std::fs::write(
        seed.join("user-data"),
        format!(
            "#cloud-config\nbootcmd:\n  - [ip, addr, replace, {ADDRESS}/32, dev, lo]\n\
             runcmd:\n  - [sh, -c, 'KILN_CONSOLE=/dev/console KILN_HEALTH_INTERVAL=0.2 {}']\n",
            fx.command(1)
        ),
    )
    .unwrap();
    let g = fx.boot(&[(seed.as_path(), "/var/lib/cloud/seed/nocloud")]);
    // Booting waits for cloud-init's final stage, which ran install.sh. The getty's prompt
    // (no newline) can land on the console just before a marker: put the marker on its line.
    let console = g
        .console()
        .replace("etcd1 login: KILN ", "etcd1 login: \nKILN ");
    let m = markers(&console);
    let steps: Vec<&str> = m.iter().map(|m| m.step.as_str()).collect();
    assert!(
        steps == STEPS && m.iter().all(|m| m.status == "ok"),
        "markers on the console:\n{console}"
    );
    assert!(m[10].detail.starts_with("role=common,demo"), "{:?}", m[10]);
    assert!(
        m[9].detail.ends_with(
            " started=3 restarted=0 \
             started-units=kiln-demo.service(inactive),kiln-demo-idle.service(inactive),\
             kiln-demo-old.service(inactive) \
             condition-skipped=kiln-demo-elsewhere.service"
        ),
        "{:?}",
        m[9]
    );
    assert_eq!(fx.probe(&g), fx.expected(1));

    let pid = "systemctl show -p MainPID --value kiln-demo.service";
    let mtimes = "stat -c '%n %Y.%y' /etc/kiln-demo/* /usr/local/bin/* /var/lib/kiln/state /var/lib/kiln/images";
    let before = (g.sh(pid), g.sh(mtimes));
    let again = install(&g, &fx.command(1), "");
    assert!(assert_ok(&again).ends_with(" unchanged"), "{}", again.1);
    assert!(
        again.1.contains(
            "KILN units ok units=kiln-demo.service,kiln-demo-elsewhere.service,kiln-demo-idle.service,\
             kiln-demo-old.service \
                 enabled=0 started=0 restarted=0 condition-skipped=kiln-demo-elsewhere.service\n"
        ),
        "{}",
        again.1
    );
    assert_eq!(
        (g.sh(pid), g.sh(mtimes)),
        before,
        "the rerun restarted the service or rewrote files"
    );

    // Without its planned address the host is refused before anything changes.
    g.sh(&format!("ip addr del {ADDRESS}/32 dev lo"));
    let (code, text) = install(&g, &fx.command(1), "");
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "KILN preflight fail address {ADDRESS} (the plan's for etcd1) is on no interface"
        )),
        "{text}"
    );
    assert_eq!(
        (g.sh(pid), g.sh(mtimes)),
        before,
        "the refused run changed something"
    );
}

#[test]
fn an_upgrade_retires_the_units_and_files_the_new_generation_dropped() {
    let fx = Fixture::new();
    let g = fx.boot(&[]);
    assert_ok(&install(&g, &fx.command(1), ""));
    assert_eq!(fx.probe(&g), fx.expected(1));

    let idle = "systemctl show -p InvocationID --value kiln-demo-idle.service";
    let idle_before = g.sh(idle);
    let up = install(&g, &fx.command(2), "");
    assert_ok(&up);
    // Only the unit whose files lead to the changed demo.conf restarts (through the script its
    // ExecStart names); the idle one of the same bundle keeps running.
    let units_marker = &markers(&up.1)[9];
    assert!(
        units_marker.detail.contains(" restarted=1 "),
        "{units_marker:?}\n{}",
        up.1
    );
    assert_eq!(g.sh(idle), idle_before, "the idle unit was restarted");
    let install_marker = &markers(&up.1)[7];
    assert!(
        install_marker
            .detail
            .ends_with(" removed=2 retired=kiln-demo-old.service"),
        "{install_marker:?}"
    );
    assert_eq!(fx.probe(&g), fx.expected(2), "{}", up.1);
    let again = install(&g, &fx.command(2), "");
    assert!(assert_ok(&again).ends_with(" unchanged"), "{}", again.1);

    // Back to 1 by hand: what 2 dropped comes back, and what 2 alone had (nothing here) goes.
    let down = install(&g, &fx.command(1), "KILN_ALLOW_DOWNGRADE=1");
    assert_ok(&down);
    assert!(
        !markers(&down.1)[7].detail.contains("removed="),
        "{}",
        down.1
    );
    assert_eq!(fx.probe(&g), fx.expected(1), "{}", down.1);
}

/// The builds kept for rollback in the guest, sorted.
fn kept(g: &Guest) -> Vec<String> {
    let mut k: Vec<String> = g
        .sh("ls /var/lib/kiln/kept")
        .lines()
        .map(str::to_owned)
        .collect();
    k.sort();
    k
}

/// Checks an unhealthy generation 3's run: it failed its health check, generation 2 installed
/// again (its markers in between), and `KILN rollback ok` came last.
pub(crate) fn assert_rolled_back((code, text): &(i32, String)) {
    let m = markers(text);
    let steps: Vec<String> = m
        .iter()
        .map(|m| format!("{} {}", m.step, m.status))
        .collect();
    let health = steps.iter().position(|s| s == "health fail");
    assert!(
        *code == 1 && health.is_some() && steps.last().map(String::as_str) == Some("rollback ok"),
        "expected a rollback:\n{text}"
    );
    let again: Vec<&str> = m[health.unwrap() + 1..m.len() - 1]
        .iter()
        .map(|m| m.step.as_str())
        .collect();
    assert_eq!(again, STEPS, "generation 2's run between:\n{text}");
    let last = &m[m.len() - 1].detail;
    assert!(
        last.starts_with(&format!("generation=2 build={} ", host(2).build_id)),
        "{last}"
    );
    assert!(text.contains("generation 3 is broken"), "{text}");
}

#[test]
fn an_unhealthy_upgrade_rolls_back_to_the_installed_generation_on_its_own() {
    let fx = Fixture::new();
    let g = fx.boot(&[]);
    assert_ok(&install(&g, &fx.command(1), ""));
    assert_ok(&install(&g, &fx.command(2), ""));
    // Both converged generations are kept for rollback.
    assert_eq!(kept(&g), {
        let mut k = vec![host(1).build_id, host(2).build_id];
        k.sort();
        k
    });

    let broken = install(&g, &fx.command(3), "KILN_HEALTH_WAIT=5");
    assert_rolled_back(&broken);
    // Generation 3's own file is gone again, 2's state stands, and nothing of 3 is kept.
    assert_eq!(fx.probe(&g), fx.expected(2), "{}", broken.1);
    assert_eq!(kept(&g).len(), 2);
    let again = install(&g, &fx.command(2), "");
    assert!(assert_ok(&again).ends_with(" unchanged"), "{}", again.1);
}

#[test]
fn a_rollback_without_a_kept_generation_says_so_and_keeps_the_new_files() {
    let fx = Fixture::new();
    let g = fx.boot(&[]);
    assert_ok(&install(&g, &fx.command(2), ""));
    g.sh("rm -rf /var/lib/kiln/kept");
    let (code, text) = install(&g, &fx.command(3), "KILN_HEALTH_WAIT=5");
    let last = markers(&text).pop().unwrap();
    assert_eq!(code, 1, "{text}");
    assert_eq!(
        (last.step.as_str(), last.status.as_str()),
        ("rollback", "fail"),
        "{text}"
    );
    assert!(
        last.detail.starts_with(&format!(
            "no copy of generation 2 (build {}) is kept in /var/lib/kiln/kept/",
            host(2).build_id
        )),
        "{text}"
    );
}

#[test]
fn random_kills_during_an_unhealthy_upgrade_and_its_rollback_then_rerun_converges() {
    let fx = Fixture::new();
    let g = fx.boot(&[]);
    assert_ok(&install(&g, &fx.command(2), ""));
    let env = "KILN_HEALTH_WAIT=5";
    let t = Instant::now();
    assert_rolled_back(&install(&g, &fx.command(3), env));
    let full = t.elapsed().as_millis() as u64;
    let seed = test_seed(0x726f_6c6c);
    let mut rng = Rng(seed);
    let mut kills = 0;
    for trial in 0..trials() {
        let ms = rng.below(full);
        let run = install(
            &g,
            &format!(
                "timeout -s KILL {}.{:03} {}",
                ms / 1000,
                ms % 1000,
                fx.command(3)
            ),
            env,
        );
        kills += u32::from(run.0 == 137);
        // The seed's runcmd runs generation 3 again: it fails and rolls back again.
        let rerun = install(&g, &fx.command(3), env);
        let context = format!("seed {seed}, trial {trial}: killed at {ms} ms of {full}");
        assert_rolled_back(&rerun);
        assert_eq!(fx.probe(&g), fx.expected(2), "{context}:\n{}", rerun.1);
    }
    assert!(
        kills >= trials() / 2,
        "seed {seed}: only {kills} runs were killed"
    );
}

/// Kills install.sh right after `step`'s marker, on a fresh host and during an upgrade;
/// each time a rerun must converge.
fn kill_after(step: &str) {
    let fx = Fixture::new();
    let g = fx.boot(&[]);
    for generation in [1, 2] {
        let killed = install(
            &g,
            &fx.command(generation),
            &format!("KILN_TEST_KILL_AT={step}"),
        );
        let last = markers(&killed.1).pop();
        assert!(
            killed.0 == 137
                && last
                    .as_ref()
                    .is_some_and(|m| m.step == step && m.status == "ok"),
            "generation {generation}: expected a SIGKILL right after `KILN {step} ok`:\n{}",
            killed.1
        );
        let rerun = install(&g, &fx.command(generation), "");
        assert_ok(&rerun);
        assert_eq!(
            fx.probe(&g),
            fx.expected(generation),
            "generation {generation}, killed after {step}:\n{}",
            rerun.1
        );
    }
}

macro_rules! kill_tests {
    ($($name:ident: $step:literal,)*) => {$(
        #[test]
        fn $name() {
            kill_after($step);
        }
    )*};
}

kill_tests! {
    kill_after_verify_marker_then_rerun_converges: "verify",
    kill_after_list_marker_then_rerun_converges: "list",
    kill_after_extract_marker_then_rerun_converges: "extract",
    kill_after_manifest_marker_then_rerun_converges: "manifest",
    kill_after_preflight_marker_then_rerun_converges: "preflight",
    kill_after_prep_marker_then_rerun_converges: "prep",
    kill_after_packages_marker_then_rerun_converges: "packages",
    kill_after_install_marker_then_rerun_converges: "install",
    kill_after_images_marker_then_rerun_converges: "images",
    kill_after_units_marker_then_rerun_converges: "units",
    kill_after_health_marker_then_rerun_converges: "health",
    kill_after_state_marker_then_rerun_converges: "state",
    kill_after_done_marker_then_rerun_converges: "done",
}

/// xorshift64*: reproducible trials from a printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// KILN_TEST_SEED, else `default_seed` mixed with the time (each run tries other kill times;
/// a failure prints its seed).
fn test_seed(default_seed: u64) -> u64 {
    std::env::var("KILN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            default_seed ^ now.as_nanos() as u64 | 1
        })
}

/// `trials` rounds of one or two SIGKILLs at random times during runs of either generation
/// (rollbacks allowed), each round followed by a complete rerun that must converge.
/// KILN_TEST_SEED=<n> replays a failure.
fn random_kills(default_seed: u64, trials: u32) {
    let seed = test_seed(default_seed);
    let fx = Fixture::new();
    let g = fx.boot(&[]);
    let env = "KILN_ALLOW_DOWNGRADE=1";
    // Uninterrupted runs: a fresh install, an upgrade and a rerun that changes nothing. Kill
    // times are drawn below the shortest of them, so a kill lands inside a run of any kind
    // (a bound from the longest let most kills of quick reruns come after their end).
    let mut shortest = u64::MAX;
    for generation in [1, 2, 2] {
        let t = Instant::now();
        assert_ok(&install(&g, &fx.command(generation), env));
        shortest = shortest.min(t.elapsed().as_millis() as u64);
    }
    let mut rng = Rng(seed);
    let mut kills = 0;
    for trial in 0..trials {
        let generation = 1 + rng.below(2) as u32;
        let mut what = Vec::new();
        for _ in 0..=rng.below(2) {
            let target = 1 + rng.below(2) as u32;
            let ms = rng.below(shortest);
            let run = install(
                &g,
                &format!(
                    "timeout -s KILL {}.{:03} {}",
                    ms / 1000,
                    ms % 1000,
                    fx.command(target)
                ),
                env,
            );
            let last = markers(&run.1)
                .pop()
                .map(|m| format!("{} {}", m.step, m.status))
                .unwrap_or_default();
            what.push(format!(
                "gen{target} killed at {ms} ms (exit {}, after `{last}`)",
                run.0
            ));
            kills += u32::from(run.0 == 137);
        }
        let rerun = install(&g, &fx.command(generation), env);
        let context = format!(
            "seed {seed}, trial {trial}: {} then gen{generation}",
            what.join(", ")
        );
        assert!(rerun.0 == 0, "{context}: the rerun failed:\n{}", rerun.1);
        assert_ok(&rerun);
        assert_eq!(
            fx.probe(&g),
            fx.expected(generation),
            "{context}: did not converge:\n{}",
            rerun.1
        );
    }
    assert!(
        kills >= trials / 2,
        "seed {seed}: only {kills} of the runs were killed, the kill times are off"
    );
}

/// Rounds per random-kill test: KILN_TEST_TRIALS, default 8 (two tests run in parallel).
fn trials() -> u32 {
    std::env::var("KILN_TEST_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

#[test]
fn random_kills_during_installs_and_upgrades_then_rerun_converges() {
    random_kills(0x6b69_6c6e, trials());
}

#[test]
fn random_kills_during_upgrades_and_rollbacks_then_rerun_converges() {
    random_kills(0x0069_6e73_7461_6c6c, trials());
}
