//! DHCP for iPXE (`kiln serve --dhcp`): a dnsmasq configuration written from the build's hosts
//! (one static lease per host: its MAC and address, as the plan gave them to its seed), and
//! dnsmasq run as a child for the server's lifetime, DHCP only (`port=0`: no DNS).
//!
//! iPXE clients (user class `iPXE`, or option 175) get `http://<address>:<port>/boot.ipxe` as
//! their boot file; MACs no host has get no answer, or an address from `--dhcp-range` when one
//! is given (and then the unknown-MAC script). With `--tftp`, firmware that is not iPXE (a
//! plain PXE ROM) gets iPXE itself over dnsmasq's TFTP first: `undionly.kpxe` for BIOS,
//! `ipxe.efi` for x86-64 UEFI (client architecture 7 or 9), from Debian's `ipxe` package; once
//! loaded, iPXE asks again and gets the script.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_init_config::NetworkConfig;

use crate::site::{Mac, Site};
use crate::Error;

/// The configuration's name in the state folder.
pub const CONFIG_FILE: &str = "dnsmasq.conf";
/// dnsmasq's lease database in the state folder.
pub const LEASE_FILE: &str = "dnsmasq.leases";
/// The program `--dhcp` runs.
pub const PROGRAM: &str = "dnsmasq";
/// The Debian package that installs it (the `dnsmasq` package adds a system-wide DNS service
/// started at installation, which kiln does not want).
pub const PACKAGE: &str = "dnsmasq-base";
/// The Debian package holding the iPXE loaders `--tftp` serves.
pub const LOADERS_PACKAGE: &str = "ipxe";
/// Where that package puts them.
pub const LOADERS_DIR: &str = "/usr/lib/ipxe";
/// iPXE for BIOS PXE ROMs (chain-loads over the ROM's UNDI driver).
pub const BIOS_LOADER: &str = "undionly.kpxe";
/// iPXE for x86-64 UEFI firmware.
pub const UEFI_LOADER: &str = "ipxe.efi";
/// How long a lease lasts (a host boots from the network once, then runs from its seed's
/// static network configuration).
const LEASE: &str = "1h";
/// How long dnsmasq may take to report its DHCP service.
const START: Duration = Duration::from_secs(10);
/// Lines of dnsmasq's output kept for an error message.
const TAIL: usize = 20;

/// An inclusive range of addresses leased to MACs no host has: `START-END`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpRange {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

impl FromStr for DhcpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{s:?}: {why}");
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| bad("expected START-END, e.g. 10.77.0.100-10.77.0.149"))?;
        let parse = |t: &str| {
            t.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| bad(&format!("{t:?} is not an IPv4 address")))
        };
        let (start, end) = (parse(a)?, parse(b)?);
        if start > end {
            return Err(bad("the first address comes after the last"));
        }
        Ok(DhcpRange { start, end })
    }
}

impl fmt::Display for DhcpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// What `--dhcp` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpOptions {
    /// This machine's address on the provisioning link: dnsmasq serves the interface holding it,
    /// and the boot file URL names it.
    pub address: Ipv4Addr,
    /// The HTTP port the boot file URL names.
    pub port: u16,
    /// Addresses for MACs no host has; `None`: dnsmasq does not answer them.
    pub range: Option<DhcpRange>,
    /// The folder of iPXE's loaders dnsmasq serves over TFTP to firmware that is not iPXE;
    /// `None`: no TFTP.
    pub tftp: Option<PathBuf>,
}

/// The folder `--tftp` serves, made absolute (dnsmasq runs elsewhere), once it is checked to
/// hold both iPXE loaders.
pub fn loaders_dir(dir: &Path) -> Result<PathBuf, Error> {
    let missing: Vec<String> = [BIOS_LOADER, UEFI_LOADER]
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(|f| (*f).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(Error::TftpLoaders {
            dir: dir.to_owned(),
            missing,
        });
    }
    std::path::absolute(dir).map_err(|source| Error::Read {
        file: dir.to_owned(),
        source,
    })
}

/// One host's static lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Host name (sent as DHCP's host name).
    pub host: String,
    /// Its MAC.
    pub mac: Mac,
    /// Its address.
    pub address: Ipv4Addr,
    /// The prefix length of its address in its network-config.
    pub prefix: u8,
}

