//! What to boot and how: [`BootOptions`] and its parts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::link::{LinkAddress, LinkService};

/// Which seed image each guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeedKind {
    /// `cidata.iso` (ISO 9660), the `seed_iso` of `vagrant.json`.
    #[default]
    Iso,
    /// `cidata.img` (VFAT), the `seed_img` of `vagrant.json`.
    Vfat,
}

impl SeedKind {
    /// `iso` or `vfat`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Iso => "iso",
            Self::Vfat => "vfat",
        }
    }
}

/// A seed medium other than `iso` and `vfat`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown seed medium {0:?}; expected iso or vfat")]
pub struct UnknownSeedKind(pub String);

impl std::str::FromStr for SeedKind {
    type Err = UnknownSeedKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "iso" => Ok(Self::Iso),
            "vfat" => Ok(Self::Vfat),
            other => Err(UnknownSeedKind(other.to_string())),
        }
    }
}

/// The programs boot runs; defaults are the names Debian installs on `PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `qemu-system-x86_64` (Debian package `qemu-system-x86`).
    pub qemu: PathBuf,
    /// `qemu-img` (Debian package `qemu-utils`).
    pub qemu_img: PathBuf,
    /// `vde_switch` (Debian package `vde2`).
    pub vde_switch: PathBuf,
    /// `systemd-nspawn` (Debian package `systemd-container`), for container hosts.
    pub nspawn: PathBuf,
    /// `unshare` (util-linux), for the containers' network namespace.
    pub unshare: PathBuf,
    /// `nsenter` (util-linux), to start the switch and containers in it.
    pub nsenter: PathBuf,
    /// OVMF, the UEFI firmware QEMU runs for [`Firmware::Uefi`] (Debian package `ovmf`).
    pub ovmf: PathBuf,
}

impl Default for Tools {
    fn default() -> Self {
        Self {
            qemu: "qemu-system-x86_64".into(),
            qemu_img: "qemu-img".into(),
            vde_switch: "vde_switch".into(),
            nspawn: "systemd-nspawn".into(),
            unshare: "unshare".into(),
            nsenter: "nsenter".into(),
            ovmf: "/usr/share/ovmf/OVMF.fd".into(),
        }
    }
}

/// The Debian package that provides `program`, for error hints.
pub(crate) fn package_of(program: &Path) -> Option<&'static str> {
    match program.file_name()?.to_str()? {
        "qemu-system-x86_64" => Some("qemu-system-x86"),
        "qemu-img" => Some("qemu-utils"),
        "vde_switch" => Some("vde2"),
        "systemd-nspawn" => Some("systemd-container"),
        "unshare" | "nsenter" => Some("util-linux"),
        _ => None,
    }
}

/// How QEMU guests booting from the image start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Firmware {
    /// From the image: a disk with a boot loader (`kiln image`'s, whose MANIFEST.json beside it
    /// says so) through the BIOS, any other disk with its kernel and initrd ([`Firmware::Direct`]).
    #[default]
    Auto,
    /// QEMU loads the kernel and initrd beside the image itself (`-kernel`, `-initrd`); the root
    /// file system is the whole first disk, or the partition labelled `rootfs` of a disk with a
    /// boot loader. The only start that takes `kernel_args`.
    Direct,
    /// The BIOS (QEMU's SeaBIOS) boots the disk's boot loader from its MBR.
    Bios,
    /// UEFI firmware (OVMF, [`Tools::ovmf`]) boots the disk's boot loader from its EFI system
    /// partition.
    Uefi,
}

impl std::str::FromStr for Firmware {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "direct" => Ok(Self::Direct),
            "bios" => Ok(Self::Bios),
            "uefi" => Ok(Self::Uefi),
            other => Err(format!(
                "unknown firmware {other:?}: expected auto, direct, bios or uefi"
            )),
        }
    }
}

/// The base disk's name in a guest image folder.
pub const GUEST_DISK: &str = "disk.qcow2";

/// Per-host time limit when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Everything [`crate::boot`] needs; build with [`BootOptions::new`] and
/// set the public fields.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The cluster's out folder holding `vagrant.json` (`OUT/<cluster>`);
    /// `OUT` also works when it holds a single cluster.
    pub out: PathBuf,
    /// Only these hosts; `None` boots every host.
    pub hosts: Option<Vec<String>>,
    /// The guest base disk (qcow2, root filesystem on the whole disk), or
    /// a folder holding `disk.qcow2` (what `tests/e2e/guest-image.sh`
    /// prints). It is never written: each guest gets a copy-on-write overlay.
    pub image: PathBuf,
    /// The guest kernel; default `vmlinuz` beside `image`.
    pub kernel: Option<PathBuf>,
    /// The guest initrd; default `initrd.img` beside `image`.
    pub initrd: Option<PathBuf>,
    /// How guests booting from the image start.
    pub firmware: Firmware,
    /// ISO or VFAT seeds.
    pub seed: SeedKind,
    /// Where serial logs go; default [`default_log_dir`] of the out folder.
    pub log_dir: Option<PathBuf>,
    /// How long each host may take, from its start to its done marker and
    /// cloud-init's final message.
    pub timeout: Duration,
    /// Leave the guests and the switch running when boot returns (success
    /// or a host failure); the report says how to stop them.
    pub keep: bool,
    /// Memory for every guest in MiB, instead of `vagrant.json`'s.
    pub memory_mb: Option<u32>,
    /// Every QEMU guest's disk in GiB: the virtual size of its copy-on-write overlay, to which
    /// cloud-init grows the root filesystem at boot (a kubeadm master's images and their
    /// unpacked layers outgrow a small image). Default: the image's own size.
    pub disk_gb: Option<u32>,
    /// Words added to the guest kernel command line.
    pub kernel_args: Vec<String>,
    /// Parent of the run folder (overlays, switch socket); default the
    /// system's temporary folder. Unix socket paths must stay short.
    pub run_parent: Option<PathBuf>,
    /// Hosts booted as `systemd-nspawn` containers of the image's root tree
    /// instead of QEMU guests: same seed (its folder), same switch, the
    /// machine's own kernel; for control-plane hosts that software
    /// emulation makes too slow. Empty: every host is a QEMU guest.
    pub containers: Vec<String>,
    /// The root tree containers boot; default `rootfs` beside the image.
    pub rootfs: Option<PathBuf>,
    /// Hosts booted from the network as a bare machine would be: a QEMU guest with an empty disk
    /// (`disk_gb`, default 2 GiB), no kernel, initrd, seed or bundle medium, that boots its NIC's
    /// iPXE ROM (`-boot n`). Something on the link must answer it: a `link_services` entry
    /// such as `kiln serve --dhcp` on `link_address`, which boot then requires.
    pub netboot: Vec<String>,
    /// This machine's address on the private link (on the bridge of the private namespace,
    /// which is then started even without containers), for `link_services`.
    pub link_address: Option<LinkAddress>,
    /// Programs run in the private namespace before the hosts start, each listening on the
    /// link address (a registry or HTTP server the seeds name as a bundle source).
    pub link_services: Vec<LinkService>,
    /// The programs to run.
    pub tools: Tools,
}

