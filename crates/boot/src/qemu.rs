//! Command lines for the guests, their disks and their private switch.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Everything one guest's QEMU command line is made from.
#[derive(Debug, Clone)]
pub(crate) struct GuestSpec<'a> {
    pub name: &'a str,
    pub memory_mb: u32,
    pub cpus: u32,
    /// How the guest boots, and what it is given besides its disk.
    pub boot: GuestBoot<'a>,
    /// Its disk: a copy-on-write overlay of the image, or an empty disk for a network boot.
    pub disk: &'a Path,
    pub serial_log: &'a Path,
    pub switch_socket: &'a Path,
    /// QEMU's human monitor, where an orderly stop asks for `system_powerdown`.
    pub monitor: &'a Path,
    pub mac: &'a str,
}

/// How a guest boots.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GuestBoot<'a> {
    /// From the image's disk (started as `start` says), with the host's seed as a second
    /// read-only disk.
    Disk {
        start: Start<'a>,
        seed: &'a Path,
        /// The shared bundle medium, a third read-only disk.
        bundle_medium: Option<&'a Path>,
    },
    /// From the network: the NIC's iPXE option ROM (QEMU's default for virtio-net, Debian's
    /// ipxe-qemu) asks DHCP for its boot file; no kernel, no seed, nothing else attached.
    Network,
}

/// How a guest booting from the image's disk starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start<'a> {
    /// QEMU loads the kernel and initrd, with `root` (`root=…`) and the extra words.
    Kernel {
        kernel: &'a Path,
        initrd: &'a Path,
        root: &'a str,
        kernel_args: &'a [String],
    },
    /// The firmware boots the disk's boot loader: SeaBIOS, or this UEFI firmware.
    Firmware { uefi: Option<&'a Path> },
}

/// The start of guests booting from the image, resolved once for a boot (see
/// [`crate::run::image_start`]).
#[derive(Debug, Clone)]
pub(crate) enum ImageStart {
    /// QEMU loads these, with this `root=` word.
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        root: &'static str,
    },
    /// SeaBIOS boots the disk.
    Bios,
    /// This UEFI firmware boots the disk.
    Uefi(PathBuf),
}

impl ImageStart {
    /// As a guest's start, with `kernel_args` for a kernel QEMU loads.
    pub(crate) fn start<'a>(&'a self, kernel_args: &'a [String]) -> Start<'a> {
        match self {
            ImageStart::Kernel {
                kernel,
                initrd,
                root,
            } => Start::Kernel {
                kernel,
                initrd,
                root,
                kernel_args,
            },
            ImageStart::Bios => Start::Firmware { uefi: None },
            ImageStart::Uefi(ovmf) => Start::Firmware { uefi: Some(ovmf) },
        }
    }
}

/// The root file system of an image without partitions: the whole first virtio disk.
pub(crate) const ROOT_WHOLE_DISK: &str = "root=/dev/vda";
/// The root file system of a partitioned image: its partition labelled `rootfs`.
pub(crate) const ROOT_BY_LABEL: &str = "root=LABEL=rootfs";

/// The kernel command line: `root`, console on the first serial port (which QEMU writes to
/// the log), then `extra`.
pub(crate) fn append(root: &str, extra: &[String]) -> String {
    let mut words = vec![root, "ro", "console=ttyS0"];
    words.extend(extra.iter().map(String::as_str));
    words.join(" ")
}

