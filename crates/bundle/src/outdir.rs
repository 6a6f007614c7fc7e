//! SHA256SUMS writing, file hashing, and verification of a whole out folder.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fsutil::write_err;
use crate::manifest::{is_sha256_hex, path_problem, validate_path};
use crate::verify::{check_archive, name_digest};
use crate::{BundleError, BundleReport, OutReport, VerifyError};

/// Name of the checksum list at the top of an out folder.
pub const SHA256SUMS_NAME: &str = "SHA256SUMS";

/// Read size for hashing (large reads keep SHA-NI busy rather than the syscall path).
const HASH_BUF: usize = 1 << 20;

/// Streaming sha256 of a file: returns (lowercase hex, size in bytes).
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_BUF];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Writes `<dir>/SHA256SUMS` (`<hex>  <relative path>` lines, sorted by path) atomically.
pub fn write_sha256sums(dir: &Path, files: &[(String, String)]) -> Result<(), BundleError> {
    let mut sorted: Vec<&(String, String)> = files.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut text = String::with_capacity(files.len() * 100);
    for (i, (path, sha256)) in sorted.iter().map(|p| (&p.0, &p.1)).enumerate() {
        validate_path(path)?;
        if path == SHA256SUMS_NAME {
            return Err(BundleError::InvalidPath {
                path: path.clone(),
                reason: "SHA256SUMS cannot list itself",
            });
        }
        if i > 0 && sorted[i - 1].0 == *path {
            return Err(BundleError::DuplicatePath { path: path.clone() });
        }
        if !is_sha256_hex(sha256) {
            return Err(BundleError::InvalidDigest {
                path: path.clone(),
                sha256: sha256.clone(),
            });
        }
        text.push_str(&format!("{sha256}  {path}\n"));
    }
    let path = dir.join(SHA256SUMS_NAME);
    kiln_fsio::write_atomic(&path, text.as_bytes(), 0o644).map_err(write_err(&path))
}

/// Verifies an out folder against its `SHA256SUMS`, and every `bundles/*.tar.gz` as a bundle.
// SHA256SUMS must list exactly the regular files under `dir` (except itself; symlinks and
// other types are errors), every digest must match, and every bundle must pass
// `verify_bundle` with its name's digest prefix matching. Files are checked in parallel,
// each read once (a bundle is hashed while it is inflated).
pub fn verify_out_dir(dir: &Path) -> Result<OutReport, VerifyError> {
    let sums_path = dir.join(SHA256SUMS_NAME);
    let text = fs::read(&sums_path).map_err(|source| VerifyError::Io {
        op: "read",
        file: sums_path.clone(),
        source,
    })?;
    let listed = parse_sums(&sums_path, &text)?;
    let mut found = BTreeMap::new();
    walk(dir, "", &mut found)?;
    found.remove(SHA256SUMS_NAME);
    if let Some(path) = listed.keys().find(|p| !found.contains_key(*p)) {
        return Err(VerifyError::MissingFile {
            file: dir.join(path),
        });
    }
    if let Some(path) = found.keys().find(|p| !listed.contains_key(*p)) {
        return Err(VerifyError::UnlistedFile {
            file: dir.join(path),
        });
    }
    let mut jobs: Vec<(&String, &String, u64)> = listed
        .iter()
        .map(|(path, sha)| (path, sha, found[path]))
        .collect();
    // Largest first, so the pool does not end waiting on one big file.
    jobs.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)));
    let results = kiln_fsio::pool::run(&jobs, kiln_fsio::pool::cores(), |(path, sha, _)| {
        check_file(dir, path, sha)
    });

    let mut bundles = Vec::new();
    let mut first_error: Option<(&String, VerifyError)> = None;
    for ((path, _, _), result) in jobs.iter().zip(results) {
        match result {
            Some(Ok(Some(report))) => bundles.push(report),
            Some(Ok(None)) | None => {}
            Some(Err(e)) => {
                // Report the failure of the first path, whatever the threads' timing.
                if first_error.as_ref().is_none_or(|(p, _)| *path < *p) {
                    first_error = Some((path, e));
                }
            }
        }
    }
    if let Some((_, e)) = first_error {
        return Err(e);
    }
    bundles.sort_by(|a, b| a.path.cmp(&b.path));
    let report = OutReport {
        files: jobs.len() as u64,
        bytes: jobs.iter().map(|j| j.2).sum(),
        bundles,
    };
    tracing::debug!(dir = %dir.display(), files = report.files, "verified out folder");
    Ok(report)
}

