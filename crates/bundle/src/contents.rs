//! Reading what an archive holds: its MANIFEST and chosen members' contents, in the same
//! strict streaming read that [`crate::verify_bundle`] does (one tar reader for both).

use std::collections::BTreeMap;
use std::path::Path;

use crate::verify::{check_archive_keeping, Keep};
use crate::{BundleReport, ManifestLine, VerifyError};

/// A verified archive's MANIFEST and the members that were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveContents {
    /// What the read checked (every entry, as `kiln verify` does).
    pub report: BundleReport,
    /// MANIFEST's lines, sorted by path.
    pub manifest: Vec<ManifestLine>,
    /// Contents of the entries `want` picked, by path (each checked against its line).
    pub members: BTreeMap<String, Vec<u8>>,
}

/// Reads `path` (a role bundle or a secrets archive) checking every entry as
/// [`crate::verify_bundle`] does, and keeps the contents of the entries `want` picks from
/// their MANIFEST line (callers pick small ones: each is held in memory).
pub fn read_archive(
    path: &Path,
    want: &dyn Fn(&ManifestLine) -> bool,
) -> Result<ArchiveContents, VerifyError> {
    let to_line = |l: &crate::manifest::Listed| ManifestLine {
        path: l.path.clone(),
        mode: l.mode,
        sha256: l.sha256.clone(),
        size: l.size,
    };
    let pick = |l: &crate::manifest::Listed| want(&to_line(l));
    let mut keep = Keep {
        want: &pick,
        manifest: Vec::new(),
        contents: BTreeMap::new(),
    };
    let report = check_archive_keeping(path, Some(&mut keep))?;
    Ok(ArchiveContents {
        report,
        manifest: keep.manifest.iter().map(to_line).collect(),
        members: keep.contents,
    })
}
