//! Resumable downloads of pinned blobs: a partial file kept across attempts and runs,
//! resumed with `Range`, every byte (old and new) hashed, capped at the pinned size,
//! and renamed to its blob name only when its digests match.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::{Answer, Sender, Transport};
use crate::error::{file_err, is_timeout, TransportError};
use crate::retry::Deadline;
use crate::sink::{hash_file, pump, Digests, Hasher, Pins, BLOB_MODE};

/// Hears a download's progress; never told a byte twice by a well-behaved meter.
pub trait Watch {
    /// The partial file now holds `position` bytes.
    fn at(&mut self, position: u64);
    /// Something worth telling (a restart from zero, a resumed file that did not match).
    fn note(&mut self, msg: &str);
}

/// One blob to download: where its partial lives, where blobs go, its pins and size.
#[derive(Debug, Clone)]
pub struct BlobTarget<'a> {
    /// The partial file, kept between attempts and runs (same filesystem as `blob_dir`).
    pub partial: PathBuf,
    /// The folder of blobs: a verified download becomes `<blob_dir>/<sha256>`.
    pub blob_dir: PathBuf,
    /// The digests it must have (at least one).
    pub pins: Pins<'a>,
    /// The pinned size, when known: more bytes than this is an error at once.
    pub size: Option<u64>,
}

/// A successful download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// Bytes in the blob.
    pub bytes: u64,
    /// Bytes reused from a partial.
    pub resumed_from: u64,
    /// The blob's digests (sha512 when pinned).
    pub digests: Digests,
}

/// How one transfer ended: stored, or complete but not matching its pins.
enum Finished {
    Stored(Done),
    Mismatch(TransportError),
}

impl BlobTarget<'_> {
    /// Checks a complete partial against the pins and renames it to its blob name; a
    /// mismatch removes it.
    fn finish(
        &self,
        origin: &str,
        digests: &Digests,
    ) -> Result<Option<TransportError>, TransportError> {
        if let Err(e) = self.pins.check(origin, digests) {
            remove_if_present(&self.partial)?;
            return Ok(Some(e));
        }
        let dest = self.blob_dir.join(&digests.sha256);
        kiln_fsio::rename_into(&self.partial, &dest, BLOB_MODE)?;
        Ok(None)
    }
}

impl Transport {
    /// One attempt at one URL: resume the partial if any, stream through the hasher into
    /// it, and on a full match rename it to its blob name. A body that breaks or stalls
    /// leaves the partial for the next attempt, source (or run); wrong or surplus bytes
    /// leave nothing. No wait outlasts the idle timeout or `deadline`.
    pub fn download<S: Sender>(
        &self,
        sender: &S,
        target: &BlobTarget<'_>,
        url: &str,
        deadline: &Deadline,
        watch: &mut dyn Watch,
    ) -> Result<Done, S::Error> {
        let part = &target.partial;
        let mut have = partial_len(part)?;
        if let Some(size) = target.size {
            if have > size {
                remove_if_present(part)?;
                have = 0;
            } else if have == size && have > 0 {
                // Complete partial from a run killed before its rename: the hashes decide.
                let digests = hash_file(part, target.pins.sha512.is_some())?;
                let origin = part.display().to_string();
                if target.finish(&origin, &digests)?.is_none() {
                    watch.at(have);
                    return Ok(Done {
                        bytes: have,
                        resumed_from: have,
                        digests,
                    });
                }
                have = 0;
            }
        }
        match self.transfer(sender, target, url, have, deadline, watch)? {
            Finished::Stored(done) => Ok(done),
            // A resumed file that does not match may owe its fault to the partial
            // (from another source or an older run), not to this URL: retry it whole.
            Finished::Mismatch(_) if have > 0 => {
                watch.note(&format!(
                    "{url}: resumed file did not match its pin; downloading it whole"
                ));
                match self.transfer(sender, target, url, 0, deadline, watch)? {
                    Finished::Stored(done) => Ok(done),
                    Finished::Mismatch(e) => Err(e.into()),
                }
            }
            Finished::Mismatch(e) => Err(e.into()),
        }
    }

