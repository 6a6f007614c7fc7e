//! What the builder needs on the machine, checked before anything is written.

use std::path::Path;

use crate::GoldenError;

/// The programs a build runs and the Debian packages that have them.
pub const TOOLS: [(&str, &str); 12] = [
    ("mmdebstrap", "mmdebstrap"),
    ("unshare", "util-linux"),
    ("dpkg-deb", "dpkg"),
    ("mke2fs", "e2fsprogs"),
    ("debugfs", "e2fsprogs"),
    ("dumpe2fs", "e2fsprogs"),
    ("e2fsck", "e2fsprogs"),
    ("qemu-img", "qemu-utils"),
    ("mksquashfs", "squashfs-tools"),
    ("find", "findutils"),
    ("sfdisk", "fdisk"),
    ("chroot", "coreutils"),
];

/// Fails naming the first missing tool, or if not running as root.
pub fn preflight() -> Result<(), GoldenError> {
    for (tool, package) in TOOLS {
        if kiln_fsio::find_executable(Path::new(tool), kiln_fsio::SYSTEM_DIRS).is_none() {
            return Err(GoldenError::MissingTool { tool, package });
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(GoldenError::NotRoot);
    }
    Ok(())
}
