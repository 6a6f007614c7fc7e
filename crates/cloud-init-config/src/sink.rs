//! Where a seed image's bytes land, and their digest taken as they land: an image that fits
//! [`IN_MEMORY`] is built in memory, hashed, and written with holes where its blocks are zero
//! (a 2 MiB VFAT seed holds a few KiB); a larger one (a seed carrying its bundles) is built in
//! its file and hashed from it before it is committed.

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use sha2::{Digest as _, Sha256};

/// Images up to this size are built in memory: a few per thread stay far below the build's
/// memory budget, and every tiny seed gets its zero blocks as holes.
pub(crate) const IN_MEMORY: u64 = 16 << 20;

/// The granularity of holes: the page and filesystem block size.
const BLOCK: usize = 4096;

/// The sha256 and size of a written image, as MANIFEST.json and SHA256SUMS record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDigest {
    /// Lowercase hex sha256 of the image's bytes.
    pub sha256: String,
    /// Its length in bytes.
    pub size: u64,
}

/// Writes `bytes` into the empty file `file` as they are hashed: runs of non-zero blocks are
/// written, zero blocks are left as holes (read back as zeros, so the bytes are the same), and
/// the length is set last.
pub(crate) fn write_sparse(file: &File, bytes: &[u8]) -> io::Result<ImageDigest> {
    let mut hash = Sha256::new();
    // Compared as whole slices (memcmp), not byte by byte: a 2 MiB image per host adds up.
    static ZERO: [u8; BLOCK] = [0; BLOCK];
    let zero = |b: &[u8]| b == &ZERO[..b.len()];
    let mut run: Option<usize> = None;
    for (i, block) in bytes.chunks(BLOCK).enumerate() {
        hash.update(block);
        let at = i * BLOCK;
        match (zero(block), run) {
            (false, None) => run = Some(at),
            (true, Some(start)) => {
                file.write_all_at(&bytes[start..at], start as u64)?;
                run = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run {
        file.write_all_at(&bytes[start..], start as u64)?;
    }
    file.set_len(bytes.len() as u64)?;
    Ok(ImageDigest {
        sha256: format!("{:x}", hash.finalize()),
        size: bytes.len() as u64,
    })
}

/// The digest of an image built in `file` itself (too large for memory), read from the start
/// through the writer's own descriptor before the file is committed.
pub(crate) fn hash_file(file: &mut File) -> io::Result<ImageDigest> {
    file.seek(SeekFrom::Start(0))?;
    let mut hash = Sha256::new();
    let size = io::copy(file, &mut hash)?;
    Ok(ImageDigest {
        sha256: format!("{:x}", hash.finalize()),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn sparse_writes_keep_the_bytes_and_leave_zero_blocks_unallocated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut bytes = vec![0u8; 64 * BLOCK + 100];
        bytes[10] = 1; // first block
        bytes[5 * BLOCK..7 * BLOCK].fill(0xaa); // a run of two
        let last = bytes.len() - 1;
        bytes[last] = 7; // the partial tail block
        let mut file = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let d = write_sparse(&file, &bytes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(d.size, bytes.len() as u64);
        assert_eq!(d.sha256, format!("{:x}", Sha256::digest(&bytes)));
        assert_eq!(hash_file(&mut file).unwrap(), d);
        // 4 blocks of data (512-byte st_blocks); a filesystem without holes allocates all.
        let allocated = file.metadata().unwrap().blocks() * 512;
        assert!(
            allocated <= 16 * BLOCK as u64,
            "{allocated} bytes allocated"
        );
    }
}
