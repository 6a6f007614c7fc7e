//! What the builder needs on the machine, checked before anything is written.

use std::path::Path;

use crate::GoldenError;

/// The programs a build runs and the Debian packages that have them.
pub const TOOLS: [(&str, &str); 10] = [
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
];

/// Fails naming the first missing tool, or if not running as root.
pub fn preflight() -> Result<(), GoldenError> {
    for (tool, package) in TOOLS {
        if !on_path(tool) {
            return Err(GoldenError::MissingTool { tool, package });
        }
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(GoldenError::NotRoot);
    }
    Ok(())
}

/// Whether `tool` is an executable file in a folder of `PATH` (or /usr/sbin, /sbin, where
/// e2fsprogs lives, which a user's PATH may lack).
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(Into::into))
        .any(|d| {
            Path::new(&d)
                .join(tool)
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
