//! The engine's errors: one variant per failure, naming the file, host, image or artifact.

use std::path::PathBuf;

/// A step failed; the message names the file, artifact, URL or command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid input (cluster.toml, profiles, overlays, catalog, lock).
    #[error("{0}")]
    Input(#[from] kiln_spec::Diagnostics),
    /// A template failed or paths conflict.
    #[error(transparent)]
    Plan(#[from] kiln_plan::PlanError),
    /// The catalog cannot give an artifact a source.
    #[error(transparent)]
    Catalog(kiln_spec::catalog::ResolveError),
    /// A checksum table could not be imported into pins.
    #[error(transparent)]
    ChecksumTable(#[from] kiln_spec::pins::ImportError),
    /// kiln.lock does not exist; builds use only pinned artifacts.
    #[error("{} not found: run `kiln lock` first (builds use only pinned artifacts)", lock.display())]
    NoLock {
        /// The lock file expected.
        lock: PathBuf,
    },
    /// The lock does not pin everything the plan needs, or pins what changed since.
    #[error("{}\nrun `kiln lock` to pin them", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Stale {
        /// Every problem found.
        problems: Vec<LockProblem>,
    },
    /// An image table of kiln.lock is not a pinned image.
    #[error("kiln.lock image[{index}]: {reason}")]
    LockedImage {
        /// 0-based index among the lock's images.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A pinned image could not be written as a kiln.lock table.
    #[error("image {image}: cannot be written as a kiln.lock table")]
    ImageToLock {
        /// The image reference.
        image: String,
        /// The serialiser's error, when it gave one.
        #[source]
        source: Option<toml::ser::Error>,
    },
    /// A profile names an image that is not a valid reference.
    #[error("bundle {bundle}: image {image:?}")]
    ImageReference {
        /// Bundle id.
        bundle: String,
        /// The image as written.
        image: String,
        /// Why it does not parse.
        #[source]
        source: Box<kiln_image::ImageError>,
    },
    /// No `image-sources` entry of the catalog provides an image.
    #[error("image {image} (bundle {bundle}) has no source among image-sources [{}] in the catalog", sources.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))]
    NoImageSource {
        /// The image reference.
        image: String,
        /// Bundle id.
        bundle: String,
        /// cluster.toml's image-sources.
        sources: Vec<kiln_spec::ImageSourceKind>,
    },
    /// An assembled image names an artifact the catalog does not have.
    #[error("image {image}: artifact {artifact:?} is not in the catalog")]
    ImageArtifactUnknown {
        /// The image reference.
        image: String,
        /// The artifact.
        artifact: String,
    },
    /// An assembled image's artifact has no version in cluster.toml.
    #[error("image {image}: artifact {artifact} needs `versions.{key}` in cluster.toml")]
    ImageArtifactVersion {
        /// The image reference.
        image: String,
        /// The artifact.
        artifact: String,
        /// The `versions` key it needs.
        key: String,
    },
    /// A registry image is not pinned in kiln.lock.
    #[error("image {image} (bundle {bundle}) is not pinned in {}\nrun `kiln lock` to pin it", lock.display())]
    ImageNotPinned {
        /// The image reference.
        image: String,
        /// Bundle id.
        bundle: String,
        /// kiln.lock.
        lock: PathBuf,
    },
    /// An assembled image's artifact was not materialised.
    #[error("image {image}: artifact {artifact} has no blob")]
    ImageArtifactNoBlob {
        /// The image reference.
        image: String,
        /// The artifact.
        artifact: String,
    },
    /// A planned file's artifact was not materialised.
    #[error("artifact {artifact} has no blob")]
    NoBlob {
        /// The artifact.
        artifact: String,
    },
    /// `kiln image` on a cluster without `[image]`.
    #[error("{} has no [image] table: add one (`[image]`, optionally with `packages = [...]` beyond the catalog's [os-image] set), then run `kiln lock` and `kiln fetch`", cluster.display())]
    NoImage {
        /// cluster.toml.
        cluster: PathBuf,
    },
    /// Pinned packages of the golden image are not in the store.
    #[error("{} of the golden image's packages are not in the store {}: {}{}\nrun `kiln fetch` to download them", missing.len(), store.display(), missing.iter().take(8).cloned().collect::<Vec<_>>().join(", "), if missing.len() > 8 { ", …" } else { "" })]
    ImageNotFetched {
        /// The missing packages (`name version`).
        missing: Vec<String>,
        /// The store folder.
        store: PathBuf,
    },
    /// Building the golden image failed.
    #[error(transparent)]
    Golden(#[from] kiln_golden::GoldenError),
    /// A pinned download is not in the store.
    #[error("{what} is not in the store {}: run `kiln fetch`", store.display())]
    NotInStore {
        /// The download (name, version and pin).
        what: String,
        /// The store folder.
        store: PathBuf,
    },
    /// Rendered files name images that no bundle of their hosts carries.
    #[error("the build is incomplete:\n  {}", missing.join("\n  "))]
    Incomplete {
        /// One line per image left to pull.
        missing: Vec<String>,
    },
    /// A registry or image operation failed.
    #[error(transparent)]
    Image(Box<kiln_image::ImageError>),
    /// Artifacts are not in the store and the network may not be used.
    #[error("{} artifact(s) missing from the store {} and --offline forbids fetching:\n{}", .missing.len(), .store.display(), .missing.join("\n"))]
    Missing {
        /// The store folder.
        store: PathBuf,
        /// Labels of what is missing.
        missing: Vec<String>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    /// Downloads failed.
    #[error(transparent)]
    Fetch(#[from] kiln_store::FetchErrors),
    /// Writing a bundle failed.
    #[error(transparent)]
    Bundle(#[from] kiln_bundle::BundleError),
    /// The PKI failed (a CA would be replaced, state unreadable, …).
    #[error(transparent)]
    Pki(#[from] kiln_pki::PkiError),
    /// A seed could not be written.
    #[error("seed")]
    Seed(#[source] cloud_init_config::Error),
    /// The `--delta-from` base build cannot be used.
    #[error(transparent)]
    Delta(#[from] crate::build::DeltaError),
    /// An output file could not be written (created, synced or renamed into place).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// What failed, on which (temp) file.
        #[source]
        source: kiln_fsio::Error,
    },
    /// A file could not be read or written.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// One way the lock fails to cover the plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockProblem {
    /// An artifact has no lock entry.
    #[error("{name} {version} ({arch}) is not pinned in {}", lock.display())]
    ArtifactNotPinned {
        /// Artifact name.
        name: String,
        /// Its version.
        version: String,
        /// Its architecture.
        arch: String,
        /// kiln.lock.
        lock: PathBuf,
    },
    /// An artifact's catalog source differs from the one locked.
    #[error("{name} {version} ({arch}): the catalog's source changed since it was locked")]
    ArtifactChanged {
        /// Artifact name.
        name: String,
        /// Its version.
        version: String,
        /// Its architecture.
        arch: String,
    },
    /// The golden image's closure has no lock entry.
    #[error("the golden image's packages ({os}) are not pinned in {}", lock.display())]
    ImageNotPinned {
        /// The OS.
        os: String,
        /// kiln.lock.
        lock: PathBuf,
    },
    /// `[image]` or the catalog's `[os-image]` changed since the image's closure was locked.
    #[error("the golden image's packages ({os}): [image] in cluster.toml or the catalog's [os-image.{os}] changed since they were locked")]
    ImageChanged {
        /// The OS.
        os: String,
    },
    /// A role's OS package closure has no lock entry.
    #[error("packages of {role} on {os} are not pinned in {}", lock.display())]
    PackagesNotPinned {
        /// The role.
        role: String,
        /// The OS.
        os: String,
        /// kiln.lock.
        lock: PathBuf,
    },
    /// A role's packages or assumed base changed since its closure was locked.
    #[error("packages of {role} on {os}: the profiles' packages or the assumed base changed since they were locked")]
    PackagesChanged {
        /// The role.
        role: String,
        /// The OS.
        os: String,
    },
}

impl Error {
    /// Whether the error is the user's input (exit 1) rather than the environment.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::Input(_)
                | Error::Plan(_)
                | Error::Catalog(_)
                | Error::ChecksumTable(_)
                | Error::NoLock { .. }
                | Error::NoImage { .. }
                | Error::ImageNotFetched { .. }
                | Error::Stale { .. }
                | Error::LockedImage { .. }
                | Error::ImageToLock { .. }
                | Error::ImageReference { .. }
                | Error::NoImageSource { .. }
                | Error::ImageArtifactUnknown { .. }
                | Error::ImageArtifactVersion { .. }
                | Error::ImageNotPinned { .. }
                | Error::ImageArtifactNoBlob { .. }
                | Error::NoBlob { .. }
                | Error::NotInStore { .. }
                | Error::Incomplete { .. }
                | Error::Image(_)
        )
    }
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_and_seed_errors_print_their_cause_once() {
        let e = Error::Io {
            path: "/x/kiln.lock".into(),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(e.to_string(), "/x/kiln.lock");
        assert_eq!(
            std::error::Error::source(&e).unwrap().to_string(),
            "disk on fire"
        );
    }

    #[test]
    fn stale_lock_lists_every_problem_then_the_fix() {
        let e = Error::Stale {
            problems: vec![
                LockProblem::ArtifactNotPinned {
                    name: "runc".into(),
                    version: "1.1.5".into(),
                    arch: "amd64".into(),
                    lock: "kiln.lock".into(),
                },
                LockProblem::PackagesChanged {
                    role: "lb".into(),
                    os: "debian12".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "runc 1.1.5 (amd64) is not pinned in kiln.lock\npackages of lb on debian12: the profiles' packages or the assumed base changed since they were locked\nrun `kiln lock` to pin them"
        );
        assert!(e.is_input());
    }
}
