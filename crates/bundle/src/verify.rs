//! Streaming verification of one archive: nothing is extracted, every entry is checked.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::inflate::{with_inflated, Inflated};
use crate::manifest::{
    self, is_normalized_mode, path_problem, Listed, MANIFEST_NAME, MAX_PATH_LEN,
};
use crate::tarfmt::{kind_name, padding, parse_header, BLOCK};
use crate::{BundleReport, VerifyError};

/// Largest MANIFEST accepted (it is read into memory).
const MAX_MANIFEST_LEN: u64 = 64 << 20;

/// Reads a bundle without extracting anything to disk and checks every entry against MANIFEST.
// Checked: gzip members in kiln's canonical form (header bytes, CRC32, ISIZE); only regular
// files with safe paths, root owner and normalised modes; no duplicates; MANIFEST first and
// matching every entry's digest and mode both ways; only zeros after the end-of-archive
// marker and nothing after the last member. A name of the form `<stem>-<16 hex>.tar.gz`
// must also match the file's sha256.
pub fn verify_bundle(path: &Path) -> Result<BundleReport, VerifyError> {
    let report = check_archive(path)?;
    if let Some(prefix) = name_digest(path) {
        if !report.sha256.starts_with(prefix) {
            return Err(VerifyError::NameDigestMismatch {
                file: path.to_owned(),
                name_digest: prefix.to_owned(),
                actual: report.sha256,
            });
        }
    }
    tracing::debug!(path = %path.display(), files = report.files, "verified bundle");
    Ok(report)
}

/// The 16-hex-digit digest prefix in a `<stem>-<digest>.tar.gz` file name, if it has one.
pub(crate) fn name_digest(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?.strip_suffix(".tar.gz")?;
    let (stem, digest) = name.rsplit_once('-')?;
    let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    (!stem.is_empty() && digest.len() == 16 && digest.bytes().all(hex)).then_some(digest)
}

/// The decompressed tar stream, turning failures into [`VerifyError`]s.
struct TarStream<'a> {
    inflated: &'a mut Inflated,
    file: &'a Path,
}

impl TarStream<'_> {
    fn offset(&self) -> u64 {
        self.inflated.offset()
    }

    fn tar_error(&self, offset: u64, reason: impl Into<String>) -> VerifyError {
        VerifyError::Tar {
            file: self.file.to_owned(),
            offset,
            reason: reason.into(),
        }
    }

    fn eof_error(&self, what: &str) -> VerifyError {
        self.tar_error(self.offset(), format!("archive ends inside {what}"))
    }

    fn read_exact(&mut self, mut buf: &mut [u8], what: &str) -> Result<(), VerifyError> {
        while !buf.is_empty() {
            let slice = self.inflated.next_slice(buf.len())?;
            if slice.is_empty() {
                return Err(self.eof_error(what));
            }
            let n = slice.len();
            buf[..n].copy_from_slice(slice);
            buf = &mut buf[n..];
        }
        Ok(())
    }

    /// Streams `size` bytes of content through `sink` without copying, then its padding.
    fn content(
        &mut self,
        size: u64,
        what: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), VerifyError> {
        let mut left = size;
        while left > 0 {
            let max = usize::try_from(left).unwrap_or(usize::MAX);
            let slice = self.inflated.next_slice(max)?;
            if slice.is_empty() {
                return Err(self.eof_error(what));
            }
            left -= slice.len() as u64;
            sink(slice);
        }
        let mut zeros = [0u8; BLOCK];
        let pad = padding(size);
        self.read_exact(&mut zeros[..pad], what)?;
        if zeros.iter().any(|&b| b != 0) {
            return Err(self.tar_error(self.offset(), format!("non-zero padding after {what}")));
        }
        Ok(())
    }
}

/// Everything [`verify_bundle`] checks except the name.
pub(crate) fn check_archive(path: &Path) -> Result<BundleReport, VerifyError> {
    check_archive_keeping(path, None)
}

