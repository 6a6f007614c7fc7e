//! `kiln serve`: a built out folder over HTTP for network boot; the status and the access log
//! on stdout, as text or JSON lines.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use kiln_engine::signatures::{KeySource, Signatures};
use kiln_serve::{Access, Issued};
use serde_json::json;

/// `kiln serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The out folder to serve (out/CLUSTER-NAME), verified first as `kiln verify` does.
    pub dir: PathBuf,
    /// Address and port to listen on; port 0 lets the OS choose (the bound address is printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Print the status and the access log as JSON lines.
    #[arg(long)]
    pub json: bool,
    /// A netboot set to serve under /netboot/: vmlinuz and initrd.img, booted by the hosts'
    /// iPXE scripts (without it, a known host's script stops with a message).
    #[arg(long, value_name = "DIR")]
    pub netboot: Option<PathBuf>,
    /// An extra kernel argument for the hosts' iPXE scripts (repeatable); `{url}` stands for this
    /// server's URL, e.g. `root=live:{url}/netboot/root.squashfs`.
    #[arg(long = "kernel-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub kernel_args: Vec<String>,
    /// Where the hosts' URL tokens and the used secrets URLs are kept across restarts
    /// [default: .kiln-serve-CLUSTER-NAME beside the out folder].
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// The public key the build must be signed by (PEM, the cluster's pki/signing.pub); without
    /// it the folder's own signing.pub is used, as `kiln verify` does.
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
    /// Give these hosts new seed and secrets URLs, forgetting that their secrets URL was used:
    /// to provision them again (comma-separated).
    #[arg(long, value_name = "HOST", value_delimiter = ',')]
    pub reissue: Vec<String>,
    /// Also serve DHCP, by dnsmasq (Debian package dnsmasq-base) run for the server's lifetime:
    /// each host of the build gets its MAC's static lease (its address from the build), iPXE
    /// clients the boot file http://ADDR:PORT/boot.ipxe, other MACs no answer. Needs --listen
    /// with this machine's IPv4 address on the hosts' link, and root.
    #[arg(long)]
    pub dhcp: bool,
    /// With --dhcp: also lease these addresses to MACs no host has (their iPXE then shows the
    /// unknown-MAC message).
    #[arg(long, value_name = "START-END", requires = "dhcp")]
    pub dhcp_range: Option<kiln_serve::DhcpRange>,
    /// With --dhcp: also serve iPXE over TFTP to firmware that is not iPXE (a plain PXE ROM):
    /// undionly.kpxe to BIOS, ipxe.efi to x86-64 UEFI, from --ipxe-dir; iPXE then asks again and
    /// boots the host's script.
    #[arg(long, requires = "dhcp")]
    pub tftp: bool,
    /// With --tftp: the folder holding undionly.kpxe and ipxe.efi.
    #[arg(long, value_name = "DIR", requires = "tftp", default_value = kiln_serve::dhcp::LOADERS_DIR)]
    pub ipxe_dir: PathBuf,
}

