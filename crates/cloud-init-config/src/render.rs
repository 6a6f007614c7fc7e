//! Exact bytes of the seed documents, and the NoCloud seed folder.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::model::{CloudConfig, MetaData};
use crate::network::NetworkConfig;

/// The first line cloud-init requires of a cloud-config user-data document.
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config\n";

/// File name of the user-data document in a seed.
pub const USER_DATA: &str = "user-data";
/// File name of the meta-data document in a seed.
pub const META_DATA: &str = "meta-data";
/// File name of the network-config document in a seed.
pub const NETWORK_CONFIG: &str = "network-config";

/// Everything cloud-init's NoCloud datasource reads from a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The `#cloud-config` user-data.
    pub user_data: CloudConfig,
    /// The meta-data (instance id, host name).
    pub meta_data: MetaData,
    /// Network configuration; `None` leaves the image's default (DHCP).
    pub network_config: Option<NetworkConfig>,
}

/// One rendered seed document: its file name and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    /// `user-data`, `meta-data` or `network-config`.
    pub name: &'static str,
    /// The document's bytes.
    pub bytes: Vec<u8>,
}

impl Seed {
    /// The seed's documents in a fixed order; `network-config` only when set.
    pub fn render(&self) -> Result<Vec<SeedFile>> {
        let mut files = vec![
            SeedFile {
                name: USER_DATA,
                bytes: render_user_data(&self.user_data)?,
            },
            SeedFile {
                name: META_DATA,
                bytes: render_meta_data(&self.meta_data)?,
            },
        ];
        if let Some(network) = &self.network_config {
            files.push(SeedFile {
                name: NETWORK_CONFIG,
                bytes: render_network_config(network)?,
            });
        }
        Ok(files)
    }
}

/// Renders user-data: `#cloud-config`, then the YAML document.
pub fn render_user_data(config: &CloudConfig) -> Result<Vec<u8>> {
    let mut out = CLOUD_CONFIG_HEADER.as_bytes().to_vec();
    out.extend_from_slice(to_yaml(USER_DATA, config)?.as_bytes());
    Ok(out)
}

/// Renders meta-data as YAML.
pub fn render_meta_data(meta: &MetaData) -> Result<Vec<u8>> {
    Ok(to_yaml(META_DATA, meta)?.into_bytes())
}

/// Renders network-config version 2 as YAML, after [`NetworkConfig::validate`].
pub fn render_network_config(network: &NetworkConfig) -> Result<Vec<u8>> {
    network.validate()?;
    Ok(to_yaml(NETWORK_CONFIG, network)?.into_bytes())
}

/// YAML as cloud-init's YAML 1.1 reader needs it: strings that 1.1 would
/// read as booleans, numbers or dates are quoted (serde-saphyr's default),
/// multi-line strings are literal blocks, and long single-line strings stay
/// on one line (no folding), so keys and commands remain greppable.
fn to_yaml<T: Serialize>(document: &'static str, value: &T) -> Result<String> {
    let options = serde_saphyr::ser_options! { folded_wrap_chars: usize::MAX };
    serde_saphyr::to_string_with_options(value, options)
        .map_err(|source| Error::Yaml { document, source })
}

/// Writes the seed's documents into `dir` (created if missing), each
/// atomically. A `network-config` left from an earlier seed is removed when
/// this seed has none, so the folder never mixes two seeds.
///
/// Files are created with mode 0600: user-data may carry secrets.
pub fn write_seed_dir(dir: &Path, seed: &Seed) -> Result<()> {
    let files = seed.render()?;
    fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    for file in &files {
        let path = dir.join(file.name);
        write_atomic(&path, |out| {
            out.write_all(&file.bytes)
                .map_err(Error::io("write", path.clone()))
        })?;
    }
    if seed.network_config.is_none() {
        let stale = dir.join(NETWORK_CONFIG);
        match fs::remove_file(&stale) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::io("remove stale", stale)(err)),
        }
    }
    Ok(())
}
