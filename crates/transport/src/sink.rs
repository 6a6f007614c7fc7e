//! Hashing what arrives: digests, pins checked before anything gets its final name, and
//! the sink that streams into a temp file beside the blobs and renames it once verified.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use kiln_fsio::TempFile;
use sha2::{Digest, Sha256, Sha512};

use crate::error::{file_err, TransportError};

/// Read buffer for hashing and copying: large enough that syscalls do not dominate.
pub const BUF_SIZE: usize = 256 * 1024;

/// Mode given to blobs: readable by whoever builds from the store.
pub const BLOB_MODE: u32 = 0o644;

/// sha256 of everything fed to it, and sha512 too when asked (for sha512 pins).
pub struct Hasher {
    sha256: Sha256,
    sha512: Option<Sha512>,
    size: u64,
}

/// What a [`Hasher`] computed: hex digests and the byte count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// sha256, hex.
    pub sha256: String,
    /// sha512, hex, when it was asked for.
    pub sha512: Option<String>,
    /// Bytes hashed.
    pub size: u64,
}

impl Hasher {
    /// A hasher computing sha256, and sha512 when `sha512` is true.
    pub fn new(sha512: bool) -> Hasher {
        Hasher {
            sha256: Sha256::new(),
            sha512: sha512.then(Sha512::new),
            size: 0,
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        if let Some(h) = &mut self.sha512 {
            h.update(bytes);
        }
        self.size += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digests of everything fed.
    pub fn finish(self) -> Digests {
        Digests {
            sha256: hex::encode(self.sha256.finalize()),
            sha512: self.sha512.map(|h| hex::encode(h.finalize())),
            size: self.size,
        }
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The digests a blob must have (hex); at least one for a download.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pins<'a> {
    /// The sha256 pin.
    pub sha256: Option<&'a str>,
    /// The sha512 pin.
    pub sha512: Option<&'a str>,
}

impl Pins<'_> {
    /// Checks computed digests against the pins; the error names both values.
    pub fn check(&self, origin: &str, got: &Digests) -> Result<(), TransportError> {
        let mismatch = |algorithm, expected: &str, actual: &str| TransportError::HashMismatch {
            origin: origin.to_owned(),
            algorithm,
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        };
        if let (Some(expected), Some(actual)) = (self.sha512, got.sha512.as_deref()) {
            if actual != expected {
                return Err(mismatch("sha512", expected, actual));
            }
        }
        if let Some(expected) = self.sha256 {
            if got.sha256 != expected {
                return Err(mismatch("sha256", expected, &got.sha256));
            }
        }
        Ok(())
    }
}

/// Feeds everything `reader` gives to `put`, a buffer at a time; a read error becomes
/// `read_err(error, bytes read so far)`.
pub(crate) fn pump(
    reader: &mut dyn Read,
    mut put: impl FnMut(&[u8]) -> Result<(), TransportError>,
    read_err: impl FnOnce(io::Error, u64) -> TransportError,
) -> Result<u64, TransportError> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut got = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e, got)),
        };
        put(&buf[..n])?;
        got += n as u64;
    }
}

/// Hashes a local file in one pass: sha256, sha512 when `sha512` is true, and size.
pub fn hash_file(path: &Path, sha512: bool) -> Result<Digests, TransportError> {
    let read_err = file_err("read", path);
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = Hasher::new(sha512);
    pump(
        &mut file,
        |chunk| {
            hasher.update(chunk);
            Ok(())
        },
        |e, _| read_err(e),
    )?;
    Ok(hasher.finish())
}

/// A blob being written: streamed into a temp file in the blob store's temp folder,
/// hashed on the way, capped at its declared size, and renamed to `<blobs>/<sha256>` only
/// once its digests match the pins. Dropped unfinished, it leaves nothing behind.
pub struct Sink {
    temp: TempFile,
    hasher: Hasher,
    /// The declared size and the origin to name when it is exceeded.
    limit: Option<(u64, String)>,
}

impl Sink {
    /// A sink in `tmp_dir` (on the blobs' filesystem); sha512 is computed when `sha512`.
    pub fn new(tmp_dir: &Path, hint: &str, sha512: bool) -> Result<Sink, TransportError> {
        let temp = TempFile::new_in(tmp_dir, hint, BLOB_MODE)?;
        Ok(Sink {
            temp,
            hasher: Hasher::new(sha512),
            limit: None,
        })
    }

    /// Refuses more than `size` bytes, naming `origin` when it comes.
    pub fn limit(mut self, size: u64, origin: &str) -> Sink {
        self.limit = Some((size, origin.to_owned()));
        self
    }

    /// The temp file's path.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Writes and hashes `bytes`.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), TransportError> {
        if let Some((limit, origin)) = &self.limit {
            if self.hasher.size() + bytes.len() as u64 > *limit {
                return Err(TransportError::TooLarge {
                    url: origin.clone(),
                    limit: *limit,
                });
            }
        }
        self.temp
            .write_all(bytes)
            .map_err(file_err("write", self.temp.path()))?;
        self.hasher.update(bytes);
        Ok(())
    }

    /// Streams all of `reader` in; a read failure is [`TransportError::ReadSource`] naming `origin`.
    pub fn fill(&mut self, reader: &mut dyn Read, origin: &str) -> Result<u64, TransportError> {
        pump(
            reader,
            |chunk| self.put(chunk),
            |source, _| TransportError::ReadSource {
                origin: origin.to_owned(),
                source,
            },
        )
    }

    /// The digests of what was written, checked against `pins`; on a match the file is
    /// fsynced and renamed to `<blob_dir>/<sha256>`. On a mismatch it is removed.
    pub fn finish(
        self,
        origin: &str,
        pins: Pins<'_>,
        blob_dir: &Path,
    ) -> Result<Digests, TransportError> {
        let digests = self.hasher.finish();
        // On a mismatch, dropping `temp` removes it: a wrong file never gets a final name.
        pins.check(origin, &digests)?;
        let dest: PathBuf = blob_dir.join(&digests.sha256);
        self.temp.commit(&dest)?;
        Ok(digests)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.put(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn sink_renames_only_a_match_and_leaves_nothing_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, blobs) = (dir.path().join("tmp"), dir.path().join("sha256"));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(&blobs).unwrap();
        let wrong = "0".repeat(64);

        let mut sink = Sink::new(&tmp, "t", false).unwrap();
        sink.fill(&mut &b"hello"[..], "hello.txt").unwrap();
        let pins = Pins {
            sha256: Some(&wrong),
            sha512: None,
        };
        let err = sink.finish("hello.txt", pins, &blobs).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("expected {wrong}, got {HELLO}")),
            "{err}"
        );
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);

        let mut sink = Sink::new(&tmp, "t", false).unwrap().limit(4, "http://x/h");
        let err = sink.fill(&mut &b"hello"[..], "http://x/h").unwrap_err();
        assert!(
            matches!(err, TransportError::TooLarge { limit: 4, .. }),
            "{err}"
        );
        drop(sink);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);

        let mut sink = Sink::new(&tmp, "t", false).unwrap().limit(5, "http://x/h");
        sink.fill(&mut &b"hello"[..], "h").unwrap();
        let pins = Pins {
            sha256: Some(HELLO),
            sha512: None,
        };
        let got = sink.finish("h", pins, &blobs).unwrap();
        assert_eq!((got.sha256.as_str(), got.size), (HELLO, 5));
        assert_eq!(std::fs::read(blobs.join(HELLO)).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }
}
