//! Errors of this crate; each names the document, file or image path at fault.

use std::io;
use std::path::PathBuf;

/// What went wrong, naming the document, file or image involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A document could not be serialised to YAML.
    #[error("cannot render {document} as YAML")]
    Yaml {
        /// The seed file name (`user-data`, `meta-data`, `network-config`).
        document: &'static str,
        /// The serialiser's error.
        #[source]
        source: serde_saphyr::SerializeError,
    },
    /// A value cannot be written into a document as given.
    #[error("invalid {field} {value:?}: {reason}")]
    Invalid {
        /// The document key, e.g. `network-config ethernets`.
        field: &'static str,
        /// The offending value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A file-system operation on a host path failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done, e.g. `create a temporary file in`.
        action: &'static str,
        /// The host path.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A seed file or image could not be written (created, synced or renamed into place).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file being written (its final name).
        path: PathBuf,
        /// What failed, on which (temp) file.
        #[source]
        source: kiln_fsio::Error,
    },
    /// An extra file's path inside the image is not acceptable.
    #[error("invalid path {path:?} for a file inside the seed image: {reason}")]
    ImagePath {
        /// The path inside the image, as given.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// Writing into the FAT image failed.
    #[error(
        "cannot {action}{} in FAT image {}",
        inner.as_ref().map(|i| format!(" {i:?}")).unwrap_or_default(),
        image.display()
    )]
    Fat {
        /// What was being done, e.g. `write` or `format the volume`.
        action: &'static str,
        /// The path inside the image, when one file was concerned.
        inner: Option<String>,
        /// The image being written (its final name).
        image: PathBuf,
        /// The FAT library's error.
        #[source]
        source: io::Error,
    },
    /// Writing the ISO 9660 image failed.
    #[error("cannot write ISO 9660 image {}", image.display())]
    Iso {
        /// The image being written (its final name).
        image: PathBuf,
        /// The ISO library's error, which names the file inside the image.
        #[source]
        source: Box<hadris_fs::PathError>,
    },
}

/// This crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
