//! The bootable disk: a GPT with a BIOS boot partition, an EFI system partition and the root
//! file system, and GRUB 2 from the image's own packages on both paths.
//!
//! GRUB's images are made by the image's `grub-mkimage` (run in the root tree), with every
//! module the boot needs built in and an early configuration that finds the root file system
//! by its UUID; GRUB then reads `/boot/grub/grub.cfg` there, on either firmware.
//! - BIOS: GRUB's `boot.img` is the MBR's boot code (the partition table kept), pointing at
//!   `core.img`, which fills the BIOS boot partition with its block list set to it. This is what
//!   `grub-install`'s setup does for a GPT disk, without Reed-Solomon codes (`--no-rs-codes`).
//! - UEFI: the EFI image is the removable-media path `EFI/BOOT/BOOTX64.EFI` of a FAT system
//!   partition (kiln's FAT writer), which firmware boots without any NVRAM entry.
//!
//! `sfdisk` writes the partition table, every identifier derived from the file system's UUID;
//! the pieces are then copied in at their offsets, zero blocks left as holes.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::disk::{command, run};
use crate::{GoldenError, Recipe, DISK_MIB, FS_LABEL};

const SECTOR: u64 = 512;
const MIB: u64 = 1 << 20;

/// The BIOS boot partition (GRUB's core image): 1 MiB from 1 MiB.
pub const BIOS_BOOT: Part = Part {
    start_mib: 1,
    size_mib: 1,
};
/// The EFI system partition: 64 MiB after it.
pub const ESP: Part = Part {
    start_mib: 2,
    size_mib: 64,
};
/// The root file system: the rest, but the last MiB (the backup partition table).
pub const ROOT: Part = Part {
    start_mib: 66,
    size_mib: DISK_MIB - 66 - 1,
};

/// The EFI system partition's FAT label.
pub const ESP_LABEL: &str = "ESP";
/// The removable-media boot path UEFI firmware loads from the EFI system partition.
pub const EFI_LOADER: &str = "EFI/BOOT/BOOTX64.EFI";

/// A partition's place on the disk, in MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Its first byte, in MiB from the start of the disk.
    pub start_mib: u64,
    /// Its size in MiB.
    pub size_mib: u64,
}

impl Part {
    /// Its first byte.
    pub fn offset(self) -> u64 {
        self.start_mib * MIB
    }

    /// Its first sector.
    pub fn first_sector(self) -> u64 {
        self.offset() / SECTOR
    }

    /// Its size in sectors.
    pub fn sectors(self) -> u64 {
        self.size_mib * MIB / SECTOR
    }
}

/// GRUB's modules built into both images: GPT and ext4, finding the root by UUID, the menu,
/// the Linux loader, a serial console. (The BIOS image adds its disk driver; the EFI image
/// FAT and the firmware's graphics.)
const MODULES: [&str; 12] = [
    "part_gpt",
    "ext2",
    "search",
    "normal",
    "linux",
    "serial",
    "terminal",
    "echo",
    "test",
    "configfile",
    "ls",
    "cat",
];

/// GRUB's early configuration, built into its images: where the root file system is, and that
/// GRUB's own files (the menu) are in its `/boot/grub`.
pub(crate) fn early_config(uuid: &str) -> String {
    format!("search --no-floppy --fs-uuid --set=root {uuid}\nset prefix=($root)/boot/grub\n")
}

/// `/boot/grub/grub.cfg`: the menu, on the screen and the first serial port.
pub(crate) fn grub_cfg(uuid: &str) -> String {
    format!(
        "# Written by kiln image. GRUB reads this file on BIOS and UEFI machines alike (its\n\
         # modules are built into its images, so none is loaded from here): edit it to change\n\
         # the kernel command line. /vmlinuz and /initrd.img follow the installed kernel.\n\
         serial --unit=0 --speed=115200\n\
         terminal_input console serial\n\
         terminal_output console serial\n\
         set timeout=2\n\
         menuentry 'Debian GNU/Linux (kiln golden image)' {{\n\
         \tlinux /vmlinuz root=UUID={uuid} ro console=tty0 console=ttyS0\n\
         \tinitrd /initrd.img\n\
         }}\n"
    )
}

/// GRUB's two images, read from the tree after its `grub-mkimage` made them.
pub(crate) struct Loaders {
    /// `boot.img`: the MBR's boot code.
    pub boot_img: Vec<u8>,
    /// `core.img` for the BIOS boot partition.
    pub core_img: Vec<u8>,
    /// The EFI application.
    pub efi: Vec<u8>,
}

