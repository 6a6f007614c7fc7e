//! Taking named members out of archive blobs (.deb, tar.gz, tar) into the store, once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::{check_sha256, Store};

/// Mode of a members cache file (0600, as when it was written through `tempfile`).
const MEMBERS_CACHE_MODE: u32 = 0o600;

/// Symlink hops followed before a member is declared a loop (as Linux does).
const MAX_LINK_HOPS: usize = 40;

/// How many close names a "member not found" error lists.
const NEAR_NAMES: usize = 5;

/// The kinds of archive members can be taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveKind {
    /// A Debian package: its data tarball, read through `dpkg-deb --fsys-tarfile`.
    Deb,
    /// A gzip-compressed tarball (`.tar.gz`, `.tgz`).
    TarGz,
    /// An uncompressed tarball.
    Tar,
}

impl ArchiveKind {
    /// Guesses the kind from a file name's extension.
    pub fn from_file_name(name: &str) -> Option<ArchiveKind> {
        if name.ends_with(".deb") {
            Some(ArchiveKind::Deb)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Some(ArchiveKind::TarGz)
        } else if name.ends_with(".tar") {
            Some(ArchiveKind::Tar)
        } else {
            None
        }
    }

    /// The kind's name as written in catalogs: `deb`, `tar.gz` or `tar`.
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveKind::Deb => "deb",
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::Tar => "tar",
        }
    }
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An archive kind other than deb, tar.gz, tgz and tar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown archive kind `{0}` (expected deb, tar.gz, tgz or tar)")]
pub struct UnknownArchiveKind(pub String);

impl FromStr for ArchiveKind {
    type Err = UnknownArchiveKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "deb" => Ok(ArchiveKind::Deb),
            "tar.gz" | "tgz" => Ok(ArchiveKind::TarGz),
            "tar" => Ok(ArchiveKind::Tar),
            other => Err(UnknownArchiveKind(other.to_string())),
        }
    }
}

/// A member taken out of an archive: its blob, size and mode inside the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's blob in the store.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits in the archive (e.g. `0o755`).
    pub mode: u32,
}

/// What an archive entry is, as far as resolving members needs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File,
    Dir,
    /// Target as written (relative to the link's folder, or absolute = archive root).
    Symlink(String),
    /// Target path from the archive root.
    Hardlink(String),
    Other,
}

impl Store {
    /// Takes the named members (like `usr/bin/etcd`; `./usr/bin/etcd` matches too) out of
    /// the archive blob `archive_sha256` into the store, following symlinks inside the
    /// archive. The result is cached in `<root>/members/<archive-sha256>.json`, so each
    /// member is extracted once. Keys of the result are the names as given.
    pub fn extract_members(
        &self,
        archive_sha256: &str,
        kind: ArchiveKind,
        members: &[String],
    ) -> Result<BTreeMap<String, MemberInfo>, StoreError> {
        check_sha256(archive_sha256)?;
        let wanted = members
            .iter()
            .map(|m| normalize_member(m).map(|n| (m.clone(), n)))
            .collect::<Result<Vec<_>, _>>()?;
        let cache_path = self.members_dir().join(format!("{archive_sha256}.json"));
        let mut cache = load_cache(&cache_path)?;
        let missing: BTreeSet<String> = wanted
            .iter()
            .filter(|(_, n)| cache.get(n).is_none_or(|info| !self.contains(&info.sha256)))
            .map(|(_, n)| n.clone())
            .collect();
        if !missing.is_empty() {
            if !self.verify_blob(archive_sha256)? {
                return Err(StoreError::ArchiveMissing {
                    sha256: archive_sha256.to_owned(),
                });
            }
            let archive = self.blob_path(archive_sha256);
            tracing::debug!(archive = %archive.display(), %kind, members = ?missing, "extracting");
            let extracted = extract(self, &archive, kind, &missing)?;
            cache.extend(extracted);
            self.write_cache(&cache_path, &cache)?;
        }
        Ok(wanted
            .into_iter()
            .map(|(given, n)| {
                let info = cache[&n].clone();
                (given, info)
            })
            .collect())
    }

