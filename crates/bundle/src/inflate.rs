//! Background decompression: a helper thread reads, hashes and inflates while the caller parses.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use sha2::{Digest, Sha256};

use crate::gz::{GzError, StrictGzReader};
use crate::VerifyError;

/// Read size for the compressed file and size of each decompressed block handed over.
const BLOCK_LEN: usize = 1 << 20;

/// Decompressed blocks in flight between the two threads.
const IN_FLIGHT: usize = 4;

/// What the decoder learned about the compressed file once it reached its end.
#[derive(Debug)]
pub(crate) struct Summary {
    /// sha256 of the compressed bytes, lowercase hex.
    pub sha256: String,
    /// Size of the compressed file.
    pub size: u64,
    /// Number of gzip members.
    pub members: u64,
}

/// Hashes and counts every compressed byte as it is read, so the file is read once.
struct HashingReader {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Read for HashingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

enum Msg {
    Data(Vec<u8>, usize),
    End(Summary),
    Fail(VerifyError),
}

/// The consumer's view of the decompressed stream.
pub(crate) struct Inflated {
    rx: Receiver<Msg>,
    free: Sender<Vec<u8>>,
    block: Vec<u8>,
    len: usize,
    pos: usize,
    end: Option<Summary>,
    offset: u64,
}

impl Inflated {
    /// Offset in the decompressed stream of the next byte.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The next bytes of the stream, at most `max` and at least one unless at its end.
    pub(crate) fn next_slice(&mut self, max: usize) -> Result<&[u8], VerifyError> {
        while self.pos == self.len {
            if self.end.is_some() {
                return Ok(&[]);
            }
            match self.rx.recv().expect("decoder ends with End or Fail") {
                Msg::Data(block, len) => {
                    let old = std::mem::replace(&mut self.block, block);
                    // The decoder may be done already; then the old block is just dropped.
                    let _ = self.free.send(old);
                    (self.len, self.pos) = (len, 0);
                }
                Msg::End(summary) => self.end = Some(summary),
                Msg::Fail(e) => return Err(e),
            }
        }
        let n = max.min(self.len - self.pos);
        let slice = &self.block[self.pos..self.pos + n];
        self.pos += n;
        self.offset += n as u64;
        Ok(slice)
    }
}

/// Opens `path`, decompresses it on a helper thread and lets `consume` read the stream,
/// which it must read to its end (an empty slice); returns its value and the summary.
pub(crate) fn with_inflated<T>(
    path: &Path,
    consume: impl FnOnce(&mut Inflated) -> Result<T, VerifyError>,
) -> Result<(T, Summary), VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError::Io {
        op: "open",
        file: path.to_owned(),
        source,
    })?;
    let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
    let (free_tx, free_rx) = mpsc::channel();
    for _ in 0..IN_FLIGHT {
        free_tx.send(Vec::new()).expect("receiver alive");
    }
    std::thread::scope(|scope| {
        scope.spawn(move || decode(file, path, tx, free_rx));
        let mut inflated = Inflated {
            rx,
            free: free_tx,
            block: Vec::new(),
            len: 0,
            pos: 0,
            end: None,
            offset: 0,
        };
        // On error `inflated` is dropped here, which stops the decoder before the scope joins.
        let value = consume(&mut inflated)?;
        let summary = inflated
            .end
            .take()
            .expect("consume reads the stream to its end");
        Ok((value, summary))
    })
}

/// The decoder thread: fills blocks from the strict gzip reader until the end or an error.
fn decode(file: File, path: &Path, tx: SyncSender<Msg>, free: Receiver<Vec<u8>>) {
    let reader = HashingReader {
        file,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut gz = StrictGzReader::new(BufReader::with_capacity(BLOCK_LEN, reader));
    while let Ok(mut block) = free.recv() {
        block.resize(BLOCK_LEN, 0);
        let mut filled = 0;
        while filled < BLOCK_LEN {
            match gz.read(&mut block[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => {
                    let _ = tx.send(Msg::Fail(gz_error(path, e)));
                    return;
                }
            }
        }
        if filled > 0 && tx.send(Msg::Data(block, filled)).is_err() {
            return;
        }
        if filled < BLOCK_LEN {
            let members = gz.members();
            let reader = gz.into_inner().into_inner();
            let summary = Summary {
                sha256: hex::encode(reader.hasher.finalize()),
                size: reader.bytes,
                members,
            };
            let _ = tx.send(Msg::End(summary));
            return;
        }
    }
}

fn gz_error(path: &Path, e: GzError) -> VerifyError {
    match e {
        GzError::Io(source) => VerifyError::Io {
            op: "read",
            file: path.to_owned(),
            source,
        },
        GzError::Format { offset, reason } => VerifyError::Gzip {
            file: path.to_owned(),
            offset,
            reason,
        },
    }
}
