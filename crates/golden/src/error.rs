//! The golden image builder's errors: each names the file, package or command.

use std::path::{Path, PathBuf};

/// A build failed.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// Not root: mmdebstrap's root mode makes device nodes and runs maintainer scripts as root.
    #[error("kiln image needs root: mmdebstrap --mode=root creates device nodes and runs the packages' maintainer scripts in the tree (run it with sudo)")]
    NotRoot,
    /// A tool is not installed.
    #[error("kiln image needs {tool}, which is not installed (apt-get install {package})")]
    MissingTool {
        /// The program.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A vendored .deb does not hash to its pin.
    #[error("{} ({name} {version}) does not match its pin: expected sha256 {expected}, got {actual}; run `kiln fetch` again", path.display())]
    Corrupt {
        /// The store blob.
        path: PathBuf,
        /// Package name.
        name: String,
        /// Version.
        version: String,
        /// The pin.
        expected: String,
        /// What the bytes hash to.
        actual: String,
    },
    /// A command failed.
    #[error("{command} failed ({status}){}", if detail.is_empty() { String::new() } else { format!(":\n{detail}") })]
    Command {
        /// The command line (program and the arguments that say what it did).
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its output.
        detail: String,
    },
    /// The tree does not have exactly one kernel or initrd.
    #[error("{}: expected exactly one {what}, found {}", dir.display(), if found.is_empty() { "none".to_string() } else { found.join(", ") })]
    BootFile {
        /// `/boot` of the tree.
        dir: PathBuf,
        /// `vmlinuz-*` or `initrd.img-*`.
        what: &'static str,
        /// What was there.
        found: Vec<String>,
    },
    /// The tree lacks GRUB's modules for a firmware.
    #[error("{}: no GRUB modules for the disk's boot loader; the image's packages need {package} (the catalog's [os-image] lists it: run `kiln lock` and `kiln fetch` again)", dir.display())]
    NoBootLoader {
        /// The module folder that is missing.
        dir: PathBuf,
        /// The package that has it.
        package: &'static str,
    },
    /// One of GRUB's images is not laid out as expected.
    #[error("GRUB's {what} cannot be installed: {reason}")]
    GrubImage {
        /// `boot.img`, `core.img`.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A partition's content (the EFI system partition, the root file system) is larger than
    /// the partition.
    #[error("{} is {size} bytes, larger than the disk's {size_mib} MiB {partition} partition", path.display())]
    PartitionOverflow {
        /// The content.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The partition's name.
        partition: &'static str,
        /// The partition's size.
        size_mib: u64,
    },
    /// The EFI system partition's FAT volume could not be written.
    #[error("the EFI system partition: {0}")]
    Fat(String),
    /// A file could not be read or written.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An output could not be written atomically.
    #[error(transparent)]
    Write(#[from] kiln_fsio::Error),
}

impl GoldenError {
    /// Maps an I/O error on `path` during `op`.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GoldenError {
        let path = path.to_owned();
        move |source| GoldenError::Io { op, path, source }
    }
}
