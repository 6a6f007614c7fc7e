//! The build `kiln serve` serves: an out folder verified as `kiln verify` verifies it, its files
//! opened once and its hosts' seed documents read once, so what is served is what was checked.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cloud_init_config::CloudConfig;
use kiln_bundle::BuildManifest;
use kiln_engine::signatures::{self, Signatures};

use crate::Error;

/// A MAC address (six octets), as MANIFEST.json and iPXE's `${netX/mac:hexhyp}` write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `52-54-00-12-34-56`: iPXE's `hexhyp` form, the one `/ipxe/<mac>` paths use.
    pub fn hexhyp(&self) -> String {
        self.to_string().replace(':', "-")
    }
}

impl FromStr for Mac {
    type Err = ();

    /// Six two-digit hex octets separated by `:` or `-` (either case).
    fn from_str(s: &str) -> Result<Self, ()> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(());
        }
        let mut out = [0u8; 6];
        for (o, p) in out.iter_mut().zip(parts) {
            if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| ())?;
        }
        Ok(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// A file served by its digest: a role bundle, a delta bundle or install.sh.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its path in the out folder (`bundles/<file>`, `install.sh`).
    pub name: String,
    /// Its size, as MANIFEST.json records it.
    pub size: u64,
    /// The file, opened when it was verified (a rebuild that swaps the folder does not change
    /// what is served).
    pub file: Arc<File>,
}

/// One host of the build, as kiln serve hands it out.
#[derive(Debug, Clone)]
pub struct Host {
    /// Host name.
    pub name: String,
    /// The MAC its seed matches.
    pub mac: Mac,
    /// The host's secrets.tar.gz in the out folder.
    pub secrets: PathBuf,
    /// That file, opened when it was verified, and its size.
    pub secrets_file: (Arc<File>, u64),
    /// Its sha256 (MANIFEST.json's).
    pub secrets_sha: String,
    /// The disk seed's `meta-data`, byte for byte.
    pub meta_data: Vec<u8>,
    /// The disk seed's `network-config`, byte for byte, when it has one.
    pub network_config: Option<Vec<u8>>,
    /// The disk seed's user-data, whose runcmd the network seed replaces.
    pub user_data: CloudConfig,
}

/// A verified out folder, ready to serve.
#[derive(Debug)]
pub struct Site {
    /// The out folder.
    pub dir: PathBuf,
    /// MANIFEST.json.
    pub manifest: BuildManifest,
    /// What checked the signatures.
    pub signatures: Signatures,
    /// Files served by digest: sha256 → file.
    pub blobs: BTreeMap<String, Blob>,
    /// The same files by their path in the out folder → sha256 (the plain names
    /// `bundle-sources = ["http://…"]` fetch).
    pub names: BTreeMap<String, String>,
    /// Hosts by name.
    pub hosts: BTreeMap<String, Host>,
    /// Host names by MAC.
    pub by_mac: BTreeMap<Mac, String>,
    /// install.sh's sha256.
    pub install_sha: String,
}

