//! kiln-golden: a golden OS image (Debian 12) built offline from locked, vendored packages.
//!
//! The steps: a flat apt repository of exactly the given .deb files (each re-hashed against its
//! pin) (`repo`); mmdebstrap in its own network namespace installs them into a root tree with
//! kiln's hooks; every timestamp is set to `SOURCE_DATE_EPOCH`; the kernel and initrd are
//! copied out; the tree's own GRUB makes its BIOS and UEFI images (`bootdisk`); `mke2fs -d`
//! makes the ext4 root file system with a fixed UUID and hash seed, and `debugfs` sets the
//! inode change times mke2fs copied from the tree; `mksquashfs` makes the netboot set's root
//! file system (live-boot in the image fetches it over HTTP); `sfdisk` and kiln lay out the
//! bootable disk (GPT: BIOS boot partition, EFI system partition, root) and `qemu-img`
//! converts it to qcow2. Two builds from the same inputs give the same bytes (`disk`).
//!
//! The caller gives an empty folder for the outputs and a scratch folder; nothing else is
//! written. This library never prints: it reports each [`Step`] to a callback.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

pub mod bootdisk;
mod disk;
mod error;
mod repo;
mod tools;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

pub use error::GoldenError;
pub use tools::preflight;

/// mmdebstrap's hook run once the essential packages are unpacked (initramfs settings).
pub const ESSENTIAL_HOOK: &str = include_str!("../assets/essential-hook.sh");
/// mmdebstrap's hook run at the end (hosts, resolver, cloud-init, masked units, no sources).
pub const CUSTOMIZE_HOOK: &str = include_str!("../assets/customize-hook.sh");

/// The ext4 file system's label (`/etc/fstab` mounts `LABEL=rootfs`).
pub const FS_LABEL: &str = "rootfs";
/// The disk image's size: room for the role bundles beside the ~450 MiB system. The root
/// file system is its last partition (see [`bootdisk::ROOT`]); cloud-init grows both to a
/// larger disk at first boot.
pub const DISK_MIB: u64 = 2048;

/// The files of an image folder (besides MANIFEST.json and SHA256SUMS), in order.
pub const FILES: [&str; 5] = [
    "vmlinuz",
    "initrd.img",
    NETBOOT_ROOT,
    "disk.raw",
    "disk.qcow2",
];

/// The netboot set's root file system: `kiln serve --netboot` serves the image folder, and
/// live-boot's initrd fetches it (`boot=live fetch=<url>/netboot/root.squashfs`).
pub const NETBOOT_ROOT: &str = "root.squashfs";

/// One pinned .deb in the store.
#[derive(Debug, Clone)]
pub struct Deb {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Package architecture (`amd64`, `all`).
    pub arch: String,
    /// Its bytes (a store blob).
    pub path: PathBuf,
    /// Its file name in the repository's pool (`name_version_arch.deb`).
    pub file_name: String,
    /// Pinned sha256.
    pub sha256: String,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// kiln's OS id (`debian12`), recorded in MANIFEST.json.
    pub os: String,
    /// The release's codename (`bookworm`).
    pub codename: String,
    /// dpkg architecture (`amd64`).
    pub arch: String,
    /// Every package of the image: the whole system, minbase included.
    pub debs: Vec<Deb>,
    /// Every timestamp in the image (the lock's `source-date-epoch`).
    pub source_date_epoch: u64,
    /// The catalog's name of the image's kernel (`cloud`, `generic`), recorded in MANIFEST.json.
    pub kernel: String,
    /// initramfs-tools' `MODULES` for that kernel: `list` (the virtio disk drivers only) or
    /// `most` (every disk controller's).
    pub initrd_modules: String,
}

impl Recipe {
    /// The file system's UUID (also its directory hash seed): derived from the packages' pins
    /// and the epoch, so the same lock gives the same UUID and another lock another.
    pub fn fs_uuid(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(format!(
            "kiln-golden {} {}\n",
            self.os, self.source_date_epoch
        ));
        let mut pins: Vec<&str> = self.debs.iter().map(|d| d.sha256.as_str()).collect();
        pins.sort();
        for p in pins {
            h.update(p);
            h.update("\n");
        }
        uuid_string(h.finalize()[..16].try_into().expect("16 bytes"))
    }
}

