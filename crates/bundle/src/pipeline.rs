//! Parallel compression: chunks from a producer thread, members from a pool, written in order.

// A fixed set of buffer pairs circulates producer → compressor → writer → producer, so
// memory stays bounded whatever the relative speeds; dropping any stage's channel ends
// unblocks the others, so an error anywhere stops everything without deadlock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use crate::gz::{MemberEncoder, CHUNK_SIZE};
use crate::BundleError;

/// Why the producer stopped early.
pub(crate) enum Stop {
    /// It failed with this error.
    Failed(BundleError),
    /// A later stage went away (its own error is reported instead).
    Cancelled,
}

impl From<BundleError> for Stop {
    fn from(e: BundleError) -> Self {
        Stop::Failed(e)
    }
}

/// An input chunk and the buffer its member goes into.
struct Buffers {
    input: Vec<u8>,
    output: Vec<u8>,
}

struct Job {
    index: u64,
    len: usize,
    bufs: Buffers,
}

struct Done {
    index: u64,
    len: usize,
    bufs: Buffers,
    result: Result<(), flate2::CompressError>,
}

/// The producer's end: cuts whatever it is given into [`CHUNK_SIZE`] chunks.
pub(crate) struct ChunkSink {
    current: Option<Buffers>,
    filled: usize,
    next_index: u64,
    free: Receiver<Buffers>,
    jobs: SyncSender<Job>,
}

impl ChunkSink {
    /// Makes sure a chunk is being filled, waiting for a free one if needed.
    fn ensure_buffer(&mut self) -> Result<(), Stop> {
        if self.current.is_none() {
            let mut bufs = self.free.recv().map_err(|_| Stop::Cancelled)?;
            bufs.input.resize(CHUNK_SIZE, 0);
            self.current = Some(bufs);
            self.filled = 0;
        }
        Ok(())
    }

    fn emit(&mut self) -> Result<(), Stop> {
        if let Some(bufs) = self.current.take() {
            let job = Job {
                index: self.next_index,
                len: self.filled,
                bufs,
            };
            self.next_index += 1;
            self.filled = 0;
            self.jobs.send(job).map_err(|_| Stop::Cancelled)?;
        }
        Ok(())
    }

