//! Reads the lines a guest appends to its serial log, as they arrive.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Most bytes read from one log per poll, so one chatty guest cannot stall the others.
const MAX_READ: u64 = 1 << 20;

/// Follows a file another process writes, like `tail -F`.
#[derive(Debug)]
pub(crate) struct Follower {
    path: PathBuf,
    file: Option<File>,
    offset: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Follows `path`, which may not exist yet.
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            file: None,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last call (without newlines).
    /// A file not created yet gives none; a truncated file is read again
    /// from its start.
    pub fn poll(&mut self) -> io::Result<Vec<String>> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        let file = self.file.as_mut().expect("opened above");
        let len = file.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut chunk = Vec::new();
        let read = file.take(MAX_READ).read_to_end(&mut chunk)?;
        self.offset += read as u64;
        self.partial.extend_from_slice(&chunk);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            let line = std::mem::replace(&mut self.partial, rest);
            lines.push(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        Ok(lines)
    }

    /// The unterminated last line, if any (once the writer has stopped).
    pub fn take_partial(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.partial);
        Some(String::from_utf8_lossy(&line).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn follows_appends_partial_lines_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serial.log");
        let mut f = Follower::new(&path);
        assert!(f.poll().unwrap().is_empty());

        let mut w = File::create(&path).unwrap();
        w.write_all(b"one\ntw").unwrap();
        assert_eq!(f.poll().unwrap(), ["one"]);
        w.write_all(b"o\r\n\xffthree\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["two\r", "\u{fffd}three"]);
        assert!(f.poll().unwrap().is_empty());
        w.write_all(b"tail").unwrap();
        assert!(f.poll().unwrap().is_empty());
        assert_eq!(f.take_partial().as_deref(), Some("tail"));
        assert_eq!(f.take_partial(), None);

        // Truncated and rewritten (a new QEMU on the same log).
        std::fs::write(&path, b"new\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["new"]);
    }
}
