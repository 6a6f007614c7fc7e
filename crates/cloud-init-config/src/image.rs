//! What goes into a seed image: the seed documents plus checked extra files, and the one timestamp.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::render::{Seed, META_DATA, NETWORK_CONFIG, USER_DATA};

/// The volume label cloud-init's NoCloud datasource looks for.
pub const VOLUME_LABEL: &str = "CIDATA";

/// The longest name of one path component: Joliet's 64 UCS-2 characters.
const MAX_COMPONENT: usize = 64;
/// The longest path inside an image.
const MAX_PATH: usize = 240;
/// The largest extra file: FAT's 4 GiB - 1 and one ISO 9660 extent.
const MAX_FILE: u64 = u32::MAX as u64;

/// The single instant every date in a seed image is set from, in whole
/// seconds since the Unix epoch (UTC), e.g. `SOURCE_DATE_EPOCH`.
///
/// FAT can only store 1980-01-01 to 2107-12-31, so that is the accepted range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1980-01-01T00:00:00Z, the earliest FAT date.
    pub const DOS_EPOCH: Self = Self(315_532_800);
    /// 2107-12-31T23:59:59Z, the latest FAT date.
    const LAST: i64 = 4_354_819_199;

    /// A timestamp `seconds` after the Unix epoch, within FAT's range.
    pub fn from_unix(seconds: i64) -> Result<Self> {
        if (Self::DOS_EPOCH.0..=Self::LAST).contains(&seconds) {
            Ok(Self(seconds))
        } else {
            Err(Error::Invalid {
                field: "seed image timestamp",
                value: seconds.to_string(),
                reason: "must be between 1980-01-01 and 2107-12-31 (FAT's range)",
            })
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// As the ISO writer's date type.
    pub(crate) fn to_hadris(self) -> hadris_fs::DateTime {
        hadris_fs::DateTime::from_unix_seconds(self.0).expect("checked range")
    }

    /// UTC civil fields: (year, month, day, hour, minute, second).
    pub(crate) fn civil(self) -> (u16, u8, u8, u8, u8, u8) {
        let (date, time) = self.to_hadris().to_civil_utc();
        let year = u16::try_from(date.year()).expect("checked range");
        (
            year,
            date.month(),
            date.day(),
            time.hour(),
            time.minute(),
            time.second(),
        )
    }
}

/// Where an image file's bytes come from.
#[derive(Debug)]
pub(crate) enum Source<'a> {
    /// A rendered seed document.
    Bytes(Vec<u8>),
    /// A host file, streamed when the image is written.
    Host(&'a Path),
}

/// One file of a seed image.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    /// `/`-separated path inside the image.
    pub path: String,
    /// Its bytes.
    pub source: Source<'a>,
    /// Its length, taken before writing.
    pub len: u64,
}

/// The seed documents (if any) first, then the extra files sorted by path, so
/// the image does not depend on the order `extra` was given in.
pub(crate) fn entries<'a>(
    seed: Option<&Seed>,
    extra: &'a [(String, PathBuf)],
) -> Result<Vec<Entry<'a>>> {
    let documents = match seed {
        Some(seed) => seed.render()?,
        None => Vec::new(),
    };
    let mut out: Vec<Entry<'a>> = documents
        .into_iter()
        .map(|file| Entry {
            path: file.name.to_owned(),
            len: file.bytes.len() as u64,
            source: Source::Bytes(file.bytes),
        })
        .collect();
    let mut sorted: Vec<&(String, PathBuf)> = extra.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    // Case-folded names already taken, as files (true) or folders (false):
    // FAT compares names without case.
    let mut taken: BTreeMap<String, bool> = [USER_DATA, META_DATA, NETWORK_CONFIG]
        .into_iter()
        .map(|name| (name.to_owned(), true))
        .collect();
    for (inner, source) in sorted {
        check_inner_path(inner)?;
        claim(&mut taken, inner)?;
        let meta = std::fs::metadata(source).map_err(Error::io("read metadata of", source))?;
        if !meta.is_file() {
            return Err(Error::io("read", source)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        if meta.len() > MAX_FILE {
            return Err(Error::io("add to a seed image", source)(
                std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    "larger than 4 GiB - 1 bytes, the FAT and ISO 9660 limit",
                ),
            ));
        }
        out.push(Entry {
            path: inner.clone(),
            source: Source::Host(source),
            len: meta.len(),
        });
    }
    Ok(out)
}

