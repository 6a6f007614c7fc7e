//! A deterministic tar writer: GNU headers with fixed owner, mtime and modes, long names
//! as `././@LongLink` entries, directories with a trailing slash.

use std::io::{self, Read, Write};

use tar::{EntryType, Header};

/// Size of a tar block.
const BLOCK: u64 = 512;

/// Names this long or longer get a GNU long-name entry (the name field has 100 bytes).
const NAME_FIELD: usize = 100;

/// Zero bytes for padding and the end-of-archive marker.
const ZEROS: [u8; 2 * BLOCK as usize] = [0; 2 * BLOCK as usize];

/// Writes tar entries to `W`, counting bytes.
pub(crate) struct TarWriter<W: Write> {
    out: W,
    mtime: u64,
    written: u64,
}

impl<W: Write> TarWriter<W> {
    /// A writer whose every entry gets `mtime`.
    pub(crate) fn new(out: W, mtime: u64) -> Self {
        TarWriter {
            out,
            mtime,
            written: 0,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn header(&mut self, path: &str, size: u64, mode: u32, kind: EntryType) -> io::Result<()> {
        let name = path.as_bytes();
        if name.len() >= NAME_FIELD {
            let long = name.len() as u64 + 1;
            let h = gnu_header(b"././@LongLink", long, 0o644, 0, EntryType::GNULongName);
            self.put(h.as_bytes())?;
            self.put(name)?;
            self.put(&[0])?;
            self.pad(long)?;
        }
        let h = gnu_header(name, size, mode, self.mtime, kind);
        self.put(h.as_bytes())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (BLOCK - size % BLOCK) % BLOCK;
        self.put(&ZEROS[..rem as usize])
    }

    /// A directory entry (`path` is given without the trailing slash).
    pub(crate) fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.header(&format!("{path}/"), 0, mode, EntryType::Directory)
    }

    /// A regular file from memory.
    pub(crate) fn bytes(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.header(path, data.len() as u64, mode, EntryType::Regular)?;
        self.put(data)?;
        self.pad(data.len() as u64)
    }

    /// A regular file of exactly `size` bytes streamed from `reader`; a reader giving a
    /// different number of bytes is an error (the archive would be corrupt).
    pub(crate) fn stream(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        reader: &mut dyn Read,
    ) -> io::Result<()> {
        self.header(path, size, mode, EntryType::Regular)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = size;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{path}: {} bytes short", left),
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
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        self.put(&ZEROS)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