/// The static leases of every host of `site`: the address MANIFEST.json records for it, with
/// the prefix its seed's network-config gives that address.
pub fn leases(site: &Site) -> Result<Vec<Lease>, Error> {
    let mut out = Vec::new();
    for (name, info) in &site.manifest.hosts {
        let host = &site.hosts[name];
        let bad = |reason: String| Error::DhcpHost {
            host: name.clone(),
            reason,
        };
        let address: Ipv4Addr = info.ip.parse().map_err(|_| {
            bad(format!(
                "its address {:?} in MANIFEST.json is not an IPv4 address",
                info.ip
            ))
        })?;
        let doc = host.network_config.as_deref().ok_or_else(|| {
            bad("its seed has no network-config (its address's prefix comes from there)".into())
        })?;
        let net: NetworkConfig = serde_saphyr::from_str(&String::from_utf8_lossy(doc))
            .map_err(|e| bad(format!("its seed's network-config does not parse: {e}")))?;
        let prefix = net
            .ethernets
            .values()
            .flat_map(|e| &e.addresses)
            .find_map(|cidr| {
                let (a, p) = cidr.split_once('/')?;
                (a.parse::<Ipv4Addr>().ok()? == address).then(|| p.parse::<u8>().ok())?
            })
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| {
                bad(format!(
                    "its seed's network-config has no address {address}/PREFIX"
                ))
            })?;
        out.push(Lease {
            host: name.clone(),
            mac: host.mac,
            address,
            prefix,
        });
    }
    Ok(out)
}

fn netmask(prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0))
}

fn network(a: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) & u32::from(netmask(prefix)))
}

/// dnsmasq's configuration for `leases`: checks that every host and the range are on the link
/// of `opts.address` (dnsmasq serves only directly connected subnets), then renders it.
/// `state_dir` holds the lease database.
pub fn config(opts: &DhcpOptions, leases: &[Lease], state_dir: &Path) -> Result<String, Error> {
    let server = opts.address;
    if server.is_unspecified() || server.is_loopback() || server.is_multicast() {
        return Err(Error::DhcpAddress {
            address: server.to_string(),
        });
    }
    // Each subnet the hosts are on, by its network address and prefix.
    let mut subnets: BTreeMap<(Ipv4Addr, u8), Vec<&str>> = BTreeMap::new();
    for l in leases {
        if network(l.address, l.prefix) != network(server, l.prefix) {
            return Err(Error::DhcpHost {
                host: l.host.clone(),
                reason: format!(
                    "its address {}/{} is not on the link of the DHCP server's address {server} \
                     (dnsmasq leases addresses only on the link it serves): listen on this \
                     machine's address on the hosts' network",
                    l.address, l.prefix
                ),
            });
        }
        if l.address == server {
            return Err(Error::DhcpHost {
                host: l.host.clone(),
                reason: format!("its address {} is the DHCP server's own", l.address),
            });
        }
        subnets
            .entry((network(l.address, l.prefix), l.prefix))
            .or_default()
            .push(&l.host);
    }
    if let Some(r) = opts.range {
        let (net, prefix) = subnets
            .keys()
            .next()
            .copied()
            .unwrap_or((network(server, 24), 24));
        for a in [r.start, r.end] {
            if network(a, prefix) != net {
                return Err(Error::DhcpRange {
                    range: r.to_string(),
                    reason: format!("{a} is not on the hosts' link {net}/{prefix}"),
                });
            }
        }
        if r.start <= server && server <= r.end {
            return Err(Error::DhcpRange {
                range: r.to_string(),
                reason: format!("it holds the server's own address {server}"),
            });
        }
        if let Some(l) = leases
            .iter()
            .find(|l| r.start <= l.address && l.address <= r.end)
        {
            return Err(Error::DhcpRange {
                range: r.to_string(),
                reason: format!("it holds host {}'s address {}", l.host, l.address),
            });
        }
    }
    let mut c = String::new();
    let mut line = |s: String| {
        c.push_str(&s);
        c.push('\n');
    };
    line("# Written by kiln serve --dhcp; rewritten at each start.".into());
    line("# DHCP only: no DNS.".into());
    line("port=0".into());
    line(format!("listen-address={server}"));
    line("bind-interfaces".into());
    line("no-resolv".into());
    line("no-hosts".into());
    line(format!(
        "dhcp-leasefile={}",
        state_dir.join(LEASE_FILE).display()
    ));
    line("# No default route and no DNS server: iPXE needs neither on its own link.".into());
    line("dhcp-option=option:router".into());
    line("dhcp-option=option:dns-server".into());
    for ((net, prefix), hosts) in &subnets {
        line(format!("# hosts {}", hosts.join(", ")));
        line(format!(
            "dhcp-range=set:kiln,{net},static,{},{LEASE}",
            netmask(*prefix)
        ));
    }
    match opts.range {
        Some(r) => {
            let prefix = subnets.keys().next().map_or(24, |k| k.1);
            line(
                "# MACs no host has: an address from --dhcp-range (and the unknown-MAC script)."
                    .into(),
            );
            line(format!(
                "dhcp-range=set:kiln,{},{},{},{LEASE}",
                r.start,
                r.end,
                netmask(prefix)
            ));
        }
        None => {
            line("# MACs no host has: no answer.".into());
            line("dhcp-ignore=tag:!known".into());
        }
    }
    for l in leases {
        line(format!(
            "dhcp-host={},{},{},{LEASE}",
            l.mac, l.address, l.host
        ));
    }
    line("# iPXE (user class iPXE, or option 175) boots kiln serve's script.".into());
    line("dhcp-userclass=set:ipxe,iPXE".into());
    line("dhcp-match=set:ipxe,175".into());
    line("# iPXE's no-pxedhcp: do not wait for a ProxyDHCP offer.".into());
    line("dhcp-option=tag:ipxe,encap:175,176,1b".into());
    line(format!(
        "dhcp-boot=tag:ipxe,http://{server}:{}/boot.ipxe",
        opts.port
    ));
    if let Some(dir) = &opts.tftp {
        line(
            "# Firmware that is not iPXE loads iPXE over TFTP first (read-only, this folder only)."
                .into(),
        );
        line("enable-tftp".into());
        line(format!("tftp-root={}", dir.display()));
        line("dhcp-match=set:efi64,option:client-arch,7".into());
        line("dhcp-match=set:efi64,option:client-arch,9".into());
        line(format!(
            "dhcp-boot=tag:!ipxe,tag:efi64,{UEFI_LOADER},,{server}"
        ));
        line(format!(
            "dhcp-boot=tag:!ipxe,tag:!efi64,{BIOS_LOADER},,{server}"
        ));
    }
    Ok(c)
}