fn bad_path(path: &str, reason: &'static str) -> Error {
    Error::ImagePath {
        path: path.to_owned(),
        reason,
    }
}

/// A relative, normalised `/`-separated path of names both FAT and Joliet
/// can hold unchanged.
fn check_inner_path(path: &str) -> Result<()> {
    if path.is_empty() || path.len() > MAX_PATH {
        return Err(bad_path(path, "must be 1 to 240 bytes long"));
    }
    if path.starts_with('/') {
        return Err(bad_path(path, "must be relative"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(bad_path(path, "has an empty, '.' or '..' component"));
        }
        if part.chars().count() > MAX_COMPONENT {
            return Err(bad_path(path, "has a name longer than 64 characters"));
        }
        if part.ends_with('.') || part.ends_with(' ') || part.starts_with(' ') {
            return Err(bad_path(
                path,
                "has a name starting with a space or ending in '.' or a space",
            ));
        }
        let bad = |c: char| {
            c.is_control() || matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' | ';')
        };
        if part.chars().any(bad) {
            return Err(bad_path(path, "has a character FAT or Joliet cannot store"));
        }
    }
    Ok(())
}

/// Records `path` and its parent folders in `taken`, refusing a path that
/// equals (ignoring case) one already there or turns a file into a folder.
fn claim(taken: &mut BTreeMap<String, bool>, path: &str) -> Result<()> {
    let folded = path.to_lowercase();
    let mut prefix = String::new();
    let parts: Vec<&str> = folded.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            prefix.push('/');
        }
        prefix.push_str(part);
        let is_file = i + 1 == parts.len();
        match taken.get(&prefix) {
            Some(true) => return Err(bad_path(path, "clashes (ignoring case) with another file")),
            Some(false) if is_file => {
                return Err(bad_path(path, "clashes (ignoring case) with a folder"))
            }
            _ => {
                taken.insert(prefix.clone(), is_file);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_range_is_fats() {
        assert!(Timestamp::from_unix(315_532_799).is_err());
        assert!(Timestamp::from_unix(4_354_819_200).is_err());
        assert_eq!(Timestamp::DOS_EPOCH.civil(), (1980, 1, 1, 0, 0, 0));
        assert_eq!(
            Timestamp::from_unix(1_700_000_000).unwrap().civil(),
            (2023, 11, 14, 22, 13, 20)
        );
    }

    #[test]
    fn hostile_inner_paths_are_refused() {
        let long = "a".repeat(65);
        for path in [
            "",
            "/abs",
            "a//b",
            "a/./b",
            "../x",
            "kiln/",
            "a\\b",
            "a:b",
            "trail.",
            " lead",
            long.as_str(),
        ] {
            let err = check_inner_path(path).unwrap_err().to_string();
            assert!(err.contains(&format!("{path:?}")), "{err}");
        }
        check_inner_path("kiln/node-0a1b2c.tar.gz").unwrap();
    }

    #[test]
    fn clashes_are_refused_ignoring_case() {
        let mut taken = BTreeMap::from([("user-data".to_owned(), true)]);
        claim(&mut taken, "kiln/a.tar.gz").unwrap();
        assert!(claim(&mut taken, "KILN/A.tar.gz").is_err());
        assert!(claim(&mut taken, "kiln").is_err());
        assert!(claim(&mut taken, "kiln/a.tar.gz/x").is_err());
        assert!(claim(&mut taken, "User-Data").is_err());
        assert!(claim(&mut taken, "user-data/x").is_err());
        claim(&mut taken, "kiln/b").unwrap();
    }
}