/// Writes `/boot/grub/grub.cfg` into the tree and makes GRUB's images with the tree's own
/// `grub-mkimage` (in a chroot), leaving nothing else behind in the tree.
pub(crate) fn make_loaders(root: &Path, uuid: &str) -> Result<Loaders, GoldenError> {
    let lib = root.join("usr/lib/grub");
    for (platform, package) in [
        ("i386-pc", "grub-pc-bin"),
        ("x86_64-efi", "grub-efi-amd64-bin"),
    ] {
        if !lib.join(platform).join("kernel.img").is_file() {
            return Err(GoldenError::NoBootLoader {
                dir: lib.join(platform),
                package,
            });
        }
    }
    let grub = root.join("boot/grub");
    fs::create_dir_all(&grub).map_err(GoldenError::io("create folder", &grub))?;
    // Its mode, not the builder's umask's.
    fs::set_permissions(&grub, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(GoldenError::io("set the mode of", &grub))?;
    kiln_fsio::write_atomic(&grub.join("grub.cfg"), grub_cfg(uuid).as_bytes(), 0o644)?;
    // Inside the tree, where its grub-mkimage runs; removed before the tree becomes images.
    let scratch = root.join("tmp/kiln-grub");
    fs::create_dir_all(&scratch).map_err(GoldenError::io("create folder", &scratch))?;
    let early = scratch.join("early.cfg");
    fs::write(&early, early_config(uuid)).map_err(GoldenError::io("write", &early))?;
    let images = [
        ("i386-pc", "core.img", &["biosdisk"][..]),
        ("x86_64-efi", "grubx64.efi", &["fat", "efi_gop"][..]),
    ];
    for (platform, name, extra) in images {
        run(
            command("chroot")
                .arg(root)
                .arg("/usr/bin/grub-mkimage")
                .args(["--directory", &format!("/usr/lib/grub/{platform}")])
                .args(["--format", platform])
                .args(["--output", &format!("/tmp/kiln-grub/{name}")])
                .args(["--config", "/tmp/kiln-grub/early.cfg"])
                .args(["--prefix", "/boot/grub"])
                .args(extra)
                .args(MODULES),
            &format!("grub-mkimage --format {platform} (in the tree)"),
        )?;
    }
    let read = |p: &Path| fs::read(p).map_err(GoldenError::io("read", p));
    let loaders = Loaders {
        boot_img: read(&lib.join("i386-pc/boot.img"))?,
        core_img: read(&scratch.join("core.img"))?,
        efi: read(&scratch.join("grubx64.efi"))?,
    };
    fs::remove_dir_all(&scratch).map_err(GoldenError::io("remove", &scratch))?;
    Ok(loaders)
}

/// Where `boot.img` keeps the first sector of `core.img` (GRUB_BOOT_MACHINE_KERNEL_SECTOR).
const KERNEL_SECTOR: usize = 0x5c;
/// The boot drive byte: 0xff, use the drive the BIOS booted (GRUB_BOOT_MACHINE_BOOT_DRIVE).
const BOOT_DRIVE: usize = 0x64;
/// The jump over the workaround for BIOSes that pass a wrong drive; a hard disk gets two
/// NOPs there (GRUB_BOOT_MACHINE_DRIVE_CHECK).
const DRIVE_CHECK: usize = 0x66;
/// The DOS parameter block `boot.img` keeps from the sector it replaces.
const BPB: std::ops::Range<usize> = 0x3..0x5a;
/// The disk signature and partition table, kept from the sector it replaces.
const PART_TABLE: std::ops::Range<usize> = 0x1b8..0x200;
/// `core.img`'s first block list entry: the last 12 bytes of its first sector (start sector
/// u64, sector count u16, load segment u16).
const BLOCKLIST: std::ops::Range<usize> = 500..512;
/// The segment the sectors after the first load at (GRUB's kernel segment 0x800 + 512 bytes).
const LOAD_SEGMENT: u16 = 0x820;

/// The MBR: `boot_img`'s code over the `current` sector (its parameter block, disk signature
/// and partition table kept), set to load `core.img` from `core_sector`.
pub(crate) fn mbr(
    boot_img: &[u8],
    current: &[u8; 512],
    core_sector: u64,
) -> Result<[u8; 512], GoldenError> {
    if boot_img.len() != 512 || boot_img[510..] != [0x55, 0xaa] {
        return Err(GoldenError::GrubImage {
            what: "boot.img",
            reason: format!(
                "expected one 512-byte boot sector ending 55 aa, got {} bytes",
                boot_img.len()
            ),
        });
    }
    let mut out = [0u8; 512];
    out.copy_from_slice(boot_img);
    out[BPB].copy_from_slice(&current[BPB]);
    out[PART_TABLE].copy_from_slice(&current[PART_TABLE]);
    out[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_sector.to_le_bytes());
    out[BOOT_DRIVE] = 0xff;
    out[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    Ok(out)
}

/// `core_img` padded to whole sectors, its block list set to load the rest of it from the
/// sectors after `first_sector`; it must fit in `room` sectors.
pub(crate) fn embed_core(
    core_img: &[u8],
    first_sector: u64,
    room: u64,
) -> Result<Vec<u8>, GoldenError> {
    let bad = |reason: String| GoldenError::GrubImage {
        what: "core.img",
        reason,
    };
    let sectors = (core_img.len() as u64).div_ceil(SECTOR);
    if sectors < 2 {
        return Err(bad(format!("only {} bytes", core_img.len())));
    }
    if sectors > room {
        return Err(bad(format!(
            "{sectors} sectors do not fit the BIOS boot partition's {room}"
        )));
    }
    // grub-mkimage leaves its first entry covering the image from sector 2, at the load
    // segment: anything else is a layout this code does not know.
    let entry = &core_img[BLOCKLIST];
    if u16::from_le_bytes([entry[10], entry[11]]) != LOAD_SEGMENT {
        return Err(bad(format!(
            "its first sector does not end with GRUB's block list (load segment {LOAD_SEGMENT:#x}): {}",
            hex::encode(entry)
        )));
    }
    let count = u16::try_from(sectors - 1).map_err(|_| bad(format!("{sectors} sectors")))?;
    let mut out = core_img.to_vec();
    out.resize((sectors * SECTOR) as usize, 0);
    out[BLOCKLIST.start..BLOCKLIST.start + 8].copy_from_slice(&(first_sector + 1).to_le_bytes());
    out[BLOCKLIST.start + 8..BLOCKLIST.start + 10].copy_from_slice(&count.to_le_bytes());
    // The entry before it ends the list.
    out[BLOCKLIST.start - 12..BLOCKLIST.start].fill(0);
    Ok(out)
}

/// A UUID (version 4 layout) derived from `seed` and `what`: the same image, the same IDs.
pub(crate) fn derived_uuid(seed: &str, what: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("kiln-golden {what} {seed}\n"));
    crate::uuid_string(digest[..16].try_into().expect("16 bytes"))
}

/// sfdisk's script of the partition table.
pub(crate) fn sfdisk_script(uuid: &str) -> String {
    let mut s = format!(
        "label: gpt\nlabel-id: {}\nfirst-lba: 2048\nunit: sectors\n",
        derived_uuid(uuid, "disk")
    );
    let parts = [
        (
            BIOS_BOOT,
            "21686148-6449-6E6F-744E-656564454649",
            "bios-boot",
        ),
        (ESP, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "esp"),
        (ROOT, "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", FS_LABEL),
    ];
    for (part, kind, name) in parts {
        s.push_str(&format!(
            "start={}, size={}, type={kind}, uuid={}, name=\"{name}\"\n",
            part.first_sector(),
            part.sectors(),
            derived_uuid(uuid, name)
        ));
    }
    s
}

/// The disk at `dest`: the partition table, GRUB in the MBR, the BIOS boot partition and the
/// EFI system partition, and the ext4 file system `ext4` in the root partition.
pub(crate) fn assemble(
    recipe: &Recipe,
    uuid: &str,
    loaders: &Loaders,
    ext4: &Path,
    work: &Path,
    dest: &Path,
) -> Result<(), GoldenError> {
    let esp = work.join("esp.fat");
    let efi = work.join("BOOTX64.EFI");
    fs::write(&efi, &loaders.efi).map_err(GoldenError::io("write", &efi))?;
    let time = cloud_init_config::Timestamp::from_unix(recipe.source_date_epoch as i64)
        .map_err(|e| GoldenError::Fat(e.to_string()))?;
    let serial =
        u32::from_str_radix(&derived_uuid(uuid, "esp-serial")[..8], 16).expect("eight hex digits");
    cloud_init_config::write_fat_volume(
        &esp,
        ESP_LABEL,
        serial,
        ESP.size_mib * MIB,
        &[(EFI_LOADER.to_owned(), efi)],
        time,
    )
    .map_err(|e| GoldenError::Fat(e.to_string()))?;

    let temp = kiln_fsio::TempFile::beside(dest, 0o644)?;
    let disk = temp.path().to_owned();
    let file = File::options()
        .write(true)
        .open(&disk)
        .map_err(GoldenError::io("open", &disk))?;
    file.set_len(DISK_MIB * MIB)
        .map_err(GoldenError::io("size", &disk))?;
    drop(file);
    let script = work.join("partitions.sfdisk");
    fs::write(&script, sfdisk_script(uuid)).map_err(GoldenError::io("write", &script))?;
    let input = File::open(&script).map_err(GoldenError::io("open", &script))?;
    run(
        command("sfdisk")
            .args(["--quiet", "--no-reread", "--no-tell-kernel"])
            .arg(&disk)
            .stdin(input),
        "sfdisk (the partition table)",
    )?;

    let mut file = File::options()
        .read(true)
        .write(true)
        .open(&disk)
        .map_err(GoldenError::io("open", &disk))?;
    let io = |op| GoldenError::io(op, &disk);
    let mut sector = [0u8; 512];
    file.read_exact(&mut sector).map_err(io("read"))?;
    let boot = mbr(&loaders.boot_img, &sector, BIOS_BOOT.first_sector())?;
    let core = embed_core(
        &loaders.core_img,
        BIOS_BOOT.first_sector(),
        BIOS_BOOT.sectors(),
    )?;
    file.seek(SeekFrom::Start(0)).map_err(io("seek"))?;
    file.write_all(&boot).map_err(io("write"))?;
    file.seek(SeekFrom::Start(BIOS_BOOT.offset()))
        .map_err(io("seek"))?;
    file.write_all(&core).map_err(io("write"))?;
    copy_sparse(&esp, &mut file, (ESP, "EFI system"), &disk)?;
    copy_sparse(ext4, &mut file, (ROOT, FS_LABEL), &disk)?;
    file.sync_all().map_err(io("sync"))?;
    drop(file);
    temp.commit(dest)?;
    Ok(())
}

/// Copies `src` into `disk` at `part` (named for errors), skipping zero blocks (the disk's
/// holes stay holes).
fn copy_sparse(
    src: &Path,
    disk: &mut File,
    (part, name): (Part, &'static str),
    disk_path: &Path,
) -> Result<(), GoldenError> {
    let len = fs::metadata(src)
        .map_err(GoldenError::io("read", src))?
        .len();
    if len > part.size_mib * MIB {
        return Err(GoldenError::PartitionOverflow {
            path: src.to_owned(),
            size: len,
            partition: name,
            size_mib: part.size_mib,
        });
    }
    let mut input = File::open(src).map_err(GoldenError::io("open", src))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = part.offset();
    loop {
        let n = read_full(&mut input, &mut buf).map_err(GoldenError::io("read", src))?;
        if n == 0 {
            return Ok(());
        }
        if buf[..n].iter().any(|&b| b != 0) {
            disk.seek(SeekFrom::Start(at))
                .and_then(|_| disk.write_all(&buf[..n]))
                .map_err(GoldenError::io("write", disk_path))?;
        }
        at += n as u64;
    }
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `core.img`-like image: `sectors` sectors, its first ending with grub-mkimage's entry.
    fn core(bytes: usize) -> Vec<u8> {
        let mut c: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8 | 1).collect();
        c[488..500].fill(0);
        c[500..508].copy_from_slice(&2u64.to_le_bytes());
        c[508..510].copy_from_slice(&((bytes.div_ceil(512) - 1) as u16).to_le_bytes());
        c[510..512].copy_from_slice(&LOAD_SEGMENT.to_le_bytes());
        c
    }

    #[test]
    fn the_partitions_follow_each_other_and_leave_room_for_the_backup_table() {
        assert_eq!(BIOS_BOOT.start_mib + BIOS_BOOT.size_mib, ESP.start_mib);
        assert_eq!(ESP.start_mib + ESP.size_mib, ROOT.start_mib);
        assert_eq!(ROOT.start_mib + ROOT.size_mib + 1, DISK_MIB);
        assert_eq!(BIOS_BOOT.first_sector(), 2048);
    }

    #[test]
    fn the_mbr_keeps_the_partition_table_and_points_at_core_img() {
        let mut boot = vec![0xeb; 512];
        boot[510] = 0x55;
        boot[511] = 0xaa;
        let mut current = [0u8; 512];
        current[0x1b8..0x1fe].fill(0x77);
        current[0x1fe] = 0x55;
        current[0x1ff] = 0xaa;
        current[0x10] = 0x33; // inside the parameter block
        let m = mbr(&boot, &current, 2048).unwrap();
        assert_eq!(&m[0x1b8..0x1fe], &current[0x1b8..0x1fe]);
        assert_eq!(m[0x10], 0x33);
        assert_eq!(&m[0..3], &[0xeb; 3]);
        assert_eq!(u64::from_le_bytes(m[0x5c..0x64].try_into().unwrap()), 2048);
        assert_eq!(m[0x64], 0xff);
        assert_eq!(&m[0x66..0x68], &[0x90, 0x90]);
        assert_eq!(&m[0x68..0x1b8], &boot[0x68..0x1b8]);
        let err = mbr(&boot[..511], &current, 2048).unwrap_err().to_string();
        assert!(
            err.contains("boot.img") && err.contains("511 bytes"),
            "{err}"
        );
    }

    #[test]
    fn core_img_loads_its_other_sectors_from_the_partition() {
        let c = core(144_559);
        let e = embed_core(&c, 2048, 2048).unwrap();
        assert_eq!(e.len(), 283 * 512);
        assert_eq!(u64::from_le_bytes(e[500..508].try_into().unwrap()), 2049);
        assert_eq!(u16::from_le_bytes([e[508], e[509]]), 282);
        assert_eq!(u16::from_le_bytes([e[510], e[511]]), LOAD_SEGMENT);
        assert_eq!(&e[488..500], &[0; 12]);
        assert_eq!(&e[512..144_559], &c[512..]);
        assert!(e[144_559..].iter().all(|&b| b == 0));

        let too_big = embed_core(&c, 2048, 100).unwrap_err().to_string();
        assert!(too_big.contains("283 sectors do not fit"), "{too_big}");
        let mut other = c.clone();
        other[510] = 0;
        let unknown = embed_core(&other, 2048, 2048).unwrap_err().to_string();
        assert!(unknown.contains("block list"), "{unknown}");
    }

    #[test]
    fn content_lands_at_its_partition_with_zero_blocks_left_as_holes_and_never_overflows() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("content");
        // A zero MiB, then a MiB of data, then zeros again.
        let mut content = vec![0u8; 3 << 20];
        content[MIB as usize..2 * MIB as usize].fill(0xa5);
        fs::write(&src, &content).unwrap();
        let disk_path = tmp.path().join("disk");
        let mut disk = File::create(&disk_path).unwrap();
        disk.set_len(8 * MIB).unwrap();
        let part = Part {
            start_mib: 4,
            size_mib: 3,
        };
        copy_sparse(&src, &mut disk, (part, "test"), &disk_path).unwrap();
        drop(disk);
        let written = fs::read(&disk_path).unwrap();
        assert_eq!(&written[4 << 20..7 << 20], &content[..]);
        assert!(written[..4 << 20].iter().all(|&b| b == 0));
        // Only the data MiB is allocated.
        assert_eq!(fs::metadata(&disk_path).unwrap().blocks() * 512, MIB);

        let small = Part {
            start_mib: 4,
            size_mib: 2,
        };
        let mut disk = File::options().write(true).open(&disk_path).unwrap();
        let err = copy_sparse(&src, &mut disk, (small, "test"), &disk_path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3145728 bytes, larger than the disk's 2 MiB test partition"),
            "{err}"
        );
    }

    #[test]
    fn the_table_script_names_every_partition_with_ids_from_the_uuid() {
        let a = sfdisk_script("95e13eb6-aee3-439a-97d9-2d09a648a63a");
        assert_eq!(a, sfdisk_script("95e13eb6-aee3-439a-97d9-2d09a648a63a"));
        assert_ne!(a, sfdisk_script("95e13eb6-aee3-439a-97d9-2d09a648a63b"));
        assert!(a.contains("start=2048, size=2048, type=21686148"), "{a}");
        assert!(a.contains("start=135168, size="), "{a}");
        assert!(a.contains("name=\"rootfs\""), "{a}");
    }
}