    /// Appends bytes to the stream.
    pub(crate) fn write(&mut self, mut data: &[u8]) -> Result<(), Stop> {
        while !data.is_empty() {
            let n = self.fill_with(data.len() as u64, |space| {
                space.copy_from_slice(&data[..space.len()]);
                Ok(space.len())
            })?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Lets `fill` write up to `max` bytes straight into the current chunk (no extra copy);
    /// returns how many it wrote.
    pub(crate) fn fill_with(
        &mut self,
        max: u64,
        fill: impl FnOnce(&mut [u8]) -> Result<usize, Stop>,
    ) -> Result<usize, Stop> {
        self.ensure_buffer()?;
        let start = self.filled;
        let n = (CHUNK_SIZE - start).min(usize::try_from(max).unwrap_or(usize::MAX));
        let input = &mut self.current.as_mut().expect("ensured").input;
        let wrote = fill(&mut input[start..start + n])?;
        debug_assert!(wrote <= n);
        self.filled += wrote;
        if self.filled == CHUNK_SIZE {
            self.emit()?;
        }
        Ok(wrote)
    }

    fn finish(mut self) -> Result<u64, Stop> {
        if self.filled > 0 {
            self.emit()?;
        }
        Ok(self.next_index)
    }
}

/// Runs `produce` on its own thread and compresses what it writes on `threads` workers,
/// handing each member, in order, to `write` on the calling thread (`file` names errors).
pub(crate) fn compress_parallel<P, W>(
    threads: usize,
    file: &Path,
    produce: P,
    mut write: W,
) -> Result<(), BundleError>
where
    P: FnOnce(&mut ChunkSink) -> Result<(), Stop> + Send,
    W: FnMut(&[u8]) -> Result<(), BundleError>,
{
    let threads = threads.max(1);
    // Enough buffers for every worker to hold one while the writer waits on a slow one.
    let in_flight = 2 * threads + 2;
    let (free_tx, free_rx) = mpsc::channel::<Buffers>();
    for _ in 0..in_flight {
        let bufs = Buffers {
            input: Vec::new(),
            output: Vec::new(),
        };
        free_tx.send(bufs).expect("receiver alive");
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(in_flight);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let (done_tx, done_rx) = mpsc::channel::<Done>();

    std::thread::scope(|scope| {
        let producer = scope.spawn(move || {
            let mut sink = ChunkSink {
                current: None,
                filled: 0,
                next_index: 0,
                free: free_rx,
                jobs: job_tx,
            };
            produce(&mut sink)?;
            sink.finish()
        });
        for _ in 0..threads {
            let done_tx = done_tx.clone();
            let job_rx = Arc::clone(&job_rx);
            scope.spawn(move || {
                let mut encoder = MemberEncoder::new();
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(mut job) = job else { return };
                    let Buffers { input, output } = &mut job.bufs;
                    let result = encoder.encode(&input[..job.len], output);
                    let done = Done {
                        index: job.index,
                        len: job.len,
                        bufs: job.bufs,
                        result,
                    };
                    if done_tx.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        // Only workers hold these now, so when they all stop the producer is unblocked.
        drop(done_tx);
        drop(job_rx);

        let written = write_in_order(file, done_rx, free_tx, &mut write);
        let produced = producer.join().expect("producer thread panicked");
        match (written, produced) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(Stop::Failed(e))) => Err(e),
            (Ok(n), Ok(total)) if n == total => Ok(()),
            (Ok(n), produced) => Err(BundleError::WorkerStopped {
                file: file.to_owned(),
                wrote: n,
                total: produced.ok(),
            }),
        }
    })
}

/// Writes finished members in index order, recycling their buffers; returns how many.
fn write_in_order<W>(
    file: &Path,
    done_rx: Receiver<Done>,
    free_tx: mpsc::Sender<Buffers>,
    write: &mut W,
) -> Result<u64, BundleError>
where
    W: FnMut(&[u8]) -> Result<(), BundleError>,
{
    let mut next = 0u64;
    let mut waiting: BTreeMap<u64, Done> = BTreeMap::new();
    for done in done_rx {
        waiting.insert(done.index, done);
        while let Some(done) = waiting.remove(&next) {
            if let Err(source) = done.result {
                return Err(BundleError::Deflate {
                    file: file.to_owned(),
                    member: next,
                    len: done.len,
                    source,
                });
            }
            write(&done.bufs.output)?;
            next += 1;
            // The producer may have finished already; then the buffers are simply dropped.
            let _ = free_tx.send(done.bufs);
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn run(threads: usize, data: &[u8], piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        compress_parallel(
            threads,
            Path::new("t"),
            |sink| {
                for p in data.chunks(piece) {
                    sink.write(p)?;
                }
                Ok(())
            },
            |member| {
                out.extend_from_slice(member);
                Ok(())
            },
        )
        .unwrap();
        out
    }

    #[test]
    fn output_does_not_depend_on_threads_or_write_sizes() {
        let data: Vec<u8> = (0..3 * CHUNK_SIZE + 999).map(|i| (i % 251) as u8).collect();
        let one = run(1, &data, CHUNK_SIZE);
        assert_eq!(run(4, &data, 4097), one);
        assert_eq!(run(3, &data, 3 * CHUNK_SIZE), one);
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&one[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn fill_with_right_after_a_full_chunk_is_not_mistaken_for_eof() {
        // Regression: a stale fill level once gave `fill` an empty slice after each chunk,
        // which the file reader took as end of file (a false pin mismatch).
        let mut sizes = Vec::new();
        compress_parallel(
            2,
            Path::new("t"),
            |sink| {
                for _ in 0..3 {
                    let n = sink.fill_with(CHUNK_SIZE as u64, |buf| {
                        buf.fill(1);
                        Ok(buf.len())
                    })?;
                    sizes.push(n);
                }
                Ok(())
            },
            |_| Ok(()),
        )
        .unwrap();
        assert_eq!(sizes, [CHUNK_SIZE; 3]);
    }

    #[test]
    fn errors_on_either_side_stop_the_pipeline() {
        let data = vec![7u8; 10 * CHUNK_SIZE];
        let err = compress_parallel(
            2,
            Path::new("t"),
            |sink| {
                sink.write(&data)?;
                Err(Stop::Failed(BundleError::DuplicatePath {
                    path: "p".into(),
                }))
            },
            |_| Ok(()),
        )
        .unwrap_err();
        assert!(matches!(err, BundleError::DuplicatePath { .. }), "{err}");

        let mut calls = 0;
        let err = compress_parallel(
            2,
            Path::new("t"),
            |sink| {
                for _ in 0..100 {
                    sink.write(&data)?;
                }
                Ok(())
            },
            |_| {
                calls += 1;
                if calls == 3 {
                    Err(BundleError::InvalidStem {
                        stem: "s".into(),
                        reason: "test",
                    })
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert!(matches!(err, BundleError::InvalidStem { .. }), "{err}");
        assert_eq!(calls, 3);
    }
}
