//! Command-line arguments (clap types stay here and convert to library types).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Build verified, reproducible offline provisioning bundles for Kubernetes hosts.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// More output on stderr (-v: steps, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// kiln's commands, in the order of the flow.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate cluster.toml, its profiles, overlays and catalog; changes nothing.
    Check(ClusterArg),
    /// Show every bundle's files, units, images and every host's bundles; changes nothing.
    Plan(PlanArgs),
    /// Write every rendered file (no artifacts) into a folder, for review and tests.
    Render(RenderArgs),
    /// Pin every artifact to an exact source, sha256 and size in kiln.lock.
    Lock(LockArgs),
    /// Download every locked artifact into the vendor/ store, verified.
    Fetch(FetchArgs),
    /// Assemble role bundles, host archives, MANIFEST.json and SHA256SUMS.
    Build(BuildArgs),
    /// List the container images every bundle carries, with their source and pinned digest.
    Images(PlanArgs),
    /// Create or reuse the cluster PKI and list every host's certificates.
    Certs(CertsArgs),
    /// Boot the built hosts under QEMU from their seeds on a private network and follow them.
    Boot(BootArgs),
    /// Verify an out folder or a single bundle without extracting anything.
    Verify(VerifyArgs),
    /// Print or copy the SPDX SBOM of each role bundle of an out folder.
    Sbom(SbomArgs),
    /// Push an out folder's bundles, top-level files and images to an OCI registry (never hosts/).
    Push(crate::push::PushArgs),
    /// Pull a pushed build from an OCI registry into OUT/CLUSTER-NAME/ (no host secrets).
    Pull(crate::push::PullArgs),
    /// Compare two out folders of one cluster: per bundle and host, files, packages, images,
    /// certificates and units (exit 0 identical, 1 different, 2 error).
    Diff(crate::diff::DiffArgs),
    /// Serve an out folder over HTTP for network boot: iPXE scripts per MAC, NoCloud seeds,
    /// bundles by digest, each host's secrets under a one-time URL.
    Serve(crate::serve::ServeArgs),
    /// Build the cluster's golden OS image (kernel, initrd, ext4 disk raw and qcow2) offline
    /// from the lock's packages in vendor/, byte for byte reproducible; needs root.
    Image(crate::image::ImageArgs),
    /// Maintain the catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
}

/// The cluster description to work on.
#[derive(Debug, Args)]
pub struct ClusterArg {
    /// Path to cluster.toml.
    #[arg(default_value = "cluster.toml")]
    pub cluster: PathBuf,
}

/// `kiln plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `kiln lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Use only the pins table, apt's local index and local files; name what cannot be pinned.
    #[arg(long)]
    pub offline: bool,
    /// Pin the OS packages again from what the apt sources offer now (after an update
    /// superseded a pinned version); prints each version that changed.
    #[arg(long)]
    pub repin_packages: bool,
}

/// Network settings shared by fetch and build.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Parallel downloads.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Retries per URL on 5xx and resets (a stall or timeout moves to the next source).
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// Seconds without a byte from a source before the try ends as a stall [default:
    /// cluster.toml's fetch.idle-timeout-seconds, else 30].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: Option<u64>,
    /// Seconds one download may take over all its sources and retries [default:
    /// cluster.toml's fetch.deadline-seconds, else 3600].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub deadline: Option<u64>,
}

/// `kiln fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `kiln build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Out folder (results go to OUT/CLUSTER-NAME/); default: out/ beside cluster.toml.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Never fetch: fail, naming what the store lacks.
    #[arg(long)]
    pub offline: bool,
    /// Rebuild even when the out folder already holds this build.
    #[arg(long)]
    pub force: bool,
    /// Seed forms per host: any of iso, vfat, dir (comma-separated), or none.
    #[arg(long, default_value = "iso,vfat,dir")]
    pub seed: String,
    /// Test aid: the seed runs install.sh a second time, which must report `unchanged`.
    #[arg(long)]
    pub seed_rerun: bool,
    /// Allow replacing a missing or broken CA although certificates were issued from it.
    #[arg(long)]
    pub rotate_ca: bool,
    /// How each role bundle carries its container images: per-image (images/NAME.tar each) or
    /// combined (one images/ROLE.tar with all of them, each shared layer once).
    #[arg(long, value_enum, default_value_t = ImagesForm::PerImage)]
    pub images: ImagesForm,
    /// A base build (out/CLUSTER or a `kiln pull` folder, verified first): beside each role
    /// bundle that changed since it, write a delta bundle that hosts holding the base install from.
    #[arg(long, value_name = "BASE")]
    pub delta_from: Option<PathBuf>,
    #[command(flatten)]
    pub net: NetArgs,
}

/// `kiln build --images` (variants documented on the flag, keeping `--help` compact).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImagesForm {
    // One images/NAME.tar per image, named after its reference.
    PerImage,
    // One images/ROLE.tar per bundle holding all its images.
    Combined,
}

impl ImagesForm {
    /// The engine's option.
    pub fn to_lib(self) -> kiln_engine::images::ImageArchives {
        match self {
            ImagesForm::PerImage => kiln_engine::images::ImageArchives::PerImage,
            ImagesForm::Combined => kiln_engine::images::ImageArchives::Combined,
        }
    }
}

