//! kiln-serve: `kiln serve`, a built out folder over HTTP for network boot. One process serves
//! `/boot.ipxe` and each known MAC's iPXE script, each host's NoCloud seed under a random seed
//! URL, its secrets archive under a one-time URL (refused after its first download, across
//! restarts), and every bundle, delta bundle and install.sh by digest (`/blobs/sha256/<hex>`)
//! and by the plain names `bundle-sources = ["http://…"]` fetch. Read-only: the folder is
//! verified first and never written; the state (tokens, used URLs) lives in its own folder.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod dhcp;
mod error;
pub mod ipxe;
mod routes;
mod server;
pub mod site;
pub mod tokens;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use dhcp::{DhcpOptions, DhcpRange, Dnsmasq};
pub use error::Error;
pub use ipxe::Netboot;
pub use server::{Access, Running};
pub use site::{Mac, Site};
pub use tokens::{Issued, Tokens};

/// What `kiln serve` is asked to do.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The out folder (`out/<cluster>`).
    pub dir: PathBuf,
    /// The public key the build must be signed by (`--key`); else the folder's own.
    pub key: Option<PathBuf>,
    /// Where the tokens and used URLs are kept; see [`default_state_dir`].
    pub state_dir: PathBuf,
    /// A netboot set: `vmlinuz`, `initrd.img` and what else the kernel arguments name.
    pub netboot: Option<PathBuf>,
    /// Extra kernel arguments (`{url}` is the server's base URL).
    pub kernel_args: Vec<String>,
    /// Hosts whose URLs are replaced by new ones (to provision them again).
    pub reissue: Vec<String>,
    /// DHCP for the hosts by dnsmasq (`--dhcp`), when asked for.
    pub dhcp: Option<DhcpRequest>,
}

/// What `--dhcp` asks for, before the server's port is known.
#[derive(Debug, Clone)]
pub struct DhcpRequest {
    /// The address kiln serve listens on (must be this machine's IPv4 address on the hosts'
    /// link); `None` when it listens on no single IPv4 address.
    pub address: Option<std::net::Ipv4Addr>,
    /// Addresses for MACs no host has.
    pub range: Option<DhcpRange>,
    /// The dnsmasq program (`dnsmasq`, found on `PATH`).
    pub program: PathBuf,
    /// The folder of iPXE's loaders to serve over TFTP (`--tftp`); `None`: no TFTP.
    pub tftp: Option<PathBuf>,
}

/// DHCP checked and ready to start once the server listens.
#[derive(Debug, Clone)]
pub struct PreparedDhcp {
    /// The dnsmasq program, found.
    pub program: PathBuf,
    /// The static leases.
    pub leases: Vec<dhcp::Lease>,
    /// Its options (the port is set at start).
    pub options: DhcpOptions,
    /// Where its configuration and leases go.
    pub state_dir: PathBuf,
}

impl PreparedDhcp {
    /// Writes the configuration for a server on `port` and starts dnsmasq; `log` gets each
    /// line dnsmasq prints.
    pub fn start(&self, port: u16, log: Box<dyn Fn(&str) + Send>) -> Result<Dnsmasq, Error> {
        let opts = DhcpOptions {
            port,
            ..self.options.clone()
        };
        let state_dir = std::path::absolute(&self.state_dir).map_err(|source| Error::StateDir {
            dir: self.state_dir.clone(),
            source,
        })?;
        let config = dhcp::config(&opts, &self.leases, &state_dir)?;
        Dnsmasq::start(&self.program, &state_dir, &config, log)
    }
}

/// `kiln serve`'s default state folder for `dir`: `.kiln-serve-<cluster>` beside it, outside
/// the out folder (which a rebuild replaces whole) yet found again by the next start.
pub fn default_state_dir(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    dir.parent()
        .unwrap_or(Path::new("."))
        .join(format!(".kiln-serve-{name}"))
}

/// A verified build with its tokens, ready to listen.
#[derive(Debug)]
pub struct Prepared {
    /// The build.
    pub site: Site,
    /// Its hosts' tokens.
    pub tokens: Tokens,
    /// Hosts that got new tokens at this start.
    pub issued: Vec<Issued>,
    /// The netboot set, when given.
    pub netboot: Option<Netboot>,
    /// DHCP, when asked for: checked, not started.
    pub dhcp: Option<PreparedDhcp>,
}

/// Verifies the folder, opens the netboot set and the state: everything that can refuse to
/// serve does so here, before anything listens.
pub fn prepare(opts: &ServeOptions) -> Result<Prepared, Error> {
    let site = Site::open(&opts.dir, opts.key.as_deref())?;
    let netboot = match &opts.netboot {
        Some(d) => Some(Netboot::open(d, opts.kernel_args.clone())?),
        None => None,
    };
    // DHCP is checked before the state is touched: a refusal changes nothing on disk.
    let dhcp = match &opts.dhcp {
        Some(d) => Some(prepare_dhcp(d, &site, &opts.state_dir)?),
        None => None,
    };
    let (tokens, issued) = Tokens::open(&opts.state_dir, &site, &opts.reissue)?;
    Ok(Prepared {
        site,
        tokens,
        issued,
        netboot,
        dhcp,
    })
}

fn prepare_dhcp(d: &DhcpRequest, site: &Site, state_dir: &Path) -> Result<PreparedDhcp, Error> {
    let address = d.address.ok_or_else(|| Error::DhcpAddress {
        address: "an address of no single IPv4 interface".into(),
    })?;
    let tftp = d.tftp.as_deref().map(dhcp::loaders_dir).transpose()?;
    let options = DhcpOptions {
        address,
        port: 0,
        range: d.range,
        tftp,
    };
    let leases = dhcp::leases(site)?;
    // Renders once to check the hosts and the range against the address.
    dhcp::config(&options, &leases, state_dir)?;
    Ok(PreparedDhcp {
        program: dhcp::find_program(&d.program)?,
        leases,
        options,
        state_dir: state_dir.to_owned(),
    })
}

impl Prepared {
    /// Listens on `listen` and serves on a thread of its own; `log` gets one [`Access`] per
    /// request, when its response is done.
    pub fn start(
        self,
        listen: SocketAddr,
        log: impl Fn(&Access) + Send + Sync + 'static,
    ) -> Result<Running, Error> {
        let shared = server::Shared::new(self.site, self.tokens, self.netboot, Box::new(log));
        server::start(shared, listen)
    }
}
