//! Each role bundle's SBOM (`<bundle id>.spdx.json`), from what the build put into it: the
//! lock's artifacts and packages and the images as resolved for the build.

use std::collections::BTreeMap;
use std::path::Path;

use kiln_image::LockedImage;
use kiln_plan::{BundlePlan, FileSource};

use super::bundles::Written;
use super::id::sha256_hex;
use super::outputs::Outputs;
use super::Assembly;
use crate::fetch::Blob;
use crate::sbom::{self, ArtifactItem, BuildRef, BundleSbom, ImageItem};
use crate::{write_atomic, Error};

impl Assembly<'_> {
    /// Writes every bundle's SBOM into `staging` and records it as an output.
    pub(super) fn write_sboms(
        &self,
        blobs: &BTreeMap<String, Blob>,
        bundles: &Written,
        images: &BTreeMap<String, Vec<LockedImage>>,
        staging: &Path,
        outputs: &mut Outputs,
    ) -> Result<(), Error> {
        let build = BuildRef {
            cluster: &self.plan.cluster,
            build_id: self.build_id,
            generation: self.project.cluster.generation,
            source_date_epoch: self.sde,
        };
        for b in &self.plan.bundles {
            let (rel, sha) = &bundles.files[&b.id];
            let file_name = rel.rsplit('/').next().unwrap_or(rel);
            let bundle_images = images.get(&b.id).map(Vec::as_slice).unwrap_or(&[]);
            let doc = sbom::document(&BundleSbom {
                build,
                id: &b.id,
                role: &b.role,
                os: b.os,
                arch: self.project.cluster.arch.as_str(),
                file_name,
                sha256: sha,
                artifacts: self.artifact_items(b, blobs)?,
                packages: self
                    .entries
                    .packages
                    .get(&b.id)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                images: bundle_images
                    .iter()
                    .map(|image| ImageItem {
                        image,
                        // Registry images come from the lock; anything else was assembled.
                        assembled: !self.images.contains(image),
                    })
                    .collect(),
            });
            let name = sbom::file_name(&b.id);
            write_atomic(&staging.join(&name), &doc)?;
            outputs.record(&name, &sha256_hex(&doc), doc.len() as u64);
        }
        Ok(())
    }

    /// The lock entry of every artifact the bundle places as a file, with where it goes.
    fn artifact_items(
        &self,
        b: &BundlePlan,
        blobs: &BTreeMap<String, Blob>,
    ) -> Result<Vec<ArtifactItem<'_>>, Error> {
        let mut installed: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
        for f in &b.files {
            if let FileSource::Artifact { name, .. } = &f.source {
                let blob = blobs.get(name).ok_or_else(|| Error::NoBlob {
                    artifact: name.clone(),
                })?;
                installed
                    .entry(name)
                    .or_default()
                    .push((f.path.clone(), blob.sha256.clone()));
            }
        }
        installed
            .into_iter()
            .map(|(name, mut at)| {
                let locked = self
                    .entries
                    .artifacts
                    .iter()
                    .find(|a| a.name == name)
                    .ok_or_else(|| Error::NoBlob {
                        artifact: name.to_owned(),
                    })?;
                at.sort();
                Ok(ArtifactItem {
                    locked,
                    installed: at,
                })
            })
            .collect()
    }
}