    fn transfer<S: Sender>(
        &self,
        sender: &S,
        target: &BlobTarget<'_>,
        url: &str,
        mut have: u64,
        deadline: &Deadline,
        watch: &mut dyn Watch,
    ) -> Result<Finished, S::Error> {
        let part = &target.partial;
        if have == 0 {
            remove_if_present(part)?;
        }
        let wait = deadline.wait(self.options().idle_timeout);
        let mut answer = self.open(sender, url, have, wait)?;
        let restart = match &answer {
            Answer::RangeRejected => true,
            Answer::Body { start, .. } => *start != have,
        };
        if restart {
            watch.note(&format!(
                "{url}: server did not resume at byte {have}; restarting from zero"
            ));
            remove_if_present(part)?;
            have = 0;
            if !matches!(&answer, Answer::Body { start: 0, .. }) {
                answer = self.open(sender, url, 0, wait)?;
            }
        }
        let Answer::Body {
            mut reader, len, ..
        } = answer
        else {
            unreachable!("only a range request can be rejected, and none was made")
        };
        let body = Body {
            url,
            have,
            len,
            wait,
            deadline,
        };
        Ok(receive(target, &body, &mut reader, watch)?)
    }
}

/// What is known of one body being received.
struct Body<'a> {
    url: &'a str,
    /// Bytes already in the partial.
    have: u64,
    /// The body's announced length.
    len: Option<u64>,
    /// The longest one read may wait (the request's timeout).
    wait: Duration,
    deadline: &'a Deadline,
}

/// Appends the body to the partial (which holds `have` bytes), hashing old and new bytes.
/// A read that waited `wait` for nothing is a stall; the deadline is checked as bytes
/// arrive, so a source trickling just fast enough to dodge the idle timeout still ends.
fn receive(
    target: &BlobTarget<'_>,
    body: &Body<'_>,
    reader: &mut dyn Read,
    watch: &mut dyn Watch,
) -> Result<Finished, TransportError> {
    let Body {
        url,
        have,
        len,
        wait,
        deadline,
    } = *body;
    let part = &target.partial;
    let deadline_passed = || TransportError::DeadlineExceeded {
        url: url.to_owned(),
        limit: deadline.limit(),
    };
    let too_large = |limit| TransportError::TooLarge {
        url: url.to_owned(),
        limit,
    };
    if let (Some(size), Some(len)) = (target.size, len) {
        if have + len > size {
            return Err(too_large(size));
        }
    }
    let write_err = file_err("write", part);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(part)
        .map_err(write_err)?;
    // Partials are never trusted: their bytes go through the hasher like new ones.
    let mut hasher = Hasher::new(target.pins.sha512.is_some());
    if have > 0 {
        let mut prefix = File::open(part).map_err(write_err)?.take(have);
        io::copy(&mut prefix, &mut hasher).map_err(write_err)?;
    }
    let pumped = pump(
        reader,
        |chunk| {
            if let Some(size) = target.size {
                if hasher.size() + chunk.len() as u64 > size {
                    return Err(too_large(size));
                }
            }
            file.write_all(chunk).map_err(write_err)?;
            hasher.update(chunk);
            watch.at(hasher.size());
            if deadline.passed() {
                return Err(deadline_passed());
            }
            Ok(())
        },
        |source, got| {
            if !is_timeout(&source) {
                TransportError::Body {
                    url: url.to_owned(),
                    received: have + got,
                    source,
                }
            } else if deadline.passed() {
                deadline_passed()
            } else {
                TransportError::Stalled {
                    url: url.to_owned(),
                    idle: wait,
                    received: have + got,
                }
            }
        },
    );
    if let Err(e) = pumped {
        if matches!(e, TransportError::TooLarge { .. }) {
            drop(file);
            remove_if_present(part)?;
        } else {
            // Keep what arrived so the next attempt (or run) resumes from it.
            file.sync_all().map_err(write_err)?;
        }
        return Err(e);
    }
    file.sync_all().map_err(write_err)?;
    drop(file);
    let total = hasher.size();
    let got = total - have;
    if let Some(len) = len {
        if got < len {
            return Err(TransportError::ShortBody {
                url: url.to_owned(),
                received: total,
                expected: have + len,
            });
        }
    }
    if let Some(size) = target.size {
        if total < size {
            if len.is_none() {
                // Unannounced length: the connection may just have closed early.
                return Err(TransportError::ShortBody {
                    url: url.to_owned(),
                    received: total,
                    expected: size,
                });
            }
            remove_if_present(part)?;
            return Err(TransportError::SizeMismatch {
                url: url.to_owned(),
                expected: size,
                actual: total,
            });
        }
    }
    let digests = hasher.finish();
    Ok(match target.finish(url, &digests)? {
        Some(mismatch) => Finished::Mismatch(mismatch),
        None => Finished::Stored(Done {
            bytes: total,
            resumed_from: have,
            digests,
        }),
    })
}

/// Length of the partial file, 0 when there is none.
fn partial_len(part: &Path) -> Result<u64, TransportError> {
    match fs::metadata(part) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(file_err("read", part)(source)),
    }
}

/// Removes a file, treating "already gone" as success.
pub fn remove_if_present(path: &Path) -> Result<(), TransportError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(file_err("remove", path)(source)),
    }
}
