//! `kiln serve --dhcp`: real iPXE firmware (QEMU's, Debian's ipxe-qemu ROM, no disk, `-boot n`)
//! on a private link (a bridge in a network namespace of its own, guests plugged in through a
//! vde_switch) gets its lease from the dnsmasq kiln serve started and asks kiln serve for its
//! script; a MAC no host has gets an address only from `--dhcp-range`; busybox's DHCP client
//! shows that without a range an unknown MAC gets nothing. Then the refusals, and dnsmasq's
//! life tied to kiln serve's.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::common::{kiln, Fixture};
use crate::seeds::build_every_seed_form;

/// The machine's address on the test link (the lab's hosts are 10.77.0.x/24).
const SERVER: &str = "10.77.0.250";
/// A MAC no lab host has.
const STRANGER: &str = "52:54:00:77:99:99";
/// The iPXE ROM QEMU loads for a virtio NIC by default (Debian package ipxe-qemu).
const IPXE_ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether this machine can run the link tests; fails under KILN_REQUIRE_TOOLS when it cannot.
fn link_ready(test: &str) -> bool {
    let missing: Vec<String> = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("vde_switch", "vde2"),
        ("dnsmasq", "dnsmasq-base"),
        ("busybox", "busybox"),
        ("unshare", "util-linux"),
        ("nsenter", "util-linux"),
        ("ip", "iproute2"),
    ]
    .iter()
    .filter(|(p, _)| !have(p))
    .map(|(p, pkg)| format!("{p} (Debian package {pkg})"))
    .chain((!Path::new(IPXE_ROM).is_file()).then(|| format!("{IPXE_ROM} (ipxe-qemu)")))
    .collect();
    kiln_testkit::ready(
        test,
        kiln_testkit::is_root() && missing.is_empty(),
        &format!(
            "needs root (a network namespace, a bridge, a tap) and {}",
            if missing.is_empty() {
                "nothing else".into()
            } else {
                missing.join(", ")
            }
        ),
    )
}

