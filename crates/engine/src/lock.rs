//! `kiln lock`: pin every artifact the plan needs to an exact source, digest and size, and
//! every role's OS package closure (see [`crate::packages`]).

use kiln_plan::Plan;
use kiln_spec::{Lock, LockedArtifact, Project, Resolved, SourceKind};

use crate::fetch::Pinned;
use kiln_store::{FetchOptions, Mirrors};

use crate::{Error, LockProblem};

/// Why one artifact could not be pinned (it is reported, and the lock left incomplete).
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// Offline, and the sha256 must be read from a checksum file.
    #[error("not in the pins table; needs a look-up of {url} on a connected machine")]
    NeedsLookup {
        /// The checksum file's URL.
        url: String,
    },
    /// Neither a pin nor a checksum file to read one from.
    #[error("not in the pins table and the catalog names no checksum-url")]
    NoChecksumUrl,
    /// The checksum file could not be read.
    #[error("reading {url}")]
    ChecksumFile {
        /// The checksum file's URL.
        url: String,
        /// Why.
        #[source]
        source: kiln_store::StoreError,
    },
    /// The checksum file has no line for the download.
    #[error("{url} lists no sha256 for {file}")]
    NotInChecksumFile {
        /// The checksum file's URL.
        url: String,
        /// The download's file name.
        file: String,
    },
    /// The download's size could not be asked.
    #[error("size of {url}")]
    Size {
        /// The download's URL.
        url: String,
        /// Why.
        #[source]
        source: kiln_store::StoreError,
    },
    /// Hashing a local file failed.
    #[error(transparent)]
    Store(kiln_store::StoreError),
    /// Asking apt for the package's pin failed.
    #[error(transparent)]
    Apt(kiln_deb::DebError),
}

/// How to lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Use only the pins table, apt's local index and local files: no network.
    pub offline: bool,
    /// Network settings for checksum files and sizes.
    pub fetch: FetchOptions,
    /// Resolve every OS package closure again from the apt sources' current lists instead of
    /// keeping the previous lock's (artifacts and images stay as pinned).
    pub repin_packages: bool,
}

/// The result of locking.
#[derive(Debug, Clone)]
pub struct LockOutcome {
    /// The lock (complete or not).
    pub lock: Lock,
    /// Artifacts and packages that could not be pinned, one line each with the reason.
    pub unpinned: Vec<String>,
    /// Image references that still need a look-up on a connected machine.
    pub images: Vec<String>,
    /// Entries newly pinned (not carried over from the previous lock).
    pub added: usize,
}

/// Mirrors from cluster.toml.
pub fn mirrors(project: &Project) -> Mirrors {
    let mut m = Mirrors::new();
    for (prefix, repl) in &project.cluster.mirrors {
        m.add(prefix.clone(), repl.clone());
    }
    m
}

/// Resolves every artifact the plan needs through the catalog.
pub fn resolve_all(project: &Project, plan: &Plan) -> Result<Vec<Resolved>, Error> {
    let c = &project.cluster;
    plan.artifacts
        .iter()
        .map(|n| {
            project
                .catalog
                .resolve(&n.name, &c.versions, c.arch, &c.sources)
                .map_err(Error::Catalog)
        })
        .collect()
}

fn same_source(old: &LockedArtifact, r: &Resolved) -> bool {
    old.source == r.kind
        && old.archive == r.archive
        && old.member == r.member
        && old.package == r.package
        && (r.url.is_none() || old.urls.first() == r.url.as_ref())
        && r.pin
            .as_ref()
            .is_none_or(|p| Some(p) == old.sha256.as_ref())
        && r.pin_sha512
            .as_ref()
            .is_none_or(|p| Some(p) == old.sha512.as_ref())
}

