//! The golden image boots, from its disk and from the network: `kiln image` of examples/golden,
//! whose cluster here has a second etcd member, etcd2. First the disk boots through the BIOS
//! (SeaBIOS, GRUB from the MBR and the BIOS boot partition) to its root file system. Then one
//! `kiln boot` runs both members side by side: etcd1 as a QEMU guest booting the image's qcow2
//! through UEFI (OVMF, GRUB from the EFI system partition) with its ISO seed, and etcd2 as a
//! bare machine (`--netboot`: no seed, an empty disk, QEMU's iPXE
//! ROM) that takes its lease, kernel, initrd, live root, seed, secrets and bundles from
//! `kiln serve --dhcp` on the private link. The two must form one healthy etcd cluster. Then a
//! restarted kiln serve (same state folder) refuses etcd2's used secrets URL.
//!
//! The image is cached outside the clone, keyed by what its bytes depend on (the lock, the
//! builder's sources and hooks): `kiln image` is reproducible (tests/it/golden.rs builds it
//! twice and compares), so a folder built from the same inputs holds the same bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::env::{kiln_bin, repo, require_e2e};

/// The member that boots from the network, added to examples/golden's one host.
const NET_HOST: &str = "\n[[host]]\nname = \"etcd2\"\nip = \"10.78.0.12\"\nmac = \"52:54:00:78:00:12\"\nroles = [\"etcd\"]\n";
/// etcd2's MAC as kiln serve's log writes it.
const NET_MAC: &str = "52-54-00-78-00-12";
/// etcd1's, which boots from its disk and so never asks kiln serve.
const DISK_MAC: &str = "52-54-00-78-00-11";
/// This machine on the hosts' link (a free address of examples/golden's network), where
/// kiln serve listens.
const SERVER: &str = "10.78.0.250";
const PORT: u16 = 8080;

/// examples/golden's cluster.toml in `dir`, reading the checkout's inputs and store, with
/// etcd2 (a second member: etcd's own check warns of the even count, which is all it is).
fn golden_in(dir: &Path) -> PathBuf {
    let r = repo();
    let text = fs::read_to_string(r.join("examples/golden/cluster.toml"))
        .unwrap()
        .replace(
            "[paths]\n",
            &format!(
                "[paths]\nvendor = \"{0}/examples/golden/vendor\"\nlock = \"{0}/examples/golden/kiln.lock\"\n",
                r.display()
            ),
        )
        .replace("\"../../", &format!("\"{}/", r.display()))
        + NET_HOST;
    let file = dir.join("cluster.toml");
    fs::write(&file, text).unwrap();
    file
}