/// A private link: a network namespace holding bridge `kiln0` with the server's address and a
/// tap, and a vde_switch on that tap whose socket QEMU guests plug into. Everything stops
/// when dropped.
struct Link {
    holder: Child,
    switch: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

const HOLDER: &str = "set -e
ip link set lo up
ip link add kiln0 type bridge
ip tuntap add kiln0tap mode tap
ip link set kiln0tap master kiln0
ip link set kiln0tap up
ip link set kiln0 up
ip addr add 10.77.0.250/24 dev kiln0
echo ready
exec sleep 600";

impl Link {
    fn new() -> Link {
        let dir = tempfile::Builder::new()
            .prefix("kiln-dhcp-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut holder = Command::new("unshare")
            .args(["--net", "sh", "-c", HOLDER])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the namespace holder failed");
        let socket = dir.path().join("vde");
        let mut link = Link {
            switch: Command::new("true").spawn().unwrap(),
            holder,
            socket,
            _dir: dir,
        };
        // In the foreground: it exits when its standard input (this pipe) closes.
        link.switch = link
            .ns("vde_switch")
            .args(["--tap", "kiln0tap", "--sock"])
            .arg(&link.socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !link.socket.join("ctl").exists() {
            assert!(Instant::now() < deadline, "vde_switch did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        link
    }

    /// `program` run in the link's namespace.
    fn ns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/proc/{}/ns/net", self.holder.id()))
            .arg(program);
        c
    }

    /// A diskless QEMU guest with `mac` that boots from the network (iPXE ROM).
    fn guest(&self, mac: &str) -> Killed {
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-nodefaults",
                "-no-user-config",
                "-accel",
                "tcg",
                "-cpu",
                "qemu64",
            ])
            .args(["-m", "256", "-display", "none", "-no-reboot", "-boot", "n"])
            .arg("-netdev")
            .arg(format!("vde,id=n0,sock={}", self.socket.display()))
            .arg("-device")
            .arg(format!("virtio-net-pci,netdev=n0,mac={mac}"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Killed(child)
    }

    /// busybox's DHCP client on a fresh veth with `mac`, plugged into the bridge: the address
    /// it was leased, or `None` when nothing answered (three tries, a second apart).
    fn udhcpc(&self, mac: &str, n: u8) -> Option<String> {
        self.lease(mac, n, &[]).map(|l| l.address)
    }

    /// The same with more udhcpc options (`extra`): what the lease said.
    fn lease(&self, mac: &str, n: u8, extra: &[&str]) -> Option<Leased> {
        let (a, b) = (format!("dc{n}"), format!("dc{n}p"));
        let extra: Vec<String> = extra.iter().map(|e| format!("'{e}'")).collect();
        let script = format!(
            "set -e
ip link add {a} type veth peer name {b}
ip link set {b} master kiln0
ip link set {a} address {mac}
ip link set {b} up
ip link set {a} up
printf '#!/bin/sh\\n[ \"$1\" = bound ] && echo \"leased $ip ${{boot_file:--}} ${{siaddr:--}}\"\\nexit 0\\n' > /tmp/kiln-udhcpc-{n}.sh
chmod +x /tmp/kiln-udhcpc-{n}.sh
busybox udhcpc -i {a} -f -q -n -t 3 -T 1 -A 1 -s /tmp/kiln-udhcpc-{n}.sh {} || true
rm -f /tmp/kiln-udhcpc-{n}.sh
ip link del {a}",
            extra.join(" ")
        );
        let out = self.ns("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let mut w = l.strip_prefix("leased ")?.split(' ');
            Some(Leased {
                address: w.next()?.to_owned(),
                boot_file: w.next()?.to_owned(),
                next_server: w.next()?.to_owned(),
            })
        })
    }
}

/// What a DHCP client was told.
#[derive(Debug)]
struct Leased {
    address: String,
    /// The boot file, `-` for none.
    boot_file: String,
    /// The server to load it from (`siaddr`), `-` for none.
    next_server: String,
}

impl Drop for Link {
    fn drop(&mut self) {
        for c in [&mut self.switch, &mut self.holder] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `kiln serve --json` in the link's namespace, its stdout read line by line on a thread.
struct Served {
    child: Child,
    lines: mpsc::Receiver<Value>,
    /// Every record seen so far.
    seen: Vec<Value>,
    /// The `listening` status.
    status: Value,
}

impl Served {
    fn start(link: &Link, out: &Path, state: &Path, args: &[&str]) -> Served {
        let mut child = link
            .ns(assert_cmd::cargo::cargo_bin("kiln"))
            .arg("serve")
            .arg(out)
            .args(["--listen", &format!("{SERVER}:0"), "--json", "--state"])
            .arg(state)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { break };
                let v: Value = serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut s = Served {
            child,
            lines,
            seen: Vec::new(),
            status: Value::Null,
        };
        let ok = s.wait_for(Duration::from_secs(30), |seen| {
            seen.iter().any(|v| v["event"] == "listening")
        });
        if !ok {
            let _ = s.child.kill();
            panic!("kiln serve did not start: {}", stderr_of(&mut s.child));
        }
        s.status = s
            .seen
            .iter()
            .find(|v| v["event"] == "listening")
            .unwrap()
            .clone();
        s
    }

    /// Reads records until `done(seen)` holds or `timeout` passes; whether it held.
    fn wait_for(&mut self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(500)))
            {
                Ok(v) => self.seen.push(v),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => return done(&self.seen),
            }
        }
        true
    }

    fn dhcp(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "dhcp")
            .map(|v| v["message"].as_str().unwrap().to_owned())
            .collect()
    }

    fn access(&self) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|v| v["event"] == "access")
            .collect()
    }

    fn dnsmasq_pid(&self) -> u32 {
        self.status["dhcp"]["pid"].as_u64().unwrap() as u32
    }

    /// SIGTERM, as an init system stops it: its exit status and stderr.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        (status, stderr_of(&mut self.child))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SIGTERM: kiln serve stops its dnsmasq (SIGKILL would leave it running).
        // SAFETY: kill(2) on our own child, not yet reaped (a reaped one is not signalled).
        if self.child.try_wait().ok().flatten().is_none() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        }
        let _ = self.child.wait();
    }
}

