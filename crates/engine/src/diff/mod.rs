//! `kiln diff`: what changed between two builds of one cluster, per role bundle and per host
//! (files, OS packages, images, certificates, and the units those changes touch).
//!
//! Both folders are verified first as `kiln verify` does; the comparison then reads only what
//! the build recorded: MANIFEST.json, each archive's MANIFEST and its small members (the one
//! strict tar reader of kiln-bundle). The result is plain data with a stable JSON form
//! ([`SCHEMA`]); the CLI renders it.

mod compare;
mod error;
mod plan;
mod side;
mod units;

use std::path::Path;

use serde::Serialize;

pub use error::DiffError;
pub use kiln_pki::CertIdentity;
pub use plan::{upgrade_plan, HostUpgrade, Step, UpgradePlan, ONE_AT_A_TIME, PLAN_SCHEMA};
pub(crate) use side::verified;

/// The JSON form's name and version: a consumer checks it before reading further.
pub const SCHEMA: &str = "kiln-diff/1";

/// Everything that differs between two out folders of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Diff {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The cluster both folders are builds of.
    pub cluster: String,
    /// The old build.
    pub old: BuildRef,
    /// The new build.
    pub new: BuildRef,
    /// No bundle, host or generation differs and the build ids are equal.
    pub identical: bool,
    /// Role bundles that were added, removed or changed, sorted by id.
    pub bundles: Vec<BundleDiff>,
    /// Ids of the role bundles equal on both sides, sorted.
    pub unchanged_bundles: Vec<String>,
    /// Hosts that were added, removed or changed, sorted by name.
    pub hosts: Vec<HostDiff>,
    /// Names of the hosts equal on both sides (bundles, own files, address), sorted.
    pub unchanged_hosts: Vec<String>,
}

/// One side's build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildRef {
    /// The folder as given.
    pub dir: String,
    /// MANIFEST.json's build id.
    pub build_id: String,
    /// MANIFEST.json's generation.
    pub generation: u64,
    /// A `kiln pull` folder: it has no `hosts/`, so host files and certificates are not compared.
    pub pulled: bool,
}

/// How one item differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Only in the new build.
    Added,
    /// Only in the old build.
    Removed,
    /// In both, different.
    Changed,
}

/// A role bundle that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BundleDiff {
    /// `<role>-<os>`, MANIFEST.json's key.
    pub id: String,
    /// Role.
    pub role: String,
    /// OS.
    pub os: String,
    /// Added, removed or changed.
    pub change: Change,
    /// The old bundle file and its size.
    pub old: Option<ArchiveRef>,
    /// The new bundle file and its size.
    pub new: Option<ArchiveRef>,
    /// Hosts that install it (new build; old build when removed).
    pub hosts: Vec<String>,
    /// Entries other than `packages/` and `images/`, by path.
    pub files: Vec<FileChange>,
    /// OS packages, by name and architecture.
    pub packages: Vec<PackageChange>,
    /// Images, by reference.
    pub images: Vec<ImageChange>,
    /// Units of the bundle touched by its own changes.
    pub units: Vec<UnitChange>,
}

/// An archive of an out folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ArchiveRef {
    /// Path relative to the out folder.
    pub file: String,
    /// sha256 of the file.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// An entry of an archive that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileChange {
    /// Path inside the archive (`rootfs/…` is installed at `/…`).
    pub path: String,
    /// Added, removed or changed (content, mode or both).
    pub change: Change,
    /// The old entry.
    pub old: Option<FileState>,
    /// The new entry.
    pub new: Option<FileState>,
}

/// What an archive's MANIFEST says of an entry (the owner is always root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FileState {
    /// Mode, four octal digits.
    pub mode: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the content.
    pub sha256: String,
}

/// An OS package that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PackageChange {
    /// Package name (from the file name: `name_version_arch.deb`, `name-version-release.arch.rpm`).
    pub name: String,
    /// Package architecture.
    pub arch: String,
    /// Added, removed or another version.
    pub change: Change,
    /// The old version (Debian pool file names leave out an epoch).
    pub old_version: Option<String>,
    /// The new version.
    pub new_version: Option<String>,
}

/// An image that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImageChange {
    /// The image reference.
    pub reference: String,
    /// Added, removed or another manifest digest.
    pub change: Change,
    /// The old manifest digest.
    pub old_digest: Option<String>,
    /// The new manifest digest.
    pub new_digest: Option<String>,
}

/// What happens to a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitAction {
    /// Newly listed in UNITS: enabled and started.
    Start,
    /// No longer listed: left to be stopped.
    Stop,
    /// Listed on both sides and a file it uses changed.
    Restart,
}

/// A unit touched by the changes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UnitChange {
    /// The unit, e.g. `etcd.service`.
    pub unit: String,
    /// Start, stop or restart.
    pub action: UnitAction,
    /// For a restart: the changed files and packages it uses, and how it uses each.
    pub because: Vec<UnitReason>,
}

/// How a unit uses a changed file or package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UnitReason {
    /// The host path (`/etc/…`) or `package:<name>`.
    pub what: String,
    /// `unit-file`, `drop-in`, `named-by <path>` (the path appears in that file),
    /// `config-dir` (under `/etc/<unit name>/`) or `package` (same name as the unit).
    pub how: String,
}

/// A host that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostDiff {
    /// Host name.
    pub host: String,
    /// Added, removed or changed.
    pub change: Change,
    /// Roles (the new build's bundles; the old build's when removed).
    pub roles: Vec<String>,
    /// Old and new address, when it changed.
    pub ip: Option<Moved>,
    /// Bundles it installs that were added, removed or changed, by id.
    pub bundles: Vec<HostBundleChange>,
    /// Its own files (secrets archive under `rootfs/`), by path; keys are listed by digest only.
    pub files: Vec<FileChange>,
    /// Certificates reissued, added or removed, by path on the host.
    pub certificates: Vec<CertChange>,
    /// Units to start, stop or restart on it, by name.
    pub units: Vec<UnitChange>,
    /// Whether its secrets archives were compared (not when either side is a pulled folder).
    pub secrets_compared: bool,
}

/// A value that changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Moved {
    /// Before.
    pub old: String,
    /// After.
    pub new: String,
}

/// A bundle a host installs that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct HostBundleChange {
    /// Bundle id.
    pub id: String,
    /// Added to the host, removed from it, or another build of it.
    pub change: Change,
    /// The old file.
    pub old_file: Option<String>,
    /// The new file.
    pub new_file: Option<String>,
}

/// A certificate that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CertChange {
    /// Path on the host (`.crt`, or a kubeconfig with a client certificate).
    pub path: String,
    /// `added`, `removed` or `changed` (reissued).
    pub change: Change,
    /// The old certificate.
    pub old: Option<kiln_pki::CertIdentity>,
    /// The new certificate.
    pub new: Option<kiln_pki::CertIdentity>,
}

/// Compares two out folders of one cluster (build or pull folders), after verifying both.
pub fn diff(old: &Path, new: &Path) -> Result<Diff, DiffError> {
    let (a, b) = side::load_pair(old, new)?;
    compare::compare(&a, &b)
}