/// Finds the sha256 for `file_name` in an upstream checksum file (bare hash, or `hash  name` lines).
pub fn parse_checksum_file(text: &str, file_name: &str) -> Option<String> {
    let is_hex = |s: &str| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit());
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let all: Vec<&str> = lines.by_ref().collect();
    if all.len() == 1 {
        let mut parts = all[0].split_whitespace();
        if let (Some(h), None) = (parts.next(), parts.next()) {
            return is_hex(h).then(|| h.to_ascii_lowercase());
        }
    }
    for l in all {
        let mut parts = l.split_whitespace();
        let (Some(h), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        let name = name.trim_start_matches('*').trim_start_matches("./");
        let base = name.rsplit('/').next().unwrap_or(name);
        if is_hex(h) && (name == file_name || base == file_name) {
            return Some(h.to_ascii_lowercase());
        }
    }
    None
}

fn pin_one(
    r: &Resolved,
    catalog_dir: &std::path::Path,
    mirrors: &Mirrors,
    opts: &LockOptions,
) -> Result<LockedArtifact, PinError> {
    let mut entry = LockedArtifact {
        name: r.name.clone(),
        version: r.version.clone(),
        arch: r.arch.to_string(),
        source: r.kind,
        urls: r.url.iter().cloned().collect(),
        package: r.package.clone(),
        package_version: None,
        archive: r.archive.clone(),
        member: r.member.clone(),
        sha256: None,
        sha512: None,
        size: None,
    };
    match r.kind {
        SourceKind::Https | SourceKind::Http => {
            let url = r.url.as_ref().expect("http source has a url");
            if let Some(p) = &r.pin {
                entry.sha256 = Some(p.clone());
            } else if let Some(p) = &r.pin_sha512 {
                // The store keys blobs by sha256: `kiln fetch` computes it and records it there.
                entry.sha512 = Some(p.clone());
            } else if opts.offline {
                return Err(match &r.checksum_url {
                    Some(c) => PinError::NeedsLookup { url: c.clone() },
                    None => PinError::NoChecksumUrl,
                });
            } else if let Some(curl) = &r.checksum_url {
                let text =
                    kiln_store::fetch_text(curl, mirrors, &opts.fetch).map_err(|source| {
                        PinError::ChecksumFile {
                            url: curl.clone(),
                            source,
                        }
                    })?;
                let file_name = url.rsplit('/').next().unwrap_or(url);
                entry.sha256 = Some(parse_checksum_file(&text, file_name).ok_or_else(|| {
                    PinError::NotInChecksumFile {
                        url: curl.clone(),
                        file: file_name.to_string(),
                    }
                })?);
            } else {
                return Err(PinError::NoChecksumUrl);
            }
            if !opts.offline {
                entry.size =
                    kiln_store::remote_size(url, mirrors, &opts.fetch).map_err(|source| {
                        PinError::Size {
                            url: url.clone(),
                            source,
                        }
                    })?;
            }
        }
        SourceKind::File => {
            let path = catalog_dir.join(r.url.as_ref().expect("file source has a path"));
            let (sha, size) = kiln_store::hash_file(&path).map_err(PinError::Store)?;
            entry.sha256 = Some(sha);
            entry.size = Some(size);
        }
        SourceKind::Apt => {
            let pkg = r.package.as_ref().expect("apt source has a package");
            let pin =
                apt_resolve_cached(pkg, &r.version, r.arch.as_str()).map_err(PinError::Apt)?;
            entry.package_version = Some(pin.version);
            entry.sha256 = Some(pin.sha256);
            entry.size = Some(pin.size);
        }
    }
    Ok(entry)
}

fn apt_resolve_cached(
    pkg: &str,
    version: &str,
    arch: &str,
) -> Result<kiln_deb::AptPin, kiln_deb::DebError> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    // Many artifacts come from one package: ask apt once per (package, version, arch).
    static CACHE: Mutex<Option<HashMap<String, kiln_deb::AptPin>>> = Mutex::new(None);
    let key = format!("{pkg} {version} {arch}");
    if let Some(p) = CACHE
        .lock()
        .expect("cache lock")
        .get_or_insert_with(HashMap::new)
        .get(&key)
    {
        return Ok(p.clone());
    }
    let pin = kiln_deb::apt_resolve(pkg, version, arch, None)?;
    CACHE
        .lock()
        .expect("cache lock")
        .get_or_insert_with(HashMap::new)
        .insert(key, pin.clone());
    Ok(pin)
}