/// The inputs the image's bytes depend on, hashed: the lock, cluster.toml's [image] (through
/// the lock's closure), the catalog, and the builder (kiln-golden, engine::golden).
fn image_key() -> String {
    let r = repo();
    let mut files = vec![
        r.join("examples/golden/kiln.lock"),
        r.join("catalog/catalog.toml"),
        r.join("crates/engine/src/golden.rs"),
        // The EFI system partition's FAT volume.
        r.join("crates/cloud-init-config/src/vfat.rs"),
        r.join("crates/cloud-init-config/src/fat_raw.rs"),
    ];
    for sub in ["crates/golden/src", "crates/golden/assets"] {
        let mut names: Vec<PathBuf> = fs::read_dir(r.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        files.extend(names);
    }
    let mut h = Sha256::new();
    for f in files {
        h.update(f.strip_prefix(&r).unwrap().to_string_lossy().as_bytes());
        h.update(fs::read(&f).unwrap());
    }
    hex::encode(h.finalize())[..16].to_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "boots two QEMU guests from the golden image, one over the network (3-4 min); run by tests/e2e/run.sh"]
fn golden_image_boots_one_member_from_its_disk_and_one_from_the_network() {
    require_e2e();
    let tmp = tempfile::tempdir().unwrap();
    let cluster = golden_in(tmp.path());
    let cache = PathBuf::from("/var/tmp/kiln-golden-image").join(image_key());
    let image = cache.join("golden-image");
    if !image.join("SHA256SUMS").is_file() {
        eprintln!("golden: kiln image into {}", cache.display());
        run(Command::new(kiln_bin())
            .args(["image"])
            .arg(&cluster)
            .arg("--out")
            .arg(&cache));
    }
    run(Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(&image));
    bios_boots_the_disk(&image, tmp.path());
    // Every seed form: kiln boot attaches etcd1's ISO and reads the final message from the
    // folder; kiln serve serves etcd2's from the folder.
    run(Command::new(kiln_bin())
        .args(["build", "--offline"])
        .arg(&cluster));
    // kiln serve serves the out folder itself: it refuses one holding files the build did not
    // list, and kiln boot writes its logs beside it (out/golden.boot/), not in it.
    let out = tmp.path().join("out/golden");
    let serve = format!(
        "{PORT}={} serve {} --listen {SERVER}:{PORT} --json --dhcp --netboot {} \
         --kernel-arg boot=live --kernel-arg fetch={{url}}/netboot/root.squashfs \
         --kernel-arg console=ttyS0",
        kiln_bin().display(),
        out.display(),
        image.display()
    );
    let started = std::time::Instant::now();
    let boot = Command::new(kiln_bin())
        .arg("boot")
        .arg(&cluster)
        .arg("--image")
        .arg(image.join("disk.qcow2"))
        .args(["--firmware", "uefi", "--disk-gb", "3"])
        .args(["--netboot", "etcd2", "--memory", "1536", "--timeout", "600"])
        .args(["--link-address", &format!("{SERVER}/24")])
        .args(["--link-service", &serve])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&boot.stdout);
    let stderr = String::from_utf8_lossy(&boot.stderr);
    eprintln!("{stdout}{stderr}");
    eprintln!("golden: kiln boot took {:.0?}", started.elapsed());
    let logs = kiln_boot::default_log_dir(&out);
    let access = fs::read_to_string(logs.join(format!("link-{PORT}.log"))).unwrap_or_default();
    assert!(
        boot.status.success(),
        "kiln boot failed; kiln serve's log:\n{access}"
    );
    let all = format!("{stdout}{stderr}");
    assert!(
        all.contains("etcd1        ready       cloud-init final")
            && all.contains("etcd2        ready       cloud-init final")
            && all.contains("golden: every host reached its role"),
        "{all}"
    );
    // Both members healthy: the check asks every member of the cluster.
    // Firmware and GRUB draw with bytes that are not UTF-8.
    let console = |host: &str| {
        String::from_utf8_lossy(&fs::read(logs.join(format!("{host}.log"))).unwrap()).into_owned()
    };
    for host in ["etcd1", "etcd2"] {
        let c = console(host);
        for marker in [
            "KILN health ok role=common,etcd",
            "KILN done ok role=common,etcd",
        ] {
            assert!(
                c.lines().any(|l| l.contains(marker)),
                "{host}: {marker}\n{c}"
            );
        }
        // The image's cloud-init configuration and the seed's user-data (the network seed's
        // too) make a configuration cloud-init's own schema accepts.
        assert_eq!(
            crate::env::invalid_cloud_config(&c),
            Vec::<&str>::new(),
            "{host}"
        );
    }

    // etcd1 came up through UEFI: OVMF started GRUB from the EFI system partition, which
    // loaded the kernel from the root partition with GRUB's own command line.
    let disk_console = console("etcd1");
    assert!(
        disk_console.contains("BdsDxe: starting Boot")
            && disk_console.contains("Debian GNU/Linux (kiln golden image)"),
        "{disk_console}"
    );
    assert!(
        disk_console
            .lines()
            .any(|l| l.contains("Command line: BOOT_IMAGE=/vmlinuz root=UUID=")),
        "{disk_console}"
    );

    // The 3 GiB overlay: cloud-init's growpart grew the root partition, and resize2fs the file
    // system, online (the kernel says so on the console).
    assert!(
        disk_console
            .lines()
            .any(|l| l.contains("EXT4-fs (vda3): resized filesystem to")),
        "the root file system was not grown:\n{disk_console}"
    );

    // etcd2 ran the kernel iPXE fetched, with live-boot's arguments and its network seed.
    let net_console = console("etcd2");
    let cmdline = net_console
        .lines()
        .find(|l| l.contains("Command line:"))
        .unwrap_or_else(|| panic!("no kernel command line on etcd2's console:\n{net_console}"));
    let seed_prefix = format!("ds=nocloud-net;s=http://{SERVER}:{PORT}/seed/");
    assert!(
        cmdline.contains("boot=live")
            && cmdline.contains(&format!(
                "fetch=http://{SERVER}:{PORT}/netboot/root.squashfs"
            )),
        "{cmdline}"
    );
    let seed_token: String = cmdline
        .split(&seed_prefix)
        .nth(1)
        .unwrap_or_else(|| panic!("no network seed in {cmdline}"))
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    assert_eq!(seed_token.len(), 64, "{cmdline}");

    // Its bundles came from kiln serve too (install.sh names each bundle's source).
    assert!(
        net_console.lines().any(
            |l| l.contains("KILN verify ok") && l.contains(&format!("@http://{SERVER}:{PORT}"))
        ),
        "{net_console}"
    );

    // kiln serve's access log: etcd2's lease, then by its address (and MAC, once its script
    // named it) the boot script, its own script, the netboot files, its seed, its secrets
    // (once), install.sh and the bundles; nothing for etcd1, which booted from its disk and seed.
    let events: Vec<serde_json::Value> = access
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let served = |path: &str| {
        events.iter().any(|e| {
            e["event"] == "access"
                && e["client"] == "10.78.0.12"
                && (e["mac"] == NET_MAC || path == "/boot.ipxe")
                && e["path"].as_str().is_some_and(|p| p.starts_with(path))
                && e["status"] == 200
                && e["complete"] == true
        })
    };
    for path in [
        "/boot.ipxe",
        &format!("/ipxe/{NET_MAC}"),
        "/netboot/vmlinuz",
        "/netboot/initrd.img",
        "/netboot/root.squashfs",
        &format!("/seed/{}…/meta-data", &seed_token[..8]),
        &format!("/seed/{}…/user-data", &seed_token[..8]),
        "/secrets/",
        "/install.sh",
        "/bundles/",
    ] {
        assert!(served(path), "etcd2 did not get {path}:\n{access}");
    }
    assert!(
        events.iter().any(|e| e["event"] == "dhcp"
            && e["message"].as_str().is_some_and(
                |m| m.contains("DHCPACK") && m.contains("10.78.0.12 52:54:00:78:00:12")
            )),
        "no lease for etcd2:\n{access}"
    );
    let secrets: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/secrets/"))
        })
        .collect();
    assert_eq!(secrets.len(), 1, "{access}");
    assert_eq!(secrets[0]["host"], "etcd2", "{access}");
    let secrets_prefix = secrets[0]["path"].as_str().unwrap()["/secrets/".len()..]
        .trim_end_matches('…')
        .to_owned();
    assert!(
        !events.iter().any(|e| e["event"] == "access"
            && (e["mac"] == DISK_MAC || e["host"] == "etcd1" || e["client"] == "10.78.0.11")),
        "etcd1 asked kiln serve:\n{access}"
    );

    replay_is_refused(&out, &image, &seed_token, &secrets_prefix);
}

