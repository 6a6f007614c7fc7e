//! Errors of writing and verifying; each names the file and, where there is one, the entry.

use std::io;
use std::path::PathBuf;

/// Why an archive or SHA256SUMS could not be written (nothing is left under the final name).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An entry or SHA256SUMS path is not relative, normalised and plain.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries (or SHA256SUMS lines) have the same path.
    #[error("duplicate path {path:?}")]
    DuplicatePath {
        /// The repeated path.
        path: String,
    },
    /// A pinned or listed sha256 is not 64 lowercase hex digits.
    #[error("{path:?}: sha256 {sha256:?} is not 64 lowercase hex digits")]
    InvalidDigest {
        /// Entry or file path.
        path: String,
        /// The malformed digest.
        sha256: String,
    },
    /// A delta would carry an entry the new bundle's entries do not hold.
    #[error("delta for {bundle}: entry {path:?} is in its MANIFEST but not among its entries")]
    DeltaEntryMissing {
        /// The new bundle's file name.
        bundle: String,
        /// The entry's path.
        path: String,
    },
    /// The bundle stem cannot be used in a file name.
    #[error("invalid bundle stem {stem:?}: {reason}")]
    InvalidStem {
        /// The offending stem.
        stem: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A [`crate::Source::File`] does not hold the pinned bytes.
    #[error(
        "entry {path:?}: {} does not match its pin: expected sha256 {expected} ({expected_size} bytes), found {actual} ({actual_size} bytes)",
        file.display()
    )]
    PinMismatch {
        /// Entry path inside the archive.
        path: String,
        /// File on disk.
        file: PathBuf,
        /// Pinned sha256.
        expected: String,
        /// sha256 of what the file holds.
        actual: String,
        /// Pinned size.
        expected_size: u64,
        /// Size of what the file holds.
        actual_size: u64,
    },
    /// A [`crate::Source::File`] could not be read.
    #[error("entry {path:?}: cannot read {}", file.display())]
    ReadSource {
        /// Entry path inside the archive.
        path: String,
        /// File on disk.
        file: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// An output file could not be written (created, synced or renamed into place).
    #[error("cannot write {}", file.display())]
    Write {
        /// The output file, or its folder before its name is known.
        file: PathBuf,
        /// What failed, on which (temp) file.
        #[source]
        source: kiln_fsio::Error,
    },
    /// Creating an output folder failed.
    #[error("cannot {op} {}", file.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder concerned.
        file: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The deflate engine reported an error on one member (should not happen).
    #[error("compressing {}: member {member} ({len} bytes): {source}", file.display())]
    Deflate {
        /// Archive being written.
        file: PathBuf,
        /// 0-based index of the gzip member.
        member: u64,
        /// Its uncompressed length.
        len: usize,
        /// The engine's error.
        source: flate2::CompressError,
    },
    /// A compression worker stopped before every member was written (should not happen).
    #[error("compressing {}: wrote {wrote} of {} members (a worker stopped)", file.display(), total.map_or("?".to_owned(), |t| t.to_string()))]
    WorkerStopped {
        /// Archive being written.
        file: PathBuf,
        /// Members written.
        wrote: u64,
        /// Members produced, when the producer finished.
        total: Option<u64>,
    },
}

