//! kiln.lock: every artifact pinned with its exact source, digest and size, and every role's
//! OS package closure.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diag::{from_toml_error_keyed, Diagnostic};
use crate::kinds::SourceKind;

/// The lock file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Lock {
    /// Format version (1).
    pub version: u32,
    /// mtime of every bundle entry unless SOURCE_DATE_EPOCH is set; fixed when the lock is first written.
    pub source_date_epoch: u64,
    /// Locked artifacts, sorted by (name, version, arch).
    #[serde(default, rename = "artifact")]
    pub artifacts: Vec<LockedArtifact>,
    /// OS packages (.deb or .rpm files) of every closure, sorted by (os, name).
    #[serde(default, rename = "package", skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<LockedPackage>,
    /// Per role and OS: the packages its bundle installs, in order. Sorted by (os, role).
    #[serde(default, rename = "closure", skip_serializing_if = "Vec::is_empty")]
    pub closures: Vec<LockedClosure>,
    /// Registry images pinned by digest, as kiln-image writes them (checked by the engine).
    #[serde(default, rename = "image", skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<toml::Table>,
}

/// One locked artifact.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedArtifact {
    /// Catalog name.
    pub name: String,
    /// Version (as in cluster.toml).
    pub version: String,
    /// Arch.
    pub arch: String,
    /// Source kind.
    pub source: SourceKind,
    /// Download URLs (https/http) or the local path (file).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// apt package name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Exact apt package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_version: Option<String>,
    /// Container kind (raw, tar.gz, tar, deb).
    pub archive: String,
    /// File inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// sha256 of the downloaded file (the store's key). Absent when upstream publishes only a
    /// sha512: `kiln fetch` then computes it and records it in the store, not here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// sha512 of the downloaded file, when that is what upstream publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
    /// Size in bytes of the downloaded file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl LockedArtifact {
    /// The pin as one string for messages and keys: `sha256:<hex>`, else `sha512:<hex>`.
    pub fn pin(&self) -> String {
        match (&self.sha256, &self.sha512) {
            (Some(h), _) => format!("sha256:{h}"),
            (None, Some(h)) => format!("sha512:{h}"),
            (None, None) => "(no digest)".into(),
        }
    }
}

/// One OS package file (.deb or .rpm) of a closure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedPackage {
    /// OS id the closure was computed for.
    pub os: String,
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Package architecture (`amd64`, `all`, `x86_64`, `noarch`, …).
    pub arch: String,
    /// `apt` (fetched with the machine's apt client) or the URL's kind (`https`, `http`, `file`).
    pub source: SourceKind,
    /// Download URLs (rpm files from a mirror).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// The file: its path in the archive's pool (apt) or its name.
    pub filename: String,
    /// sha256 of the file, from apt's index or the catalog.
    pub sha256: String,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl LockedPackage {
    /// The file's name inside a bundle's `packages/` folder.
    pub fn file_name(&self) -> &str {
        self.filename.rsplit('/').next().unwrap_or(&self.filename)
    }
}

/// The packages one role's bundle installs on one OS, computed from its profile's `packages`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LockedClosure {
    /// OS id.
    pub os: String,
    /// Role.
    pub role: String,
    /// Arch of the cluster.
    pub arch: String,
    /// The packages the profile asks for, in its order.
    pub requested: Vec<String>,
    /// What the closure assumes the host already has.
    pub base: String,
    /// Roles whose bundles every host of this role installs first; their packages are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Package names (entries of `[[package]]` for this OS) in install order.
    pub install: Vec<String>,
}
impl Lock {
    /// Parses kiln.lock.
    pub fn parse(file: &Path, text: &str) -> Result<Lock, Diagnostic> {
        let lock: Lock = toml::from_str(text).map_err(|e| from_toml_error_keyed(file, text, &e))?;
        if lock.version != 1 {
            return Err(Diagnostic::error(file, text, None)
                .key("version")
                .msg(format!(
                    "unsupported lock version {}; this kiln reads version 1",
                    lock.version
                )));
        }
        let err = |key: String, msg: String| Diagnostic::error(file, text, None).key(key).msg(msg);
        for (i, a) in lock.artifacts.iter().enumerate() {
            if let Some(h) = &a.sha256 {
                if !is_hex(h, 64) {
                    return Err(err(
                        format!("artifact[{i}].sha256"),
                        format!("{h:?} is not a lowercase sha256"),
                    ));
                }
            }
            if let Some(h) = &a.sha512 {
                if !is_hex(h, 128) {
                    return Err(err(
                        format!("artifact[{i}].sha512"),
                        format!("{h:?} is not a lowercase sha512"),
                    ));
                }
            }
            if a.sha256.is_none() && a.sha512.is_none() {
                return Err(err(
                    format!("artifact[{i}]"),
                    format!("{} {} has neither sha256 nor sha512", a.name, a.version),
                ));
            }
        }
        for (i, p) in lock.packages.iter().enumerate() {
            if !is_hex(&p.sha256, 64) {
                return Err(err(
                    format!("package[{i}].sha256"),
                    format!("{:?} is not a lowercase sha256", p.sha256),
                ));
            }
            if !crate::catalog::is_safe_file_name(p.file_name()) {
                return Err(err(
                    format!("package[{i}].filename"),
                    format!("{:?} does not end in a plain file name", p.filename),
                ));
            }
        }
        for (i, c) in lock.closures.iter().enumerate() {
            if let Some(n) = c
                .install
                .iter()
                .find(|n| lock.find_package(&c.os, n).is_none())
            {
                return Err(err(
                    format!("closure[{i}].install"),
                    format!("{n:?} has no [[package]] entry for {}", c.os),
                ));
            }
        }
        Ok(lock)
    }

