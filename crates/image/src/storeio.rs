//! Writing blobs into the store's folders (temp file in `<root>/tmp/`, fsync, rename to
//! `<root>/sha256/<hex>`) and reading them back verified.

use std::fs;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use kiln_store::Store;
use kiln_transport::{Pins, Sink};
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;
use crate::reference::Digest;

/// The store's temp folder (same filesystem as the blobs, so a rename is atomic).
pub(crate) fn tmp_dir(store: &Store) -> PathBuf {
    store.tmp_dir()
}

/// A blob being written into the store: the transport's hashing [`Sink`], named by the
/// digest of what was written.
pub(crate) struct BlobWriter {
    sink: Sink,
}

impl BlobWriter {
    /// Starts a blob in the store's temp folder.
    pub(crate) fn new(store: &Store) -> Result<Self, ImageError> {
        let sink = Sink::new(&store.tmp_dir(), "blob", false)?;
        Ok(BlobWriter { sink })
    }

    /// Fsyncs and renames the blob to its digest's name; returns digest and size.
    pub(crate) fn finish(self, store: &Store) -> Result<(Digest, u64), ImageError> {
        // No pin: the name is whatever the bytes hash to.
        let digests = self
            .sink
            .finish("blob", Pins::default(), &store.blob_dir())?;
        Ok((Digest::from_hex(&digests.sha256), digests.size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }
}

/// Stores `bytes` (checked against `expected` when given); returns their digest.
pub(crate) fn put_bytes(
    store: &Store,
    bytes: &[u8],
    expected: Option<&Digest>,
) -> Result<Digest, ImageError> {
    let digest = Digest::of(bytes);
    if let Some(expected) = expected {
        if expected != &digest {
            return Err(ImageError::DigestMismatch {
                what: "document".to_owned(),
                url: "memory".to_owned(),
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    if store.verify_blob(digest.hex())? {
        return Ok(digest);
    }
    let mut w = BlobWriter::new(store)?;
    w.sink.put(bytes)?;
    w.finish(store).map(|(d, _)| d)
}

/// Reads a small blob (manifest, config) and checks it hashes to its name.
pub(crate) fn read_blob(
    store: &Store,
    reference: &str,
    digest: &Digest,
) -> Result<Vec<u8>, ImageError> {
    let missing = || ImageError::MissingBlob {
        reference: reference.to_owned(),
        digest: digest.to_string(),
    };
    let path = store.blob_path(digest.hex());
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
        Err(source) => return Err(ImageError::File(kiln_fsio::Error::on("read", path)(source))),
    };
    if &Digest::of(&bytes) != digest {
        // Let the store drop the corrupt copy so a later pull fetches it again.
        store.verify_blob(digest.hex())?;
        return Err(missing());
    }
    Ok(bytes)
}

/// Hashes what passes through a reader.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    failed: bool,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
            failed: false,
        }
    }

    /// Whether a read failed (to tell read errors from write errors downstream).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// The digest and size of everything read.
    pub(crate) fn finish(self) -> (Digest, u64) {
        (
            Digest::from_hex(&hex::encode(self.hasher.finalize())),
            self.size,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Hashes what passes through a writer.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    /// The digest and size of everything written, and the inner writer.
    pub(crate) fn into_parts(self) -> (Digest, u64, W) {
        (
            Digest::from_hex(&hex::encode(self.hasher.finalize())),
            self.size,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