/// QEMU's `-drive`/`-netdev` values separate options with `,`; a comma in a
/// path is written twice.
fn opt_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// The guest's command line: software emulation only (nested KVM hangs on
/// the machines kiln targets for tests), no default devices, no display, no
/// user-mode network — its one NIC is on the private switch.
pub(crate) fn guest_command(qemu: &Path, g: &GuestSpec<'_>) -> Command {
    let mut cmd = Command::new(qemu);
    cmd.args(["-name", g.name])
        .args(["-nodefaults", "-no-user-config"])
        .args(["-accel", "tcg,thread=multi", "-cpu", "qemu64"])
        .args(["-smp", &g.cpus.to_string(), "-m", &g.memory_mb.to_string()])
        .args(["-display", "none", "-no-reboot"])
        .arg("-monitor")
        .arg(format!("unix:{},server=on,wait=off", opt_path(g.monitor)))
        .arg("-serial")
        .arg(format!("file:{}", g.serial_log.to_string_lossy()));
    let media: Vec<&Path> = match g.boot {
        GuestBoot::Disk {
            start,
            seed,
            bundle_medium,
        } => {
            match start {
                Start::Kernel {
                    kernel,
                    initrd,
                    root,
                    kernel_args,
                } => {
                    cmd.arg("-kernel")
                        .arg(kernel)
                        .arg("-initrd")
                        .arg(initrd)
                        .args(["-append", &append(root, kernel_args)]);
                }
                // The disk first: the firmware boots the first disk with a boot loader.
                Start::Firmware { uefi } => {
                    if let Some(ovmf) = uefi {
                        cmd.arg("-bios").arg(ovmf);
                    }
                    cmd.args(["-boot", "c"]);
                }
            }
            std::iter::once(seed).chain(bundle_medium).collect()
        }
        // The firmware boots the NIC's ROM: the disk is empty.
        GuestBoot::Network => {
            cmd.args(["-boot", "n"]);
            Vec::new()
        }
    };
    cmd.arg("-drive").arg(format!(
        // A write the host cannot make (its disk full) reaches the guest as an I/O error
        // its kernel prints, where QEMU's default would pause the guest without a word.
        "file={},if=virtio,format=qcow2,werror=report,rerror=report",
        opt_path(g.disk)
    ));
    for medium in media {
        cmd.arg("-drive").arg(format!(
            "file={},if=virtio,format=raw,readonly=on",
            opt_path(medium)
        ));
    }
    cmd.arg("-netdev")
        .arg(format!("vde,id=n0,sock={}", opt_path(g.switch_socket)))
        .arg("-device")
        .arg(format!("virtio-net-pci,netdev=n0,mac={}", g.mac));
    cmd
}

/// Asks the guest behind QEMU's human monitor socket `monitor` to power down (an ACPI power
/// button press; systemd shuts the guest down and, with `-no-reboot`, QEMU exits).
pub(crate) fn system_powerdown(monitor: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut socket = std::os::unix::net::UnixStream::connect(monitor)?;
    socket.write_all(b"system_powerdown\n")?;
    socket.flush()?;
    // The monitor reads the command before the connection closes.
    std::thread::sleep(std::time::Duration::from_millis(200));
    Ok(())
}

/// `qemu-img create` of a copy-on-write overlay on `base` (absolute, so
/// the overlay does not resolve it against its own folder), `size_gb`
/// GiB large when given (else the base's size).
pub(crate) fn overlay_command(
    qemu_img: &Path,
    base: &Path,
    overlay: &Path,
    size_gb: Option<u32>,
) -> Command {
    let mut cmd = Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(overlay);
    if let Some(gb) = size_gb {
        cmd.arg(format!("{gb}G"));
    }
    cmd
}

/// `qemu-img create` of an empty qcow2 disk of `size_gb` GiB, backed by nothing: a network-booted
/// host's disk, as a bare machine's would be.
pub(crate) fn empty_disk_command(qemu_img: &Path, disk: &Path, size_gb: u32) -> Command {
    let mut cmd = Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", "qcow2"])
        .arg(disk)
        .arg(format!("{size_gb}G"));
    cmd
}

/// The guest disk sizes boot accepts, in GiB.
pub(crate) const DISK_GB: std::ops::RangeInclusive<u32> = 2..=4096;

/// How the switch runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwitchMode {
    /// In the foreground; it exits when its standard input closes.
    Foreground,
    /// Forked away (for `keep`), its pid in `pidfile`.
    Daemon,
}

