//! `boot()` with a stand-in QEMU: success, each kind of failure, `keep`,
//! events, and that nothing it started outlives it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kiln_boot::{
    boot, BootError, BootEvents, BootOptions, FailReason, Firmware, HostPhase, HostStatus, Marker,
    Tools,
};

use crate::support::{fake_out, FakeHost};

/// The stand-in for `qemu-system-x86_64`: checks the switch socket it was
/// given exists, records its arguments, then runs `<dir>/<name>.sh` with
/// `say LINE` appending to the serial log (and `$seed`, the seed image it
/// was given). It stays up like a VM would.
pub(crate) const FAKE_QEMU: &str = r#"#!/bin/sh
set -eu
here=$(dirname "$0")
name= log= sock= seed=
while [ $# -gt 0 ]; do
    case $1 in
        -name) name=$2; shift ;;
        -serial) log=${2#file:}; shift ;;
        -netdev) sock=${2##*sock=}; shift ;;
        -drive) case $2 in *cidata*) seed=${2#file=}; seed=${seed%%,if=*} ;; esac; shift ;;
    esac
    shift
done
[ -S "$sock/ctl" ] || { echo "no switch at $sock" >&2; exit 9; }
echo "$$" > "$here/$name.pid"
: > "$log"
say() { printf '%s\r\n' "$*" >> "$log"; }
. "$here/$name.sh"
exec sleep 300
"#;

pub(crate) const FINAL: &str = "[   40.10] cloud-init[501]: Cloud-init v. 22.4.2 finished at Thu, 01 Jan 2026 00:00:40 +0000. Datasource DataSourceNoCloud.  Up 40.10 seconds";

pub(crate) struct Rig {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) out: PathBuf,
    pub(crate) fake: PathBuf,
    pub(crate) image: PathBuf,
}

impl Rig {
    /// A fake cluster out folder and a guest whose console each host's
    /// script (shell, with `say`) writes.
    pub(crate) fn new(hosts: &[(&str, &str)]) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let fakes: Vec<FakeHost> = hosts
            .iter()
            .enumerate()
            .map(|(i, (name, _))| FakeHost::new(name, 11 + i as u8))
            .collect();
        let out = fake_out(&tmp.path().join("out"), "lab", &fakes);
        let fake = tmp.path().join("fake");
        std::fs::create_dir(&fake).unwrap();
        let qemu = fake.join("qemu-system-x86_64");
        std::fs::write(&qemu, FAKE_QEMU).unwrap();
        chmod_x(&qemu);
        for (name, script) in hosts {
            std::fs::write(fake.join(format!("{name}.sh")), script).unwrap();
        }
        let guest = tmp.path().join("guest");
        std::fs::create_dir(&guest).unwrap();
        let image = guest.join("disk.qcow2");
        let status = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&image)
            .arg("16M")
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(guest.join("vmlinuz"), "kernel").unwrap();
        std::fs::write(guest.join("initrd.img"), "initrd").unwrap();
        Self {
            tmp,
            out,
            fake,
            image,
        }
    }

    pub(crate) fn options(&self) -> BootOptions {
        let mut o = BootOptions::new(&self.out, &self.image);
        o.tools = Tools {
            qemu: self.fake.join("qemu-system-x86_64"),
            ..Tools::default()
        };
        o.run_parent = Some(self.tmp.path().to_owned());
        o.timeout = Duration::from_secs(20);
        o
    }

    pub(crate) fn qemu_pid(&self, host: &str) -> u32 {
        std::fs::read_to_string(self.fake.join(format!("{host}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Run folders left in the temp folder.
    fn run_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("kiln-boot-")
            })
            .collect()
    }
}

fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub(crate) fn running(pid: u32) -> bool {
    // A zombie is as good as gone; /proc/PID/stat's third field is the state.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s.rsplit(')').next().unwrap_or("").split_whitespace().next();
            state != Some("Z")
        })
        .unwrap_or(false)
}