    /// Serialises in a stable form (sorted artifacts).
    pub fn to_toml(&self) -> String {
        let mut l = self.clone();
        l.artifacts.sort();
        l.artifacts.dedup();
        l.packages.sort();
        l.packages.dedup();
        l.closures.sort();
        l.closures.dedup();
        let body = toml::to_string(&l).expect("lock serialises");
        format!("# kiln.lock: generated by `kiln lock`. Review and commit it; builds use only what it pins.\n{body}")
    }

    /// The locked entry for an artifact, if any.
    pub fn find(&self, name: &str, version: &str, arch: &str) -> Option<&LockedArtifact> {
        self.artifacts
            .iter()
            .find(|a| a.name == name && a.version == version && a.arch == arch)
    }

    /// The locked package `name` for `os`, if any.
    pub fn find_package(&self, os: &str, name: &str) -> Option<&LockedPackage> {
        self.packages.iter().find(|p| p.os == os && p.name == name)
    }

    /// The closure of `role` on `os`, if any.
    pub fn closure(&self, role: &str, os: &str) -> Option<&LockedClosure> {
        self.closures.iter().find(|c| c.role == role && c.os == os)
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "version = 1\nsource-date-epoch = 1\n";

    fn artifact(digests: &str) -> String {
        format!("{HEAD}[[artifact]]\nname = \"kubelet\"\nversion = \"1.34.2\"\narch = \"amd64\"\nsource = \"https\"\narchive = \"tar.gz\"\n{digests}")
    }

    #[test]
    fn an_artifact_needs_a_well_formed_sha256_or_sha512() {
        let p = |t: &str| Lock::parse(Path::new("kiln.lock"), t);
        let only512 = p(&artifact(&format!("sha512 = \"{}\"\n", "a".repeat(128)))).unwrap();
        assert_eq!(
            only512.artifacts[0].pin(),
            format!("sha512:{}", "a".repeat(128))
        );
        assert!(p(&artifact(""))
            .unwrap_err()
            .to_string()
            .contains("neither sha256 nor sha512"));
        assert!(p(&artifact(&format!("sha512 = \"{}\"\n", "A".repeat(128)))).is_err());
        assert!(p(&artifact(&format!("sha256 = \"{}\"\n", "a".repeat(63)))).is_err());
    }

    #[test]
    fn closures_name_locked_packages_and_serialise_in_a_stable_order() {
        let pkg = |name: &str| {
            format!("[[package]]\nos = \"debian12\"\nname = \"{name}\"\nversion = \"1\"\narch = \"amd64\"\nsource = \"apt\"\nfilename = \"pool/main/{name}_1_amd64.deb\"\nsha256 = \"{}\"\n", "b".repeat(64))
        };
        let closure = "[[closure]]\nos = \"debian12\"\nrole = \"lb\"\narch = \"amd64\"\nrequested = [\"b\"]\nbase = \"minbase\"\ninstall = [\"a\", \"b\"]\n";
        let text = format!("{HEAD}{}{}{closure}", pkg("b"), pkg("a"));
        let lock = Lock::parse(Path::new("kiln.lock"), &text).unwrap();
        assert_eq!(
            lock.find_package("debian12", "a").unwrap().file_name(),
            "a_1_amd64.deb"
        );
        let out = lock.to_toml();
        assert!(
            out.find("name = \"a\"").unwrap() < out.find("name = \"b\"").unwrap(),
            "{out}"
        );
        assert_eq!(
            Lock::parse(Path::new("kiln.lock"), &out).unwrap(),
            Lock {
                packages: {
                    let mut p = lock.packages.clone();
                    p.sort();
                    p
                },
                ..lock.clone()
            }
        );
        let missing = text.replace("install = [\"a\", \"b\"]", "install = [\"a\", \"c\"]");
        assert!(Lock::parse(Path::new("kiln.lock"), &missing)
            .unwrap_err()
            .to_string()
            .contains("\"c\" has no [[package]] entry"));
        let hostile = text.replace("pool/main/a_1_amd64.deb", "pool/main/../x y.deb");
        assert!(Lock::parse(Path::new("kiln.lock"), &hostile).is_err());
    }

    #[test]
    fn an_unknown_source_kind_is_refused_at_its_key() {
        let text = artifact(&format!("sha256 = \"{}\"\n", "a".repeat(64)));
        let ok = Lock::parse(Path::new("kiln.lock"), &text).unwrap();
        assert_eq!(ok.artifacts[0].source, SourceKind::Https);
        assert!(ok.to_toml().contains("source = \"https\"\n"));
        let bad = text.replace("source = \"https\"", "source = \"ftp\"");
        let err = Lock::parse(Path::new("kiln.lock"), &bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kiln.lock:7:10: error: `artifact[0].source`: unknown source kind \"ftp\"; expected one of https, http, file, apt"
        );
    }
}
