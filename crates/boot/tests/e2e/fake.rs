//! Real guests with stand-in seeds (no kiln build needed): the QEMU command
//! line, VFAT and ISO seeds, the MAC-matched static network and the private
//! switch all work, and the guests reach each other but nothing else.

use std::time::Duration;

use cloud_init_config::WriteFile;
use kiln_boot::{boot, BootOptions, HostPhase, SeedKind};

use crate::env::{expect_boot, guest_image, log_dir, require_e2e, Progress};
use crate::support::{fake_out, FakeHost};

/// Answers every TCP connection on port 7777 with the host name.
const SERVE: &str = r#"import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7777))
s.listen(8)
while True:
    c, _ = s.accept()
    c.sendall(socket.gethostname().encode())
    c.close()
"#;

/// Connects to each address in argv (retrying for two minutes) and prints a
/// marker per peer on the console; exits 1 if any peer never answered.
/// Also checks the guest has no default route (the switch is its only link).
const PROBE: &str = r#"import socket, sys, time
con = open("/dev/ttyS0", "w")
def say(line):
    con.write(line + "\n"); con.flush()
failed = False
for peer in sys.argv[1:]:
    deadline = time.time() + 120
    while True:
        try:
            with socket.create_connection((peer, 7777), timeout=3) as c:
                say("KILN net ok peer=%s name=%s" % (peer, c.recv(100).decode()))
            break
        except OSError as e:
            if time.time() > deadline:
                say("KILN net fail peer=%s %s" % (peer, e))
                failed = True
                break
            time.sleep(1)
# The guests' only link is the switch: no default route to anywhere else.
routes = [l.split() for l in open("/proc/net/route").read().splitlines()[1:]]
if any(r[1] == "00000000" for r in routes):
    say("KILN isolation fail a default route exists")
    failed = True
else:
    say("KILN isolation ok no-default-route")
sys.exit(1 if failed else 0)
"#;

fn host(name: &str, n: u8, peers: &[&str]) -> FakeHost {
    let mut h = FakeHost::new(name, n);
    h.write_files = vec![
        WriteFile::new("/var/lib/kiln-test/serve.py", SERVE),
        WriteFile::new("/var/lib/kiln-test/probe.py", PROBE),
    ];
    h.runcmd = vec![
        "echo \"KILN seed ok $(hostname) $(ip -4 -o addr show eth0 | awk '{print $4}')\" > /dev/ttyS0"
            .to_owned(),
        "setsid python3 /var/lib/kiln-test/serve.py </dev/null >/dev/null 2>&1 &".to_owned(),
        format!(
            "python3 /var/lib/kiln-test/probe.py {} && echo 'KILN done ok role=test' > /dev/ttyS0",
            peers.join(" ")
        ),
    ];
    h
}

fn pair(seed: SeedKind) {
    require_e2e();
    let image = guest_image();
    let tmp = tempfile::tempdir().unwrap();
    let out = fake_out(
        tmp.path(),
        "pair",
        &[
            host("alpha", 11, &["10.77.0.12"]),
            host("beta", 12, &["10.77.0.11"]),
        ],
    );
    let mut opts = BootOptions::new(&out, image);
    opts.seed = seed;
    opts.timeout = Duration::from_secs(6 * 60);
    opts.log_dir = Some(log_dir("pair"));
    let report = expect_boot(boot(&opts, &Progress::new()));
    for (name, ip, peer) in [
        ("alpha", "10.77.0.11", "beta"),
        ("beta", "10.77.0.12", "alpha"),
    ] {
        let h = report.host(name).unwrap();
        assert_eq!(h.phase, HostPhase::Ready);
        let steps: Vec<String> = h.markers.iter().map(ToString::to_string).collect();
        assert!(
            steps.contains(&format!("KILN seed ok {name} {ip}/24")),
            "{name}: the seed's network-config did not give eth0 its address: {steps:?}"
        );
        assert!(
            steps.iter().any(|s| s.ends_with(&format!("name={peer}"))),
            "{name} did not reach {peer}: {steps:?}"
        );
        assert!(
            steps.iter().any(|s| s.starts_with("KILN isolation ok")),
            "{steps:?}"
        );
    }
}

/// VFAT here; the lab test boots ISO seeds (the default).
#[test]
#[ignore = "VM test (about 2 min): run tests/e2e/run.sh"]
fn two_guests_with_vfat_seeds_reach_each_other_only() {
    pair(SeedKind::Vfat);
}