fn alive(pid: u32) -> bool {
    // A zombie has exited too.
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The lab's first host: name, MAC and address from MANIFEST.json.
fn first_host(out: &Path) -> (String, String, String) {
    let m = manifest(out);
    let (name, h) = m["hosts"].as_object().unwrap().iter().next().unwrap();
    (
        name.clone(),
        h["mac"].as_str().unwrap().to_owned(),
        h["ip"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn ipxe_guests_get_their_lease_and_boot_script_from_kiln_serve_s_dnsmasq_and_unknown_macs_only_a_range(
) {
    if !link_ready("dhcp ipxe guests") {
        return;
    }
    let started = Instant::now();
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let (host, mac, ip) = first_host(&out);
    let link = Link::new();
    let state = fx.dir.join("serve-state");

    // With a range: the host gets its own address, the stranger one of the range, and both
    // ask kiln serve for their scripts.
    let mut s = Served::start(
        &link,
        &out,
        &state,
        &["--dhcp", "--dhcp-range", "10.77.0.200-10.77.0.209"],
    );
    let url = s.status["url"].as_str().unwrap().to_owned();
    assert_eq!(s.status["dhcp"]["boot-file"], format!("{url}/boot.ipxe"));
    assert!(alive(s.dnsmasq_pid()));
    let config = fs::read_to_string(state.join("dnsmasq.conf")).unwrap();
    assert!(
        config.contains(&format!("dhcp-host={mac},{ip},{host},1h")),
        "{config}"
    );
    let known = link.guest(&mac);
    let stranger = link.guest(STRANGER);
    let (hexhyp_known, hexhyp_stranger) = (mac.replace(':', "-"), STRANGER.replace(':', "-"));
    let both = |seen: &[Value]| {
        [&hexhyp_known, &hexhyp_stranger].iter().all(|m| {
            seen.iter()
                .any(|v| v["event"] == "access" && v["path"] == format!("/ipxe/{m}"))
        })
    };
    let ok = s.wait_for(Duration::from_secs(150), both);
    assert!(ok, "no iPXE scripts asked for in 150 s: {:#?}", s.seen);
    eprintln!(
        "dhcp: both guests had their scripts after {:?}",
        started.elapsed()
    );
    drop((known, stranger));
    let dhcp = s.dhcp();
    assert!(
        dhcp.iter()
            .any(|l| l.starts_with("DHCPACK(kiln0) ") && l.contains(&format!("{ip} {mac} {host}"))),
        "{dhcp:#?}"
    );
    let stranger_ip = dhcp
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix("DHCPACK(kiln0) ")?;
            let (addr, m) = rest.split_once(' ')?;
            m.starts_with(STRANGER).then(|| addr.to_owned())
        })
        .unwrap_or_else(|| panic!("no lease for {STRANGER}: {dhcp:#?}"));
    assert!(stranger_ip.starts_with("10.77.0.20"), "{stranger_ip}");
    let access = s.access();
    let by = |client: &str, path: &str| {
        access
            .iter()
            .find(|v| v["client"] == client && v["path"] == path)
            .copied()
            .unwrap_or_else(|| panic!("no {path} from {client}: {access:#?}"))
    };
    for client in [ip.as_str(), stranger_ip.as_str()] {
        assert_eq!(by(client, "/boot.ipxe")["status"], 200);
    }
    let script = by(&ip, &format!("/ipxe/{hexhyp_known}"));
    assert_eq!(
        (script["status"].as_u64(), script["host"].as_str()),
        (Some(200), Some(host.as_str()))
    );
    let unknown = by(&stranger_ip, &format!("/ipxe/{hexhyp_stranger}"));
    assert_eq!(unknown["host"], Value::Null);
    assert!(
        unknown["note"].as_str().unwrap().contains("unknown MAC"),
        "{unknown}"
    );

    // SIGTERM stops kiln serve and its dnsmasq.
    let dnsmasq = s.dnsmasq_pid();
    let (status, err) = s.terminate();
    assert!(
        status.success() && err.contains("kiln serve: stopped (SIGTERM)"),
        "{status}: {err}"
    );
    assert!(!alive(dnsmasq), "dnsmasq {dnsmasq} outlived kiln serve");

    // Without a range, a MAC no host has gets no answer; a host's MAC gets its address.
    let mut s = Served::start(&link, &out, &state, &["--dhcp"]);
    assert_eq!(link.udhcpc(STRANGER, 1), None);
    assert_eq!(link.udhcpc(&mac, 2).as_deref(), Some(ip.as_str()));
    s.wait_for(Duration::from_secs(5), |seen| {
        seen.iter()
            .any(|v| v["event"] == "dhcp" && v["message"].as_str().unwrap().starts_with("DHCPACK"))
    });
    let dhcp = s.dhcp();
    assert!(
        dhcp.contains(&format!("DHCPDISCOVER(kiln0) {STRANGER} ignored")),
        "{dhcp:#?}"
    );
    assert!(
        !dhcp
            .iter()
            .any(|l| l.starts_with("DHCPOFFER") && l.contains(STRANGER)),
        "{dhcp:#?}"
    );

    // dnsmasq dying stops kiln serve with an error naming it.
    let dnsmasq = s.dnsmasq_pid();
    // SAFETY: kill(2) on a pid this test's kiln serve started.
    unsafe { libc::kill(dnsmasq as i32, libc::SIGKILL) };
    let status = s.child.wait().unwrap();
    let err = stderr_of(&mut s.child);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "dnsmasq (pid {dnsmasq}, the hosts' DHCP) exited (signal: 9"
        )) && err.contains("kiln serve stopped"),
        "{err}"
    );
    eprintln!("dhcp: done after {:?}", started.elapsed());
}

