//! Debian packages into the store: kiln-deb runs `apt-get download` in a temp folder of the
//! store, and the .deb is checked against its pin before it gets its blob name.

use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::store::{check_sha256, hash_file, Store};

/// Downloads `package=version` with apt (under `config` as `APT_CONFIG` when given) into a
/// temp folder of the store, checks it against the pin and moves it to its blob name.
pub(crate) fn download(
    store: &Store,
    package: &str,
    version: &str,
    arch: &str,
    config: Option<&Path>,
    expected_sha256: &str,
) -> Result<PathBuf, StoreError> {
    check_sha256(expected_sha256)?;
    let tmp = store.tmp_dir();
    let dir = tempfile::Builder::new()
        .prefix("apt-")
        .tempdir_in(&tmp)
        .map_err(kiln_fsio::Error::on("write", tmp))?;
    let deb = kiln_deb::download(package, version, arch, config, dir.path())?;
    let (actual, _) = hash_file(&deb)?;
    if actual != expected_sha256 {
        // `dir` is removed on drop: the wrong file never reaches the store.
        return Err(kiln_transport::TransportError::HashMismatch {
            origin: format!("apt package {package}={version} ({arch})"),
            algorithm: "sha256",
            expected: expected_sha256.to_owned(),
            actual,
        }
        .into());
    }
    store.commit(&deb, expected_sha256)
}
