//! The deterministic tar format kiln writes (bundles and image layers alike): GNU headers
//! with uid/gid 0, no user or group names, one given mtime, long paths as a
//! `././@LongLink` entry, directories with a trailing slash, zero padding to 512 bytes and
//! two zero blocks at the end.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// The end-of-archive marker (two zero blocks); its prefixes are the padding bytes.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// Name of the pseudo-entry carrying a GNU long path.
const LONG_LINK_NAME: &[u8] = b"././@LongLink";

/// Paths this long or longer get a GNU long-name entry (the name field has 100 bytes).
const NAME_FIELD: usize = 100;

/// Copy buffer size for [`TarWriter::stream`].
const BUF_SIZE: usize = 256 * 1024;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory (its path is given with the trailing slash).
    Dir,
}

/// Bytes of zero padding after `size` bytes of content.
pub fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    (BLOCK - rem) % BLOCK
}

/// Appends the header block(s) of an entry; a long path gets a `././@LongLink` entry first.
pub fn push_header(out: &mut Vec<u8>, path: &str, size: u64, mode: u32, mtime: u64, kind: Kind) {
    let name = path.as_bytes();
    if name.len() >= NAME_FIELD {
        let long = name.len() as u64 + 1;
        let h = gnu_header(LONG_LINK_NAME, long, 0o644, 0, EntryType::GNULongName);
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(&END[..padding(long)]);
    }
    let kind = match kind {
        Kind::File => EntryType::Regular,
        Kind::Dir => EntryType::Directory,
    };
    let h = gnu_header(name, size, mode, mtime, kind);
    out.extend_from_slice(h.as_bytes());
}

/// A GNU header with every field fixed except those given (uid/gid 0, no user names).
fn gnu_header(name: &[u8], size: u64, mode: u32, mtime: u64, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    let n = name.len().min(NAME_FIELD);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// Writes tar entries in kiln's format to `W`, counting bytes; every entry gets one mtime.
pub struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    written: u64,
    header: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    /// A writer whose every entry gets `mtime`.
    pub fn new(out: W, mtime: u64) -> Self {
        TarWriter {
            out,
            mtime,
            written: 0,
            header: Vec::with_capacity(4 * BLOCK),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn header(&mut self, path: &str, size: u64, mode: u32, kind: Kind) -> io::Result<()> {
        let mut header = std::mem::take(&mut self.header);
        header.clear();
        push_header(&mut header, path, size, mode, self.mtime, kind);
        let r = self.put(&header);
        self.header = header;
        r
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        self.put(&END[..padding(size)])
    }

    /// A directory entry (`path` is given without the trailing slash).
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.header(&format!("{path}/"), 0, mode, Kind::Dir)
    }

    /// A regular file from memory.
    pub fn bytes(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.header(path, data.len() as u64, mode, Kind::File)?;
        self.put(data)?;
        self.pad(data.len() as u64)
    }

    /// A regular file of exactly `size` bytes streamed from `reader`; a reader giving a
    /// different number of bytes is an error (the archive would be corrupt).
    pub fn stream(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        reader: &mut dyn Read,
    ) -> io::Result<()> {
        self.header(path, size, mode, Kind::File)?;
        let mut buf = vec![0u8; BUF_SIZE];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{path}: {left} bytes short"),
                ));
            }
            self.put(&buf[..n])?;
            left -= n as u64;
        }
        let mut probe = [0u8; 1];
        if reader.read(&mut probe)? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{path}: longer than {size} bytes"),
            ));
        }
        self.pad(size)
    }

    /// Writes the end-of-archive marker; returns the inner writer and bytes written.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.put(&END)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_at(bytes: &[u8], at: usize) -> &Header {
        Header::from_byte_slice(&bytes[at..at + BLOCK])
    }

    #[test]
    fn short_and_long_headers_have_fixed_fields() {
        let mut out = Vec::new();
        push_header(&mut out, "a/b", 5, 0o755, 42, Kind::File);
        assert_eq!(out.len(), BLOCK);
        let h = header_at(&out, 0);
        assert!(h.as_gnu().is_some());
        assert_eq!(&*h.path_bytes(), b"a/b");
        assert_eq!(
            (h.size().unwrap(), h.mode().unwrap(), h.mtime().unwrap()),
            (5, 0o755, 42)
        );
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(
            (h.username_bytes(), h.groupname_bytes()),
            (Some(&b""[..]), Some(&b""[..]))
        );

        let long = format!("{}/file", "d".repeat(150));
        let mut out = Vec::new();
        push_header(&mut out, &long, 7, 0o644, 42, Kind::File);
        assert_eq!(out.len(), 3 * BLOCK); // the 156-byte name fits one data block
        let l = header_at(&out, 0);
        assert_eq!(l.entry_type(), EntryType::GNULongName);
        assert_eq!(
            (l.size().unwrap(), l.mode().unwrap(), l.mtime().unwrap()),
            (long.len() as u64 + 1, 0o644, 0)
        );
        assert_eq!(&out[BLOCK..BLOCK + long.len()], long.as_bytes());
        assert_eq!(out[BLOCK + long.len()], 0);
        let f = header_at(&out, 2 * BLOCK);
        assert_eq!((f.entry_type(), f.size().unwrap()), (EntryType::Regular, 7));
    }

    #[test]
    fn padding_fills_to_a_block() {
        assert_eq!([0, 1, 511, 512, 513].map(padding), [0, 511, 1, 0, 511]);
    }

    #[test]
    fn entries_read_back_with_long_names_and_fixed_fields() {
        let long = format!("usr/share/{}/file", "x".repeat(120));
        let mut w = TarWriter::new(Vec::new(), 0);
        assert!(w.stream("short", 0o644, 4, &mut &b"abc"[..]).is_err());
        assert!(w.stream("long", 0o644, 2, &mut &b"abc"[..]).is_err());
        let (bytes, n) = TarWriter::new(Vec::new(), 0).finish().unwrap();
        assert_eq!((bytes.len() as u64, n), (1024, 1024));

        let mut w = TarWriter::new(Vec::new(), 1_700_000_000);
        w.dir("usr", 0o755).unwrap();
        w.bytes("a.txt", 0o644, b"hello").unwrap();
        w.stream(&long, 0o755, 3, &mut &b"abc"[..]).unwrap();
        let (bytes, n) = w.finish().unwrap();
        assert_eq!(n, bytes.len() as u64);
        let mut archive = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, u32, u64, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("usr/".to_owned(), 0o755, 1_700_000_000, 0),
                ("a.txt".to_owned(), 0o644, 1_700_000_000, 0),
                (long, 0o755, 1_700_000_000, 0),
            ]
        );
    }
}
