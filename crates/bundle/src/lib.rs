//! Deterministic tar.gz bundles: writer, MANIFEST, SHA256SUMS, the host contract, and safe
//! streaming verification of bundles and whole out folders.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

// Format of an archive written here:
// - a tar stream of GNU headers built by this crate: entries sorted by path (bytewise),
//   `MANIFEST` first, regular files only (no directory entries), uid = gid = 0, empty
//   user/group names, `mtime` from the spec, modes normalised by [`normalize_mode`];
//   paths of 100 bytes or more use a GNU `././@LongLink` header;
// - `MANIFEST` lists every other entry as `<sha256> <mode, 4 octal digits> <path>\n`,
//   sorted by path, so `awk '{print $1"  "$3}' MANIFEST | sha256sum -c` checks a tree;
// - the tar stream is cut into [`CHUNK_SIZE`] pieces, each compressed at
//   [`COMPRESSION_LEVEL`] into an independent gzip member with the fixed header
//   [`GZIP_MEMBER_HEADER`]; members are compressed in parallel and written in order, so
//   the bytes never depend on the core count and any gunzip reads them;
// - verification reads only that canonical form (see `gz::StrictGzReader`).

mod contents;
pub mod contract;
mod delta;
mod error;
mod folder;
mod fsutil;
mod gz;
mod inflate;
mod manifest;
mod outdir;
mod pipeline;
mod pulled;
mod tarfmt;
mod verify;
mod writer;

use std::path::PathBuf;

pub use contents::{read_archive, ArchiveContents};
pub use delta::{write_delta, DeltaBase, DeltaPlan, WrittenDelta};
pub use error::{BundleError, HeaderError, VerifyError};
pub use folder::{
    json_bytes, read_build_manifest, verify_digests, verify_folder, BuildManifest, BundleInfo,
    DeltaInfo, DigestReport, HostInfo, OutputInfo, BUILD_MANIFEST_NAME, BUILD_MANIFEST_SIG_NAME,
};
pub use gz::{CHUNK_SIZE, COMPRESSION_LEVEL, GZIP_MEMBER_HEADER};
pub use manifest::{normalize_mode, validate_path, LineError, MANIFEST_NAME};
pub use outdir::{sha256_file, verify_out_dir, write_sha256sums, SHA256SUMS_NAME};
pub use pulled::{is_pulled, verify_pulled, PulledMarker, PulledReport, PULLED_NAME};
pub use verify::verify_bundle;
pub use writer::{write_archive, write_bundle};

/// Entry points for the fuzz harness (`crates/fuzz`) into parsers that are not public; not an API.
#[doc(hidden)]
pub mod fuzzing {
    /// MANIFEST text parsed as verify parses it: the number of lines, `None` when refused.
    pub fn manifest(text: &[u8]) -> Option<usize> {
        crate::manifest::parse(text).ok().map(|lines| lines.len())
    }

    /// SHA256SUMS text parsed as [`crate::verify_out_dir`] parses it: the number of files,
    /// `None` when refused.
    pub fn sha256sums(text: &[u8]) -> Option<usize> {
        let file = std::path::Path::new(crate::SHA256SUMS_NAME);
        crate::outdir::parse_sums(file, text).ok().map(|m| m.len())
    }
}

/// One file to put in a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative, '/'-separated, normalised path inside the archive (see [`validate_path`]).
    pub path: String,
    /// Requested mode; stored as [`normalize_mode`] of it.
    pub mode: u32,
    /// Where the content comes from.
    pub source: Source,
}

/// Where an entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// In-memory content (rendered templates, generated files).
    Bytes(Vec<u8>),
    /// A file on disk with a pinned sha256 and size; hashed while streamed, a mismatch fails.
    File {
        /// File to read.
        path: PathBuf,
        /// Pinned sha256, 64 lowercase hex digits.
        sha256: String,
        /// Pinned size in bytes.
        size: u64,
    },
}

/// Everything needed to write one archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSpec {
    /// Files to include, in any order (the writer sorts them).
    pub entries: Vec<Entry>,
    /// Modification time of every tar header (seconds since the epoch, e.g. SOURCE_DATE_EPOCH).
    pub mtime: u64,
}

/// One line of a bundle's MANIFEST.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ManifestLine {
    /// Path inside the archive.
    pub path: String,
    /// Normalised mode as stored in the tar header.
    pub mode: u32,
    /// sha256 of the content, lowercase hex.
    pub sha256: String,
    /// Content size in bytes.
    pub size: u64,
}

/// Result of [`write_bundle`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenBundle {
    /// Final path `<dir>/<file_name>`.
    pub path: PathBuf,
    /// `<stem>-<first 16 hex digits of sha256>.tar.gz`.
    pub file_name: String,
    /// sha256 of the compressed archive, lowercase hex.
    pub sha256: String,
    /// Size of the compressed archive in bytes.
    pub size: u64,
    /// Entries other than MANIFEST, sorted by path.
    pub manifest: Vec<ManifestLine>,
}

/// Result of [`write_archive`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WrittenArchive {
    /// Final path of the archive.
    pub path: PathBuf,
    /// sha256 of the compressed archive, lowercase hex.
    pub sha256: String,
    /// Size of the compressed archive in bytes.
    pub size: u64,
    /// Entries other than MANIFEST, sorted by path (returned even without a MANIFEST entry).
    pub manifest: Vec<ManifestLine>,
}

/// What [`verify_bundle`] checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BundleReport {
    /// The bundle file.
    pub path: PathBuf,
    /// sha256 of the compressed file, lowercase hex.
    pub sha256: String,
    /// Size of the compressed file in bytes.
    pub size: u64,
    /// Number of gzip members.
    pub members: u64,
    /// Number of entries other than MANIFEST.
    pub files: u64,
    /// Total content bytes of entries other than MANIFEST.
    pub content_bytes: u64,
}

/// What [`verify_out_dir`] checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutReport {
    /// Number of files listed in SHA256SUMS (all checked).
    pub files: u64,
    /// Total bytes of those files.
    pub bytes: u64,
    /// One report per `bundles/*.tar.gz`, sorted by path.
    pub bundles: Vec<BundleReport>,
}
