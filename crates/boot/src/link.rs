//! The machine on the guests' private link: an address on the namespace's
//! bridge and services listening there (a registry or an HTTP server holding
//! the out folder, so seeds that carry no bundles can be tried before metal).
//!
//! The services run in the private namespace only: the link still has no
//! path outside the machine, and nothing in the machine's own namespace
//! listens on it.

use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::process::Stdio;
use std::str::FromStr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::BootError;
use crate::layout::Layout;
use crate::nspawn;
use crate::options::BootOptions;
use crate::process::{self, set_lifetime, spawn_error, Guard, Lifetime};

/// How long a service may take to accept connections.
const SERVICE_START: Duration = Duration::from_secs(30);

/// This machine's address on the private link, `ADDRESS/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddress {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length (1–32).
    pub prefix: u8,
}

impl FromStr for LinkAddress {
    type Err = LinkParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| LinkParseError(format!("{s:?}: {why}"));
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/PREFIX, e.g. 10.20.0.250/24"))?;
        let address: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("the address is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| (1..=32).contains(p))
            .ok_or_else(|| bad("the prefix is not a number from 1 to 32"))?;
        if address.is_unspecified() || address.is_multicast() || address.is_broadcast() {
            return Err(bad("not a host address"));
        }
        Ok(Self { address, prefix })
    }
}

impl fmt::Display for LinkAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// A program run on the link, `PORT=PROGRAM ARG…`: boot starts the hosts once
/// it accepts TCP connections on the link address's `PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkService {
    /// The port it listens on.
    pub port: u16,
    /// The program and its arguments (split on whitespace; no shell, so
    /// stopping it stops the program itself).
    pub argv: Vec<String>,
}

impl FromStr for LinkService {
    type Err = LinkParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| LinkParseError(format!("{s:?}: {why}"));
        let (port, command) = s.split_once('=').ok_or_else(|| {
            bad("expected PORT=COMMAND, e.g. 5000=docker-registry serve config.yml")
        })?;
        let port: u16 = port
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
        let argv: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
        if argv.is_empty() {
            return Err(bad("no command after `=`"));
        }
        Ok(Self { port, argv })
    }
}

impl fmt::Display for LinkService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.port, self.argv.join(" "))
    }
}

/// A `--link-address` or `--link-service` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LinkParseError(String);

/// Checks the link options against the hosts, before anything starts.
pub(crate) fn check(opts: &BootOptions, layout: &Layout) -> Result<(), BootError> {
    let bad = |reason: String| Err(BootError::LinkOption { reason });
    match &opts.link_address {
        None if !opts.link_services.is_empty() => bad(
            "link services need an address on the link: give --link-address ADDRESS/PREFIX".into(),
        ),
        None => Ok(()),
        Some(link) => {
            if let Some(host) = layout
                .hosts
                .iter()
                .find(|h| h.ip.parse::<Ipv4Addr>().ok() == Some(link.address))
            {
                return bad(format!(
                    "the link address {link} is host {}'s address; choose a free one",
                    host.name
                ));
            }
            let mut ports = std::collections::BTreeSet::new();
            for s in &opts.link_services {
                if !ports.insert(s.port) {
                    return bad(format!("two link services listen on port {}", s.port));
                }
            }
            Ok(())
        }
    }
}

/// Whether the options put the machine on the link (which needs the private namespace).
pub(crate) fn wanted(opts: &BootOptions) -> bool {
    opts.link_address.is_some()
}

/// Gives the bridge in the holder `pid`'s namespace the link address, starts
/// each service there (its output in `<log_dir>/link-<port>.log`) and waits
/// until each accepts connections. The returned guards stop them.
pub(crate) fn start(
    opts: &BootOptions,
    link: LinkAddress,
    holder: u32,
    log_dir: &Path,
    lifetime: Lifetime,
) -> Result<Vec<(String, Guard)>, BootError> {
    let mut add = nspawn::in_netns(&opts.tools.nsenter, holder, Path::new("ip"));
    add.args(["addr", "add", &link.to_string(), "dev", nspawn::BRIDGE]);
    process::run(add)?;
    let mut started = Vec::with_capacity(opts.link_services.len());
    for service in &opts.link_services {
        let log = log_dir.join(format!("link-{}.log", service.port));
        let out = File::create(&log).map_err(BootError::io("create", &log))?;
        let err = out.try_clone().map_err(BootError::io("open", &log))?;
        let mut cmd = nspawn::in_netns(&opts.tools.nsenter, holder, Path::new(&service.argv[0]));
        cmd.args(&service.argv[1..]);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        set_lifetime(&mut cmd, lifetime);
        let command = process::display(&cmd);
        let child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
        let mut guard = Guard::child(child, format!("link service {}", service.port));
        let addr = SocketAddr::from((link.address, service.port));
        let deadline = Instant::now() + SERVICE_START;
        loop {
            if connect_in(holder, addr).is_ok() {
                break;
            }
            let exited = guard.try_wait();
            if exited.is_some() || Instant::now() >= deadline {
                let status = match exited {
                    Some(s) => s.to_string(),
                    None => format!("not accepting connections on {addr} after {SERVICE_START:?}"),
                };
                guard.stop();
                return Err(BootError::Command {
                    command,
                    status,
                    stderr: process::tail_text(
                        &std::fs::read_to_string(&log).unwrap_or_default(),
                        2000,
                    ),
                });
            }
            sleep(Duration::from_millis(100));
        }
        tracing::info!(%addr, command = %command, "link service ready");
        started.push((service.to_string(), guard));
    }
    Ok(started)
}

/// One TCP connection to `addr` from inside the holder `pid`'s namespace
/// (a thread of its own enters it, so this process's namespace is untouched).
fn connect_in(holder: u32, addr: SocketAddr) -> std::io::Result<()> {
    let ns = format!("/proc/{holder}/ns/net");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&ns)?;
            // SAFETY: setns(2) on a descriptor we own; it changes only this thread's namespace,
            // and the thread ends right after the connection.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == -1 {
                return Err(std::io::Error::last_os_error());
            }
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map(drop)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the probe thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_address_parses_and_refuses_precisely() {
        let a: LinkAddress = "10.20.0.250/24".parse().unwrap();
        assert_eq!(a.address, Ipv4Addr::new(10, 20, 0, 250));
        assert_eq!(a.prefix, 24);
        assert_eq!(a.to_string(), "10.20.0.250/24");
        for (input, why) in [
            ("10.20.0.250", "expected ADDRESS/PREFIX"),
            ("10.20.0/24", "not an IPv4 address"),
            ("10.20.0.1/33", "from 1 to 32"),
            ("10.20.0.1/x", "from 1 to 32"),
            ("0.0.0.0/8", "not a host address"),
            ("224.0.0.1/4", "not a host address"),
        ] {
            let e = input.parse::<LinkAddress>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(input), "{input}: {e}");
        }
    }

    #[test]
    fn link_service_parses_and_refuses_precisely() {
        let s: LinkService = "5000=docker-registry serve /r/config.yml".parse().unwrap();
        assert_eq!(s.port, 5000);
        assert_eq!(s.argv, ["docker-registry", "serve", "/r/config.yml"]);
        assert_eq!(s.to_string(), "5000=docker-registry serve /r/config.yml");
        for (input, why) in [
            ("docker-registry serve", "expected PORT=COMMAND"),
            ("0=x", "from 1 to 65535"),
            ("70000=x", "from 1 to 65535"),
            ("80=  ", "no command"),
        ] {
            let e = input.parse::<LinkService>().unwrap_err().to_string();
            assert!(e.contains(why), "{input}: {e}");
        }
    }
}