/// Parses SHA256SUMS strictly: `<64 lowercase hex>  <normalised relative path>` lines.
pub(crate) fn parse_sums(
    file: &Path,
    text: &[u8],
) -> Result<BTreeMap<String, String>, VerifyError> {
    let bad = |line: usize, reason: String| VerifyError::BadSumsLine {
        file: file.to_owned(),
        line,
        reason,
    };
    let text = std::str::from_utf8(text).map_err(|_| bad(0, "not valid UTF-8".to_owned()))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(bad(
            text.lines().count(),
            "last line has no newline".to_owned(),
        ));
    }
    let mut listed = BTreeMap::new();
    for (i, line) in text.split_terminator('\n').enumerate() {
        let n = i + 1;
        let Some((sha, path)) = line.split_once("  ") else {
            return Err(bad(n, "expected `<sha256>  <path>`".to_owned()));
        };
        if !is_sha256_hex(sha) {
            return Err(bad(n, format!("{sha:?} is not 64 lowercase hex digits")));
        }
        if let Some(reason) = path_problem(path.as_bytes()) {
            return Err(bad(n, format!("path {path:?}: {reason}")));
        }
        if path == SHA256SUMS_NAME {
            return Err(bad(n, "SHA256SUMS lists itself".to_owned()));
        }
        if listed.insert(path.to_owned(), sha.to_owned()).is_some() {
            return Err(bad(n, format!("duplicate path {path:?}")));
        }
    }
    Ok(listed)
}

/// Collects every regular file under `dir` as (relative path, size); anything that is not a
/// regular file or folder (symlink, fifo, ...) is an error.
fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, u64>) -> Result<(), VerifyError> {
    let io_err = |op, file: &Path| {
        let file = file.to_owned();
        move |source| VerifyError::Io { op, file, source }
    };
    let read = fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in read {
        let entry = entry.map_err(io_err("list", dir))?;
        let full = entry.path();
        let file_type = entry.file_type().map_err(io_err("stat", &full))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(VerifyError::UnlistedFile { file: full });
        };
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if file_type.is_dir() {
            walk(&full, &rel, out)?;
        } else if file_type.is_file() {
            let meta = entry.metadata().map_err(io_err("stat", &full))?;
            out.insert(rel, meta.len());
        } else {
            return Err(VerifyError::NotRegular { file: full });
        }
    }
    Ok(())
}

/// Whether a listed path is a role bundle (`bundles/<name>.tar.gz`).
fn is_bundle(path: &str) -> bool {
    path.strip_prefix("bundles/")
        .is_some_and(|name| !name.contains('/') && name.ends_with(".tar.gz"))
}

/// Checks one listed file; bundles are verified in the same single read that hashes them.
fn check_file(dir: &Path, path: &str, sha: &str) -> Result<Option<BundleReport>, VerifyError> {
    let full: PathBuf = dir.join(path);
    let digest_mismatch = |actual: String| VerifyError::FileDigestMismatch {
        file: full.clone(),
        expected: sha.to_owned(),
        actual,
    };
    if !is_bundle(path) {
        let (actual, _) = sha256_file(&full).map_err(|source| VerifyError::Io {
            op: "read",
            file: full.clone(),
            source,
        })?;
        return if actual == sha {
            Ok(None)
        } else {
            Err(digest_mismatch(actual))
        };
    }
    let Some(prefix) = name_digest(&full) else {
        return Err(VerifyError::BadBundleName { file: full });
    };
    let report = check_archive(&full)?;
    if report.sha256 != sha {
        return Err(digest_mismatch(report.sha256));
    }
    if !report.sha256.starts_with(prefix) {
        return Err(VerifyError::NameDigestMismatch {
            name_digest: prefix.to_owned(),
            file: full,
            actual: report.sha256,
        });
    }
    Ok(Some(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_lines_are_parsed_strictly() {
        let sha = "0a".repeat(32);
        let ok = format!("{sha}  a/b\n{sha}  c\n");
        let listed = parse_sums(Path::new("S"), ok.as_bytes()).unwrap();
        assert_eq!(listed.len(), 2);
        for (bad, line) in [
            (format!("{sha} a\n"), 1),
            (format!("{sha}  a\n{sha}  a\n"), 2),
            (format!("{sha}  ../a\n"), 1),
            (format!("{sha}  /a\n"), 1),
            (format!("{sha}  SHA256SUMS\n"), 1),
            (format!("{}  a\n", &sha[1..]), 1),
            (format!("{sha}  a"), 1),
        ] {
            match parse_sums(Path::new("S"), bad.as_bytes()) {
                Err(VerifyError::BadSumsLine { line: l, .. }) => assert_eq!(l, line, "{bad:?}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn bundles_are_recognised_by_path() {
        assert!(is_bundle("bundles/master-0123456789abcdef.tar.gz"));
        assert!(!is_bundle("bundles/sub/x.tar.gz"));
        assert!(!is_bundle("hosts/h1/secrets.tar.gz"));
        assert!(!is_bundle("bundles/readme.txt"));
    }
}