/// What a verifying read keeps besides checking: MANIFEST's lines and the contents of the
/// entries `want` picks (after they were checked against MANIFEST).
pub(crate) struct Keep<'a> {
    /// Picks the entries whose contents to keep, by their MANIFEST line.
    pub want: &'a dyn Fn(&Listed) -> bool,
    /// MANIFEST's lines, in its order.
    pub manifest: Vec<Listed>,
    /// The kept contents by entry path.
    pub contents: BTreeMap<String, Vec<u8>>,
}

/// [`check_archive`], also filling `keep` when given (same single streaming read).
pub(crate) fn check_archive_keeping(
    path: &Path,
    keep: Option<&mut Keep<'_>>,
) -> Result<BundleReport, VerifyError> {
    let ((files, content_bytes), summary) = with_inflated(path, |inflated| {
        check_entries(
            &mut TarStream {
                inflated,
                file: path,
            },
            keep,
        )
    })?;
    Ok(BundleReport {
        path: path.to_owned(),
        sha256: summary.sha256,
        size: summary.size,
        members: summary.members,
        files,
        content_bytes,
    })
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Walks every header of the tar stream and then its end; returns (files, content bytes).
fn check_entries(
    stream: &mut TarStream<'_>,
    mut keep: Option<&mut Keep<'_>>,
) -> Result<(u64, u64), VerifyError> {
    let file: PathBuf = stream.file.to_owned();
    let mut listed: Option<BTreeMap<String, Listed>> = None;
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut long_name: Option<Vec<u8>> = None;
    let (mut files, mut content_bytes) = (0u64, 0u64);
    let mut block = [0u8; BLOCK];
    loop {
        let at = stream.offset();
        stream.read_exact(&mut block, "a header")?;
        if block.iter().all(|&b| b == 0) {
            if long_name.is_some() {
                return Err(stream.tar_error(at, "long name not followed by an entry"));
            }
            break;
        }
        let h = parse_header(&block).map_err(|source| VerifyError::Header {
            file: stream.file.to_owned(),
            offset: at,
            source,
        })?;
        let unsafe_entry = |entry: &[u8], reason: String| VerifyError::UnsafeEntry {
            file: file.clone(),
            entry: lossy(entry),
            reason,
        };
        match h.kind {
            b'L' => {
                if long_name.is_some() {
                    return Err(stream.tar_error(at, "two long names in a row"));
                }
                if h.size > MAX_PATH_LEN as u64 + 1 {
                    let reason = format!("long name of {} bytes", h.size);
                    return Err(stream.tar_error(at, reason));
                }
                let mut name = Vec::with_capacity(h.size as usize);
                stream.content(h.size, "a long name", |b| name.extend_from_slice(b))?;
                while name.last() == Some(&0) {
                    name.pop();
                }
                long_name = Some(name);
                continue;
            }
            b'0' | 0 => {}
            other => {
                let path = long_name.take().unwrap_or(h.path);
                let reason = format!("{} entries are not allowed", kind_name(other));
                return Err(unsafe_entry(&path, reason));
            }
        }
        let path = long_name.take().unwrap_or(h.path);
        if let Some(reason) = path_problem(&path) {
            return Err(unsafe_entry(&path, reason.to_owned()));
        }
        if h.uid != 0 || h.gid != 0 {
            let reason = format!("owned by {}:{}, not root", h.uid, h.gid);
            return Err(unsafe_entry(&path, reason));
        }
        if !is_normalized_mode(h.mode) {
            let reason = format!("mode {:04o} is not a normalised mode", h.mode);
            return Err(unsafe_entry(&path, reason));
        }
        let entry = lossy(&path);
        if !seen.insert(path) {
            return Err(VerifyError::DuplicateEntry { file, entry });
        }
        let Some(listed) = listed.as_mut() else {
            if entry != MANIFEST_NAME {
                return Err(VerifyError::MissingManifest { file });
            }
            if h.mode != 0o644 {
                return Err(mode_mismatch(&file, entry, 0o644, h.mode));
            }
            if h.size > MAX_MANIFEST_LEN {
                let reason = format!("MANIFEST of {} bytes is too large", h.size);
                return Err(stream.tar_error(at, reason));
            }
            let mut text = Vec::with_capacity(h.size as usize);
            stream.content(h.size, "MANIFEST", |b| text.extend_from_slice(b))?;
            let lines =
                manifest::parse(&text).map_err(|(line, source)| VerifyError::BadManifest {
                    file: file.clone(),
                    line,
                    source,
                })?;
            if let Some(k) = keep.as_deref_mut() {
                k.manifest = lines.clone();
            }
            listed = Some(lines.into_iter().map(|l| (l.path.clone(), l)).collect());
            continue;
        };
        let Some(expected) = listed.remove(&entry) else {
            return Err(VerifyError::NotInManifest { file, entry });
        };
        if expected.mode != h.mode {
            return Err(mode_mismatch(&file, entry, expected.mode, h.mode));
        }
        // Before reading any content: a header cannot make verify inflate more than declared.
        if expected.size != h.size {
            return Err(VerifyError::SizeMismatch {
                file,
                entry,
                expected: expected.size,
                actual: h.size,
            });
        }
        let mut hasher = Sha256::new();
        let mut kept = keep
            .as_deref()
            .filter(|k| (k.want)(&expected))
            .map(|_| Vec::with_capacity(h.size as usize));
        stream.content(h.size, &format!("entry {entry:?}"), |b| {
            hasher.update(b);
            if let Some(v) = kept.as_mut() {
                v.extend_from_slice(b);
            }
        })?;
        let actual = hex::encode(hasher.finalize());
        if actual != expected.sha256 {
            return Err(VerifyError::DigestMismatch {
                file,
                entry,
                expected: expected.sha256,
                actual,
            });
        }
        if let (Some(k), Some(v)) = (keep.as_deref_mut(), kept) {
            k.contents.insert(entry, v);
        }
        files += 1;
        content_bytes += h.size;
    }
    check_end(stream)?;
    let Some(listed) = listed else {
        return Err(VerifyError::MissingManifest { file });
    };
    if let Some(entry) = listed.into_keys().next() {
        return Err(VerifyError::MissingEntry { file, entry });
    }
    Ok((files, content_bytes))
}

fn mode_mismatch(file: &Path, entry: String, expected: u32, actual: u32) -> VerifyError {
    VerifyError::ModeMismatch {
        file: file.to_owned(),
        entry,
        expected,
        actual,
    }
}

/// After the first zero block only zeros may follow, up to the end of the last member,
/// which is read completely so its CRC and everything after it are checked.
fn check_end(stream: &mut TarStream<'_>) -> Result<(), VerifyError> {
    loop {
        let at = stream.offset();
        let slice = stream.inflated.next_slice(usize::MAX)?;
        if slice.is_empty() {
            return Ok(());
        }
        if let Some(i) = slice.iter().position(|&b| b != 0) {
            return Err(VerifyError::TrailingData {
                file: stream.file.to_owned(),
                reason: format!(
                    "non-zero byte at tar offset {} after the end-of-archive marker",
                    at + i as u64
                ),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_taken_from_canonical_names_only() {
        let d = |s: &str| name_digest(Path::new(s)).map(str::to_owned);
        assert_eq!(
            d("b/master-0123456789abcdef.tar.gz").as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(
            d("a-b-0123456789abcdef.tar.gz").as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(d("secrets.tar.gz"), None);
        assert_eq!(d("-0123456789abcdef.tar.gz"), None);
        assert_eq!(d("m-0123456789ABCDEF.tar.gz"), None);
        assert_eq!(d("m-0123456789abcde.tar.gz"), None);
        assert_eq!(d("m-0123456789abcdef.tar"), None);
    }
}
