//! Role bundles: the plan's files, the host-contract members, image tarballs and OS packages of
//! each role, written as `bundles/<role>-<os>-<16hex>.tar.gz`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use kiln_bundle::contract::{self, BundleMeta, RoleMembers};
use kiln_bundle::{BundleInfo, BundleSpec, Entry, Source};
use kiln_image::LockedImage;
use kiln_plan::{BundlePlan, FileSource, PlannedFile};

use super::outputs::Outputs;
use super::Assembly;
use crate::fetch::{self, Blob};
use crate::{io_err, Error};

/// The bundles written, by bundle id.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Bundle id → (path relative to the out folder, sha256).
    pub(super) files: BTreeMap<String, (String, String)>,
    /// Bundle id → its MANIFEST.json entry.
    pub(super) info: BTreeMap<String, BundleInfo>,
    /// Deltas from the `--delta-from` base, by bundle id.
    pub(super) deltas: super::delta::Deltas,
}

/// Archive entries of planned files (`rootfs/…`), with artifacts taken from their blobs.
pub(super) fn entries_for(
    files: &[PlannedFile],
    blobs: &BTreeMap<String, Blob>,
) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    for f in files {
        let source = match &f.source {
            FileSource::Artifact { name, .. } => {
                let b = blobs.get(name).ok_or_else(|| Error::NoBlob {
                    artifact: name.clone(),
                })?;
                Source::File {
                    path: b.path.clone(),
                    sha256: b.sha256.clone(),
                    size: b.size,
                }
            }
            FileSource::Content { bytes, .. } => Source::Bytes(bytes.clone()),
            FileSource::Local { path: p, .. } => Source::Bytes(fs::read(p).map_err(io_err(p))?),
        };
        out.push(Entry {
            path: contract::rootfs_path(&f.path),
            mode: f.mode,
            source,
        });
    }
    Ok(out)
}

fn file_entry(path: String, sha256: String, file: std::path::PathBuf, size: u64) -> Entry {
    Entry {
        path,
        mode: 0o644,
        source: Source::File {
            path: file,
            sha256,
            size,
        },
    }
}

impl Assembly<'_> {
    /// Writes every role bundle into `staging/bundles/`.
    pub(super) fn write_bundles(
        &self,
        blobs: &BTreeMap<String, Blob>,
        images: &BTreeMap<String, Vec<LockedImage>>,
        staging: &Path,
        outputs: &mut Outputs,
    ) -> Result<Written, Error> {
        let bundles_dir = staging.join("bundles");
        fs::create_dir_all(&bundles_dir).map_err(io_err(&bundles_dir))?;
        let image_tmp = staging.join(".images");
        let mut written = Written::default();
        for b in &self.plan.bundles {
            let bundle_images = images.get(&b.id).map(Vec::as_slice).unwrap_or(&[]);
            let spec = self.bundle_spec(b, blobs, bundle_images, &image_tmp.join(&b.id))?;
            let w = kiln_bundle::write_bundle(&bundles_dir, &b.id, &spec)?;
            let rel = format!("bundles/{}", w.file_name);
            outputs.record(&rel, &w.sha256, w.size);
            if let Some(base) = self.base {
                let (id, sde) = (&b.id, self.sde);
                let d = &mut written.deltas;
                d.write(base, &bundles_dir, id, &w, &spec.entries, sde, outputs)?;
            }
            written
                .files
                .insert(b.id.clone(), (rel.clone(), w.sha256.clone()));
            written.info.insert(
                b.id.clone(),
                BundleInfo {
                    file: rel,
                    role: b.role.clone(),
                    os: b.os.to_string(),
                    hosts: b.hosts.clone(),
                },
            );
        }
        let _ = fs::remove_dir_all(&image_tmp);
        Ok(written)
    }

    /// Everything one role bundle holds; image tarballs are written into `image_tmp` first.
    fn bundle_spec(
        &self,
        b: &BundlePlan,
        blobs: &BTreeMap<String, Blob>,
        images: &[LockedImage],
        image_tmp: &Path,
    ) -> Result<BundleSpec, Error> {
        tracing::info!(bundle = %b.id, files = b.files.len(), "writing bundle");
        let mut entries = entries_for(&b.files, blobs)?;
        let tarballs = crate::images::write_tarballs(
            self.store,
            images,
            self.opts.images,
            &b.role,
            self.sde,
            image_tmp,
        )?;
        let digests: Vec<String> = tarballs.iter().flat_map(|t| t.digest_lines()).collect();
        let image_paths: Vec<String> = tarballs.iter().map(|t| t.path.clone()).collect();
        // OS packages in install order, as `packages/<file>` beside their list.
        let packages = fetch::bundle_packages(self.store, self.entries, &b.id)?;
        let package_paths: Vec<String> = packages.iter().map(|(p, _)| p.clone()).collect();
        let members = RoleMembers {
            meta: BundleMeta {
                role: b.role.clone(),
                os: b.os.to_string(),
                family: b.os.family().to_string(),
                arch: self.project.cluster.arch.to_string(),
                extra: Vec::new(),
            },
            units: &b.units,
            images: &image_paths,
            image_digests: Some(&digests),
            packages: &package_paths,
            health: b.health.as_deref(),
            install_sh: crate::INSTALL_SH.as_bytes(),
        };
        entries.extend(members.entries());
        entries.extend(
            tarballs
                .into_iter()
                .map(|t| file_entry(t.path, t.written.sha256, t.written.path, t.written.size)),
        );
        entries.extend(
            packages
                .into_iter()
                .map(|(path, b)| file_entry(path, b.sha256, b.path, b.size)),
        );
        Ok(BundleSpec {
            entries,
            mtime: self.sde,
        })
    }
}
