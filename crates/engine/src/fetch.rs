//! `kiln fetch`: bring every locked download into the store, then take artifacts out of archives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_spec::{LockedArtifact, LockedPackage, Project, SourceKind};
use kiln_store::{
    ArchiveKind, Download, DownloadSource, FetchOptions, FetchReport, Progress, Store,
};

use crate::Error;

/// Everything a build takes from the lock: artifacts, and each bundle's OS packages.
#[derive(Debug, Clone, Default)]
pub struct Pinned {
    /// Locked artifacts the plan needs.
    pub artifacts: Vec<LockedArtifact>,
    /// Bundle id → its packages, in install order.
    pub packages: BTreeMap<String, Vec<LockedPackage>>,
    /// The cluster's arch (apt downloads are for it).
    pub arch: String,
    /// OS id → apt configuration file for apt downloads of that OS's packages.
    pub apt_config: BTreeMap<String, PathBuf>,
}

/// A ready artifact: its bytes in the store, already hash-checked against the lock.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Path of the blob in the store.
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

fn label(e: &LockedArtifact) -> String {
    match (&e.package, &e.package_version) {
        (Some(p), Some(v)) => format!("{p}_{v}"),
        _ => e
            .urls
            .first()
            .and_then(|u| u.rsplit('/').next())
            .map(str::to_string)
            .unwrap_or_else(|| e.name.clone()),
    }
}

fn artifact_download(e: &LockedArtifact, catalog_dir: &Path) -> Download {
    Download {
        label: label(e),
        sha256: e.sha256.clone(),
        sha512: e.sha512.clone(),
        size: e.size,
        source: match e.source {
            SourceKind::Apt => DownloadSource::Apt {
                package: e.package.clone().unwrap_or_default(),
                version: e.package_version.clone().unwrap_or_default(),
                arch: e.arch.clone(),
                apt_config: None,
            },
            SourceKind::File => DownloadSource::File {
                path: catalog_dir.join(e.urls.first().cloned().unwrap_or_default()),
            },
            _ => DownloadSource::Http {
                urls: e.urls.clone(),
            },
        },
    }
}

fn package_download(p: &LockedPackage, pinned: &Pinned) -> Download {
    Download {
        label: p.file_name().to_string(),
        sha256: Some(p.sha256.clone()),
        sha512: None,
        size: p.size,
        source: match p.source {
            // apt serves `all` packages under the machine's architecture too.
            SourceKind::Apt => DownloadSource::Apt {
                package: p.name.clone(),
                version: p.version.clone(),
                arch: pinned.arch.clone(),
                apt_config: pinned.apt_config.get(&p.os).cloned(),
            },
            _ => DownloadSource::Http {
                urls: p.urls.clone(),
            },
        },
    }
}

/// The distinct downloads behind the locked entries (one per pin).
pub fn downloads(entries: &Pinned, catalog_dir: &Path) -> Vec<Download> {
    let mut by_pin: BTreeMap<String, Download> = BTreeMap::new();
    let all = entries
        .artifacts
        .iter()
        .map(|e| artifact_download(e, catalog_dir))
        .chain(
            entries
                .packages
                .values()
                .flatten()
                .map(|p| package_download(p, entries)),
        );
    for d in all {
        by_pin.entry(d.pin()).or_insert(d);
    }
    by_pin.into_values().collect()
}

/// Opens the project's store.
pub fn open_store(project: &Project) -> Result<Store, Error> {
    Ok(Store::open(&project.cluster.paths.vendor)?)
}

/// The sha256 naming a download's blob: its pin, or what the store recorded for its sha512.
fn blob_sha256(
    store: &Store,
    sha256: Option<&str>,
    sha512: Option<&str>,
) -> Result<Option<String>, Error> {
    Ok(match (sha256, sha512) {
        (Some(h), _) => Some(h.to_string()),
        (None, Some(h)) => store.sha256_of_sha512(h)?,
        (None, None) => None,
    })
}

/// Downloads that are not in the store yet.
pub fn missing(store: &Store, entries: &Pinned) -> Vec<String> {
    downloads(entries, Path::new(""))
        .into_iter()
        .filter(|d| {
            !blob_sha256(store, d.sha256.as_deref(), d.sha512.as_deref())
                .ok()
                .flatten()
                .is_some_and(|h| store.contains(&h))
        })
        .map(|d| format!("{} ({})", d.label, d.pin()))
        .collect()
}

/// Fetches every download not yet in the store.
pub fn fetch(
    project: &Project,
    store: &Store,
    entries: &Pinned,
    opts: &FetchOptions,
    progress: &dyn Progress,
) -> Result<FetchReport, Error> {
    let mirrors = crate::lock::mirrors(project);
    Ok(kiln_store::fetch_all(
        store,
        &downloads(entries, &project.cluster.paths.catalog),
        &mirrors,
        opts,
        progress,
    )?)
}

/// The store blob of a download known to be there.
fn blob(
    store: &Store,
    what: &str,
    sha256: Option<&str>,
    sha512: Option<&str>,
) -> Result<Blob, Error> {
    let sha = blob_sha256(store, sha256, sha512)?
        .filter(|h| store.contains(h))
        .ok_or_else(|| Error::NotInStore {
            what: what.to_string(),
            store: store.root().to_owned(),
        })?;
    let path = store.blob_path(&sha);
    let size = std::fs::metadata(&path)
        .map_err(crate::io_err(&path))?
        .len();
    Ok(Blob {
        path,
        sha256: sha,
        size,
    })
}

/// Takes each artifact out of its archive (once, cached) and returns where its bytes are.
pub fn materialize(store: &Store, entries: &Pinned) -> Result<BTreeMap<String, Blob>, Error> {
    let mut out = BTreeMap::new();
    // Group members by archive so each archive is read once.
    let mut by_archive: BTreeMap<(String, &str), Vec<&LockedArtifact>> = BTreeMap::new();
    for e in &entries.artifacts {
        let b = blob(
            store,
            &format!("{} {} ({})", e.name, e.version, e.pin()),
            e.sha256.as_deref(),
            e.sha512.as_deref(),
        )?;
        match (&e.member, e.archive.as_str()) {
            (None, _) | (_, "raw") => {
                out.insert(e.name.clone(), b);
            }
            (Some(_), kind) => by_archive.entry((b.sha256, kind)).or_default().push(e),
        }
    }
    for ((sha, kind), list) in by_archive {
        let kind = match kind {
            "deb" => ArchiveKind::Deb,
            "tar" => ArchiveKind::Tar,
            _ => ArchiveKind::TarGz,
        };
        let members: Vec<String> = list.iter().filter_map(|e| e.member.clone()).collect();
        let got = store.extract_members(&sha, kind, &members)?;
        for e in list {
            let m = e.member.as_ref().expect("grouped by member");
            let info = &got[m];
            out.insert(
                e.name.clone(),
                Blob {
                    path: store.blob_path(&info.sha256),
                    sha256: info.sha256.clone(),
                    size: info.size,
                },
            );
        }
    }
    Ok(out)
}

/// A bundle's packages as (path in the bundle, blob), in install order: `packages/<file>`.
pub fn bundle_packages(
    store: &Store,
    entries: &Pinned,
    bundle_id: &str,
) -> Result<Vec<(String, Blob)>, Error> {
    let mut out = Vec::new();
    for p in entries.packages.get(bundle_id).into_iter().flatten() {
        let b = blob(
            store,
            &format!("package {} {} ({})", p.name, p.version, p.os),
            Some(&p.sha256),
            None,
        )?;
        out.push((format!("packages/{}", p.file_name()), b));
    }
    Ok(out)
}