/// The iPXE loaders `--tftp` serves (Debian package ipxe).
const LOADERS: &str = "/usr/lib/ipxe";

#[test]
fn pxe_firmware_that_is_not_ipxe_gets_the_ipxe_loader_for_its_architecture_over_tftp() {
    let loaders_present = ["undionly.kpxe", "ipxe.efi"]
        .iter()
        .all(|f| Path::new(LOADERS).join(f).is_file());
    if !link_ready("dhcp tftp")
        || !kiln_testkit::ready(
            "dhcp tftp",
            loaders_present && have("curl"),
            "needs Debian's ipxe package (/usr/lib/ipxe/undionly.kpxe, ipxe.efi) and curl",
        )
    {
        return;
    }
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let (host, mac, ip) = first_host(&out);
    let link = Link::new();
    let state = fx.dir.join("serve-state");
    let mut s = Served::start(&link, &out, &state, &["--dhcp", "--tftp"]);
    assert_eq!(s.status["dhcp"]["tftp-root"], LOADERS);

    // A BIOS PXE ROM (vendor class PXEClient, architecture 0, no iPXE user class): its lease,
    // undionly.kpxe, from this server.
    let bios = link
        .lease(&mac, 1, &["-V", "PXEClient:Arch:00000:UNDI:002001"])
        .unwrap_or_else(|| panic!("no lease for {host} ({mac})"));
    assert_eq!(
        (
            bios.address.as_str(),
            bios.boot_file.as_str(),
            bios.next_server.as_str()
        ),
        (ip.as_str(), "undionly.kpxe", SERVER),
        "{bios:?}"
    );
    // x86-64 UEFI (client architecture 7): ipxe.efi.
    let uefi = link
        .lease(
            &mac,
            2,
            &["-V", "PXEClient:Arch:00007:UNDI:003016", "-x", "0x5d:0007"],
        )
        .unwrap();
    assert_eq!(
        (uefi.boot_file.as_str(), uefi.next_server.as_str()),
        ("ipxe.efi", SERVER),
        "{uefi:?}"
    );

    // Both load over dnsmasq's TFTP, byte for byte; nothing outside the folder does.
    for f in ["undionly.kpxe", "ipxe.efi"] {
        let got = fx.dir.join(f);
        let o = link
            .ns("curl")
            .args(["-sS", "--fail", "-o"])
            .arg(&got)
            .arg(format!("tftp://{SERVER}/{f}"))
            .output()
            .unwrap();
        assert!(o.status.success(), "tftp {f}: {o:?}");
        assert_eq!(
            fs::read(&got).unwrap(),
            fs::read(Path::new(LOADERS).join(f)).unwrap(),
            "{f}"
        );
    }
    for outside in ["../../etc/passwd", "/etc/passwd"] {
        let o = link
            .ns("curl")
            .args(["-sS", "--fail", "--path-as-is", "-o", "/dev/null"])
            .arg(format!("tftp://{SERVER}/{outside}"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{outside} was served over TFTP");
    }
    s.wait_for(Duration::from_secs(5), |seen| {
        seen.iter().any(|v| {
            v["event"] == "dhcp"
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("sent ") && m.contains("ipxe.efi"))
        })
    });
    let dhcp = s.dhcp();
    assert!(
        dhcp.iter()
            .any(|l| l.starts_with("sent ") && l.contains("undionly.kpxe")),
        "dnsmasq logged no TFTP transfer: {dhcp:#?}"
    );
}

#[test]
fn dhcp_options_that_cannot_work_are_refused_before_anything_is_written() {
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let state = fx.dir.join("serve-state");
    let empty = tempfile::tempdir().unwrap();
    let empty_dir = empty.path().to_str().unwrap();
    for (listen, args, path, want) in [
        (
            "127.0.0.1:0",
            &["--dhcp"][..],
            None,
            "--dhcp needs --listen with this machine's IPv4 address on the hosts' link, not 127.0.0.1",
        ),
        (
            "0.0.0.0:8080",
            &["--dhcp"][..],
            None,
            "--dhcp needs --listen with this machine's IPv4 address on the hosts' link",
        ),
        (
            "10.78.0.250:0",
            &["--dhcp"][..],
            None,
            "is not on the link of the DHCP server's address 10.78.0.250",
        ),
        (
            "10.77.0.250:0",
            &["--dhcp", "--dhcp-range", "10.77.0.10-10.77.0.19"][..],
            None,
            "--dhcp-range 10.77.0.10-10.77.0.19: it holds host etcd1's address 10.77.0.11",
        ),
        (
            "10.77.0.250:0",
            &["--dhcp", "--dhcp-range", "10.77.0.19-10.77.0.10"][..],
            None,
            "the first address comes after the last",
        ),
        (
            "10.77.0.250:0",
            &["--dhcp-range", "10.77.0.200-10.77.0.209"][..],
            None,
            "--dhcp",
        ),
        (
            "10.77.0.250:0",
            &["--dhcp"][..],
            Some(empty.path()),
            "--dhcp runs dnsmasq, which is not installed (not found on PATH): install the Debian package dnsmasq-base",
        ),
        (
            "10.77.0.250:0",
            &["--tftp"][..],
            None,
            "--dhcp",
        ),
        (
            "10.77.0.250:0",
            &["--dhcp", "--ipxe-dir", empty_dir][..],
            None,
            "--tftp",
        ),
        (
            "10.77.0.250:0",
            &["--dhcp", "--tftp", "--ipxe-dir", empty_dir][..],
            None,
            &format!(
                "--tftp: {empty_dir} has no undionly.kpxe and no ipxe.efi: install the Debian \
                 package ipxe (or give --ipxe-dir the folder holding iPXE's undionly.kpxe and \
                 ipxe.efi)"
            ),
        ),
    ] {
        let mut cmd = kiln();
        cmd.arg("serve")
            .arg(&out)
            .args(["--listen", listen, "--state"])
            .arg(&state)
            .args(args);
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(want as &str),
            "{args:?}: {err}"
        );
        assert!(!state.exists(), "{args:?} wrote the state folder");
    }
}