/// Records events as text lines.
#[derive(Default)]
struct Recorder(RefCell<Vec<String>>);

impl BootEvents for Recorder {
    fn switch_started(&self, _socket: &Path) {
        self.0.borrow_mut().push("switch".into());
    }
    fn link_service_ready(&self, service: &str, _pid: u32) {
        self.0.borrow_mut().push(format!("link {service}"));
    }
    fn host_started(&self, host: &str, _pid: u32, serial_log: &Path) {
        assert!(serial_log.ends_with(format!("lab.boot/{host}.log")));
        self.0.borrow_mut().push(format!("{host} started"));
    }
    fn marker(&self, host: &str, marker: &Marker) {
        self.0.borrow_mut().push(format!("{host} {marker}"));
    }
    fn host_status(&self, host: &str, status: &HostStatus) {
        let step = status.last_step.as_deref().unwrap_or("-");
        self.0
            .borrow_mut()
            .push(format!("{host} [{}] {step}", status.phase));
    }
    fn stopping(&self, hosts: &[String]) {
        self.0
            .borrow_mut()
            .push(format!("stopping {}", hosts.join(",")));
    }
}

pub(crate) fn script(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("say '{l}'; sleep 0.05\n"))
        .collect()
}

#[test]
fn every_host_ready_then_everything_stopped() {
    let etcd = script(&[
        "[    0.00] Linux version 6.1.0-cloud-amd64",
        "KILN verify ok role=etcd",
        "KILN health ok role=etcd",
        "KILN done ok role=etcd build=b1 generation=1",
        "KILN verify ok role=etcd",
        "KILN done ok role=etcd build=b1 generation=1 unchanged",
        FINAL,
    ]);
    let slow = format!("sleep 1\n{}", script(&["KILN done ok role=runtime", FINAL]));
    let rig = Rig::new(&[("etcd1", &etcd), ("runtime1", &slow)]);
    let events = Recorder::default();
    let report = boot(&rig.options(), &events).unwrap();

    assert_eq!(report.cluster, "lab");
    assert_eq!(report.hosts.len(), 2);
    for host in &report.hosts {
        assert_eq!(host.phase, HostPhase::Ready, "{host:?}");
        assert!(host.failure.is_none());
        assert!(host.done_after.unwrap() <= host.ready_after.unwrap());
        assert!(
            !running(rig.qemu_pid(&host.name)),
            "{} still runs",
            host.name
        );
    }
    let etcd1 = report.host("etcd1").unwrap();
    assert_eq!(etcd1.markers.len(), 5);
    assert!(etcd1.markers[4].has_word("unchanged"));
    assert_eq!(
        etcd1.serial_log,
        kiln_boot::default_log_dir(&rig.out).join("etcd1.log")
    );
    assert!(std::fs::read_to_string(&etcd1.serial_log)
        .unwrap()
        .contains("KILN health ok role=etcd"));
    assert!(report.host("runtime1").unwrap().ready_after.unwrap() >= Duration::from_secs(1));
    assert!(report.kept.is_none());
    assert!(rig.run_dirs().is_empty(), "run folder left behind");

    let events = events.0.into_inner();
    let etcd_events: Vec<&str> = events
        .iter()
        .filter(|e| e.starts_with("etcd1"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        etcd_events,
        [
            "etcd1 started",
            "etcd1 [booting] -",
            "etcd1 KILN verify ok role=etcd",
            "etcd1 [installing] verify ok",
            "etcd1 KILN health ok role=etcd",
            "etcd1 [installing] health ok",
            "etcd1 KILN done ok role=etcd build=b1 generation=1",
            "etcd1 [finishing] done ok",
            "etcd1 KILN verify ok role=etcd",
            "etcd1 [finishing] verify ok",
            "etcd1 KILN done ok role=etcd build=b1 generation=1 unchanged",
            "etcd1 [finishing] done ok",
            "etcd1 [ready] done ok",
        ]
    );
    assert_eq!(events[0], "switch");
    assert_eq!(events.last().unwrap(), "stopping etcd1,runtime1");
}

fn failure(err: BootError) -> (kiln_boot::HostFailure, kiln_boot::BootReport) {
    match err {
        BootError::HostFailed { failure, report } => (*failure, *report),
        other => panic!("expected a host failure, got {other}"),
    }
}

#[test]
fn a_fail_marker_stops_every_guest_and_shows_the_console_tail() {
    let bad = script(&[
        "booting",
        "KILN verify fail sha256 mismatch etcd.tar.gz",
        "more after",
    ]);
    // The other host would never finish on its own.
    let rig = Rig::new(&[("etcd1", "sleep 0.1"), ("etcd2", &bad)]);
    let (failure, report) = failure(boot(&rig.options(), &()).unwrap_err());
    assert_eq!(failure.host, "etcd2");
    assert_eq!(
        failure.reason,
        FailReason::Marker(Marker::parse("KILN verify fail sha256 mismatch etcd.tar.gz").unwrap())
    );
    assert!(failure.last_lines.iter().any(|l| l == "booting"));
    assert!(failure.last_lines.iter().all(|l| !l.contains('\r')));
    let text = failure.to_string();
    assert!(
        text.starts_with(
            "host etcd2 failed: install.sh reported `KILN verify fail sha256 mismatch etcd.tar.gz`"
        ),
        "{text}"
    );
    assert!(text.contains("etcd2.log"), "{text}");
    assert!(text.contains("\n  | booting"), "{text}");
    assert_eq!(report.host("etcd1").unwrap().phase, HostPhase::Booting);
    for host in ["etcd1", "etcd2"] {
        assert!(!running(rig.qemu_pid(host)), "{host} still runs");
    }
    assert!(rig.run_dirs().is_empty());
}

#[test]
fn qemu_exiting_is_a_failure_with_its_stderr() {
    let rig = Rig::new(&[(
        "etcd1",
        "say 'half a line'; printf 'no' >> \"$log\"; echo 'qemu: could not load kernel' >&2; exit 1",
    )]);
    let (failure, _) = failure(boot(&rig.options(), &()).unwrap_err());
    match &failure.reason {
        FailReason::QemuExited { status, stderr } => {
            assert!(status.contains("exit status: 1"), "{status}");
            assert_eq!(stderr, "qemu: could not load kernel");
        }
        other => panic!("{other:?}"),
    }
    // The unterminated last line is kept too.
    assert_eq!(failure.last_lines, ["half a line", "no"]);
}

#[test]
fn a_host_that_never_finishes_times_out() {
    let rig = Rig::new(&[("etcd1", &script(&["KILN verify ok"]))]);
    let mut opts = rig.options();
    opts.timeout = Duration::from_secs(2);
    let (failure, report) = failure(boot(&opts, &()).unwrap_err());
    assert_eq!(failure.reason, FailReason::TimedOut(Duration::from_secs(2)));
    assert_eq!(report.hosts[0].markers.len(), 1);
    assert!(!running(rig.qemu_pid("etcd1")));
}

#[test]
fn cloud_init_finishing_without_done_is_a_failure() {
    let rig = Rig::new(&[("etcd1", &script(&["KILN verify ok", FINAL]))]);
    let (failure, _) = failure(boot(&rig.options(), &()).unwrap_err());
    assert_eq!(failure.reason, FailReason::NoDoneMarker);
}

#[test]
fn a_kernel_panic_is_a_failure() {
    let rig = Rig::new(&[(
        "etcd1",
        &script(&["[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"]),
    )]);
    let (failure, _) = failure(boot(&rig.options(), &()).unwrap_err());
    assert!(matches!(failure.reason, FailReason::KernelPanic(ref l) if l.contains("VFS")));
}

#[test]
fn the_seeds_own_final_message_ends_the_boot() {
    let tmp_rig = Rig::new(&[(
        "etcd1",
        &script(&["KILN done ok", "kiln seed finished after 31.5 s"]),
    )]);
    // Rewrite the seed folder's user-data with a custom final_message.
    let user_data = tmp_rig.out.join("hosts/etcd1/seed/user-data");
    std::fs::write(
        &user_data,
        "#cloud-config\nfinal_message: \"kiln seed finished after $UPTIME s\"\n",
    )
    .unwrap();
    let report = boot(&tmp_rig.options(), &()).unwrap();
    assert_eq!(report.hosts[0].phase, HostPhase::Ready);
}

#[test]
fn keep_leaves_guests_and_switch_running_with_a_working_stop_command() {
    let rig = Rig::new(&[("etcd1", &script(&["KILN done ok", FINAL]))]);
    let mut opts = rig.options();
    opts.keep = true;
    let report = boot(&opts, &()).unwrap();
    let kept = report.kept.clone().expect("kept");
    let qemu = rig.qemu_pid("etcd1");
    assert_eq!(kept.guests, [("etcd1".to_owned(), qemu)]);
    assert!(running(qemu));
    assert!(running(kept.switch_pid));
    assert!(kept.run_dir.join("etcd1.qcow2").is_file());

    let status = Command::new("sh")
        .arg("-c")
        .arg(kept.stop_command())
        .status()
        .unwrap();
    assert!(status.success(), "{}", kept.stop_command());
    for _ in 0..100 {
        if !running(qemu) && !running(kept.switch_pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running(qemu) && !running(kept.switch_pid));
    assert!(!kept.run_dir.exists());
}

#[test]
fn a_subset_boots_only_the_named_hosts() {
    let ok = script(&["KILN done ok", FINAL]);
    let rig = Rig::new(&[("etcd1", &ok), ("etcd2", "exit 3")]);
    let mut opts = rig.options();
    opts.hosts = Some(vec!["etcd1".into()]);
    let report = boot(&opts, &()).unwrap();
    assert_eq!(report.hosts.len(), 1);
    assert!(!rig.fake.join("etcd2.pid").exists());
}

#[test]
fn vfat_seeds_and_memory_override_reach_the_command_line() {
    // The script saves QEMU's arguments before playing the console.
    let save = format!(
        "printf '%s\\n' \"$(cat /proc/$$/cmdline | tr '\\0' ' ')\" > \"$here/args\"\n{}",
        script(&["KILN done ok", FINAL])
    );
    let rig = Rig::new(&[("etcd1", &save)]);
    let mut opts = rig.options();
    opts.seed = kiln_boot::SeedKind::Vfat;
    opts.memory_mb = Some(768);
    opts.kernel_args = vec!["quiet".into()];
    boot(&opts, &()).unwrap();
    let args = std::fs::read_to_string(rig.fake.join("args")).unwrap();
    assert!(
        args.contains("/hosts/etcd1/cidata.img,if=virtio,format=raw,readonly=on"),
        "{args}"
    );
    assert!(args.contains(" -m 768 "), "{args}");
    assert!(args.contains("console=ttyS0 quiet"), "{args}");
    assert!(args.contains("-accel tcg,thread=multi"), "{args}");
    assert!(args.contains("mac=52:54:00:77:00:0b"), "{args}");
    assert!(
        !args.contains("-netdev user"),
        "no user-mode network: {args}"
    );
    assert!(args.contains("-netdev vde,id=n0,sock="), "{args}");
}

/// Writes `kiln image`'s MANIFEST.json, with `boot-loader`, beside the rig's image.
fn golden_manifest(rig: &Rig, boot_loader: &str) {
    let manifest = serde_json::json!({
        "kind": "kiln-golden-image",
        "boot": {"boot-loader": boot_loader},
    });
    std::fs::write(
        rig.image.with_file_name("MANIFEST.json"),
        manifest.to_string(),
    )
    .unwrap();
}

/// Boots the rig's one host `etcd1` (which records QEMU's arguments) with `opts` changed by
/// `set`, returning QEMU's arguments.
fn booted_args(rig: &Rig, set: impl FnOnce(&mut BootOptions)) -> String {
    let mut opts = rig.options();
    set(&mut opts);
    boot(&opts, &()).unwrap();
    std::fs::read_to_string(rig.fake.join("args")).unwrap()
}

#[test]
fn a_kiln_image_disk_boots_through_its_firmware_and_any_other_with_its_kernel() {
    let save = format!(
        "printf '%s\\n' \"$(cat /proc/$$/cmdline | tr '\\0' ' ')\" > \"$here/args\"\n{}",
        script(&["KILN done ok", FINAL])
    );
    let rig = Rig::new(&[("etcd1", &save)]);
    // No manifest (a bare file system, as tests/e2e/guest-image.sh makes): the kernel, root the
    // whole disk.
    let args = booted_args(&rig, |_| ());
    assert!(
        args.contains("-kernel ") && args.contains("root=/dev/vda ro console=ttyS0"),
        "{args}"
    );
    // An older kiln image manifest that names no boot loader: the same.
    golden_manifest(&rig, "none yet: boot with the kernel and initrd");
    assert!(booted_args(&rig, |_| ()).contains("root=/dev/vda "));

    // A kiln image disk with GRUB: the BIOS boots it, no kernel given.
    golden_manifest(&rig, "grub");
    let args = booted_args(&rig, |_| ());
    assert!(args.contains(" -boot c "), "{args}");
    assert!(
        !args.contains("-kernel") && !args.contains("-bios"),
        "{args}"
    );
    // UEFI: OVMF as QEMU's firmware.
    let ovmf = rig.tmp.path().join("OVMF.fd");
    std::fs::write(&ovmf, "firmware").unwrap();
    let args = booted_args(&rig, |o| {
        o.firmware = Firmware::Uefi;
        o.tools.ovmf = ovmf.clone();
    });
    assert!(
        args.contains(&format!(" -bios {} -boot c ", ovmf.display())),
        "{args}"
    );
    // Direct: QEMU loads the kernel and finds the root partition by its label.
    let args = booted_args(&rig, |o| {
        o.firmware = Firmware::Direct;
        o.kernel_args = vec!["quiet".into()];
    });
    assert!(
        args.contains("-kernel ") && args.contains("root=LABEL=rootfs ro console=ttyS0 quiet"),
        "{args}"
    );
}

#[test]
fn a_firmware_start_that_cannot_work_is_refused_before_any_guest_starts() {
    let rig = Rig::new(&[("etcd1", "exit 3")]);
    let refused = |set: &dyn Fn(&mut BootOptions)| {
        let mut opts = rig.options();
        set(&mut opts);
        let err = boot(&opts, &()).unwrap_err();
        assert!(
            matches!(err, BootError::Firmware { .. } | BootError::Missing { .. }),
            "{err:?}"
        );
        assert!(!rig.fake.join("etcd1.pid").exists(), "a guest started");
        assert!(rig.run_dirs().is_empty());
        err.to_string()
    };
    // A disk without a boot loader cannot boot through the firmware.
    let err = refused(&|o| o.firmware = Firmware::Bios);
    assert!(
        err.contains("has no boot loader") && err.contains("firmware direct"),
        "{err}"
    );
    golden_manifest(&rig, "grub");
    // Kernel arguments cannot reach a kernel GRUB loads.
    let err = refused(&|o| o.kernel_args = vec!["quiet".into()]);
    assert!(
        err.contains("kernel arguments (quiet) need the direct start")
            && err.contains("/boot/grub/grub.cfg"),
        "{err}"
    );
    // UEFI without OVMF names the package.
    let missing = rig.tmp.path().join("no/OVMF.fd");
    let err = refused(&|o| {
        o.firmware = Firmware::Uefi;
        o.tools.ovmf = missing.clone();
    });
    assert!(
        err.contains("UEFI firmware") && err.contains("apt-get install ovmf"),
        "{err}"
    );
    // A manifest that is not JSON is named.
    std::fs::write(rig.image.with_file_name("MANIFEST.json"), "{").unwrap();
    let err = refused(&|_| ());
    assert!(err.contains("MANIFEST.json: not JSON"), "{err}");
}

#[test]
fn a_missing_qemu_names_its_package_and_stops_the_switch() {
    let rig = Rig::new(&[("etcd1", "")]);
    let mut opts = rig.options();
    opts.tools.qemu = rig.tmp.path().join("missing/qemu-system-x86_64");
    let err = boot(&opts, &()).unwrap_err().to_string();
    assert!(
        err.contains("install the Debian package qemu-system-x86"),
        "{err}"
    );
    assert!(rig.run_dirs().is_empty());
}

/// A link service that records the namespace it runs in and its pid, then listens with python3.
const LINK_SERVICE: &str = r#"#!/bin/sh
set -eu
here=$(dirname "$0")
echo "$$" > "$here/service.pid"
ip -o -4 addr show > "$here/service.addrs"
exec python3 -m http.server --bind "$1" "$2"
"#;

#[test]
fn a_link_service_listens_on_the_private_link_only_and_stops_with_the_boot() {
    let rig = Rig::new(&[("etcd1", &script(&["KILN done ok", FINAL]))]);
    let service = rig.fake.join("service");
    std::fs::write(&service, LINK_SERVICE).unwrap();
    chmod_x(&service);
    let mut opts = rig.options();
    opts.link_address = Some("10.77.0.250/24".parse().unwrap());
    let port = kiln_testkit::free_port();
    opts.link_services = vec![format!("{port}={} 10.77.0.250 {port}", service.display())
        .parse()
        .unwrap()];
    let events = Recorder::default();
    let report = boot(&opts, &events).unwrap();
    assert_eq!(report.hosts[0].phase, HostPhase::Ready);

    // It ran where the bridge has the link address, which this namespace does not have.
    let addrs = std::fs::read_to_string(rig.fake.join("service.addrs")).unwrap();
    assert!(
        addrs
            .lines()
            .any(|l| l.contains("kiln0") && l.contains("10.77.0.250/24")),
        "{addrs}"
    );
    let here = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&here.stdout).contains("10.77.0.250"));
    // The hosts started only once it answered; it was stopped with them.
    let events = events.0.into_inner();
    let ready = events
        .iter()
        .position(|e| e.starts_with("link "))
        .expect("a link event");
    let started = events.iter().position(|e| e == "etcd1 started").unwrap();
    assert!(ready < started, "{events:?}");
    assert!(
        events[ready].contains(&format!("link {port}=")),
        "{events:?}"
    );
    let pid: u32 = std::fs::read_to_string(rig.fake.join("service.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!running(pid), "the link service outlived the boot");
    let log = std::fs::read_to_string(
        kiln_boot::default_log_dir(&rig.out).join(format!("link-{port}.log")),
    )
    .unwrap();
    assert!(log.contains("Serving HTTP on 10.77.0.250"), "{log}");
    assert!(rig.run_dirs().is_empty());
}

#[test]
fn a_link_service_that_exits_fails_the_boot_with_its_output_and_starts_no_host() {
    let rig = Rig::new(&[("etcd1", &script(&["KILN done ok", FINAL]))]);
    let mut opts = rig.options();
    opts.link_address = Some("10.77.0.250/24".parse().unwrap());
    opts.link_services = vec!["5000=sh -c echo_no_registry_here;exit_3".parse().unwrap()];
    let err = boot(&opts, &()).unwrap_err().to_string();
    assert!(
        err.contains("sh -c 'echo_no_registry_here;exit_3'"),
        "{err}"
    );
    assert!(err.contains("exit status: 127"), "{err}");
    assert!(err.contains("echo_no_registry_here: not found"), "{err}");
    assert!(!rig.fake.join("etcd1.pid").exists(), "a host started");
    assert!(rig.run_dirs().is_empty());
}

/// A host script that saves QEMU's arguments and `qemu-img info` of its first disk, then
/// finishes.
fn record_args_and_disk(host: &str) -> String {
    format!(
        "tr '\\0' ' ' < /proc/$$/cmdline > \"$here/{host}.args\"
disk=$(sed -n 's/.*-drive file=\\([^ ]*\\),if=virtio,format=qcow2.*/\\1/p' \"$here/{host}.args\")
qemu-img info --output=json \"$disk\" > \"$here/{host}.disk.json\"
{}",
        script(&["KILN done ok role=etcd", FINAL])
    )
}

#[test]
fn a_network_booted_host_gets_its_nic_first_an_empty_disk_and_no_kernel_or_seed() {
    let rig = Rig::new(&[
        ("etcd1", &record_args_and_disk("etcd1")),
        ("etcd2", &record_args_and_disk("etcd2")),
    ]);
    let mut opts = rig.options();
    opts.netboot = vec!["etcd2".into()];
    opts.disk_gb = Some(3);
    answered_on_the_link(&mut opts);
    let report = boot(&opts, &()).unwrap();
    assert!(report.hosts.iter().all(|h| h.phase == HostPhase::Ready));

    let args = |host: &str| std::fs::read_to_string(rig.fake.join(format!("{host}.args"))).unwrap();
    let disk = |host: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(rig.fake.join(format!("{host}.disk.json"))).unwrap())
            .unwrap()
    };
    let net = args("etcd2");
    assert!(net.contains(" -boot n "), "{net}");
    for absent in ["-kernel", "-initrd", "-append", "cidata", "readonly=on"] {
        assert!(!net.contains(absent), "{absent} in {net}");
    }
    assert!(
        net.contains("-device virtio-net-pci,netdev=n0,mac=52:54:00:77:00:0c"),
        "{net}"
    );
    // A bare machine's disk: empty, backed by nothing, of the size asked for.
    let d = disk("etcd2");
    assert_eq!(d["virtual-size"], 3u64 << 30, "{d}");
    assert!(d.get("backing-filename").is_none(), "{d}");
    assert!(!d["dirty-flag"].as_bool().unwrap_or(false));
    // The other host still boots the image with its seed, on a 3 GiB overlay of it.
    let from_disk = args("etcd1");
    assert!(!from_disk.contains("-boot n"), "{from_disk}");
    assert!(from_disk.contains("-kernel ") && from_disk.contains("cidata.iso"));
    let d = disk("etcd1");
    assert_eq!(d["virtual-size"], 3u64 << 30, "{d}");
    assert_eq!(
        d["backing-filename"].as_str(),
        Some(rig.image.to_str().unwrap()),
        "{d}"
    );
    assert!(rig.run_dirs().is_empty());
}

/// A link address and a service on it (an HTTP server), which netboot hosts need.
fn answered_on_the_link(opts: &mut BootOptions) {
    opts.link_address = Some("10.77.0.250/24".parse().unwrap());
    let port = kiln_testkit::free_port();
    opts.link_services = vec![
        format!("{port}=python3 -m http.server --bind 10.77.0.250 {port}")
            .parse()
            .unwrap(),
    ];
}

#[test]
fn hosts_booted_only_from_the_network_need_no_image() {
    let rig = Rig::new(&[("etcd1", &script(&["KILN done ok", FINAL]))]);
    let mut opts = rig.options();
    opts.image = rig.tmp.path().join("no-such-image/disk.qcow2");
    opts.netboot = vec!["etcd1".into()];
    answered_on_the_link(&mut opts);
    let report = boot(&opts, &()).unwrap();
    assert_eq!(report.hosts[0].phase, HostPhase::Ready);
}