/// `program` as `Command` would find it: itself when it holds a `/`, else the first executable
/// of that name on `PATH`.
pub fn find_program(program: &Path) -> Result<PathBuf, Error> {
    kiln_fsio::find_executable(program, &[]).ok_or_else(|| Error::DhcpProgram {
        program: program.to_owned(),
    })
}

/// A running dnsmasq; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Dnsmasq {
    child: Child,
    command: String,
    config: PathBuf,
    tail: Arc<Mutex<VecDeque<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for Dnsmasq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dnsmasq")
            .field("pid", &self.child.id())
            .field("config", &self.config)
            .finish()
    }
}

impl Dnsmasq {
    /// Writes `config` to `<state_dir>/dnsmasq.conf` (atomically) and starts `program` on it in
    /// the foreground, logging to its standard error, which a thread reads: each line goes to
    /// `log`. Returns once dnsmasq reports its DHCP service; fails with its output if it exits
    /// first or says nothing within 10 s.
    pub fn start(
        program: &Path,
        state_dir: &Path,
        config: &str,
        log: Box<dyn Fn(&str) + Send>,
    ) -> Result<Dnsmasq, Error> {
        // Absolute: dnsmasq reads its files from the folder it runs in, which may change.
        let state_dir = &std::path::absolute(state_dir).map_err(|source| Error::StateDir {
            dir: state_dir.to_owned(),
            source,
        })?;
        let file = state_dir.join(CONFIG_FILE);
        std::fs::create_dir_all(state_dir).map_err(|source| Error::StateDir {
            dir: state_dir.to_owned(),
            source,
        })?;
        kiln_fsio::write_atomic(&file, config.as_bytes(), 0o644).map_err(|source| {
            Error::WriteState {
                file: file.clone(),
                source,
            }
        })?;
        let mut cmd = Command::new(program);
        cmd.arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", file.display()))
            .arg("--log-facility=-")
            // No pid file: kiln serve holds the child.
            .arg("--pid-file")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe and touches only the child. The parent-death signal
        // stops dnsmasq if kiln serve dies without stopping it, as long as dnsmasq keeps its
        // credentials (dropping to its own user clears it; kiln serve stops it on SIGTERM/INT).
        // A caller that takes its stop signals with sigwait blocks them, and a child inherits
        // the mask: dnsmasq must get its SIGTERM.
        unsafe {
            cmd.pre_exec(|| {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                if libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0
                    || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let command = format!(
            "{} --keep-in-foreground --conf-file={} --log-facility=- --pid-file",
            program.display(),
            file.display()
        );
        let mut child = cmd.spawn().map_err(|source| Error::DhcpSpawn {
            command: command.clone(),
            source,
        })?;
        let stderr = child.stderr.take().expect("piped stderr");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let t = tail.clone();
        let reader = std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log(&line);
                // dnsmasq-dhcp[PID]: DHCP, static leases only on 10.77.0.0, lease time 1h
                if line.contains(": DHCP, ") {
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                }
                let mut t = crate::server::lock(&t);
                t.push_back(line);
                if t.len() > TAIL {
                    t.pop_front();
                }
            }
        });
        let mut d = Dnsmasq {
            child,
            command,
            config: file,
            tail,
            reader: Some(reader),
        };
        let deadline = Instant::now() + START;
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(()) => return Ok(d),
                Err(mpsc::RecvTimeoutError::Disconnected)
                | Err(mpsc::RecvTimeoutError::Timeout)
                    if d.child.try_wait().ok().flatten().is_some() =>
                {
                    let status = d
                        .child
                        .wait()
                        .map_or_else(|e| e.to_string(), |s| s.to_string());
                    return Err(Error::DhcpStart {
                        command: d.command.clone(),
                        status,
                        output: d.output(),
                    });
                }
                Err(_) if Instant::now() >= deadline => {
                    d.kill();
                    return Err(Error::DhcpStart {
                        command: d.command.clone(),
                        status: format!("no DHCP service reported within {START:?}"),
                        output: d.output(),
                    });
                }
                // Its output closed before it exited: wait for the exit without spinning.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// dnsmasq's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file it runs on.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Whether it exited, and how; `Some` only once.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The error for a dnsmasq that exited with `status` while kiln serve ran.
    pub fn exited(&mut self, status: ExitStatus) -> Error {
        Error::DhcpExited {
            pid: self.child.id(),
            status: status.to_string(),
            output: self.output(),
        }
    }

    /// The last lines it printed (all of them once it exited).
    fn output(&mut self) -> String {
        if self.child.try_wait().ok().flatten().is_some() {
            if let Some(r) = self.reader.take() {
                let _ = r.join();
            }
        }
        let t = crate::server::lock(&self.tail);
        t.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SIGTERM first: dnsmasq removes nothing on disk, but exits cleanly.
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops it (SIGTERM, then SIGKILL after 3 s).
    pub fn stop(mut self) {
        self.kill();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host with MAC `52:54:00:77:00:<mac>` and address `10.77.0.<ip>`.
    fn lease(host: &str, mac: u8, ip: u8, prefix: u8) -> Lease {
        Lease {
            host: host.into(),
            mac: Mac([0x52, 0x54, 0, 0x77, 0, mac]),
            address: Ipv4Addr::new(10, 77, 0, ip),
            prefix,
        }
    }

    fn opts(range: Option<&str>) -> DhcpOptions {
        DhcpOptions {
            address: Ipv4Addr::new(10, 77, 0, 250),
            port: 8080,
            range: range.map(|r| r.parse().unwrap()),
            tftp: None,
        }
    }

    #[test]
    fn the_config_leases_each_host_its_address_and_boots_ipxe_from_kiln_serve() {
        let leases = [lease("etcd1", 0x11, 11, 24), lease("lb1", 0x21, 21, 24)];
        let c = config(&opts(None), &leases, Path::new("/state")).unwrap();
        for want in [
            "port=0\n",
            "listen-address=10.77.0.250\n",
            "dhcp-leasefile=/state/dnsmasq.leases\n",
            "dhcp-range=set:kiln,10.77.0.0,static,255.255.255.0,1h\n",
            "dhcp-ignore=tag:!known\n",
            "dhcp-host=52:54:00:77:00:11,10.77.0.11,etcd1,1h\n",
            "dhcp-host=52:54:00:77:00:21,10.77.0.21,lb1,1h\n",
            "dhcp-boot=tag:ipxe,http://10.77.0.250:8080/boot.ipxe\n",
        ] {
            assert!(c.contains(want), "{want}\n{c}");
        }
        assert_eq!(c.matches("dhcp-range=").count(), 1, "{c}");
        let c = config(
            &opts(Some("10.77.0.100-10.77.0.109")),
            &leases,
            Path::new("/s"),
        )
        .unwrap();
        assert!(
            c.contains("dhcp-range=set:kiln,10.77.0.100,10.77.0.109,255.255.255.0,1h\n"),
            "{c}"
        );
        assert!(!c.contains("dhcp-ignore"), "{c}");
        assert!(!c.contains("tftp"), "{c}");
    }

    #[test]
    fn tftp_gives_firmware_that_is_not_ipxe_the_loader_for_its_architecture() {
        let o = DhcpOptions {
            tftp: Some(PathBuf::from("/usr/lib/ipxe")),
            ..opts(None)
        };
        let c = config(&o, &[lease("etcd1", 0x11, 11, 24)], Path::new("/s")).unwrap();
        for want in [
            "enable-tftp\n",
            "tftp-root=/usr/lib/ipxe\n",
            "dhcp-match=set:efi64,option:client-arch,7\n",
            "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi,,10.77.0.250\n",
            "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,10.77.0.250\n",
            "dhcp-boot=tag:ipxe,http://10.77.0.250:8080/boot.ipxe\n",
        ] {
            assert!(c.contains(want), "{want}\n{c}");
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BIOS_LOADER), b"x").unwrap();
        let e = loaders_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("has no ipxe.efi: install the Debian package ipxe"),
            "{e}"
        );
        std::fs::write(dir.path().join(UEFI_LOADER), b"x").unwrap();
        assert_eq!(loaders_dir(dir.path()).unwrap(), dir.path());
    }

    #[test]
    fn hosts_and_ranges_off_the_server_s_link_are_refused_precisely() {
        let far = Lease {
            address: Ipv4Addr::new(10, 78, 0, 11),
            ..lease("etcd1", 0x11, 11, 24)
        };
        let e = config(&opts(None), &[far], Path::new("/s"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("host etcd1")
                && e.contains(
                    "10.78.0.11/24 is not on the link of the DHCP server's address 10.77.0.250"
                ),
            "{e}"
        );
        let same = lease("etcd1", 0x11, 250, 24);
        let e = config(&opts(None), &[same], Path::new("/s"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is the DHCP server's own"), "{e}");
        let leases = [lease("etcd1", 0x11, 11, 24)];
        for (range, why) in [
            (
                "10.77.1.1-10.77.1.9",
                "10.77.1.1 is not on the hosts' link 10.77.0.0/24",
            ),
            (
                "10.77.0.240-10.77.0.254",
                "the server's own address 10.77.0.250",
            ),
            ("10.77.0.10-10.77.0.20", "host etcd1's address 10.77.0.11"),
        ] {
            let e = config(&opts(Some(range)), &leases, Path::new("/s"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(range) && e.contains(why), "{range}: {e}");
        }
        for addr in [Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST] {
            let o = DhcpOptions {
                address: addr,
                ..opts(None)
            };
            let e = config(&o, &leases, Path::new("/s"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("--dhcp needs --listen"), "{e}");
        }
    }

    #[test]
    fn ranges_parse_and_refuse_precisely() {
        let r: DhcpRange = "10.0.0.5-10.0.0.9".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.5-10.0.0.9");
        for (bad, why) in [
            ("10.0.0.5", "expected START-END"),
            ("10.0.0.5-x", "\"x\" is not an IPv4 address"),
            ("10.0.0.9-10.0.0.5", "comes after"),
        ] {
            let e = bad.parse::<DhcpRange>().unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn a_missing_program_names_the_package() {
        let e = find_program(Path::new("/nonexistent/dnsmasq"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/nonexistent/dnsmasq") && e.contains("dnsmasq-base"),
            "{e}"
        );
    }
}