/// A stand-in for a dnsmasq that cannot start (as when its address is gone): kiln serve says
/// so with dnsmasq's own words and does not serve.
const FAILING_DNSMASQ: &str = "#!/bin/sh
echo 'dnsmasq: failed to create listening socket for 10.77.0.250: Cannot assign requested address' >&2
exit 2
";

#[test]
fn a_dnsmasq_that_fails_to_start_stops_kiln_serve_with_its_output() {
    use std::os::unix::fs::PermissionsExt as _;
    if !kiln_testkit::ready(
        "dhcp start failure",
        kiln_testkit::is_root() && have("unshare"),
        "needs root and unshare (an address of its own to listen on)",
    ) {
        return;
    }
    let fx = Fixture::new(false);
    let out = build_every_seed_form(&fx);
    let bin = fx.dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    fs::write(bin.join("dnsmasq"), FAILING_DNSMASQ).unwrap();
    fs::set_permissions(bin.join("dnsmasq"), fs::Permissions::from_mode(0o755)).unwrap();
    // In a namespace where 10.77.0.250 exists, so the HTTP server can listen there.
    let o = Command::new("unshare")
        .args(["--net", "sh", "-c"])
        .arg(
            "ip link set lo up && ip link add kiln0 type bridge && ip link set kiln0 up && \
             ip addr add 10.77.0.250/24 dev kiln0 && exec \"$0\" \"$@\"",
        )
        .arg(assert_cmd::cargo::cargo_bin("kiln"))
        .arg("serve")
        .arg(&out)
        .args(["--listen", "10.77.0.250:0", "--dhcp", "--json", "--state"])
        .arg(fx.dir.join("state"))
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dnsmasq --keep-in-foreground")
            && err.contains("failed to start (exit status: 2)")
            && err.contains("failed to create listening socket for 10.77.0.250"),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(!stdout.contains("\"event\":\"listening\""), "{stdout}");
}
