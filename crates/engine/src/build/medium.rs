//! The shared bundle medium: one ISO 9660 image, labelled `KILNBUNDLE`, holding every role
//! bundle of the build under `bundles/` and install.sh, for seeds that carry neither
//! (`[seeds] bundle-sources = ["medium"]`). Written once per build, whatever the host count.

use std::path::{Path, PathBuf};

use kiln_spec::BUNDLE_MEDIUM_LABEL;

use super::bundles::Written;
use super::outputs::Outputs;
use crate::Error;

/// The medium's path in the out folder.
pub(super) const BUNDLE_MEDIUM: &str = "bundles.iso";

/// Writes `staging/bundles.iso` with every bundle of `bundles` and install.sh (written to
/// `staging` before), dated `time`.
pub(super) fn write_bundle_medium(
    staging: &Path,
    bundles: &Written,
    time: u64,
    outputs: &mut Outputs,
) -> Result<(), Error> {
    let install_sh = kiln_bundle::contract::INSTALL_SH;
    let files: Vec<(String, PathBuf)> = bundles
        .files
        .values()
        .map(|(rel, _)| (rel.clone(), staging.join(rel)))
        .chain([(install_sh.to_owned(), staging.join(install_sh))])
        .collect();
    let ts = cloud_init_config::Timestamp::from_unix(time.max(315_532_800) as i64)
        .map_err(Error::Seed)?;
    // Hashed as it is written: the bundles it holds are not read a second time.
    let digest = cloud_init_config::write_data_iso(
        &staging.join(BUNDLE_MEDIUM),
        BUNDLE_MEDIUM_LABEL,
        &files,
        ts,
    )
    .map_err(Error::Seed)?;
    outputs.record(BUNDLE_MEDIUM, &digest.sha256, digest.size);
    Ok(())
}