/// `vde_switch` on the unix socket folder `socket`, routing through `tap`
/// too when containers share the link. `cmd` is the program to run: the
/// switch itself, or `nsenter` into the containers' namespace with the
/// switch as its program.
pub(crate) fn switch_command(
    mut cmd: Command,
    socket: &Path,
    mode: SwitchMode,
    pidfile: &Path,
    tap: Option<&str>,
) -> Command {
    if let Some(tap) = tap {
        cmd.args(["--tap", tap]);
    }
    // 0700: only this user's processes may plug into the guests' network.
    cmd.arg("--sock")
        .arg(socket)
        .args(["--mode", "0600", "--dirmode", "0700"]);
    if mode == SwitchMode::Daemon {
        cmd.arg("--daemon").arg("--pidfile").arg(pidfile);
    }
    cmd
}

/// The file whose appearance shows the switch accepts guests.
pub(crate) fn switch_ready_file(socket: &Path) -> PathBuf {
    socket.join("ctl")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::display;

    #[test]
    fn guest_command_line() {
        let extra = vec!["quiet".to_owned()];
        let spec = GuestSpec {
            name: "etcd1",
            memory_mb: 1024,
            cpus: 1,
            boot: GuestBoot::Disk {
                start: Start::Kernel {
                    kernel: Path::new("/g/vmlinuz"),
                    initrd: Path::new("/g/initrd.img"),
                    root: ROOT_WHOLE_DISK,
                    kernel_args: &extra,
                },
                seed: Path::new("/out/lab/hosts/etcd1/cidata,1.iso"),
                bundle_medium: None,
            },
            disk: Path::new("/run/etcd1.qcow2"),
            serial_log: Path::new("/out/lab/boot/etcd1.log"),
            switch_socket: Path::new("/run/vde.ctl"),
            monitor: Path::new("/run/etcd1.mon"),
            mac: "52:54:00:77:00:11",
        };
        assert_eq!(
            display(&guest_command(Path::new("qemu-system-x86_64"), &spec)),
            "qemu-system-x86_64 -name etcd1 -nodefaults -no-user-config \
             -accel tcg,thread=multi -cpu qemu64 -smp 1 -m 1024 -display none -no-reboot \
             -monitor unix:/run/etcd1.mon,server=on,wait=off -serial file:/out/lab/boot/etcd1.log -kernel /g/vmlinuz -initrd /g/initrd.img \
             -append 'root=/dev/vda ro console=ttyS0 quiet' \
             -drive file=/run/etcd1.qcow2,if=virtio,format=qcow2,werror=report,rerror=report \
             -drive file=/out/lab/hosts/etcd1/cidata,,1.iso,if=virtio,format=raw,readonly=on \
             -netdev vde,id=n0,sock=/run/vde.ctl \
             -device virtio-net-pci,netdev=n0,mac=52:54:00:77:00:11"
        );
        // Seeds without bundles: the shared medium is a third read-only disk.
        let GuestBoot::Disk { start, seed, .. } = spec.boot else {
            unreachable!()
        };
        let with_medium = GuestSpec {
            boot: GuestBoot::Disk {
                start,
                seed,
                bundle_medium: Some(Path::new("/out/lab/bundles.iso")),
            },
            ..spec.clone()
        };
        let line = display(&guest_command(
            Path::new("qemu-system-x86_64"),
            &with_medium,
        ));
        assert!(
            line.contains(
                "-drive file=/out/lab/hosts/etcd1/cidata,,1.iso,if=virtio,format=raw,readonly=on \
                 -drive file=/out/lab/bundles.iso,if=virtio,format=raw,readonly=on -netdev"
            ),
            "{line}"
        );
        // Through the disk's boot loader: no kernel, the firmware boots the disk; OVMF for UEFI.
        let firmware = |uefi| GuestSpec {
            boot: GuestBoot::Disk {
                start: Start::Firmware { uefi },
                seed,
                bundle_medium: None,
            },
            ..spec.clone()
        };
        let tail = "-drive file=/run/etcd1.qcow2,if=virtio,format=qcow2,werror=report,rerror=report \
                    -drive file=/out/lab/hosts/etcd1/cidata,,1.iso,if=virtio,format=raw,readonly=on -netdev";
        let bios = display(&guest_command(Path::new("qemu"), &firmware(None)));
        assert!(
            bios.contains(&format!("etcd1.log -boot c {tail}")) && !bios.contains("-kernel"),
            "{bios}"
        );
        let ovmf = Path::new("/usr/share/ovmf/OVMF.fd");
        let uefi = display(&guest_command(Path::new("qemu"), &firmware(Some(ovmf))));
        assert!(
            uefi.contains(&format!(
                "etcd1.log -bios /usr/share/ovmf/OVMF.fd -boot c {tail}"
            )),
            "{uefi}"
        );
        // From the network: the NIC's ROM on an empty disk; no kernel, no seed, no medium.
        let netboot = GuestSpec {
            name: "etcd2",
            boot: GuestBoot::Network,
            disk: Path::new("/run/etcd2.qcow2"),
            serial_log: Path::new("/out/lab/boot/etcd2.log"),
            monitor: Path::new("/run/etcd2.mon"),
            mac: "52:54:00:77:00:12",
            memory_mb: 1536,
            ..spec
        };
        assert_eq!(
            display(&guest_command(Path::new("qemu-system-x86_64"), &netboot)),
            "qemu-system-x86_64 -name etcd2 -nodefaults -no-user-config \
             -accel tcg,thread=multi -cpu qemu64 -smp 1 -m 1536 -display none -no-reboot \
             -monitor unix:/run/etcd2.mon,server=on,wait=off -serial file:/out/lab/boot/etcd2.log \
             -boot n \
             -drive file=/run/etcd2.qcow2,if=virtio,format=qcow2,werror=report,rerror=report \
             -netdev vde,id=n0,sock=/run/vde.ctl \
             -device virtio-net-pci,netdev=n0,mac=52:54:00:77:00:12"
        );
    }

    #[test]
    fn helper_command_lines() {
        assert_eq!(
            display(&overlay_command(
                Path::new("qemu-img"),
                Path::new("/g/disk.qcow2"),
                Path::new("/run/a.qcow2"),
                None,
            )),
            "qemu-img create -q -f qcow2 -F qcow2 -b /g/disk.qcow2 /run/a.qcow2"
        );
        assert_eq!(
            display(&overlay_command(
                Path::new("qemu-img"),
                Path::new("/g/disk.qcow2"),
                Path::new("/run/a.qcow2"),
                Some(8),
            )),
            "qemu-img create -q -f qcow2 -F qcow2 -b /g/disk.qcow2 /run/a.qcow2 8G"
        );
        assert_eq!(
            display(&empty_disk_command(
                Path::new("qemu-img"),
                Path::new("/run/b.qcow2"),
                2
            )),
            "qemu-img create -q -f qcow2 /run/b.qcow2 2G"
        );
        let sock = Path::new("/run/vde.ctl");
        let pid = Path::new("/run/vde.pid");
        assert_eq!(
            display(&switch_command(
                Command::new("vde_switch"),
                sock,
                SwitchMode::Foreground,
                pid,
                None
            )),
            "vde_switch --sock /run/vde.ctl --mode 0600 --dirmode 0700"
        );
        assert_eq!(
            display(&switch_command(
                Command::new("vde_switch"),
                sock,
                SwitchMode::Daemon,
                pid,
                Some("kiln0tap")
            )),
            "vde_switch --tap kiln0tap --sock /run/vde.ctl --mode 0600 --dirmode 0700 --daemon --pidfile /run/vde.pid"
        );
    }
}