/// Pins every artifact of the plan, reusing entries of `existing` whose source is unchanged.
pub fn lock(
    project: &Project,
    plan: &Plan,
    existing: Option<&Lock>,
    opts: &LockOptions,
    now_epoch: u64,
) -> Result<LockOutcome, Error> {
    let mirrors = mirrors(project);
    let mut artifacts = Vec::new();
    let mut unpinned = Vec::new();
    let mut added = 0;
    for r in resolve_all(project, plan)? {
        let kept = existing
            .and_then(|l| l.find(&r.name, &r.version, r.arch.as_str()))
            .filter(|old| same_source(old, &r));
        if let Some(old) = kept {
            artifacts.push(old.clone());
            continue;
        }
        tracing::info!(artifact = %r.name, version = %r.version, source = r.kind.as_str(), "pinning");
        match pin_one(&r, &project.cluster.paths.catalog, &mirrors, opts) {
            Ok(e) => {
                added += 1;
                artifacts.push(e);
            }
            Err(why) => unpinned.push(format!(
                "artifact {} {} ({}, {}): {}",
                r.name,
                r.version,
                r.arch,
                r.kind.as_str(),
                kiln_store::error_chain(&why)
            )),
        }
    }
    let packages = crate::packages::lock(project, plan, existing.filter(|_| !opts.repin_packages));
    unpinned.extend(packages.unpinned);
    let old_images = existing
        .map(crate::images::from_lock)
        .transpose()?
        .unwrap_or_default();
    let (images, pending) =
        crate::images::lock(project, plan, &old_images, opts.offline, &opts.fetch)?;
    let lock = Lock {
        version: 1,
        source_date_epoch: existing.map(|l| l.source_date_epoch).unwrap_or(now_epoch),
        artifacts,
        packages: packages.packages,
        closures: packages.closures,
        images: crate::images::to_lock(&images)?,
    };
    Ok(LockOutcome {
        lock,
        unpinned,
        images: pending,
        added,
    })
}

/// Writes `new` to kiln.lock unless it is `existing` already; returns whether it was unchanged.
pub fn write_lock(project: &Project, existing: Option<&Lock>, new: &Lock) -> Result<bool, Error> {
    let text = new.to_toml();
    let unchanged = existing.is_some_and(|l| l.to_toml() == text);
    if !unchanged {
        crate::write_atomic(&project.cluster.paths.lock, text.as_bytes())?;
    }
    Ok(unchanged)
}

/// Reads kiln.lock if it exists.
pub fn read_lock(project: &Project) -> Result<Option<Lock>, Error> {
    Ok(read_lock_file(&project.cluster.paths.lock)?.map(|l| l.lock))
}

/// Reads the lock at `path` with its bytes, if it exists.
pub fn read_lock_file(path: &std::path::Path) -> Result<Option<kiln_load::LoadedLock>, Error> {
    kiln_load::lock(path).map_err(|e| match e {
        kiln_load::LoadError::Read { path, source } => Error::Io { path, source },
        kiln_load::LoadError::Invalid(d) => Error::Input(d),
    })
}

/// The lock entry of every planned artifact and every bundle's packages; fails closed on
/// anything missing or stale.
pub fn locked_entries(project: &Project, plan: &Plan, lock: &Lock) -> Result<Pinned, Error> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for r in resolve_all(project, plan)? {
        match lock.find(&r.name, &r.version, r.arch.as_str()) {
            None => problems.push(LockProblem::ArtifactNotPinned {
                name: r.name.clone(),
                version: r.version.clone(),
                arch: r.arch.to_string(),
                lock: project.cluster.paths.lock.clone(),
            }),
            Some(e) if !same_source(e, &r) => problems.push(LockProblem::ArtifactChanged {
                name: r.name.clone(),
                version: r.version.clone(),
                arch: r.arch.to_string(),
            }),
            Some(e) => out.push(e.clone()),
        }
    }
    let packages = crate::packages::locked(project, plan, lock).unwrap_or_else(|p| {
        problems.extend(p);
        Default::default()
    });
    if problems.is_empty() {
        let c = &project.cluster;
        let apt_config = c
            .packages
            .apt_config
            .iter()
            .map(|(os, p)| (os.to_string(), crate::packages::absolute(p)))
            .collect();
        Ok(Pinned {
            artifacts: out,
            packages,
            arch: c.arch.to_string(),
            apt_config,
        })
    } else {
        Err(Error::Stale { problems })
    }
}

