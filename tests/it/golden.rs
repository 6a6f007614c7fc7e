//! `kiln image`: the golden Debian 12 image of examples/golden, built offline from its lock and
//! vendored packages (fetched by the set-up: see README). Bad states are refused naming the
//! command that fixes them, changing nothing; two builds under another TZ, umask, working and
//! output folder give the same bytes; the image holds what the hooks set.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{kiln, kiln_in, repo, tree_state, Fixture};

/// examples/golden's cluster.toml in `dir`, reading the repository's inputs, with `vendor`
/// as its store and `lock` as its lock.
fn golden_project(dir: &Path, vendor: &Path, lock: &Path) -> PathBuf {
    let r = repo();
    let text = fs::read_to_string(r.join("examples/golden/cluster.toml"))
        .unwrap()
        .replace(
            "[paths]\n",
            &format!(
                "[paths]\nvendor = \"{}\"\nlock = \"{}\"\n",
                vendor.display(),
                lock.display()
            ),
        )
        .replace("\"../../", &format!("\"{}/", r.display()));
    let file = dir.join("cluster.toml");
    fs::write(&file, text).unwrap();
    file
}

fn golden_vendor() -> PathBuf {
    repo().join("examples/golden/vendor")
}

fn golden_lock() -> PathBuf {
    repo().join("examples/golden/kiln.lock")
}

/// Whether every blob examples/golden/kiln.lock pins is in its store.
fn golden_vendor_ready() -> bool {
    let lock = fs::read_to_string(golden_lock()).unwrap();
    let store = golden_vendor().join("sha256");
    lock.lines()
        .filter_map(|l| l.strip_prefix("sha256 = \""))
        .all(|s| store.join(&s[..64]).is_file())
}