/// `kiln certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 when any certificate expires within DAYS days.
    #[arg(long, value_name = "DAYS")]
    pub check_expiry: Option<i64>,
    /// Allow replacing a missing or broken CA although certificates were issued from it.
    #[arg(long)]
    pub rotate_ca: bool,
}

/// `kiln verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// An out folder (out/CLUSTER-NAME) or one bundle .tar.gz.
    pub path: PathBuf,
    /// Out folder only: check every file's digest against SHA256SUMS without opening the
    /// archives (the quick check after copying; the default also checks every bundle's contents).
    #[arg(long)]
    pub digests: bool,
    /// Out folder only: check MANIFEST.json's signature and every host's BUNDLES signature with
    /// this public key (PEM, the cluster's pki/signing.pub). Only a key you hold proves who built
    /// the folder; without --key, a folder's own signing.pub is used, which shows consistency.
    #[arg(long, value_name = "PUB.pem")]
    pub key: Option<PathBuf>,
}

/// `kiln sbom`.
#[derive(Debug, Args)]
pub struct SbomArgs {
    /// An out folder (out/CLUSTER-NAME).
    pub out: PathBuf,
    /// Only this bundle (its id, ROLE-OS, as MANIFEST.json names it): print its SPDX JSON
    /// document (without --bundle and --output: list every bundle's SBOM).
    #[arg(long, value_name = "NAME")]
    pub bundle: Option<String>,
    /// Write the SBOMs (or --bundle's) into DIR as BUNDLE.spdx.json instead of printing.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// `kiln catalog …`.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Convert upstream checksum tables (kubespray's checksums YAML, the Kubernetes release
    /// sha512 TSV) into one catalog pins TOML.
    ImportChecksums {
        /// The tables, merged in order (a pin they disagree on is an error).
        #[arg(required = true, value_name = "TABLE")]
        tables: Vec<PathBuf>,
        /// Where to write the pins (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `kiln render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Folder to write into: `<bundle-id>/rootfs/…` and `hosts/<host>/rootfs/…`.
    #[arg(long)]
    pub out: PathBuf,
}

/// `kiln boot`.
#[derive(Debug, Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Base guest image (qcow2); vmlinuz and initrd.img are taken from beside it (not needed
    /// when every host boots with --netboot).
    #[arg(long, required_unless_present = "netboot")]
    pub image: Option<PathBuf>,
    /// How guests start the image: direct (QEMU loads vmlinuz and initrd.img), bios or uefi
    /// (the firmware boots the disk's GRUB: `kiln image` disks; uefi needs OVMF, Debian's
    /// ovmf), or auto: bios for a `kiln image` disk, direct for any other.
    #[arg(long, default_value = "auto", value_parser = ["auto", "direct", "bios", "uefi"])]
    pub firmware: String,
    /// Only these hosts (comma-separated); default every host.
    #[arg(long, value_delimiter = ',')]
    pub hosts: Option<Vec<String>>,
    /// The out folder given to `kiln build` (default: out/ beside cluster.toml).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Seed medium to attach: iso or vfat.
    #[arg(long, default_value = "iso")]
    pub seed: String,
    /// Give up on a host after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Guest memory in MiB (default: vagrant.json's per host).
    #[arg(long)]
    pub memory: Option<u32>,
    /// Each QEMU guest's disk in GiB, 2 to 4096 (cloud-init grows the root filesystem to it;
    /// default: the image's size).
    #[arg(long)]
    pub disk_gb: Option<u32>,
    /// Leave the guests running when done, and print how to stop them.
    #[arg(long)]
    pub keep: bool,
    /// Boot these hosts (comma-separated) as systemd-nspawn containers of the image's root tree
    /// (`rootfs` beside it) instead of QEMU guests, on the same private link: the machine's own
    /// kernel at native speed, for control-plane hosts that software emulation makes slow.
    #[arg(long, value_delimiter = ',')]
    pub containers: Vec<String>,
    /// Boot these hosts (comma-separated) from the network, as bare machines: QEMU guests with an
    /// empty disk (--disk-gb, default 2) and no kernel or seed, whose NIC's iPXE ROM asks DHCP
    /// for its boot file. Needs a --link-service that answers them on the link, e.g.
    /// `kiln serve --dhcp` (see "Network boot" in the README); give them at least 1536 MiB
    /// (--memory) to run the golden image's live system.
    #[arg(long, value_delimiter = ',', conflicts_with = "upgrade_to")]
    pub netboot: Vec<String>,
    /// This machine's address on the private link, ADDR/LEN (a free address of the
    /// cluster's network), for --link-service.
    #[arg(long, value_name = "ADDR/LEN")]
    pub link_address: Option<kiln_boot::LinkAddress>,
    /// Run CMD (PROGRAM ARG…) on the private link before the hosts start, and wait until it accepts
    /// connections on --link-address's PORT (repeatable; split on spaces, no shell): e.g. a
    /// registry or HTTP server that the seeds' `bundle-sources` name.
    #[arg(long, value_name = "PORT=CMD")]
    pub link_service: Vec<kiln_boot::LinkService>,
    /// Once every host is ready, upgrade them to the build in this out folder
    /// (`OUT/<cluster>`) in `kiln diff --plan`'s steps, then the unchanged hosts: each host is
    /// shut down and started again on its own disk with its new seed; a host that fails (or
    /// that install.sh rolls back) stops the upgrade.
    #[arg(long, value_name = "NEW_OUT")]
    pub upgrade_to: Option<PathBuf>,
}
