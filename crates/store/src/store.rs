//! The content-addressed folder itself: blob paths, verification and atomic insertion.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use kiln_fsio::TempFile;
use kiln_transport::{Pins, Sink, BLOB_MODE};

use crate::error::StoreError;

/// A content-addressed store rooted at a folder: blobs live at `<root>/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// Whether `s` is a sha256 as the store names blobs: 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a sha512 as pins give it: 128 lowercase hex digits.
pub fn is_sha512(s: &str) -> bool {
    s.len() == 128 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Returns an error unless `s` is a valid sha512.
pub(crate) fn check_sha512(s: &str) -> Result<(), StoreError> {
    if is_sha512(s) {
        Ok(())
    } else {
        Err(StoreError::InvalidSha512 {
            value: s.to_owned(),
        })
    }
}

/// Returns an error unless `s` is a valid sha256 name.
pub(crate) fn check_sha256(s: &str) -> Result<(), StoreError> {
    if is_sha256(s) {
        Ok(())
    } else {
        Err(StoreError::InvalidSha256 {
            value: s.to_owned(),
        })
    }
}

/// Hashes a local file, returning its sha256 and size.
pub fn hash_file(path: &Path) -> Result<(String, u64), StoreError> {
    let digests = kiln_transport::hash_file(path, false)?;
    Ok((digests.sha256, digests.size))
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    Ok(kiln_transport::remove_if_present(path)?)
}

/// Removes a blob whose bytes do not hash to its name, saying so.
fn remove_corrupt(path: &Path, expected: &str, actual: &str) -> Result<(), StoreError> {
    tracing::warn!(
        path = %path.display(),
        expected,
        actual,
        "corrupt blob removed from the store"
    );
    remove_if_present(path)
}

impl Store {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_owned(),
        };
        for dir in [store.blob_dir(), store.tmp_dir(), store.members_dir()] {
            fs::create_dir_all(&dir).map_err(kiln_fsio::Error::on("create folder", dir))?;
        }
        Ok(store)
    }

    /// The store's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob named `sha256` lives (whether or not it is there).
    ///
    /// `sha256` should satisfy [`is_sha256`]; every fallible method checks it.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blob_dir().join(sha256)
    }

    /// Where a resumable partial download of `sha256` is kept.
    pub fn partial_path(&self, sha256: &str) -> PathBuf {
        self.tmp_dir().join(format!("{sha256}.part"))
    }

    /// Where a resumable partial download known only by its `sha512` is kept.
    pub fn partial_path_sha512(&self, sha512: &str) -> PathBuf {
        self.tmp_dir().join(format!("sha512-{sha512}.part"))
    }

    /// The folder of sha512 records: `sha512/<hex>` holds the sha256 of the blob with that sha512.
    pub(crate) fn sha512_dir(&self) -> PathBuf {
        self.root.join("sha512")
    }

    /// The sha256 of the blob whose sha512 is `sha512`, as recorded when it was fetched
    /// (a pin may be a sha512 while blobs are named by sha256). `None` when not recorded.
    pub fn sha256_of_sha512(&self, sha512: &str) -> Result<Option<String>, StoreError> {
        check_sha512(sha512)?;
        let path = self.sha512_dir().join(sha512);
        match fs::read_to_string(&path) {
            Ok(text) if is_sha256(text.trim()) => Ok(Some(text.trim().to_owned())),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "malformed sha512 record removed from the store");
                remove_if_present(&path)?;
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::File(kiln_fsio::Error::on("read", path)(source))),
        }
    }

    /// Records that the blob `sha256` has sha512 `sha512` (both computed from its bytes),
    /// written like a blob: temp file, fsync, rename.
    pub(crate) fn record_sha512(&self, sha512: &str, sha256: &str) -> Result<(), StoreError> {
        check_sha512(sha512)?;
        check_sha256(sha256)?;
        let dir = self.sha512_dir();
        fs::create_dir_all(&dir).map_err(kiln_fsio::Error::on("create folder", dir.clone()))?;
        let mut temp = self.temp_file("sha512", BLOB_MODE)?;
        let dest = dir.join(sha512);
        let save_err = StoreError::File;
        temp.write_bytes(format!("{sha256}\n").as_bytes())
            .map_err(save_err)?;
        temp.commit(&dest).map_err(save_err)
    }

    /// Forgets a sha512 record (it named a blob whose bytes do not have that sha512).
    pub(crate) fn forget_sha512(&self, sha512: &str) -> Result<(), StoreError> {
        check_sha512(sha512)?;
        remove_if_present(&self.sha512_dir().join(sha512))
    }

    /// The folder of blobs.
    pub fn blob_dir(&self) -> PathBuf {
        self.root.join("sha256")
    }

    /// The folder of temp files and partial downloads (same filesystem as the blobs).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A new temp file in [`Self::tmp_dir`] with exactly `mode` (removed unless committed).
    pub(crate) fn temp_file(&self, hint: &str, mode: u32) -> Result<TempFile, StoreError> {
        let tmp_dir = self.tmp_dir();
        TempFile::new_in(&tmp_dir, hint, mode).map_err(StoreError::File)
    }

    /// The folder of archive member caches.
    pub(crate) fn members_dir(&self) -> PathBuf {
        self.root.join("members")
    }

    /// Cheap presence check (no re-hash), for planning what to fetch.
    pub fn contains(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.blob_path(sha256).is_file()
    }

    /// Whether the blob exists and re-hashes to its name.
    ///
    /// A corrupt entry is removed (with a `tracing` warning) and `false` returned.
    pub fn verify_blob(&self, sha256: &str) -> Result<bool, StoreError> {
        check_sha256(sha256)?;
        let Some(path) = self.existing_blob(sha256)? else {
            return Ok(false);
        };
        let (actual, _) = hash_file(&path)?;
        if actual == sha256 {
            return Ok(true);
        }
        remove_corrupt(&path, sha256, &actual)?;
        Ok(false)
    }

    /// [`Store::verify_blob`] that checks a sha512 in the same pass: `Some(true)` when the
    /// blob re-hashes to its name and to `sha512`, `Some(false)` when it is sound but has
    /// another sha512, `None` when it is absent or was corrupt (and is removed).
    pub(crate) fn verify_blob_sha512(
        &self,
        sha256: &str,
        sha512: &str,
    ) -> Result<Option<bool>, StoreError> {
        check_sha256(sha256)?;
        check_sha512(sha512)?;
        let Some(path) = self.existing_blob(sha256)? else {
            return Ok(None);
        };
        let digests = kiln_transport::hash_file(&path, true)?;
        if digests.sha256 != sha256 {
            remove_corrupt(&path, sha256, &digests.sha256)?;
            return Ok(None);
        }
        Ok(Some(digests.sha512.as_deref() == Some(sha512)))
    }

    /// The blob's path when it exists (not hashed).
    fn existing_blob(&self, sha256: &str) -> Result<Option<PathBuf>, StoreError> {
        let path = self.blob_path(sha256);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(Some(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(kiln_fsio::Error::on("read", path)(source).into()),
        }
    }

    /// Copies a local file into the store, hashing it and checking it against the pin.
    ///
    /// A blob already present and verified is kept as is.
    pub fn insert_file(&self, path: &Path, expected_sha256: &str) -> Result<PathBuf, StoreError> {
        check_sha256(expected_sha256)?;
        if self.verify_blob(expected_sha256)? {
            return Ok(self.blob_path(expected_sha256));
        }
        let mut file = File::open(path).map_err(kiln_fsio::Error::on("read", path.to_owned()))?;
        let origin = path.display().to_string();
        self.ingest(&mut file, &origin, Some(expected_sha256))
            .map(|(sha, _)| self.blob_path(&sha))
    }

    /// Copies a local file into the store checked against whichever pins are given (at
    /// least one); a sha512 pin is recorded with the computed sha256. Returns the sha256.
    pub(crate) fn insert_file_pinned(
        &self,
        path: &Path,
        sha256: Option<&str>,
        sha512: Option<&str>,
    ) -> Result<String, StoreError> {
        let mut file = File::open(path).map_err(kiln_fsio::Error::on("read", path.to_owned()))?;
        let origin = path.display().to_string();
        let (sha, _) = self.ingest_pinned(&mut file, &origin, sha256, sha512)?;
        if let Some(h) = sha512 {
            self.record_sha512(h, &sha)?;
        }
        Ok(sha)
    }

    /// Streams `reader` into a temp file, hashes it and, if it matches `expected`
    /// (when given), renames it to its blob name. Returns the sha256 and size.
    pub(crate) fn ingest(
        &self,
        reader: &mut dyn Read,
        origin: &str,
        expected: Option<&str>,
    ) -> Result<(String, u64), StoreError> {
        self.ingest_pinned(reader, origin, expected, None)
    }

    /// [`Store::ingest`] checking a sha512 pin as well, when given.
    pub(crate) fn ingest_pinned(
        &self,
        reader: &mut dyn Read,
        origin: &str,
        expected: Option<&str>,
        expected_sha512: Option<&str>,
    ) -> Result<(String, u64), StoreError> {
        let mut sink = Sink::new(&self.tmp_dir(), "ingest", expected_sha512.is_some())?;
        sink.fill(reader, origin)?;
        let pins = Pins {
            sha256: expected,
            sha512: expected_sha512,
        };
        let digests = sink.finish(origin, pins, &self.blob_dir())?;
        Ok((digests.sha256, digests.size))
    }

    /// Moves a complete, already-hashed file (same filesystem) to its blob name.
    pub(crate) fn commit(&self, from: &Path, sha256: &str) -> Result<PathBuf, StoreError> {
        let dest = self.blob_path(sha256);
        kiln_fsio::rename_into(from, &dest, BLOB_MODE).map_err(StoreError::File)?;
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_transport::TransportError;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn sha256_names_are_strict() {
        assert!(is_sha256(HELLO));
        assert!(!is_sha256(&HELLO.to_uppercase()));
        assert!(!is_sha256(&HELLO[1..]));
        assert!(!is_sha256("../../etc/passwd"));
    }

    #[test]
    fn insert_file_checks_the_pin_and_leaves_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("vendor")).unwrap();
        let src = dir.path().join("hello.txt");
        fs::write(&src, "hello").unwrap();

        let wrong = "0".repeat(64);
        let err = store.insert_file(&src, &wrong).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Transport(TransportError::HashMismatch { .. })
            ),
            "{err}"
        );
        assert_eq!(fs::read_dir(store.blob_dir()).unwrap().count(), 0);
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);

        let path = store.insert_file(&src, HELLO).unwrap();
        assert_eq!(path, store.blob_path(HELLO));
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert!(store.contains(HELLO));
        assert!(store.verify_blob(HELLO).unwrap());
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
    }

    #[test]
    fn verify_blob_removes_a_corrupted_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let src = dir.path().join("hello.txt");
        fs::write(&src, "hello").unwrap();
        let path = store.insert_file(&src, HELLO).unwrap();

        fs::write(&path, "jello").unwrap();
        assert!(store.contains(HELLO), "contains does not re-hash");
        assert!(!store.verify_blob(HELLO).unwrap());
        assert!(!path.exists(), "corrupt blob must be removed");
        assert!(!store.contains(HELLO));
        assert!(!store.verify_blob(HELLO).unwrap());
    }

    #[test]
    fn invalid_names_are_rejected_not_joined() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(!store.contains("../x"));
        assert!(matches!(
            store.verify_blob("../x"),
            Err(StoreError::InvalidSha256 { .. })
        ));
    }
}
