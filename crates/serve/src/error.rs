//! Why `kiln serve` refuses to start or fails a request's bookkeeping.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop `kiln serve`; each names the folder, file, host or address.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The folder is a `kiln pull` folder: it has no `hosts/` (seeds, secrets) to serve.
    #[error(
        "{}: a `kiln pull` folder has no hosts/ (seeds and secrets never leave the build \
         machine): serve the build's own out/<cluster> folder",
        dir.display()
    )]
    Pulled {
        /// The folder.
        dir: PathBuf,
    },
    /// The folder fails `kiln verify`'s checks.
    #[error("{} fails verification, refusing to serve it: {source}", dir.display())]
    Verify {
        /// The folder.
        dir: PathBuf,
        /// What `kiln verify` found (boxed: it is large, and rare).
        #[source]
        source: Box<kiln_bundle::VerifyError>,
    },
    /// A signature of the folder does not hold.
    #[error("{}: signatures do not verify, refusing to serve it: {source}", dir.display())]
    Signatures {
        /// The folder.
        dir: PathBuf,
        /// What failed (boxed: it is large, and rare).
        #[source]
        source: Box<kiln_engine::signatures::SignatureCheckError>,
    },
    /// MANIFEST.json lacks an output a served file needs.
    #[error("{}: MANIFEST.json lists no output {path}", dir.display())]
    MissingOutput {
        /// The folder.
        dir: PathBuf,
        /// The output's path in the folder.
        path: String,
    },
    /// A host's MAC in MANIFEST.json is not a MAC address.
    #[error("{}: host {host} has MAC {mac:?} in MANIFEST.json, expected six hex octets", dir.display())]
    BadMac {
        /// The folder.
        dir: PathBuf,
        /// The host.
        host: String,
        /// What MANIFEST.json says.
        mac: String,
    },
    /// A host has no seed folder (the build was made without `--seed dir`).
    #[error(
        "{}: host {host} has no seed folder (its seed/ documents are what kiln serve hands \
         out): build with --seed including dir (the default)",
        dir.display()
    )]
    NoSeedFolder {
        /// The host's folder.
        dir: PathBuf,
        /// The host.
        host: String,
    },
    /// A host's user-data is not the cloud-config kiln writes.
    #[error("{}: not kiln's cloud-config user-data: {source}", file.display())]
    UserData {
        /// The user-data file.
        file: PathBuf,
        /// The YAML error (boxed: it is large).
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// A host's seed document could not be rendered again.
    #[error("host {host}: cannot render its network user-data: {source}")]
    Render {
        /// The host.
        host: String,
        /// The error (boxed: it is large).
        #[source]
        source: Box<cloud_init_config::Error>,
    },
    /// A file of the folder (or the netboot folder, or the state) cannot be read.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file changed since it was verified.
    #[error("{} changed since kiln serve verified it: sha256 {actual}, MANIFEST.json says {expected}", file.display())]
    Changed {
        /// The file.
        file: PathBuf,
        /// MANIFEST.json's digest.
        expected: String,
        /// The file's digest now.
        actual: String,
    },
    /// `--netboot` lacks a file the iPXE scripts name.
    #[error("netboot folder {}: no {name} (the iPXE scripts boot /netboot/vmlinuz and /netboot/initrd.img)", dir.display())]
    NetbootMissing {
        /// The folder.
        dir: PathBuf,
        /// The missing file.
        name: &'static str,
    },
    /// `--kernel-arg` holds what an iPXE `kernel` line cannot carry.
    #[error("kernel argument {arg:?}: expected one word without spaces, quotes, `$`, `#` or control characters")]
    BadKernelArg {
        /// The argument.
        arg: String,
    },
    /// The state file is not kiln serve's.
    #[error("{}: not a kiln serve state file ({reason}); move it away to start afresh (every host then gets new URLs)", file.display())]
    BadState {
        /// The state file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The state file cannot be written.
    #[error("cannot write {}: {source}", file.display())]
    WriteState {
        /// The state file.
        file: PathBuf,
        /// The error.
        #[source]
        source: kiln_fsio::Error,
    },
    /// The state folder cannot be created.
    #[error("cannot create the state folder {}: {source}", dir.display())]
    StateDir {
        /// The folder.
        dir: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `--reissue` names a host the build does not have.
    #[error("--reissue {host}: the build has no host {host} (hosts: {known})")]
    UnknownHost {
        /// The name given.
        host: String,
        /// The build's hosts.
        known: String,
    },
    /// The operating system's random generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
    /// The listen address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The server's runtime could not start or stopped with an error.
    #[error("the HTTP server's runtime failed: {source}")]
    Runtime {
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// `--dhcp` without an address of this machine to serve on.
    #[error(
        "--dhcp needs --listen with this machine's IPv4 address on the hosts' link, not {address}: \
         dnsmasq serves DHCP on the interface holding it, and the boot file URL names it"
    )]
    DhcpAddress {
        /// The address given.
        address: String,
    },
    /// A host cannot get a static lease.
    #[error("--dhcp: host {host}: {reason}")]
    DhcpHost {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// `--dhcp-range` does not fit the hosts' link.
    #[error("--dhcp-range {range}: {reason}")]
    DhcpRange {
        /// The range given.
        range: String,
        /// Why.
        reason: String,
    },
    /// `--tftp`'s folder lacks an iPXE loader.
    #[error(
        "--tftp: {} has no {}: install the Debian package {} (or give --ipxe-dir the folder \
         holding iPXE's undionly.kpxe and ipxe.efi)",
        dir.display(),
        missing.join(" and no "),
        crate::dhcp::LOADERS_PACKAGE
    )]
    TftpLoaders {
        /// The folder.
        dir: PathBuf,
        /// The loaders it lacks.
        missing: Vec<String>,
    },
    /// dnsmasq is not installed.
    #[error(
        "--dhcp runs {}, which is not installed (not found{}): install the Debian package {}",
        program.display(),
        if program.components().count() > 1 { "" } else { " on PATH" },
        crate::dhcp::PACKAGE
    )]
    DhcpProgram {
        /// The program looked for.
        program: PathBuf,
    },
    /// dnsmasq could not be started.
    #[error("cannot run {command}: {source}")]
    DhcpSpawn {
        /// The command line.
        command: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// dnsmasq failed before reporting its DHCP service.
    #[error("{command} failed to start ({status}); kiln serve does not serve without it. Its output:\n{output}")]
    DhcpStart {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its last lines.
        output: String,
    },
    /// dnsmasq exited while kiln serve ran: kiln serve stops.
    #[error("dnsmasq (pid {pid}, the hosts' DHCP) exited ({status}), so kiln serve stopped. Its last output:\n{output}")]
    DhcpExited {
        /// Its pid.
        pid: u32,
        /// How it ended.
        status: String,
        /// Its last lines.
        output: String,
    },
}