    fn write_cache(
        &self,
        path: &Path,
        cache: &BTreeMap<String, MemberInfo>,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_vec_pretty(cache).map_err(|source| StoreError::Cache {
            path: path.to_owned(),
            source,
        })?;
        let save_err = StoreError::File;
        let mut temp = self.temp_file("members", MEMBERS_CACHE_MODE)?;
        temp.write_bytes(&json).map_err(save_err)?;
        temp.write_bytes(b"\n").map_err(save_err)?;
        temp.commit(path).map_err(save_err)
    }
}

fn load_cache(path: &Path) -> Result<BTreeMap<String, MemberInfo>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(StoreError::File(kiln_fsio::Error::on(
                "read",
                path.to_owned(),
            )(source)))
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(cache) => Ok(cache),
        Err(e) => {
            // Only a cache: rebuilding it is always safe.
            tracing::warn!(path = %path.display(), error = %e, "unreadable member cache ignored");
            Ok(BTreeMap::new())
        }
    }
}

/// A member name as the caller gives it, normalised; `..` is refused.
fn normalize_member(member: &str) -> Result<String, StoreError> {
    let parts: Vec<&str> = member
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.is_empty() || parts.contains(&"..") {
        return Err(StoreError::InvalidMember {
            member: member.to_owned(),
        });
    }
    Ok(parts.join("/"))
}

/// An entry path as found in the archive, normalised (`./usr/bin/x` → `usr/bin/x`).
fn normalize_entry(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Extracts `wanted` (normalised names) from the archive at `path`.
fn extract(
    store: &Store,
    path: &Path,
    kind: ArchiveKind,
    wanted: &BTreeSet<String>,
) -> Result<BTreeMap<String, MemberInfo>, StoreError> {
    let mut index = BTreeMap::new();
    let mut got = BTreeMap::new();
    scan(store, path, kind, wanted, Some(&mut index), &mut got)?;

    let mut targets = BTreeMap::new();
    for member in wanted {
        let target = resolve(&index, member).map_err(|problem| match problem {
            Unresolved::Missing => StoreError::MemberNotFound {
                path: path.to_owned(),
                member: member.clone(),
                near: near_names(&index, member),
            },
            other => StoreError::MemberNotFile {
                path: path.to_owned(),
                member: member.clone(),
                problem: other.to_string(),
            },
        })?;
        targets.insert(member.clone(), target);
    }
    // Members that are links: their targets were not known during the first pass.
    let second: BTreeSet<String> = targets
        .values()
        .filter(|t| !got.contains_key(*t))
        .cloned()
        .collect();
    if !second.is_empty() {
        scan(store, path, kind, &second, None, &mut got)?;
    }
    targets
        .into_iter()
        .map(|(member, target)| match got.get(&target) {
            Some(info) => Ok((member, info.clone())),
            None => Err(StoreError::MemberNotFound {
                path: path.to_owned(),
                member,
                near: Vec::new(),
            }),
        })
        .collect()
}

/// Reads the archive's entries once: stores regular files named in `take`, and
/// records every entry in `index` when given.
fn scan(
    store: &Store,
    path: &Path,
    kind: ArchiveKind,
    take: &BTreeSet<String>,
    mut index: Option<&mut BTreeMap<String, Node>>,
    got: &mut BTreeMap<String, MemberInfo>,
) -> Result<(), StoreError> {
    let archive_err = |source| StoreError::Archive {
        path: path.to_owned(),
        source,
    };
    with_tar_stream(path, kind, &mut |reader| {
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(archive_err)? {
            let mut entry = entry.map_err(archive_err)?;
            let name = normalize_entry(&entry.path_bytes());
            if name.is_empty() {
                continue;
            }
            let header = entry.header();
            let mode = header.mode().map_err(archive_err)? & 0o7777;
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            let node = match header.entry_type() {
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => Node::File,
                tar::EntryType::Directory => Node::Dir,
                tar::EntryType::Symlink => Node::Symlink(link.unwrap_or_default()),
                tar::EntryType::Link => {
                    Node::Hardlink(normalize_entry(link.unwrap_or_default().as_bytes()))
                }
                _ => Node::Other,
            };
            if node == Node::File && take.contains(&name) {
                let origin = format!("{} (member {name})", path.display());
                let (sha256, size) = store.ingest(&mut entry, &origin, None)?;
                got.insert(name.clone(), MemberInfo { sha256, size, mode });
            }
            if let Some(index) = index.as_deref_mut() {
                index.insert(name, node);
            }
        }
        Ok(())
    })
}

/// Runs `f` on the archive's uncompressed tar stream.
fn with_tar_stream(
    path: &Path,
    kind: ArchiveKind,
    f: &mut dyn FnMut(&mut dyn Read) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let open = || {
        File::open(path)
            .map(BufReader::new)
            .map_err(kiln_fsio::Error::on("read", path.to_owned()))
    };
    match kind {
        ArchiveKind::Tar => f(&mut open()?),
        ArchiveKind::TarGz => f(&mut flate2::read::MultiGzDecoder::new(open()?)),
        ArchiveKind::Deb => kiln_deb::with_data_tar(path, f),
    }
}

/// Why a member does not resolve to a regular file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unresolved {
    Missing,
    Directory,
    NotRegular,
    Loop,
    Escapes(String),
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::Missing => f.write_str("is missing"),
            Unresolved::Directory => f.write_str("is a directory"),
            Unresolved::NotRegular => f.write_str("is not a regular file"),
            Unresolved::Loop => write!(f, "has more than {MAX_LINK_HOPS} symlink hops (a loop?)"),
            Unresolved::Escapes(target) => {
                write!(f, "is a link to `{target}`, outside the archive")
            }
        }
    }
}

