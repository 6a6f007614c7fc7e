//! Writing archives: validate and sort entries, stream them into tar, compress, rename.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use kiln_fsio::tarw::{padding, push_header, Kind, END};
use kiln_fsio::TempFile;

use crate::fsutil::{ensure_dir, write_err};
use crate::manifest::{self, is_sha256_hex, normalize_mode, validate_path, MANIFEST_NAME};
use crate::pipeline::{compress_parallel, ChunkSink, Stop};
use crate::{BundleError, BundleSpec, ManifestLine, Source, WrittenArchive, WrittenBundle};

/// Mode of a role bundle file.
const BUNDLE_FILE_MODE: u32 = 0o644;

/// Writes `<dir>/<stem>-<first 16 hex of the archive's sha256>.tar.gz` atomically.
// `dir` is created if needed (after the spec is validated); on error nothing is left.
pub fn write_bundle(
    dir: &Path,
    stem: &str,
    spec: &BundleSpec,
) -> Result<WrittenBundle, BundleError> {
    validate_stem(stem)?;
    let plan = Plan::new(spec, true)?;
    ensure_dir(dir)?;
    let mut temp = TempFile::new_in(dir, stem, BUNDLE_FILE_MODE).map_err(write_err(dir))?;
    let (sha256, size) = plan.write_to(&mut temp, spec.mtime, dir)?;
    let file_name = format!("{stem}-{}.tar.gz", &sha256[..16]);
    let path = dir.join(&file_name);
    temp.commit(&path).map_err(write_err(&path))?;
    tracing::debug!(path = %path.display(), size, entries = plan.lines.len(), "wrote bundle");
    Ok(WrittenBundle {
        path,
        file_name,
        sha256,
        size,
        manifest: plan.lines,
    })
}

/// Writes an archive to exactly `path` with permissions `file_mode`, atomically.
// `file_mode` (e.g. 0600 for secrets) applies from creation, whatever the umask, so the file
// is never readable more widely while written; `with_manifest` adds the MANIFEST entry.
pub fn write_archive(
    path: &Path,
    file_mode: u32,
    spec: &BundleSpec,
    with_manifest: bool,
) -> Result<WrittenArchive, BundleError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Err(BundleError::InvalidPath {
            path: path.display().to_string(),
            reason: "archive path has no UTF-8 file name",
        });
    };
    let plan = Plan::new(spec, with_manifest)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_dir(dir)?;
    let mut temp = TempFile::new_in(dir, name, file_mode & 0o777).map_err(write_err(path))?;
    let (sha256, size) = plan.write_to(&mut temp, spec.mtime, path)?;
    temp.commit(path).map_err(write_err(path))?;
    tracing::debug!(path = %path.display(), size, entries = plan.lines.len(), "wrote archive");
    Ok(WrittenArchive {
        path: path.to_owned(),
        sha256,
        size,
        manifest: plan.lines,
    })
}

/// Checks that a bundle stem is a plain file-name fragment: `[A-Za-z0-9._-]`, not starting
/// with `.` or `-`, at most 128 bytes.
fn validate_stem(stem: &str) -> Result<(), BundleError> {
    let reason = if stem.is_empty() {
        Some("empty")
    } else if stem.len() > 128 {
        Some("longer than 128 bytes")
    } else if stem.starts_with(['.', '-']) {
        Some("starts with `.` or `-`")
    } else if !stem
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("only ASCII letters, digits, `.`, `_` and `-` are allowed")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(BundleError::InvalidStem {
            stem: stem.to_owned(),
            reason,
        }),
    }
}

/// Where an entry's bytes come from once validated.
enum Data<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// A validated entry with its final mode and digest.
struct Item<'a> {
    path: &'a str,
    mode: u32,
    size: u64,
    sha256: String,
    data: Data<'a>,
}

/// Entries validated and sorted, with MANIFEST rendered; nothing has touched the disk yet.
struct Plan<'a> {
    manifest: Option<Vec<u8>>,
    items: Vec<Item<'a>>,
    lines: Vec<ManifestLine>,
}