/// `bytes` as a UUID of version 4 layout (random-looking), RFC 4122 variant.
pub(crate) fn uuid_string(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

/// A step of a build, reported as it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Copying the .deb files into a local repository, each hashed against its pin.
    Repository,
    /// mmdebstrap installing the packages into the root tree (the long step).
    Bootstrap,
    /// Copying out the kernel and initrd.
    BootFiles,
    /// The tree's grub-mkimage making GRUB's BIOS and UEFI images, and its grub.cfg.
    BootLoader,
    /// mke2fs making the ext4 root file system from the tree.
    Filesystem,
    /// mksquashfs making the netboot root file system from the tree.
    Squashfs,
    /// The partition table, GRUB and the partitions written into the disk image.
    Disk,
    /// qemu-img converting it to qcow2.
    Qcow2,
    /// Hashing the outputs: MANIFEST.json and SHA256SUMS.
    Checksums,
}

impl Step {
    /// What the step does, for progress lines.
    pub fn describe(self) -> &'static str {
        match self {
            Step::Repository => "local apt repository from the vendored packages",
            Step::Bootstrap => {
                "installing the packages into the root tree (mmdebstrap, no network)"
            }
            Step::BootFiles => "kernel and initrd",
            Step::BootLoader => "GRUB for BIOS and UEFI (the tree's grub-mkimage)",
            Step::Squashfs => "netboot root file system (mksquashfs)",
            Step::Filesystem => "ext4 root file system (mke2fs -d)",
            Step::Disk => "bootable disk image (GPT, GRUB, EFI system partition)",
            Step::Qcow2 => "qcow2 disk image (qemu-img)",
            Step::Checksums => "MANIFEST.json and SHA256SUMS",
        }
    }
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// Its name in the image folder.
    pub name: String,
    /// Its sha256.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a build wrote.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image files, then MANIFEST.json (SHA256SUMS lists them all).
    pub files: Vec<OutFile>,
    /// The file system's UUID.
    pub fs_uuid: String,
}

/// Builds the image of `recipe` into the empty folder `out`, using `work` (created, left for
/// the caller to remove) for the repository and the root tree.
pub fn build(
    recipe: &Recipe,
    work: &Path,
    out: &Path,
    progress: &dyn Fn(Step),
) -> Result<Built, GoldenError> {
    preflight()?;
    let progress = |s: Step| {
        tracing::info!(step = s.describe(), "golden image");
        progress(s)
    };
    fs::create_dir_all(work).map_err(GoldenError::io("create folder", work))?;
    progress(Step::Repository);
    let repo = work.join("repo");
    repo::write(&repo, recipe)?;
    progress(Step::Bootstrap);
    let root = work.join("root");
    disk::bootstrap(recipe, &repo, &root, &work.join("mmdebstrap.log"))?;
    progress(Step::BootFiles);
    // Before the times are set: reading the files would change their access times.
    disk::boot_files(&root, out)?;
    let uuid = recipe.fs_uuid();
    progress(Step::BootLoader);
    let loaders = bootdisk::make_loaders(&root, &uuid)?;
    disk::normalize_times(&root, recipe.source_date_epoch)?;
    progress(Step::Filesystem);
    let ext4 = work.join("root.ext4");
    disk::ext4(&root, &ext4, &uuid, recipe, work)?;
    // After mke2fs: reading the tree sets access times, which mke2fs copies (mksquashfs keeps
    // none: every time in it is the epoch).
    progress(Step::Squashfs);
    disk::squashfs(&root, &out.join(NETBOOT_ROOT), recipe.source_date_epoch)?;
    progress(Step::Disk);
    bootdisk::assemble(recipe, &uuid, &loaders, &ext4, work, &out.join("disk.raw"))?;
    fs::remove_file(&ext4).map_err(GoldenError::io("remove", &ext4))?;
    progress(Step::Qcow2);
    disk::qcow2(&out.join("disk.raw"), &out.join("disk.qcow2"))?;
    progress(Step::Checksums);
    let mut files = Vec::new();
    for name in FILES {
        let path = out.join(name);
        let (sha256, size) = disk::hash_file(&path)?;
        files.push(OutFile {
            name: name.into(),
            sha256,
            size,
        });
    }
    let manifest = manifest(recipe, &uuid, &files);
    let path = out.join("MANIFEST.json");
    kiln_fsio::write_atomic(&path, manifest.as_bytes(), 0o644)?;
    files.push(OutFile {
        name: "MANIFEST.json".into(),
        sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(manifest.as_bytes())),
        size: manifest.len() as u64,
    });
    let sums: String = files
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect();
    kiln_fsio::write_atomic(&out.join("SHA256SUMS"), sums.as_bytes(), 0o644)?;
    Ok(Built {
        files,
        fs_uuid: uuid,
    })
}