/// Verifies, listens and serves until the process is stopped.
pub fn run(a: &ServeArgs) -> Result<()> {
    let opts = kiln_serve::ServeOptions {
        dir: a.dir.clone(),
        key: a.key.clone(),
        state_dir: a
            .state
            .clone()
            .unwrap_or_else(|| kiln_serve::default_state_dir(&a.dir)),
        netboot: a.netboot.clone(),
        kernel_args: a.kernel_args.clone(),
        reissue: a.reissue.clone(),
        dhcp: a.dhcp.then(|| kiln_serve::DhcpRequest {
            address: match a.listen.ip() {
                IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
                _ => None,
            },
            range: a.dhcp_range,
            program: kiln_serve::dhcp::PROGRAM.into(),
            tftp: a.tftp.then(|| a.ipxe_dir.clone()),
        }),
    };
    // SIGINT, SIGTERM and SIGHUP stop the server (and its dnsmasq) in order: blocked here,
    // before any thread starts, and taken by one thread with sigwait.
    let signals = stop_signals()?;
    let p = kiln_serve::prepare(&opts)?;
    let m = &p.site.manifest;
    let hosts: Vec<&String> = m.hosts.keys().collect();
    let blobs = p.site.blobs.len();
    let (new, reissued): (Vec<&Issued>, Vec<&Issued>) =
        p.issued.iter().partition(|i| matches!(i, Issued::New(_)));
    let names = |v: &[&Issued]| -> Vec<String> {
        v.iter()
            .map(|i| match i {
                Issued::New(h) | Issued::Reissued(h) => h.clone(),
            })
            .collect()
    };
    let signatures = match &p.site.signatures {
        Signatures::Unsigned => "not signed".to_string(),
        Signatures::Verified {
            key: KeySource::Given(k),
            fingerprint,
            ..
        } => format!("signed by {} (sha256 {fingerprint})", k.display()),
        Signatures::Verified { fingerprint, .. } => format!(
            "signatures match the folder's own signing.pub (sha256 {fingerprint}; pass --key to prove who built it)"
        ),
    };
    let status = json!({
        "event": "listening",
        "dir": a.dir,
        "cluster": m.cluster,
        "build-id": m.build_id,
        "generation": m.generation,
        "hosts": hosts,
        "blobs": blobs,
        "signatures": signatures,
        "state": p.tokens.file(),
        "new-urls": names(&new),
        "reissued-urls": names(&reissued),
        "netboot": a.netboot,
    });
    let text_status = format!(
        "kiln serve: {} (cluster {}, build {}, generation {}): {} hosts, {blobs} files by digest; {signatures}\n\
         kiln serve: state in {} (new URLs: {}; reissued: {})",
        a.dir.display(),
        m.cluster,
        &m.build_id[..16.min(m.build_id.len())],
        m.generation,
        hosts.len(),
        p.tokens.file().display(),
        list(&names(&new)),
        list(&names(&reissued)),
    );
    let json_out = a.json;
    let dhcp = p.dhcp.clone();
    let running = p.start(a.listen, move |acc| print_access(acc, json_out))?;
    let url = format!("http://{}", running.local_addr());
    let dnsmasq = match &dhcp {
        None => None,
        Some(d) => match d.start(
            running.local_addr().port(),
            Box::new(move |line| print_dhcp(line, json_out)),
        ) {
            Ok(d) => Some(d),
            Err(e) => {
                let _ = running.stop();
                return Err(e.into());
            }
        },
    };
    let dhcp_status = match (&dhcp, &dnsmasq) {
        (Some(d), Some(m)) => json!({
            "pid": m.pid(),
            "config": m.config(),
            "boot-file": format!("{url}/boot.ipxe"),
            "leases": d.leases.iter().map(|l| json!({
                "host": l.host,
                "mac": l.mac.to_string(),
                "address": l.address.to_string(),
            })).collect::<Vec<_>>(),
            "range": d.options.range.map(|r| r.to_string()),
            "tftp-root": d.options.tftp.as_ref().map(|t| t.display().to_string()),
        }),
        _ => serde_json::Value::Null,
    };
    if a.json {
        let mut status = status;
        status["address"] = json!(running.local_addr().to_string());
        status["url"] = json!(url);
        status["dhcp"] = dhcp_status;
        println!("{status}");
    } else {
        println!("{text_status}\nkiln serve: listening on {url} (iPXE: chain {url}/boot.ipxe)");
        if let (Some(d), Some(m)) = (&dhcp, &dnsmasq) {
            let leases: Vec<String> = d
                .leases
                .iter()
                .map(|l| format!("{} {} ({})", l.host, l.address, l.mac))
                .collect();
            println!(
                "kiln serve: DHCP by dnsmasq (pid {}, {}): {}; other MACs: {}",
                m.pid(),
                m.config().display(),
                leases.join(", "),
                d.options
                    .range
                    .map_or("no answer".to_string(), |r| format!("addresses {r}")),
            );
            if let Some(t) = &d.options.tftp {
                println!(
                    "kiln serve: TFTP by dnsmasq from {}: iPXE for PXE firmware ({} to BIOS, {} to \
                     x86-64 UEFI)",
                    t.display(),
                    kiln_serve::dhcp::BIOS_LOADER,
                    kiln_serve::dhcp::UEFI_LOADER
                );
            }
        }
    }
    serve_until_stopped(running, dnsmasq, &signals)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread started after)