impl<'a> Plan<'a> {
    fn new(spec: &'a BundleSpec, with_manifest: bool) -> Result<Self, BundleError> {
        let mut items = Vec::with_capacity(spec.entries.len());
        for entry in &spec.entries {
            validate_path(&entry.path)?;
            if entry.path == MANIFEST_NAME {
                return Err(BundleError::InvalidPath {
                    path: entry.path.clone(),
                    reason: "reserved for the archive's manifest",
                });
            }
            // In-memory content is hashed here, once; files are hashed while streamed.
            let (size, sha256, data) = match &entry.source {
                Source::Bytes(b) => (
                    b.len() as u64,
                    hex::encode(Sha256::digest(b)),
                    Data::Bytes(b),
                ),
                Source::File { path, sha256, size } => {
                    if !is_sha256_hex(sha256) {
                        return Err(BundleError::InvalidDigest {
                            path: entry.path.clone(),
                            sha256: sha256.clone(),
                        });
                    }
                    (*size, sha256.clone(), Data::File(path))
                }
            };
            items.push(Item {
                path: &entry.path,
                mode: normalize_mode(entry.mode),
                size,
                sha256,
                data,
            });
        }
        items.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        if let Some(pair) = items.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(BundleError::DuplicatePath {
                path: pair[0].path.to_owned(),
            });
        }
        let lines: Vec<ManifestLine> = items
            .iter()
            .map(|i| ManifestLine {
                path: i.path.to_owned(),
                mode: i.mode,
                sha256: i.sha256.clone(),
                size: i.size,
            })
            .collect();
        let manifest = with_manifest.then(|| manifest::render(&lines));
        Ok(Plan {
            manifest,
            items,
            lines,
        })
    }

    /// Streams the archive into `temp` (for `output`); returns the sha256 and size of the
    /// compressed bytes.
    fn write_to(
        &self,
        temp: &mut TempFile,
        mtime: u64,
        output: &Path,
    ) -> Result<(String, u64), BundleError> {
        // An archive of one chunk (a host's secrets) is one member: more workers only cost
        // their start-up, a thousand times over for a large cluster.
        let input: u64 = self.items.iter().map(|i| i.size + 1024).sum();
        let threads = if input < crate::gz::CHUNK_SIZE as u64 {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        let file = temp.path().to_owned();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        compress_parallel(
            threads,
            &file,
            |sink| self.produce(sink, mtime),
            |member| {
                hasher.update(member);
                size += member.len() as u64;
                temp.write_bytes(member).map_err(write_err(output))
            },
        )?;
        Ok((hex::encode(hasher.finalize()), size))
    }

    /// Writes the whole uncompressed tar stream into `sink`.
    fn produce(&self, sink: &mut ChunkSink, mtime: u64) -> Result<(), Stop> {
        let mut header = Vec::with_capacity(4 * 512);
        let mut put_header = |sink: &mut ChunkSink, path: &str, size: u64, mode: u32| {
            header.clear();
            push_header(&mut header, path, size, mode, mtime, Kind::File);
            sink.write(&header)
        };
        if let Some(text) = &self.manifest {
            put_header(sink, MANIFEST_NAME, text.len() as u64, 0o644)?;
            sink.write(text)?;
            sink.write(&END[..padding(text.len() as u64)])?;
        }
        for item in &self.items {
            put_header(sink, item.path, item.size, item.mode)?;
            match item.data {
                Data::Bytes(bytes) => sink.write(bytes)?,
                Data::File(file) => stream_file(sink, item, file)?,
            }
            sink.write(&END[..padding(item.size)])?;
        }
        sink.write(&END)
    }
}

fn read_error(item: &Item<'_>, file: &Path) -> impl Fn(io::Error) -> BundleError {
    let (path, file) = (item.path.to_owned(), file.to_owned());
    move |source| BundleError::ReadSource {
        path: path.clone(),
        file: file.clone(),
        source,
    }
}

fn read_retrying(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads a pinned file straight into the tar stream, hashing as it goes, and fails if
/// its bytes or size differ from the pin.
fn stream_file(sink: &mut ChunkSink, item: &Item<'_>, file: &Path) -> Result<(), Stop> {
    let err = read_error(item, file);
    let mut f = File::open(file).map_err(&err)?;
    let mut hasher = Sha256::new();
    let mut remaining = item.size;
    while remaining > 0 {
        let n = sink.fill_with(remaining, |buf| {
            let n = read_retrying(&mut f, buf).map_err(&err)?;
            hasher.update(&buf[..n]);
            Ok(n)
        })?;
        if n == 0 {
            break;
        }
        remaining -= n as u64;
    }
    let mut actual_size = item.size - remaining;
    if remaining == 0 {
        // The pin covers the whole file, so bytes past `size` are a mismatch too.
        let mut rest = [0u8; 16 * 1024];
        loop {
            let n = read_retrying(&mut f, &mut rest).map_err(&err)?;
            if n == 0 {
                break;
            }
            hasher.update(&rest[..n]);
            actual_size += n as u64;
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual != item.sha256 || actual_size != item.size {
        return Err(Stop::Failed(BundleError::PinMismatch {
            path: item.path.to_owned(),
            file: file.to_owned(),
            expected: item.sha256.clone(),
            actual,
            expected_size: item.size,
            actual_size,
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Entry;

    fn bytes(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            mode: 0o644,
            source: Source::Bytes(data.to_vec()),
        }
    }

    #[test]
    fn plan_sorts_and_rejects_duplicates_and_reserved_names() {
        let spec = BundleSpec {
            entries: vec![bytes("b", b"2"), bytes("a/z", b"1"), bytes("a", b"0")],
            mtime: 0,
        };
        let plan = Plan::new(&spec, true).unwrap();
        let order: Vec<&str> = plan.items.iter().map(|i| i.path).collect();
        assert_eq!(order, ["a", "a/z", "b"]);

        let dup = BundleSpec {
            entries: vec![bytes("x", b"1"), bytes("y", b""), bytes("x", b"2")],
            mtime: 0,
        };
        match Plan::new(&dup, true) {
            Err(BundleError::DuplicatePath { path }) => assert_eq!(path, "x"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("duplicate accepted"),
        }
        let reserved = BundleSpec {
            entries: vec![bytes("MANIFEST", b"")],
            mtime: 0,
        };
        assert!(matches!(
            Plan::new(&reserved, false),
            Err(BundleError::InvalidPath { .. })
        ));
    }

    #[test]
    fn stems_are_checked() {
        for good in ["master", "etcd", "node-v1.30_2"] {
            validate_stem(good).unwrap();
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_stem(bad).is_err(), "{bad:?}");
        }
    }
}