/// One line per OS package whose pin differs between `old` and `new`:
/// `repinned <os> <name> (<arch>) <old version> -> <new version>`, or `added`/`dropped`
/// with the one version, sorted by OS and name.
pub fn package_changes(old: &Lock, new: &Lock) -> Vec<String> {
    use std::collections::BTreeMap;
    let index = |l: &Lock| -> BTreeMap<(String, String, String), String> {
        l.packages
            .iter()
            .map(|p| {
                (
                    (p.os.clone(), p.name.clone(), p.arch.clone()),
                    p.version.clone(),
                )
            })
            .collect()
    };
    let (before, after) = (index(old), index(new));
    let keys: std::collections::BTreeSet<_> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|k @ (os, name, arch)| match (before.get(k), after.get(k)) {
            (Some(a), Some(b)) if a != b => {
                Some(format!("repinned {os} {name} ({arch}) {a} -> {b}"))
            }
            (Some(a), None) => Some(format!("dropped {os} {name} ({arch}) {a}")),
            (None, Some(b)) => Some(format!("added {os} {name} ({arch}) {b}")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_file_forms() {
        let h = "a".repeat(64);
        assert_eq!(parse_checksum_file(&format!("{h}\n"), "x"), Some(h.clone()));
        let sums = format!(
            "{}  etcd-v3.5.21-linux-arm64.tar.gz\n{h}  etcd-v3.5.21-linux-amd64.tar.gz\n",
            "b".repeat(64)
        );
        assert_eq!(
            parse_checksum_file(&sums, "etcd-v3.5.21-linux-amd64.tar.gz"),
            Some(h.clone())
        );
        assert_eq!(
            parse_checksum_file(
                &format!("{h} *./bin/runc.amd64\n{}  other\n", "c".repeat(64)),
                "runc.amd64"
            ),
            Some(h)
        );
        assert_eq!(parse_checksum_file("zz  file\n", "file"), None);
        assert_eq!(parse_checksum_file(&sums, "missing.tar.gz"), None);
    }

    fn lock_of(packages: &[(&str, &str)]) -> Lock {
        let text: String = packages
            .iter()
            .map(|(name, version)| {
                format!(
                    "[[package]]\nos = \"debian12\"\nname = \"{name}\"\nversion = \"{version}\"\narch = \"amd64\"\nsource = \"apt\"\nfilename = \"pool/{name}.deb\"\nsha256 = \"{}\"\nsize = 1\n\n",
                    "a".repeat(64)
                )
            })
            .collect();
        Lock::parse(
            std::path::Path::new("kiln.lock"),
            &format!("version = 1\nsource-date-epoch = 1\n\n{text}"),
        )
        .unwrap()
    }

    #[test]
    fn package_changes_name_each_repinned_added_and_dropped_version() {
        let old = lock_of(&[
            ("chrony", "4.3-2"),
            ("nginx", "1.22.1-9+deb12u11"),
            ("ucf", "3.0"),
        ]);
        let new = lock_of(&[
            ("chrony", "4.3-2"),
            ("keepalived", "1:2.2.7-1"),
            ("nginx", "1.22.1-9+deb12u12"),
        ]);
        assert_eq!(
            package_changes(&old, &new),
            [
                "added debian12 keepalived (amd64) 1:2.2.7-1",
                "repinned debian12 nginx (amd64) 1.22.1-9+deb12u11 -> 1.22.1-9+deb12u12",
                "dropped debian12 ucf (amd64) 3.0",
            ]
        );
        assert!(package_changes(&new, &new).is_empty());
    }
}
