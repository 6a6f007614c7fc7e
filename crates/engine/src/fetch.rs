//! `kiln fetch`: bring every locked download into the store, then take artifacts out of archives.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_spec::{LockedArtifact, Project};
use kiln_store::{ArchiveKind, Download, DownloadSource, FetchOptions, FetchReport, Progress, Store};

use crate::Error;

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
        _ => e.urls.first().and_then(|u| u.rsplit('/').next()).map(str::to_string).unwrap_or_else(|| e.name.clone()),
    }
}

/// The distinct downloads behind the locked entries (one per sha256).
pub fn downloads(entries: &[LockedArtifact], catalog_dir: &std::path::Path) -> Vec<Download> {
    let mut by_sha: BTreeMap<&str, Download> = BTreeMap::new();
    for e in entries {
        by_sha.entry(&e.sha256).or_insert_with(|| Download {
            label: label(e),
            sha256: e.sha256.clone(),
            size: e.size,
            source: match e.source.as_str() {
                "apt" => DownloadSource::Apt {
                    package: e.package.clone().unwrap_or_default(),
                    version: e.package_version.clone().unwrap_or_default(),
                    arch: e.arch.clone(),
                },
                "file" => DownloadSource::File { path: catalog_dir.join(e.urls.first().cloned().unwrap_or_default()) },
                _ => DownloadSource::Http { urls: e.urls.clone() },
            },
        });
    }
    by_sha.into_values().collect()
}

/// Opens the project's store.
pub fn open_store(project: &Project) -> Result<Store, Error> {
    Ok(Store::open(&project.cluster.paths.vendor)?)
}

/// Downloads that are not in the store yet.
pub fn missing(store: &Store, entries: &[LockedArtifact]) -> Vec<String> {
    downloads(entries, std::path::Path::new("")).into_iter().filter(|d| !store.contains(&d.sha256)).map(|d| format!("{} (sha256 {})", d.label, d.sha256)).collect()
}

/// Fetches every download not yet in the store.
pub fn fetch(project: &Project, store: &Store, entries: &[LockedArtifact], opts: &FetchOptions, progress: &dyn Progress) -> Result<FetchReport, Error> {
    let mirrors = crate::lock::mirrors(project);
    Ok(kiln_store::fetch_all(store, &downloads(entries, &project.cluster.paths.catalog), &mirrors, opts, progress)?)
}

/// Takes each artifact out of its archive (once, cached) and returns where its bytes are.
pub fn materialize(store: &Store, entries: &[LockedArtifact]) -> Result<BTreeMap<String, Blob>, Error> {
    let mut out = BTreeMap::new();
    // Group members by archive so each archive is read once.
    let mut by_archive: BTreeMap<(&str, &str), Vec<&LockedArtifact>> = BTreeMap::new();
    for e in entries {
        match (&e.member, e.archive.as_str()) {
            (None, _) | (_, "raw") => {
                let path = store.blob_path(&e.sha256);
                let size = std::fs::metadata(&path).map_err(crate::io_err(&path))?.len();
                out.insert(e.name.clone(), Blob { path, sha256: e.sha256.clone(), size });
            }
            (Some(_), kind) => by_archive.entry((&e.sha256, kind)).or_default().push(e),
        }
    }
    for ((sha, kind), list) in by_archive {
        let kind = match kind {
            "deb" => ArchiveKind::Deb,
            "tar" => ArchiveKind::Tar,
            _ => ArchiveKind::TarGz,
        };
        let members: Vec<String> = list.iter().filter_map(|e| e.member.clone()).collect();
        let got = store.extract_members(sha, kind, &members)?;
        for e in list {
            let m = e.member.as_ref().expect("grouped by member");
            let info = &got[m];
            out.insert(e.name.clone(), Blob { path: store.blob_path(&info.sha256), sha256: info.sha256.clone(), size: info.size });
        }
    }
    Ok(out)
}