/// Why a bundle or an out folder failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading a file or listing a folder failed.
    #[error("cannot {op} {}", file.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or folder concerned.
        file: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// The gzip stream is corrupt, truncated or not in kiln's canonical form.
    #[error("{}: gzip stream at compressed offset {offset}: {reason}", file.display())]
    Gzip {
        /// The archive.
        file: PathBuf,
        /// Offset in the compressed file where the problem was seen.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A tar header block inside is malformed.
    #[error("{}: tar stream at offset {offset}: {source}", file.display())]
    Header {
        /// The archive.
        file: PathBuf,
        /// Offset of the header in the uncompressed tar stream.
        offset: u64,
        /// What is wrong with it.
        source: HeaderError,
    },
    /// The tar stream inside is malformed.
    #[error("{}: tar stream at offset {offset}: {reason}", file.display())]
    Tar {
        /// The archive.
        file: PathBuf,
        /// Offset in the uncompressed tar stream.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An entry would be unsafe to extract (path, type, owner or mode).
    #[error("{}: unsafe entry {entry:?}: {reason}", file.display())]
    UnsafeEntry {
        /// The archive.
        file: PathBuf,
        /// Entry path as stored (lossy UTF-8).
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// The same path appears twice.
    #[error("{}: duplicate entry {entry:?}", file.display())]
    DuplicateEntry {
        /// The archive.
        file: PathBuf,
        /// Repeated path.
        entry: String,
    },
    /// The first entry is not MANIFEST.
    #[error("{}: no MANIFEST as first entry", file.display())]
    MissingManifest {
        /// The archive.
        file: PathBuf,
    },
    /// A MANIFEST line is malformed.
    #[error("{}: MANIFEST line {line}: {source}", file.display())]
    BadManifest {
        /// The archive.
        file: PathBuf,
        /// 1-based line number (0: the whole text).
        line: usize,
        /// What is wrong.
        source: crate::manifest::LineError,
    },
    /// An entry is not listed in MANIFEST.
    #[error("{}: entry {entry:?} is not listed in MANIFEST", file.display())]
    NotInManifest {
        /// The archive.
        file: PathBuf,
        /// Unlisted path.
        entry: String,
    },
    /// A MANIFEST line has no entry.
    #[error("{}: MANIFEST lists {entry:?} but the archive has no such entry", file.display())]
    MissingEntry {
        /// The archive.
        file: PathBuf,
        /// Listed path.
        entry: String,
    },
    /// An entry's content does not match its MANIFEST digest.
    #[error("{}: entry {entry:?}: sha256 {actual} does not match MANIFEST {expected}", file.display())]
    DigestMismatch {
        /// The archive.
        file: PathBuf,
        /// Entry path.
        entry: String,
        /// sha256 in MANIFEST.
        expected: String,
        /// sha256 of the content.
        actual: String,
    },
    /// An entry's mode does not match its MANIFEST mode.
    #[error("{}: entry {entry:?}: mode {actual:04o} does not match MANIFEST {expected:04o}", file.display())]
    ModeMismatch {
        /// The archive.
        file: PathBuf,
        /// Entry path.
        entry: String,
        /// Mode in MANIFEST.
        expected: u32,
        /// Mode in the tar header.
        actual: u32,
    },
    /// An entry's tar header declares another size than its MANIFEST line (checked before its
    /// content is read, so no entry makes verify inflate more than MANIFEST declares).
    #[error("{}: entry {entry:?}: size {actual} does not match MANIFEST {expected}", file.display())]
    SizeMismatch {
        /// The archive.
        file: PathBuf,
        /// Entry path.
        entry: String,
        /// Size in MANIFEST.
        expected: u64,
        /// Size in the tar header.
        actual: u64,
    },
    /// Bytes follow the end of the archive.
    #[error("{}: trailing data: {reason}", file.display())]
    TrailingData {
        /// The archive.
        file: PathBuf,
        /// What follows.
        reason: String,
    },
    /// A bundle's name does not have the `<stem>-<16 hex>.tar.gz` form.
    #[error("{}: bundle name is not <stem>-<16 hex digits>.tar.gz", file.display())]
    BadBundleName {
        /// The bundle.
        file: PathBuf,
    },
    /// A bundle's name carries a digest prefix that its content does not have.
    #[error("{}: name says digest {name_digest}… but content has sha256 {actual}", file.display())]
    NameDigestMismatch {
        /// The bundle.
        file: PathBuf,
        /// Digest prefix in the name.
        name_digest: String,
        /// sha256 of the file.
        actual: String,
    },
    /// A SHA256SUMS line is malformed.
    #[error("{}: line {line}: {reason}", file.display())]
    BadSumsLine {
        /// The SHA256SUMS file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// SHA256SUMS lists a file that does not exist.
    #[error("{}: listed in SHA256SUMS but missing", file.display())]
    MissingFile {
        /// The missing file.
        file: PathBuf,
    },
    /// A file exists that SHA256SUMS does not list.
    #[error("{}: not listed in SHA256SUMS", file.display())]
    UnlistedFile {
        /// The extra file.
        file: PathBuf,
    },
    /// Something other than a regular file or folder is in the out folder.
    #[error("{}: not a regular file or folder", file.display())]
    NotRegular {
        /// The offending path.
        file: PathBuf,
    },
    /// A file's sha256 differs from SHA256SUMS.
    #[error("{}: sha256 {actual} does not match SHA256SUMS {expected}", file.display())]
    FileDigestMismatch {
        /// The file.
        file: PathBuf,
        /// sha256 in SHA256SUMS.
        expected: String,
        /// sha256 of the file.
        actual: String,
    },
    /// A SHA256SUMS line has no two-space separator (the quick digest check).
    #[error("{}:{line}: not a `<sha256>  <path>` line", file.display())]
    NotASumsLine {
        /// The SHA256SUMS file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A file is not listed in SHA256SUMS (the quick digest check).
    #[error("{}: {path} is not listed in SHA256SUMS", dir.display())]
    DigestsUnlisted {
        /// The out folder.
        dir: PathBuf,
        /// The file, relative to it.
        path: String,
    },
    /// A file listed in SHA256SUMS is missing (the quick digest check).
    #[error("{}: {path} is listed in SHA256SUMS but missing", dir.display())]
    DigestsMissing {
        /// The out folder.
        dir: PathBuf,
        /// The file, relative to it.
        path: String,
    },
    /// Files differ from their SHA256SUMS digests (the quick digest check).
    #[error("{}: digest mismatch: {}", dir.display(), paths.join(", "))]
    DigestsMismatch {
        /// The out folder.
        dir: PathBuf,
        /// The files, relative to it.
        paths: Vec<String>,
    },
    /// MANIFEST.json cannot be parsed as a build manifest.
    #[error("{}: not a kiln MANIFEST.json", file.display())]
    NotBuildManifest {
        /// The MANIFEST.json file.
        file: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// MANIFEST.json records a digest that SHA256SUMS does not.
    #[error("{path}: MANIFEST.json records sha256 {sha256} but SHA256SUMS does not agree")]
    ManifestDisagrees {
        /// Output path, relative to the out folder.
        path: String,
        /// Digest in MANIFEST.json.
        sha256: String,
    },
    /// SHA256SUMS lists an output that MANIFEST.json does not.
    #[error("{path}: listed in SHA256SUMS but not in MANIFEST.json")]
    NotInBuildManifest {
        /// Output path, relative to the out folder.
        path: String,
    },
    /// A pulled folder's marker (PULLED.json) is unreadable or disagrees with MANIFEST.json.
    #[error("{}: {reason}", file.display())]
    PulledMarker {
        /// The marker file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pulled folder lacks an output that is not host-specific (only `hosts/` may be absent).
    #[error("{}: {path} of the build is missing; a pulled folder lacks only hosts/ (secrets and seeds)", dir.display())]
    PulledMissing {
        /// The folder.
        dir: PathBuf,
        /// Output path, relative to the out folder.
        path: String,
    },
}

/// Why a tar header block is not one verification accepts.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Neither GNU nor ustar magic.
    #[error("header has neither GNU nor ustar magic")]
    Magic,
    /// The checksum field is not a number.
    #[error("bad checksum field: {0}")]
    ChecksumField(io::Error),
    /// The checksum does not match the block.
    #[error("header checksum {stored} does not match computed {computed}")]
    Checksum {
        /// The stored checksum.
        stored: u32,
        /// The block's checksum.
        computed: u32,
    },
    /// A numeric field does not parse.
    #[error("bad {field}: {source}")]
    Field {
        /// The field (`size`, `mode`, `uid`, `gid`).
        field: &'static str,
        /// The parser's error.
        source: io::Error,
    },
}
