//! `kiln image`: the cluster's golden OS image from the lock's `@image` closure and the
//! vendored .debs only (kiln-golden builds it), swapped into `OUT/<cluster>-image/` when
//! complete. Every check (an `[image]` table, a current lock, every package in the store, the
//! tools, root) runs before anything is written.

use std::path::{Path, PathBuf};

use kiln_golden::{Built, Deb, Recipe, Step};
use kiln_spec::Project;

use crate::{io_err, Error};

/// What `kiln image` wrote.
#[derive(Debug, Clone)]
pub struct ImageOutcome {
    /// The image folder (`OUT/<cluster>-image`).
    pub dir: PathBuf,
    /// Its files and digests.
    pub built: Built,
}

/// The image folder of `project` under the out folder `out`.
pub fn image_dir(project: &Project, out: &Path) -> PathBuf {
    out.join(format!("{}-image", project.cluster.name))
}

/// The recipe: the lock's image closure, each package at its blob in the store; fails naming
/// what is missing from the lock or the store (and the command that fixes it).
pub fn recipe(project: &Project) -> Result<Recipe, Error> {
    let Some(img) = &project.cluster.image else {
        return Err(Error::NoImage {
            cluster: project.cluster.paths.cluster_file.clone(),
        });
    };
    let lock = crate::lock::read_lock(project)?.ok_or_else(|| Error::NoLock {
        lock: project.cluster.paths.lock.clone(),
    })?;
    let packages = crate::packages::locked_image(project, &lock)?;
    let vendor = &project.cluster.paths.vendor;
    // Opening the store creates its folders: only open one that exists.
    let store = if vendor.is_dir() {
        Some(crate::fetch::open_store(project)?)
    } else {
        None
    };
    let mut missing = Vec::new();
    let mut debs = Vec::new();
    for p in &packages {
        match &store {
            Some(s) if s.contains(&p.sha256) => debs.push(Deb {
                name: p.name.clone(),
                version: p.version.clone(),
                arch: p.arch.clone(),
                path: s.blob_path(&p.sha256),
                file_name: p.file_name().to_owned(),
                sha256: p.sha256.clone(),
            }),
            _ => missing.push(format!("{} {}", p.name, p.version)),
        }
    }
    if !missing.is_empty() {
        return Err(Error::ImageNotFetched {
            missing,
            store: vendor.clone(),
        });
    }
    let (_, codename) = img
        .os
        .apt_release()
        .expect("[image] is validated to a Debian-family OS");
    Ok(Recipe {
        os: img.os.to_string(),
        codename: codename.to_owned(),
        arch: project.cluster.arch.to_string(),
        debs,
        source_date_epoch: lock.source_date_epoch,
        kernel: img.kernel.clone(),
        initrd_modules: img.initrd_modules.clone(),
    })
}

/// Builds the golden image into `OUT/<cluster>-image/`, replacing an earlier one only once the
/// new one is complete.
pub fn image(
    project: &Project,
    out: &Path,
    progress: &dyn Fn(Step),
) -> Result<ImageOutcome, Error> {
    let recipe = recipe(project)?;
    kiln_golden::preflight()?;
    let dir = image_dir(project, out);
    let staging = crate::build::swap::staging_for(&dir)?;
    let work = staging.with_file_name(format!(
        ".{}.work-{}",
        project.cluster.name,
        std::process::id()
    ));
    let _cleanup = Cleanup(vec![staging.clone(), work.clone()]);
    std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
    let sync = kiln_fsio::Staging::begin(&staging);
    let built = kiln_golden::build(&recipe, &work, &staging, progress)?;
    sync.sync().map_err(|source| Error::Write {
        path: staging.clone(),
        source,
    })?;
    drop(sync);
    crate::build::swap::swap_in(&staging, &dir)?;
    Ok(ImageOutcome { dir, built })
}

/// Removes the scratch and staging folders however the build ends (the staging folder is gone
/// already once swapped in). A killed mmdebstrap may leave mounts in the tree: never descend
/// into another file system.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for d in &self.0 {
            if d.exists() {
                let _ = std::process::Command::new("rm")
                    .args(["-rf", "--one-file-system"])
                    .arg(d)
                    .status();
            }
        }
    }
}
