//! Output folders, and the error of an output file that could not be written.

use std::fs;
use std::path::Path;

use crate::BundleError;

/// Creates `dir` and its parents if missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), BundleError> {
    fs::create_dir_all(dir).map_err(|source| BundleError::Io {
        op: "create folder",
        file: dir.to_owned(),
        source,
    })
}

/// A [`BundleError::Write`] of `file` (the output being written, or its folder before the
/// output's name is known).
pub(crate) fn write_err(file: &Path) -> impl FnOnce(kiln_fsio::Error) -> BundleError + '_ {
    move |source| BundleError::Write {
        file: file.to_owned(),
        source,
    }
}