/// Follows symlinks and hard links (in the member and in its folders) inside the
/// archive, returning the path of the regular file the member names.
fn resolve(index: &BTreeMap<String, Node>, member: &str) -> Result<String, Unresolved> {
    let mut pending: Vec<String> = member.split('/').rev().map(str::to_owned).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    let mut last_link: Option<&String> = None;
    while let Some(component) = pending.pop() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                if done.pop().is_none() {
                    let how = last_link.cloned().unwrap_or_else(|| member.to_owned());
                    return Err(Unresolved::Escapes(how));
                }
                continue;
            }
            _ => done.push(component),
        }
        let target = match index.get(&done.join("/")) {
            Some(Node::Symlink(target)) => {
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                target
            }
            Some(Node::Hardlink(target)) => {
                done.clear();
                target
            }
            // Folders need no entry of their own in a tarball.
            _ => continue,
        };
        hops += 1;
        if hops > MAX_LINK_HOPS {
            return Err(Unresolved::Loop);
        }
        last_link = Some(target);
        pending.extend(target.split('/').rev().map(str::to_owned));
    }
    let path = done.join("/");
    match index.get(&path) {
        Some(Node::File) => Ok(path),
        Some(Node::Dir) => Err(Unresolved::Directory),
        Some(Node::Other) => Err(Unresolved::NotRegular),
        Some(Node::Symlink(_) | Node::Hardlink(_)) => Err(Unresolved::Loop),
        None if index.keys().any(|k| k.starts_with(&format!("{path}/"))) => {
            Err(Unresolved::Directory)
        }
        None => Err(Unresolved::Missing),
    }
}