impl BootOptions {
    /// Options booting every host of `out` from `image`, with the defaults:
    /// ISO seeds, logs in `<out>.boot/` beside it, 15 minutes per host, not kept.
    pub fn new(out: impl Into<PathBuf>, image: impl Into<PathBuf>) -> Self {
        Self {
            out: out.into(),
            hosts: None,
            image: image.into(),
            kernel: None,
            initrd: None,
            firmware: Firmware::Auto,
            seed: SeedKind::default(),
            log_dir: None,
            timeout: DEFAULT_TIMEOUT,
            keep: false,
            memory_mb: None,
            disk_gb: None,
            kernel_args: Vec::new(),
            run_parent: None,
            containers: Vec::new(),
            rootfs: None,
            netboot: Vec::new(),
            link_address: None,
            link_services: Vec::new(),
            tools: Tools::default(),
        }
    }

    /// The base disk: `image`, or `image/disk.qcow2` when `image` is a folder.
    pub fn image_path(&self) -> PathBuf {
        if self.image.is_dir() {
            self.image.join(GUEST_DISK)
        } else {
            self.image.clone()
        }
    }

    /// The kernel to boot: the option, else `vmlinuz` beside the image.
    pub fn kernel_path(&self) -> PathBuf {
        self.kernel
            .clone()
            .unwrap_or_else(|| beside(&self.image_path(), "vmlinuz"))
    }

    /// The root tree containers boot: the option, else `rootfs` beside the image.
    pub fn rootfs_path(&self) -> PathBuf {
        self.rootfs
            .clone()
            .unwrap_or_else(|| beside(&self.image_path(), "rootfs"))
    }

    /// The initrd to boot: the option, else `initrd.img` beside the image.
    pub fn initrd_path(&self) -> PathBuf {
        self.initrd
            .clone()
            .unwrap_or_else(|| beside(&self.image_path(), "initrd.img"))
    }

    /// Where the serial logs of the build in `dir` go: `log_dir`, else [`default_log_dir`].
    pub fn log_dir_path(&self, dir: &Path) -> PathBuf {
        self.log_dir.clone().unwrap_or_else(|| default_log_dir(dir))
    }
}

fn beside(file: &Path, name: &str) -> PathBuf {
    match file.parent() {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    }
}

/// Where `kiln boot` writes the serial logs of the build in `out` (`out/lab`) by default:
/// `out/lab.boot/`, beside the build and not in it. The out folder stays exactly what `kiln
/// build` signed, so `kiln verify` and `kiln serve` still accept it after a boot.
pub fn default_log_dir(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    out.with_file_name(format!("{name}.boot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_and_initrd_default_beside_the_image() {
        let o = BootOptions::new("out/lab", "/var/tmp/g/disk.qcow2");
        assert_eq!(o.kernel_path(), Path::new("/var/tmp/g/vmlinuz"));
        assert_eq!(o.initrd_path(), Path::new("/var/tmp/g/initrd.img"));
        let o = BootOptions::new("out/lab", "disk.qcow2");
        assert_eq!(o.kernel_path(), Path::new("vmlinuz"));
    }

    #[test]
    fn an_image_folder_means_its_disk() {
        let dir = tempfile::tempdir().unwrap();
        let o = BootOptions::new("out/lab", dir.path());
        assert_eq!(o.image_path(), dir.path().join("disk.qcow2"));
        assert_eq!(o.kernel_path(), dir.path().join("vmlinuz"));
        assert_eq!(o.initrd_path(), dir.path().join("initrd.img"));
        assert_eq!(o.rootfs_path(), dir.path().join("rootfs"));
    }

    #[test]
    fn seed_kind_parses() {
        assert_eq!("iso".parse::<SeedKind>(), Ok(SeedKind::Iso));
        assert_eq!("vfat".parse::<SeedKind>(), Ok(SeedKind::Vfat));
        assert_eq!(
            "dir".parse::<SeedKind>(),
            Err(UnknownSeedKind("dir".into()))
        );
    }
}