/// The image's disk, on an overlay, with nothing else attached and QEMU's default firmware
/// (SeaBIOS): GRUB's BIOS path loads the kernel, which mounts the root partition and starts
/// systemd. Stopped there: the seedless system's role is not the point.
fn bios_boots_the_disk(image: &Path, tmp: &Path) {
    let overlay = tmp.join("bios.qcow2");
    run(Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(image.join("disk.qcow2"))
        .arg(&overlay));
    let log = crate::env::log_dir("golden").join("bios.log");
    let started = std::time::Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "1024",
            "-display",
            "none",
            "-nodefaults",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
        .args(["-boot", "c", "-no-reboot"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Stopped(child);
    let wanted = [
        // GRUB's menu entry (from grub.cfg, on the serial port it turns on).
        "Debian GNU/Linux (kiln golden image)",
        "Command line: BOOT_IMAGE=/vmlinuz root=UUID=",
        "EXT4-fs (vda3): mounted filesystem",
        "Welcome to \u{1b}[1mDebian GNU/Linux 12",
    ];
    let limit = crate::env::time_limit(std::time::Duration::from_secs(240));
    loop {
        let console = String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).into_owned();
        if wanted.iter().all(|w| console.contains(w)) {
            break;
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("QEMU exited ({status}) before the BIOS boot got through:\n{console}");
        }
        assert!(
            started.elapsed() < limit,
            "the BIOS boot did not show {wanted:?} within {limit:?}:\n{console}"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    eprintln!(
        "golden: BIOS, GRUB, kernel and systemd from the disk in {:.0?}",
        started.elapsed()
    );
    drop(child);
}

/// kiln serve started again on the same out folder (so the same state folder): etcd2's
/// secrets URL, replayed, gets 410 and a log line; its iPXE script now stops; a stranger's MAC
/// gets a message.
fn replay_is_refused(out: &Path, image: &Path, seed_token: &str, secrets_prefix: &str) {
    use std::io::BufRead as _;
    let mut child = Stopped(
        Command::new(kiln_bin())
            .arg("serve")
            .arg(out)
            .args(["--listen", "127.0.0.1:0", "--json", "--netboot"])
            .arg(image)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next_event = |what: &str| -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("kiln serve printed no {what}"));
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["event"] == what {
                return v;
            }
        }
    };
    let listening = next_event("listening");
    let addr = listening["address"].as_str().unwrap().to_owned();

    // The seed is still served (it holds the secrets URL, which is what a thief would replay).
    let (status, user_data) = get(&addr, &format!("/seed/{seed_token}/user-data"));
    assert_eq!(status, 200, "{user_data}");
    // The 64 hex digits the log showed the first 8 of.
    let token = user_data
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 64 && w.starts_with(secrets_prefix))
        .unwrap_or_else(|| panic!("no token {secrets_prefix}… in the user-data:\n{user_data}"))
        .to_owned();
    assert_eq!(next_event("access")["status"], 200);

    let (status, body) = get(&addr, &format!("/secrets/{token}"));
    assert_eq!(status, 410, "{body}");
    let refused = next_event("access");
    assert_eq!(refused["status"], 410, "{refused}");
    assert_eq!(refused["host"], "etcd2", "{refused}");
    assert!(
        refused["note"].as_str().is_some_and(|n| n
            .contains("refused: etcd2's one-time secrets URL was already used")
            && n.contains("by 10.78.0.12")),
        "{refused}"
    );
    let (status, script) = get(&addr, &format!("/ipxe/{NET_MAC}"));
    assert_eq!(status, 200);
    assert!(
        script.contains("etcd2 (52-54-00-78-00-12): its one-time secrets URL was used at")
            && script.contains("by 10.78.0.12."),
        "{script}"
    );
    assert!(!script.contains("kernel "), "{script}");
    // A MAC no host has gets a message and a log line, no seed or secrets URL.
    let (status, script) = get(&addr, "/ipxe/52-54-00-78-00-99");
    assert_eq!(status, 200);
    assert!(
        script.contains("kiln serve: no host of cluster golden has MAC 52-54-00-78-00-99.")
            && !script.contains("/seed/")
            && !script.contains("/secrets/"),
        "{script}"
    );
    let stranger = loop {
        let e = next_event("access");
        if e["path"] == "/ipxe/52-54-00-78-00-99" {
            break e;
        }
    };
    assert!(
        stranger["note"]
            .as_str()
            .is_some_and(|n| n
                .starts_with("unknown MAC 52-54-00-78-00-99: no host of cluster golden has it")),
        "{stranger}"
    );
}

/// A child stopped (SIGTERM, then waited for) when dropped, a failed assertion included.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, not yet waited for.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.1 GET of `path` from `addr`: the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}