/// A few entries whose names are close to `member`: same file name first, then by edit distance.
fn near_names(index: &BTreeMap<String, Node>, member: &str) -> Vec<String> {
    let base = member.rsplit('/').next().unwrap_or(member);
    let limit = (member.len() / 3).max(3);
    let mut scored: Vec<(usize, &String)> = index
        .iter()
        .filter(|(_, node)| !matches!(node, Node::Dir))
        .filter_map(|(name, _)| {
            if name.rsplit('/').next() == Some(base) {
                return Some((0, name));
            }
            if name.len().abs_diff(member.len()) > limit {
                return None;
            }
            let d = edit_distance(name, member);
            (d <= limit).then_some((d, name))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(NEAR_NAMES)
        .map(|(_, n)| n.clone())
        .collect()
}

/// Levenshtein distance over bytes.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let subst = prev[j] + usize::from(ca != cb);
            cur[j + 1] = subst.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(entries: &[(&str, Node)]) -> BTreeMap<String, Node> {
        entries
            .iter()
            .map(|(p, n)| (p.to_string(), n.clone()))
            .collect()
    }

    #[test]
    fn members_are_normalised_and_dotdot_refused() {
        assert_eq!(normalize_member("./usr/bin/etcd").unwrap(), "usr/bin/etcd");
        assert_eq!(normalize_member("/usr//bin/etcd").unwrap(), "usr/bin/etcd");
        assert!(normalize_member("usr/../etc/shadow").is_err());
        assert!(normalize_member("./").is_err());
        assert_eq!(normalize_entry(b"./usr/bin/"), "usr/bin");
    }

    #[test]
    fn symlinks_resolve_within_the_archive() {
        let idx = index(&[
            ("usr/bin/x", Node::File),
            ("usr/sbin/x", Node::Symlink("../bin/x".into())),
            ("usr/sbin/abs", Node::Symlink("/usr/bin/x".into())),
            ("usr/sbin/hard", Node::Hardlink("usr/bin/x".into())),
            ("bin", Node::Symlink("usr/bin".into())),
            ("loop/a", Node::Symlink("b".into())),
            ("loop/b", Node::Symlink("a".into())),
            ("usr/sbin/out", Node::Symlink("../../../etc/passwd".into())),
        ]);
        assert_eq!(resolve(&idx, "usr/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(resolve(&idx, "usr/sbin/x").unwrap(), "usr/bin/x");
        assert_eq!(resolve(&idx, "usr/sbin/abs").unwrap(), "usr/bin/x");
        assert_eq!(resolve(&idx, "usr/sbin/hard").unwrap(), "usr/bin/x");
        assert_eq!(resolve(&idx, "bin/x").unwrap(), "usr/bin/x");
        assert_eq!(resolve(&idx, "loop/a"), Err(Unresolved::Loop));
        assert!(matches!(
            resolve(&idx, "usr/sbin/out"),
            Err(Unresolved::Escapes(_))
        ));
        assert_eq!(resolve(&idx, "usr/bin"), Err(Unresolved::Directory));
        assert_eq!(resolve(&idx, "usr/bin/y"), Err(Unresolved::Missing));
    }

    #[test]
    fn near_names_prefer_the_same_file_name() {
        let idx = index(&[
            ("usr/local/bin/etcd", Node::File),
            ("usr/bin/etcdctl", Node::File),
            ("usr/share/doc/etcd", Node::Dir),
            ("etc/passwd", Node::File),
        ]);
        assert_eq!(
            near_names(&idx, "usr/bin/etcd"),
            vec!["usr/local/bin/etcd", "usr/bin/etcdctl"]
        );
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn kinds_parse_and_guess() {
        assert_eq!("tgz".parse::<ArchiveKind>().unwrap(), ArchiveKind::TarGz);
        assert!("zip".parse::<ArchiveKind>().is_err());
        assert_eq!(
            ArchiveKind::from_file_name("etcd_3.4_amd64.deb"),
            Some(ArchiveKind::Deb)
        );
        assert_eq!(
            ArchiveKind::from_file_name("cni.tgz"),
            Some(ArchiveKind::TarGz)
        );
    }
}
