//! Errors of `kiln push` and `kiln pull`: each names the folder, file, registry
//! repository or digest concerned.

use std::io;
use std::path::PathBuf;

/// A push or pull failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The folder is not a built (or pulled) out folder.
    #[error("{}: not a kiln out folder ({reason}); give out/<cluster> as `kiln build` wrote it", dir.display())]
    NotABuild {
        /// The folder.
        dir: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A file MANIFEST.json names is missing or has another size.
    #[error("{}: {reason}; rebuild or copy the out folder again (`kiln verify` says more)", file.display())]
    OutputMismatch {
        /// The file.
        file: PathBuf,
        /// What differs.
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file could not be written atomically.
    #[error(transparent)]
    File(#[from] kiln_fsio::Error),
    /// A bundle's image archive could not be read.
    #[error("{}: member {member}", bundle.display())]
    BundleMember {
        /// The bundle.
        bundle: PathBuf,
        /// The member.
        member: String,
        /// The cause.
        source: io::Error,
    },
    /// The registry side failed (HTTP, authentication, refused blob or manifest).
    #[error(transparent)]
    Registry(#[from] kiln_image::ImageError),
    /// What a registry serves under the reference is not a build kiln pushed.
    #[error("{reference}: not a kiln build ({reason})")]
    NotPushedByKiln {
        /// Registry, repository and tag or digest.
        reference: String,
        /// What was found instead.
        reason: String,
    },
    /// The pull's destination holds a build folder (with host secrets) that a pull would replace.
    #[error("{}: holds a build with host secrets; a pull never replaces one (pull into another folder)", dir.display())]
    WouldReplaceBuild {
        /// The folder.
        dir: PathBuf,
    },
    /// The pulled files' digests disagree with the pulled MANIFEST.json.
    #[error(transparent)]
    Verify(#[from] kiln_bundle::VerifyError),
    /// SHA256SUMS of a pulled folder could not be written.
    #[error(transparent)]
    Bundle(#[from] kiln_bundle::BundleError),
}

/// An I/O error mapper naming `op` and `path`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> PushError {
    let path = path.into();
    move |source| PushError::Io { op, path, source }
}