/// MANIFEST.json: what the image is made of and every file's digest (canonical: sorted keys).
fn manifest(recipe: &Recipe, uuid: &str, files: &[OutFile]) -> String {
    use serde_json::json;
    let mut debs: Vec<&Deb> = recipe.debs.iter().collect();
    debs.sort_by(|a, b| a.name.cmp(&b.name));
    let packages: Vec<_> = debs
        .iter()
        .map(|d| json!({"name": d.name, "version": d.version, "arch": d.arch, "sha256": d.sha256}))
        .collect();
    let files: BTreeMap<&str, _> = files
        .iter()
        .map(|f| (f.name.as_str(), json!({"sha256": f.sha256, "size": f.size})))
        .collect();
    let doc = json!({
        "kind": "kiln-golden-image",
        "os": recipe.os,
        "codename": recipe.codename,
        "arch": recipe.arch,
        "source-date-epoch": recipe.source_date_epoch,
        "kernel": {"name": recipe.kernel, "initrd-modules": recipe.initrd_modules},
        "filesystem": {"type": "ext4", "label": FS_LABEL, "uuid": uuid, "size-mib": bootdisk::ROOT.size_mib},
        "disk": {
            "size-mib": DISK_MIB,
            "partition-table": "gpt",
            "partitions": [
                {"name": "bios-boot", "start-mib": bootdisk::BIOS_BOOT.start_mib, "size-mib": bootdisk::BIOS_BOOT.size_mib, "holds": "GRUB core.img (i386-pc)"},
                {"name": "esp", "start-mib": bootdisk::ESP.start_mib, "size-mib": bootdisk::ESP.size_mib, "holds": bootdisk::EFI_LOADER},
                {"name": FS_LABEL, "start-mib": bootdisk::ROOT.start_mib, "size-mib": bootdisk::ROOT.size_mib, "holds": "the ext4 root file system"},
            ],
        },
        "boot": {
            "boot-loader": "grub",
            "firmware": ["bios", "uefi"],
            "config": "/boot/grub/grub.cfg",
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "append": format!("root=UUID={uuid} ro console=tty0 console=ttyS0"),
        },
        "netboot": {
            "kernel": "vmlinuz",
            "initrd": "initrd.img",
            "root": NETBOOT_ROOT,
            "append": "boot=live fetch=<url of root.squashfs> console=ttyS0",
        },
        "packages": packages,
        "files": files,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("a JSON value serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(pins: &[&str], epoch: u64) -> Recipe {
        Recipe {
            os: "debian12".into(),
            codename: "bookworm".into(),
            arch: "amd64".into(),
            debs: pins
                .iter()
                .map(|p| Deb {
                    name: p.to_string(),
                    version: "1".into(),
                    arch: "all".into(),
                    path: PathBuf::from("x"),
                    file_name: "x.deb".into(),
                    sha256: p.repeat(64),
                })
                .collect(),
            source_date_epoch: epoch,
            kernel: "cloud".into(),
            initrd_modules: "list".into(),
        }
    }

    #[test]
    fn the_file_system_uuid_follows_the_pins_and_epoch_not_their_order() {
        let u = recipe(&["a", "b"], 1).fs_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4', "version 4 layout: {u}");
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{u}");
        assert_eq!(recipe(&["b", "a"], 1).fs_uuid(), u);
        assert_ne!(recipe(&["a", "c"], 1).fs_uuid(), u);
        assert_ne!(recipe(&["a", "b"], 2).fs_uuid(), u);
    }
}