impl Site {
    /// Verifies `dir` as `kiln verify [--key KEY]` does (every digest, every bundle, MANIFEST.json
    /// and the signatures), then opens what it serves.
    pub fn open(dir: &Path, key: Option<&Path>) -> Result<Site, Error> {
        if kiln_bundle::is_pulled(dir) {
            return Err(Error::Pulled {
                dir: dir.to_owned(),
            });
        }
        kiln_bundle::verify_folder(dir).map_err(|source| Error::Verify {
            dir: dir.to_owned(),
            source: Box::new(source),
        })?;
        let signatures = signatures::check(dir, key).map_err(|source| Error::Signatures {
            dir: dir.to_owned(),
            source: Box::new(source),
        })?;
        // verify_folder read and checked it; a folder it accepts has one.
        let manifest =
            kiln_bundle::read_build_manifest(dir).ok_or_else(|| Error::MissingOutput {
                dir: dir.to_owned(),
                path: kiln_bundle::BUILD_MANIFEST_NAME.into(),
            })?;
        let output = |path: &str| {
            manifest
                .outputs
                .get(path)
                .ok_or_else(|| Error::MissingOutput {
                    dir: dir.to_owned(),
                    path: path.to_owned(),
                })
        };
        let mut blobs = BTreeMap::new();
        let mut names = BTreeMap::new();
        let files = manifest
            .bundles
            .values()
            .map(|b| &b.file)
            .chain(manifest.deltas.values().map(|d| &d.file))
            .map(String::as_str)
            .chain(["install.sh"]);
        for name in files {
            let o = output(name)?;
            let path = dir.join(name);
            let file = File::open(&path).map_err(|source| Error::Read { file: path, source })?;
            names.insert(name.to_owned(), o.sha256.clone());
            blobs.insert(
                o.sha256.clone(),
                Blob {
                    name: name.to_owned(),
                    size: o.size,
                    file: Arc::new(file),
                },
            );
        }
        let install_sha = output("install.sh")?.sha256.clone();
        let mut hosts = BTreeMap::new();
        let mut by_mac = BTreeMap::new();
        for (name, h) in &manifest.hosts {
            let mac: Mac = h.mac.parse().map_err(|()| Error::BadMac {
                dir: dir.to_owned(),
                host: name.clone(),
                mac: h.mac.clone(),
            })?;
            let seed = dir.join("hosts").join(name).join("seed");
            if !seed.join(cloud_init_config::USER_DATA).is_file() {
                return Err(Error::NoSeedFolder {
                    dir: dir.join("hosts").join(name),
                    host: name.clone(),
                });
            }
            let read = |doc: &str| {
                let file = seed.join(doc);
                std::fs::read(&file).map_err(|source| Error::Read { file, source })
            };
            let ud_file = seed.join(cloud_init_config::USER_DATA);
            let ud_text =
                String::from_utf8_lossy(&read(cloud_init_config::USER_DATA)?).into_owned();
            let user_data: CloudConfig =
                serde_saphyr::from_str(&ud_text).map_err(|source| Error::UserData {
                    file: ud_file,
                    source: Box::new(source),
                })?;
            let network_config = if seed.join(cloud_init_config::NETWORK_CONFIG).is_file() {
                Some(read(cloud_init_config::NETWORK_CONFIG)?)
            } else {
                None
            };
            let secrets_path = dir.join(&h.secrets);
            let secrets_out = output(&h.secrets)?;
            hosts.insert(
                name.clone(),
                Host {
                    name: name.clone(),
                    mac,
                    secrets: secrets_path.clone(),
                    secrets_file: (
                        Arc::new(File::open(&secrets_path).map_err(|source| Error::Read {
                            file: secrets_path,
                            source,
                        })?),
                        secrets_out.size,
                    ),
                    secrets_sha: secrets_out.sha256.clone(),
                    meta_data: read(cloud_init_config::META_DATA)?,
                    network_config,
                    user_data,
                },
            );
            by_mac.insert(mac, name.clone());
        }
        Ok(Site {
            dir: dir.to_owned(),
            manifest,
            signatures,
            blobs,
            names,
            hosts,
            by_mac,
            install_sha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Mac;

    #[test]
    fn macs_read_both_separators_and_print_ipxe_s_hexhyp() {
        let m: Mac = "52-54-00-AB-cd-0f".parse().unwrap();
        assert_eq!(m, "52:54:00:ab:cd:0f".parse().unwrap());
        assert_eq!(m.hexhyp(), "52-54-00-ab-cd-0f");
        for bad in [
            "",
            "52-54-00-ab-cd",
            "52-54-00-ab-cd-0f-11",
            "5-254-00-ab-cd-0f",
            "zz-54-00-ab-cd-0f",
            "+5-54-00-ab-cd-0f",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }
}