/// and takes them on a thread of its own; each arrives on the returned channel.
fn stop_signals() -> Result<mpsc::Receiver<i32>> {
    // SAFETY: sigset operations on a local set; pthread_sigmask changes this thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        anyhow::ensure!(
            rc == 0,
            "pthread_sigmask: {}",
            std::io::Error::from_raw_os_error(rc)
        );
        set
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: sigwait on a set of blocked signals, writing into a local.
        if unsafe { libc::sigwait(&set, &mut sig) } == 0 && tx.send(sig).is_err() {
            return;
        }
    });
    Ok(rx)
}

/// Serves until a stop signal (then stops dnsmasq and the server, in that order), the server
/// failing, or dnsmasq exiting (an error: the hosts have no DHCP).
fn serve_until_stopped(
    running: kiln_serve::Running,
    mut dnsmasq: Option<kiln_serve::Dnsmasq>,
    signals: &mpsc::Receiver<i32>,
) -> Result<()> {
    loop {
        if let Ok(sig) = signals.recv_timeout(Duration::from_millis(200)) {
            let name = match sig {
                libc::SIGINT => "SIGINT",
                libc::SIGHUP => "SIGHUP",
                _ => "SIGTERM",
            };
            if let Some(d) = dnsmasq.take() {
                d.stop();
            }
            running.stop()?;
            eprintln!("kiln serve: stopped ({name})");
            return Ok(());
        }
        if let Some(d) = &mut dnsmasq {
            if let Some(status) = d.try_wait() {
                let e = d.exited(status);
                running.stop()?;
                return Err(e.into());
            }
        }
        if running.is_finished() {
            if let Some(d) = dnsmasq.take() {
                d.stop();
            }
            running.wait()?;
            anyhow::bail!("the HTTP server stopped");
        }
    }
}

/// One line of dnsmasq's log: on stderr as text, on stdout as a JSON `dhcp` event.
fn print_dhcp(line: &str, json_out: bool) {
    // `dnsmasq-dhcp[1234]: DHCPACK(kiln0) …`: the program and pid add nothing here.
    use std::io::Write as _;
    let message = line.split_once("]: ").map_or(line, |(_, m)| m);
    // A closed output must not end the thread reading dnsmasq (nor, with it, dnsmasq's log).
    let _ = if json_out {
        writeln!(
            std::io::stdout().lock(),
            "{}",
            json!({"event": "dhcp", "message": message})
        )
    } else {
        writeln!(std::io::stderr().lock(), "dnsmasq: {message}")
    };
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// One access log line.
fn print_access(a: &Access, json_out: bool) {
    let secs = a
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let time = kiln_image::rfc3339(secs);
    let mac = a.mac.map(|m| m.hexhyp());
    if json_out {
        println!(
            "{}",
            json!({
                "event": "access",
                "time": time,
                "client": a.client.to_string(),
                "mac": mac,
                "host": a.host,
                "method": a.method,
                "path": a.path,
                "status": a.status,
                "bytes": a.bytes,
                "complete": a.complete,
                "note": a.note,
            })
        );
    } else {
        let mut line = format!(
            "{time} {} {} {} {} {} {}",
            a.client,
            mac.as_deref().unwrap_or("-"),
            a.method,
            a.path,
            a.status,
            a.bytes
        );
        if let Some(h) = &a.host {
            line.push_str(&format!(" host={h}"));
        }
        if !a.complete {
            line.push_str(" incomplete");
        }
        if let Some(n) = &a.note {
            line.push_str(&format!(" ({n})"));
        }
        println!("{line}");
    }
}