#[test]
fn image_of_a_cluster_without_an_image_table_says_how_to_add_one_and_changes_nothing() {
    let fx = Fixture::small();
    let before = tree_state(&fx.dir);
    let (code, stderr) = kiln_in(&fx.dir, &["image", "cluster.toml"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cluster.toml has no [image] table: add one")
            && stderr.contains("then run `kiln lock` and `kiln fetch`"),
        "{stderr}"
    );
    assert_eq!(tree_state(&fx.dir), before);
}

/// Runs `kiln image` in `dir` expecting exit 1 with every needle, and no file changed.
fn refused(dir: &Path, needles: &[&str]) {
    let before = tree_state(dir);
    let (code, stderr) = kiln_in(dir, &["image", "cluster.toml", "--out", "out"]);
    assert_eq!(code, Some(1), "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "missing {n:?} in:\n{stderr}");
    }
    assert_eq!(tree_state(dir), before, "files changed on disk");
}

#[test]
fn image_packages_not_locked_are_named_with_kiln_lock() {
    let tmp = tempfile::tempdir().unwrap();
    // The lock without the image's closure: as locked before [image] was added.
    let text = fs::read_to_string(golden_lock()).unwrap();
    let mut lock: toml::Table = toml::from_str(&text).unwrap();
    lock["closure"]
        .as_array_mut()
        .unwrap()
        .retain(|c| c["role"].as_str() != Some("@image"));
    let lock_file = tmp.path().join("kiln.lock");
    fs::write(&lock_file, toml::to_string(&lock).unwrap()).unwrap();
    golden_project(tmp.path(), &golden_vendor(), &lock_file);
    refused(
        tmp.path(),
        &[
            "the golden image's packages (debian12) are not pinned in",
            "run `kiln lock` to pin them",
        ],
    );

    // [image] asks for one more package than the lock's closure was computed from.
    let tmp = tempfile::tempdir().unwrap();
    let file = golden_project(tmp.path(), &golden_vendor(), &golden_lock());
    let text = fs::read_to_string(&file)
        .unwrap()
        .replace("packages = [\"less\"]", "packages = [\"less\", \"nano\"]");
    fs::write(&file, text).unwrap();
    refused(
        tmp.path(),
        &[
            "the golden image's packages (debian12): [image] in cluster.toml or the catalog's [os-image.debian12] changed since they were locked",
            "run `kiln lock`",
        ],
    );
}

#[test]
fn image_kernel_is_one_the_catalog_has_and_another_one_needs_a_new_lock() {
    let with_kernel = |kernel: &str| {
        let tmp = tempfile::tempdir().unwrap();
        let file = golden_project(tmp.path(), &golden_vendor(), &golden_lock());
        let text = fs::read_to_string(&file).unwrap().replace(
            "packages = [\"less\"]",
            &format!("packages = [\"less\"]\nkernel = \"{kernel}\""),
        );
        fs::write(&file, &text).unwrap();
        (tmp, text)
    };
    // A kernel the catalog does not have: named where it is written, with the ones it has.
    let (tmp, text) = with_kernel("metal");
    let line = text
        .lines()
        .position(|l| l.starts_with("kernel ="))
        .unwrap()
        + 1;
    refused(
        tmp.path(),
        &[
            &format!("cluster.toml:{line}:10"),
            "`image.kernel`",
            "has no [os-image.debian12.kernel.metal]; expected one of \"cloud\" (Debian's cloud kernel",
            "\"generic\" (Debian's generic kernel",
        ],
    );
    // The generic kernel is another package set than examples/golden locked (the cloud one).
    let (tmp, _) = with_kernel("generic");
    refused(
        tmp.path(),
        &["changed since they were locked", "run `kiln lock`"],
    );
    // The default, named: the same set as the lock's.
    let (tmp, _) = with_kernel("cloud");
    let (code, stderr) = kiln_in(tmp.path(), &["check", "cluster.toml"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn image_packages_not_fetched_are_named_with_kiln_fetch_and_no_store_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let vendor = tmp.path().join("vendor");
    golden_project(tmp.path(), &vendor, &golden_lock());
    let lock = fs::read_to_string(golden_lock()).unwrap();
    let lock: toml::Table = toml::from_str(&lock).unwrap();
    let image = lock["closure"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"].as_str() == Some("@image"))
        .unwrap();
    let count = image["install"].as_array().unwrap().len();
    refused(
        tmp.path(),
        &[
            &format!("{count} of the golden image's packages are not in the store"),
            "libc6 ",
            "run `kiln fetch` to download them",
        ],
    );
    assert!(!vendor.exists());
}

/// The contents of `path` in the ext4 image `disk` (debugfs, no mount), or None if absent.
fn disk_file(disk: &Path, path: &str) -> Option<String> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(disk)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    (!err.contains("File not found")).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd`, which must succeed; its output.
fn succeeded(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn golden_image_builds_offline_twice_to_the_same_bytes_and_holds_what_the_hooks_set() {
    let tools = [
        "mmdebstrap",
        "unshare",
        "mke2fs",
        "debugfs",
        "qemu-img",
        "mksquashfs",
        "unsquashfs",
        "sha256sum",
        "sfdisk",
        "fsck.vfat",
        "mcopy",
    ];
    if !kiln_testkit::have_tools("golden_image", &tools)
        || !kiln_testkit::ready(
            "golden_image",
            kiln_testkit::is_root(),
            "needs root (mmdebstrap --mode=root)",
        )
    {
        return;
    }
    assert!(golden_vendor_ready(), "examples/golden/vendor is not filled: run `cargo run -- fetch examples/golden/cluster.toml` (the set-up in README.md does)");
    let tmp = tempfile::tempdir().unwrap();
    let file = golden_project(tmp.path(), &golden_vendor(), &golden_lock());
    // Two builds, each with its own TZ, umask, working folder and output folder (one after
    // the other: at once they take longer on two cores than in turn).
    let mut dirs = Vec::new();
    for (tz, umask, sub) in [("UTC", "022", "a"), ("Pacific/Chatham", "077", "b/c")] {
        let out = tmp.path().join(sub).join("out");
        let cwd = tmp.path().join(sub);
        fs::create_dir_all(&cwd).unwrap();
        let run = Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$@\""))
            .arg("sh")
            .arg(kiln().get_program())
            .args(["image", file.to_str().unwrap(), "--out"])
            .arg(&out)
            .current_dir(&cwd)
            .env("TZ", tz)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let dir = out.join("golden-image");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            stdout.starts_with(&format!("{}\n", dir.display())),
            "{stdout}"
        );
        dirs.push(dir);
    }
    let names = |d: &Path| {
        let mut v: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&dirs[0]),
        [
            "MANIFEST.json",
            "SHA256SUMS",
            "disk.qcow2",
            "disk.raw",
            "initrd.img",
            "root.squashfs",
            "vmlinuz"
        ]
    );
    assert_eq!(names(&dirs[0]), names(&dirs[1]));
    // The same bytes: SHA256SUMS lists every file, and sha256sum checks each against it.
    let sums = fs::read_to_string(dirs[0].join("SHA256SUMS")).unwrap();
    assert_eq!(
        sums,
        fs::read_to_string(dirs[1].join("SHA256SUMS")).unwrap()
    );
    // (One folder is enough: the other's sums are the same text.)
    let check = Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(&dirs[1])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert_eq!(sums.lines().count(), 6, "{sums}");
    // The netboot root: the same tree as a squashfs, with live-boot's scripts (its initrd
    // fetches and mounts it) and cloud-init.
    let listing = Command::new("unsquashfs")
        .args(["-l", "-d", "root"])
        .arg(dirs[0].join("root.squashfs"))
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for path in [
        "root/usr/lib/live/boot/9990-overlay.sh",
        "root/usr/lib/live/boot/9990-fstab.sh",
        "root/usr/bin/cloud-init",
        "root/etc/cloud/cloud.cfg.d",
    ] {
        assert!(
            listing.lines().any(|l| l == path),
            "{path} not in root.squashfs"
        );
    }
    // But not the disk's fstab (its root is the ext4 partition): live-boot writes the live
    // system's own.
    assert!(
        listing.lines().any(|l| l == "root/etc/hosts")
            && !listing.lines().any(|l| l == "root/etc/fstab"),
        "root.squashfs has the disk's /etc/fstab"
    );
    // The image's cloud-init configuration passes cloud-init's own schema (the guest merges it
    // with each seed's user-data, which the seeds' tests check, and warns on every boot if the
    // whole is invalid).
    let cfg = Command::new("unsquashfs")
        .args(["-cat"])
        .arg(dirs[0].join("root.squashfs"))
        .arg("etc/cloud/cloud.cfg.d/90-kiln.cfg")
        .output()
        .unwrap();
    assert!(cfg.status.success(), "{cfg:?}");
    let cfg_file = tmp.path().join("90-kiln.cfg");
    let mut text = b"#cloud-config\n".to_vec();
    text.extend_from_slice(&cfg.stdout);
    fs::write(&cfg_file, &text).unwrap();
    let schema = crate::seeds::tool("cloud-init", "cloud-init")
        .args(["schema", "--config-file"])
        .arg(&cfg_file)
        .output()
        .unwrap();
    assert!(
        schema.status.success() && String::from_utf8_lossy(&cfg.stdout).contains("NoCloud"),
        "{}{}{}",
        String::from_utf8_lossy(&text),
        String::from_utf8_lossy(&schema.stdout),
        String::from_utf8_lossy(&schema.stderr)
    );
    // Nothing but the image folder is left in the out folder (no staging or scratch).
    assert_eq!(names(dirs[1].parent().unwrap()), ["golden-image"]);

    // MANIFEST.json: the lock's closure, the epoch and the file system's UUID.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dirs[0].join("MANIFEST.json")).unwrap()).unwrap();
    let lock: toml::Table = toml::from_str(&fs::read_to_string(golden_lock()).unwrap()).unwrap();
    let closure = lock["closure"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["role"].as_str() == Some("@image"))
        .unwrap();
    let mut want: Vec<&str> = closure["install"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    want.sort();
    let got: Vec<&str> = manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        manifest["source-date-epoch"].as_i64(),
        lock["source-date-epoch"].as_integer()
    );
    let uuid = manifest["filesystem"]["uuid"].as_str().unwrap();

    // The disk: a GPT with the BIOS boot partition, the EFI system partition and the root
    // partition, as MANIFEST.json says.
    let disk = dirs[0].join("disk.raw");
    let table = Command::new("sfdisk")
        .arg("--json")
        .arg(&disk)
        .output()
        .unwrap();
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).unwrap();
    let table = &table["partitiontable"];
    assert_eq!(table["label"], "gpt", "{table}");
    let parts = table["partitions"].as_array().unwrap();
    let described = manifest["disk"]["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 3, "{table}");
    assert_eq!(described.len(), 3, "{manifest}");
    for ((part, want), kind) in parts.iter().zip(described).zip([
        "21686148-6449-6E6F-744E-656564454649",
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
    ]) {
        assert_eq!(part["type"], kind, "{part}");
        assert_eq!(part["name"], want["name"], "{part}");
        assert_eq!(
            part["start"].as_u64().unwrap() * 512,
            want["start-mib"].as_u64().unwrap() << 20
        );
        assert_eq!(
            part["size"].as_u64().unwrap() * 512,
            want["size-mib"].as_u64().unwrap() << 20
        );
    }
    succeeded(Command::new("sfdisk").arg("--verify").arg(&disk));
    let offset = |i: usize| parts[i]["start"].as_u64().unwrap() * 512;
    let bytes_at = |at: u64, len: usize| {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = fs::File::open(&disk).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).unwrap();
        buf
    };
    // BIOS: GRUB's boot sector in the MBR loads core.img from the BIOS boot partition's first
    // sector, whose block list loads the rest of it from the sectors after.
    let mbr = bytes_at(0, 512);
    assert_eq!(&mbr[510..], &[0x55, 0xaa]);
    let core_sector = u64::from_le_bytes(mbr[0x5c..0x64].try_into().unwrap());
    assert_eq!(core_sector * 512, offset(0));
    let core = bytes_at(offset(0), 512);
    assert_eq!(
        u64::from_le_bytes(core[500..508].try_into().unwrap()),
        core_sector + 1
    );
    // UEFI: the EFI system partition is a clean FAT volume holding GRUB's EFI application at
    // the removable-media path.
    let esp = tmp.path().join("esp.fat");
    fs::write(
        &esp,
        bytes_at(
            offset(1),
            (parts[1]["size"].as_u64().unwrap() * 512) as usize,
        ),
    )
    .unwrap();
    succeeded(Command::new("fsck.vfat").arg("-n").arg(&esp));
    let efi = succeeded(
        Command::new("mcopy")
            .args(["-n", "-i"])
            .arg(&esp)
            .args(["::EFI/BOOT/BOOTX64.EFI", "-"]),
    );
    assert_eq!(&efi.stdout[..2], b"MZ", "BOOTX64.EFI is not a PE image");
    // The root partition: ext4 labelled rootfs with that UUID, every time the epoch, clean
    // (e2fsprogs reads it in place: `disk.raw?offset=N`).
    let disk = PathBuf::from(format!("{}?offset={}", disk.display(), offset(2)));
    let header = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&disk)
        .output()
        .unwrap();
    let header = String::from_utf8_lossy(&header.stdout);
    assert!(
        header.contains(&format!("Filesystem UUID:          {uuid}")),
        "{header}"
    );
    assert!(
        header.contains("Filesystem volume name:   rootfs"),
        "{header}"
    );
    // GRUB's menu boots the kernel with that root.
    let grub = disk_file(&disk, "/boot/grub/grub.cfg").unwrap();
    assert!(
        grub.contains(&format!("linux /vmlinuz root=UUID={uuid} ro")),
        "{grub}"
    );
    // grub-mkimage's scratch folder in the tree is gone.
    assert_eq!(disk_file(&disk, "/tmp/kiln-grub/early.cfg"), None);
    succeeded(Command::new("e2fsck").arg("-fn").arg(&disk));
    let stat = Command::new("debugfs")
        .args(["-R", "stat /usr/bin/cloud-init"])
        .arg(&disk)
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&stat.stdout);
    let epoch = lock["source-date-epoch"].as_integer().unwrap();
    for t in ["ctime", "atime", "mtime", "crtime"] {
        let want = format!("{t}: 0x{epoch:08x}:00000000");
        assert!(
            stat.lines().any(|l| l.trim_start().starts_with(&want)),
            "{t} in:\n{stat}"
        );
    }

    // The root tree as the guest image's hooks set it.
    assert_eq!(
        disk_file(&disk, "/etc/cloud/cloud.cfg.d/90-kiln.cfg").as_deref(),
        Some("datasource_list: [ NoCloud, None ]\nlocale: C.UTF-8\nssh_keys: {}\n")
    );
    assert_eq!(disk_file(&disk, "/etc/machine-id").as_deref(), Some(""));
    assert_eq!(disk_file(&disk, "/etc/resolv.conf").as_deref(), Some(""));
    assert_eq!(
        disk_file(&disk, "/etc/fstab").as_deref(),
        Some("LABEL=rootfs / ext4 rw,errors=remount-ro 0 1\n")
    );
    assert_eq!(
        disk_file(&disk, "/etc/initramfs-tools/conf.d/kiln.conf").as_deref(),
        Some("MODULES=list\n")
    );
    // No apt source (it named the build's temporary repository), no host name.
    assert_eq!(disk_file(&disk, "/etc/apt/sources.list"), None);
    assert_eq!(disk_file(&disk, "/etc/hostname"), None);
    assert_eq!(disk_file(&disk, "/etc/apt/apt.conf.d/99mmdebstrap"), None);
    // The catalog's packages and [image]'s extra one are installed.
    let status = disk_file(&disk, "/var/lib/dpkg/status").unwrap();
    for p in [
        "cloud-init",
        "curl",
        "linux-image-cloud-amd64",
        "less",
        "grub-pc-bin",
        "grub-efi-amd64-bin",
        "cloud-guest-utils",
    ] {
        assert!(
            status.contains(&format!("Package: {p}\nStatus: install ok installed\n")),
            "{p} is not installed"
        );
    }

    // The netboot set: a bzImage kernel and the tree's own initrd.
    let kernel = fs::read(dirs[0].join("vmlinuz")).unwrap();
    assert_eq!(
        &kernel[0x202..0x206],
        b"HdrS",
        "vmlinuz is not a Linux bzImage"
    );
    let initrd = fs::read(dirs[0].join("initrd.img")).unwrap();
    let boot = Command::new("debugfs")
        .args(["-R", "ls -p /boot"])
        .arg(&disk)
        .output()
        .unwrap();
    let boot = String::from_utf8_lossy(&boot.stdout);
    let name = boot
        .split('/')
        .find(|f| f.starts_with("initrd.img-"))
        .unwrap_or_else(|| panic!("no initrd in /boot: {boot}"));
    let copy = tmp.path().join("initrd-from-disk");
    let dump = Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /boot/{name} {}", copy.display()))
        .arg(&disk)
        .output()
        .unwrap();
    assert!(dump.status.success());
    assert!(
        fs::read(&copy).unwrap() == initrd,
        "initrd.img is not /boot/{name}"
    );
    // The small initrd (MODULES=list, virtio only, plus what live-boot's hook adds for network
    // boot: network drivers, busybox): about 10 MB, not 15+.
    assert!(initrd.len() < 12 << 20, "initrd is {} bytes", initrd.len());
    // qcow2 of the raw disk.
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(dirs[0].join("disk.qcow2"))
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"].as_u64(), Some(2048 << 20));
    let cmp = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(dirs[0].join("disk.raw"))
        .arg(dirs[0].join("disk.qcow2"))
        .output()
        .unwrap();
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
}

#[test]
fn image_without_its_tools_or_root_names_what_is_missing_and_changes_nothing() {
    assert!(golden_vendor_ready(), "examples/golden/vendor is not filled: run `cargo run -- fetch examples/golden/cluster.toml` (the set-up in README.md does)");
    let tmp = tempfile::tempdir().unwrap();
    golden_project(tmp.path(), &golden_vendor(), &golden_lock());
    // No mmdebstrap on PATH (kiln also looks in /usr/sbin and /sbin, where it is not).
    let before = tree_state(tmp.path());
    let out = kiln()
        .current_dir(tmp.path())
        .args(["image", "cluster.toml", "--out", "out"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "kiln image needs mmdebstrap, which is not installed (apt-get install mmdebstrap)"
        ),
        "{stderr}"
    );
    assert_eq!(tree_state(tmp.path()), before);

    // Not root: as nobody, through util-linux's setpriv (only root can switch users).
    if !kiln_testkit::have_tools("image_not_root", &["setpriv", "mmdebstrap"])
        || !kiln_testkit::ready(
            "image_not_root",
            kiln_testkit::is_root(),
            "needs root to run kiln as another user",
        )
    {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(kiln().get_program())
        .args(["image", "cluster.toml", "--out", "out"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("kiln image needs root: mmdebstrap --mode=root"),
        "{stderr}"
    );
    assert_eq!(tree_state(tmp.path()), before);
}
