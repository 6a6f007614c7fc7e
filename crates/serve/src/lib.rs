//! kiln-serve: `kiln serve`, a built out folder over HTTP for network boot. One process serves
//! `/boot.ipxe` and each known MAC's iPXE script, each host's NoCloud seed under a random seed
//! URL, its secrets archive under a one-time URL (refused after its first download, across
//! restarts), and every bundle, delta bundle and install.sh by digest (`/blobs/sha256/<hex>`)
//! and by the plain names `bundle-sources = ["http://…"]` fetch. Read-only: the folder is
//! verified first and never written; the state (tokens, used URLs) lives in its own folder.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod error;
pub mod ipxe;
mod routes;
mod server;
pub mod site;
pub mod tokens;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
}

/// Verifies the folder, opens the netboot set and the state: everything that can refuse to
/// serve does so here, before anything listens.
pub fn prepare(opts: &ServeOptions) -> Result<Prepared, Error> {
    let site = Site::open(&opts.dir, opts.key.as_deref())?;
    let netboot = match &opts.netboot {
        Some(d) => Some(Netboot::open(d, opts.kernel_args.clone())?),
        None => None,
    };
    let (tokens, issued) = Tokens::open(&opts.state_dir, &site, &opts.reissue)?;
    Ok(Prepared {
        site,
        tokens,
        issued,
        netboot,
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
