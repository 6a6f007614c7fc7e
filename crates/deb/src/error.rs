//! Errors of the Debian package layer: each names the package, file or apt command involved.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong asking apt about packages, solving closures or downloading.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DebError {
    /// A command could not be started.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        source: io::Error,
    },
    /// A command exited with failure.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A file of apt's private state (or its folder) could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The folder apt downloaded into could not be listed.
    #[error("cannot read {}", path.display())]
    ReadDir {
        /// The folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A .deb's data tarball could not be read to its end.
    #[error("cannot read the data tarball of {}", path.display())]
    DataTar {
        /// The .deb.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// An apt package for an architecture other than the host's.
    #[error("apt package {package}: architecture {arch} requested but apt on this machine serves {host}; fetch it on a {arch} machine or use an http source")]
    Arch {
        /// The package.
        package: String,
        /// The requested architecture.
        arch: String,
        /// The host architecture.
        host: String,
    },
    /// apt no longer offers a pinned version: an update superseded it and the mirror dropped it.
    #[error("apt package {package} {version} ({arch}) is pinned in kiln.lock but this machine's apt sources no longer offer it (an update superseded it): run `kiln lock --repin-packages` to pin what they offer now")]
    VersionGone {
        /// The package.
        package: String,
        /// The pinned version.
        version: String,
        /// The architecture.
        arch: String,
    },
    /// apt knows no downloadable version of a package.
    #[error("apt package {package} ({arch}) not found in apt's lists (is `apt-get update` done?)")]
    NotFound {
        /// The package.
        package: String,
        /// The architecture.
        arch: String,
    },
    /// No available version starts with the requested prefix.
    #[error("apt package {package}: no version starting with `{prefix}`; available: {}", available.join(", "))]
    NoVersion {
        /// The package.
        package: String,
        /// The requested prefix.
        prefix: String,
        /// Versions apt knows.
        available: Vec<String>,
    },
    /// A package name, version or architecture with characters apt would misread.
    #[error("invalid apt {field} `{value}`")]
    Invalid {
        /// `package`, `version` or `arch`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// `apt-get download` left other than exactly one .deb.
    #[error("`{command}`: expected one .deb, found {found}")]
    DownloadCount {
        /// The command line.
        command: String,
        /// How many .deb files it left.
        found: usize,
    },
    /// apt's index lists no package at all for the architecture.
    #[error("`{command}`: apt's index lists no package for {arch} (is `apt-get update` done?)")]
    EmptyIndex {
        /// The command line.
        command: String,
        /// The architecture.
        arch: String,
    },
    /// Installing the request would remove a package the host is assumed to have.
    #[error("`{command}`: installing it would remove {package}")]
    WouldRemove {
        /// The simulated install.
        command: String,
        /// The package apt would remove.
        package: String,
    },
    /// An `Inst` line of apt's simulation that cannot be read.
    #[error("`{command}`: cannot read {line:?}")]
    InstLine {
        /// The simulated install.
        command: String,
        /// The line.
        line: String,
    },
    /// apt's simulation installs a version other than the index's candidate.
    #[error("`{command}`: {package} {version} is not the candidate apt's index lists")]
    NotCandidate {
        /// The simulated install.
        command: String,
        /// The package.
        package: String,
        /// The version apt would install.
        version: String,
    },
    /// apt's index gives no sha256 or no file for a package of the closure.
    #[error("`{command}`: apt's index gives no sha256 or file for {package} {version}")]
    NoChecksum {
        /// The simulated install.
        command: String,
        /// The package.
        package: String,
        /// Its version.
        version: String,
    },
}
