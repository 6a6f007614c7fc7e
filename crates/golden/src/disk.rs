//! The root tree, the boot files and the disk images, each step a real tool run with a fixed
//! environment (UTC, C locale, umask 022, `SOURCE_DATE_EPOCH`) so the build machine's settings
//! do not reach the bytes.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::{bootdisk, GoldenError, Recipe, FS_LABEL};

/// `program` with the environment every step runs in. The umask is set by the shell wrapper
/// [`run`] uses; e2fsprogs' folders are added to `PATH`.
pub(crate) fn command(program: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 022; exec \"$@\"")
        .arg("sh")
        .arg(program);
    let path = std::env::var("PATH").unwrap_or_default();
    c.env("PATH", format!("{path}:/usr/sbin:/sbin"))
        .env("TZ", "UTC")
        .env("LC_ALL", "C.UTF-8")
        .env_remove("LANGUAGE")
        .env_remove("APT_CONFIG")
        .env_remove("TMPDIR")
        .stdin(Stdio::null());
    c
}

/// Runs `cmd`, returning its stdout; a failure names `what` and carries the end of stderr.
pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, GoldenError> {
    let out = cmd.output().map_err(|e| GoldenError::Command {
        command: what.to_owned(),
        status: "could not start".into(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(GoldenError::Command {
            command: what.to_owned(),
            status: out.status.to_string(),
            detail: tail(&String::from_utf8_lossy(&out.stderr), 20),
        });
    }
    Ok(out.stdout)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// mmdebstrap, in a network namespace of its own (no network: only the local repository),
/// installs every package of the recipe into `root` with kiln's hooks. Its output goes to `log`
/// (in the scratch folder).
pub(crate) fn bootstrap(
    recipe: &Recipe,
    repo: &Path,
    root: &Path,
    log: &Path,
) -> Result<(), GoldenError> {
    let mut names: Vec<&str> = recipe.debs.iter().map(|d| d.name.as_str()).collect();
    names.sort();
    let mut cmd = command("unshare");
    cmd.arg("--net")
        .arg("--")
        .arg("mmdebstrap")
        .arg("--mode=root")
        // minbase selects priority-required packages from the repository, which holds only
        // the locked closure; --include names all of it, so exactly the closure is installed.
        .arg("--variant=minbase")
        .arg(format!("--architectures={}", recipe.arch))
        .arg(format!("--include={}", names.join(",")))
        .arg("--aptopt=Acquire::Languages \"none\"")
        // apt's download sandbox user (_apt) may not reach the repository (a 0700 parent,
        // a umask of 077): apt then falls back to root and leaves its partial folders owned
        // by root instead of _apt. Always root, so the owner never depends on the machine.
        .arg("--aptopt=APT::Sandbox::User \"root\"")
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        ])
        .arg(format!("--essential-hook={}", crate::ESSENTIAL_HOOK))
        .args(initrd_hook(&recipe.initrd_modules))
        .arg(format!("--customize-hook={}", crate::CUSTOMIZE_HOOK))
        .arg(&recipe.codename)
        .arg(root)
        // copy://: mmdebstrap copies the files into the tree, which a file:// repository
        // outside it would need bind-mounted.
        .arg(format!("deb [trusted=yes] copy://{} ./", repo.display()))
        .env("SOURCE_DATE_EPOCH", recipe.source_date_epoch.to_string());
    let out = File::create(log).map_err(GoldenError::io("create", log))?;
    let err = out.try_clone().map_err(GoldenError::io("open", log))?;
    cmd.stdout(out).stderr(err);
    let status = cmd.status().map_err(|e| GoldenError::Command {
        command: "unshare --net mmdebstrap".into(),
        status: "could not start".into(),
        detail: e.to_string(),
    })?;
    if !status.success() {
        let text = fs::read_to_string(log).unwrap_or_default();
        // The scratch folder (and the log in it) is removed when the build ends: the error
        // carries the end of the log.
        return Err(GoldenError::Command {
            command: "unshare --net mmdebstrap".into(),
            status: status.to_string(),
            detail: tail(&text, 30),
        });
    }
    Ok(())
}

/// The essential hook that replaces the small initrd's `MODULES=list` (written by
/// [`crate::ESSENTIAL_HOOK`]) with `modules`, before the kernel's postinst builds the initrd;
/// none for `list`.
pub(crate) fn initrd_hook(modules: &str) -> Option<String> {
    (modules != "list").then(|| {
        format!(
            "--essential-hook=echo MODULES={modules} > \"$1/etc/initramfs-tools/conf.d/kiln.conf\""
        )
    })
}

/// Sets every access and modification time in `root` (links themselves too) to `epoch`:
/// mke2fs -d copies them into the image.
pub(crate) fn normalize_times(root: &Path, epoch: u64) -> Result<(), GoldenError> {
    run(
        command("find")
            .arg(root)
            .args(["-exec", "touch", "-h", "-d"])
            .arg(format!("@{epoch}"))
            .args(["{}", "+"]),
        "find -exec touch -h",
    )?;
    Ok(())
}

/// Copies the tree's one kernel and one initrd to `out/vmlinuz` and `out/initrd.img`.
pub(crate) fn boot_files(root: &Path, out: &Path) -> Result<(), GoldenError> {
    let boot = root.join("boot");
    let names: Vec<String> = fs::read_dir(&boot)
        .map_err(GoldenError::io("read folder", &boot))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for (prefix, what, dest) in [
        ("vmlinuz-", "vmlinuz-*", "vmlinuz"),
        ("initrd.img-", "initrd.img-*", "initrd.img"),
    ] {
        let mut found: Vec<String> = names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .cloned()
            .collect();
        found.sort();
        if found.len() != 1 {
            return Err(GoldenError::BootFile {
                dir: boot,
                what,
                found,
            });
        }
        let src = boot.join(&found[0]);
        let bytes = fs::read(&src).map_err(GoldenError::io("read", &src))?;
        kiln_fsio::write_atomic(&out.join(dest), &bytes, 0o644)?;
    }
    Ok(())
}

/// The ext4 file system of `root` (the disk's root partition): a fixed UUID and hash seed, every time (the file system's
/// own through `E2FSPROGS_FAKE_TIME`, the inodes' from the tree) the epoch, and then the inode
/// change times, which mke2fs 1.47.0 copies from the tree, set to the epoch too.
pub(crate) fn ext4(
    root: &Path,
    dest: &Path,
    uuid: &str,
    recipe: &Recipe,
    work: &Path,
) -> Result<(), GoldenError> {
    let epoch = recipe.source_date_epoch;
    let temp = kiln_fsio::TempFile::beside(dest, 0o644)?;
    let disk = temp.path().to_owned();
    run(
        command("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-L", FS_LABEL, "-U", uuid, "-E"])
            .arg(format!("root_owner=0:0,hash_seed={uuid}"))
            .arg("-d")
            .arg(root)
            .arg(&disk)
            .arg(format!("{}M", bootdisk::ROOT.size_mib))
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string()),
        "mke2fs -d",
    )?;
    // mke2fs numbers inodes in the order it walks the tree (sorted), from the first
    // non-reserved inode on: the used ones are the root (2) and 11..=count-free.
    let header = run(command("dumpe2fs").arg("-h").arg(&disk), "dumpe2fs -h")?;
    let header = String::from_utf8_lossy(&header);
    let field = |name: &str| -> Option<u64> {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    let (Some(count), Some(free)) = (field("Inode count:"), field("Free inodes:")) else {
        return Err(GoldenError::Command {
            command: "dumpe2fs -h".into(),
            status: "no inode counts in its output".into(),
            detail: String::new(),
        });
    };
    let mut script = format!("sif <2> ctime @{epoch}\n");
    for ino in 11..=(count - free) {
        script.push_str(&format!("sif <{ino}> ctime @{epoch}\n"));
    }
    let script_path = work.join("ctimes.debugfs");
    fs::write(&script_path, script).map_err(GoldenError::io("write", &script_path))?;
    let out = command("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(&disk)
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .output()
        .map_err(|e| GoldenError::Command {
            command: "debugfs -w".into(),
            status: "could not start".into(),
            detail: e.to_string(),
        })?;
    // debugfs exits 0 whatever its commands did: any line but its banner is an error.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs "))
        .collect();
    if !out.status.success() || !problems.is_empty() {
        return Err(GoldenError::Command {
            command: "debugfs -w (inode change times)".into(),
            status: out.status.to_string(),
            detail: tail(&problems.join("\n"), 20),
        });
    }
    run(command("e2fsck").arg("-fn").arg(&disk), "e2fsck -fn")?;
    temp.commit(dest)?;
    Ok(())
}

/// `qemu-img convert -O qcow2` of the raw disk.
pub(crate) fn qcow2(raw: &Path, dest: &Path) -> Result<(), GoldenError> {
    let temp = kiln_fsio::TempFile::beside(dest, 0o644)?;
    run(
        command("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(raw)
            .arg(temp.path()),
        "qemu-img convert -O qcow2",
    )?;
    temp.commit(dest)?;
    Ok(())
}

/// The netboot set's root file system: a squashfs of the tree, reproducible (`-reproducible`,
/// every time and the superblock's set to the epoch, inodes in sorted order whatever the
/// number of threads), gzip-compressed as live-boot's initrd reads it. Without `/etc/fstab`:
/// the disk's names the ext4 root (`LABEL=rootfs`), which a live system does not have, and
/// live-boot appends its overlay root to a file that is there (systemd then warns of two root
/// entries) but writes one of its own, the overlay root and a tmpfs `/tmp`, where none is.
pub(crate) fn squashfs(root: &Path, dest: &Path, epoch: u64) -> Result<(), GoldenError> {
    let temp = kiln_fsio::TempFile::beside(dest, 0o644)?;
    let epoch = epoch.to_string();
    run(
        command("mksquashfs")
            .arg(root)
            .arg(temp.path())
            .args(["-noappend", "-reproducible", "-comp", "gzip"])
            .args(["-mkfs-time", &epoch, "-all-time", &epoch])
            .args(["-e", "etc/fstab"])
            .args(["-no-progress", "-quiet"]),
        "mksquashfs",
    )?;
    temp.commit(dest)?;
    Ok(())
}

/// The sha256 and size of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(String, u64), GoldenError> {
    let mut f = File::open(path).map_err(GoldenError::io("open", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(GoldenError::io("read", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kernel_other_than_the_small_one_gets_a_second_initrd_hook() {
        assert_eq!(initrd_hook("list"), None);
        assert_eq!(
            initrd_hook("most").as_deref(),
            Some(
                "--essential-hook=echo MODULES=most > \"$1/etc/initramfs-tools/conf.d/kiln.conf\""
            )
        );
        // The first hook writes the file this one replaces.
        assert!(crate::ESSENTIAL_HOOK
            .contains("echo MODULES=list > \"$1/etc/initramfs-tools/conf.d/kiln.conf\""));
    }
}
