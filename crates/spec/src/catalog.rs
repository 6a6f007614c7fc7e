//! The catalog: where each artifact comes from, and the table of known upstream pins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diag::{from_toml_error_keyed, Diagnostic};
use crate::kinds::{Pin, SourceKind};
use crate::model::{Arch, OsId};
use crate::pins::TableError;

/// The arch key of pins for files that are the same on every arch.
pub const NO_ARCH: &str = "no_arch";

/// catalog.toml as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Catalog {
    /// Artifacts by name.
    #[serde(default)]
    pub artifact: BTreeMap<String, CatalogArtifact>,
    /// rpm files for EL hosts' packages, from a mirror the user names (Debian-family
    /// closures come from apt's index instead).
    #[serde(default, rename = "rpm")]
    pub rpms: Vec<CatalogRpm>,
    /// Golden OS images by OS id: the packages `kiln image` installs on top of the OS's
    /// minimal system.
    #[serde(default)]
    pub os_image: BTreeMap<String, CatalogOsImage>,
    /// Known pins (from pins.toml), by table, arch and version.
    #[serde(skip)]
    pub pins: Pins,
}

/// One artifact: a single file placed on hosts, available from one or more sources.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogArtifact {
    /// The key in cluster.toml `[versions]` that selects the version.
    pub version: String,
    /// What it is.
    pub description: Option<String>,
    /// Sources, one per kind.
    #[serde(rename = "source")]
    pub sources: Vec<CatalogSource>,
}

/// How an artifact is obtained from one kind of source. `{version}` and `{arch}` are substituted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogSource {
    /// https, http, file or apt.
    pub kind: SourceKind,
    /// URL template (https/http).
    pub url: Option<String>,
    /// Path template, relative to the catalog folder (file).
    pub path: Option<String>,
    /// Debian package name (apt).
    pub package: Option<String>,
    /// Container of the file: `raw` (default for https/http/file), `tar.gz`, `tar`, or `deb` (apt).
    pub archive: Option<String>,
    /// The file inside the archive.
    pub member: Option<String>,
    /// Table name in pins.toml.
    pub pins: Option<String>,
    /// URL template of an upstream checksum file, read by `kiln lock` for versions not in the table.
    pub checksum_url: Option<String>,
}

/// `[os-image.<os>]`: what a golden image of one OS holds beyond its minimal system
/// (for Debian: the packages of priority required, the essential ones and apt).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogOsImage {
    /// Package names, each once; `{arch}` stands for the cluster's architecture. Not the
    /// kernel: `[image] kernel` picks one of [`CatalogOsImage::kernel`].
    pub packages: Vec<String>,
    /// The kernels an image can have, by name (`cloud`, `generic`): `[image] kernel` picks one.
    pub kernel: BTreeMap<String, CatalogKernel>,
}

/// `[os-image.<os>.kernel.<name>]`: one kernel an image can have.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogKernel {
    /// Its package; `{arch}` stands for the cluster's architecture.
    pub package: String,
    /// initramfs-tools' `MODULES`: `list` (only the virtio disk drivers: a small initrd for
    /// virtual machines) or `most` (Debian's default: every disk controller, for physical ones).
    pub initrd: String,
    /// What it is for, in a line.
    pub description: String,
}

/// One rpm file for EL hosts, pinned by sha256. Profiles' `packages` name rpms; each entry
/// lists in `requires` the other entries it needs, and `kiln lock` takes the closure.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CatalogRpm {
    /// OS id (`centos7`, `rocky9`) or `el` for every EL release.
    pub os: String,
    /// rpm name, as profiles and `requires` name it.
    pub name: String,
    /// `version-release`, with `epoch:` when it has one.
    pub version: String,
    /// `x86_64`, `aarch64` or `noarch`.
    pub arch: String,
    /// Download URL (https, http or file); cluster.toml `[mirrors]` apply.
    pub url: String,
    /// sha256 of the rpm file.
    pub sha256: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Names of other `[[rpm]]` entries it needs (what the hosts' base system lacks).
    #[serde(default)]
    pub requires: Vec<String>,
}

impl CatalogRpm {
    /// The URL's kind (https, http or file; checked when the catalog is parsed).
    pub fn source(&self) -> SourceKind {
        match self.url.split_once("://").map(|x| x.0) {
            Some("http") => SourceKind::Http,
            Some("file") => SourceKind::File,
            _ => SourceKind::Https,
        }
    }

    /// The file name (last component of the URL).
    pub fn file_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url)
    }

    fn applies_to(&self, os: OsId, arch: Arch) -> bool {
        (self.os == os.as_str() || self.os == os.family())
            && (self.arch == arch.rpm_name() || self.arch == "noarch")
    }
}

/// Whether `name` is safe as a file name inside a bundle (`packages/<name>`).
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'~' | b'%')
        })
}

/// Known pins: table → arch → version → `sha256:<hex>` or `sha512:<hex>`.
pub type Pins = BTreeMap<String, BTreeMap<String, BTreeMap<String, Pin>>>;

/// An artifact resolved for a cluster: the source chosen and every template substituted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Catalog name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Arch.
    pub arch: Arch,
    /// Source kind.
    pub kind: SourceKind,
    /// Download URL (https/http) or path relative to the catalog folder (file).
    pub url: Option<String>,
    /// apt package.
    pub package: Option<String>,
    /// Container kind.
    pub archive: String,
    /// Member inside the container.
    pub member: Option<String>,
    /// Known sha256 from the pins table.
    pub pin: Option<String>,
    /// Known sha512 from the pins table (upstream publishes only sha512 for some files).
    pub pin_sha512: Option<String>,
    /// Upstream checksum file URL.
    pub checksum_url: Option<String>,
}

/// Parses catalog.toml and pins.toml texts.
pub fn parse(
    file: &Path,
    text: &str,
    pins_file: &Path,
    pins_text: Option<&str>,
) -> Result<Catalog, Diagnostic> {
    let mut cat: Catalog =
        toml::from_str(text).map_err(|e| from_toml_error_keyed(file, text, &e))?;
    if let Some(p) = pins_text {
        cat.pins = toml::from_str(p).map_err(|e| from_toml_error_keyed(pins_file, p, &e))?;
    }
    for (name, a) in &cat.artifact {
        for (i, s) in a.sources.iter().enumerate() {
            let key = format!("artifact.{name}.source[{i}]");
            let err = |m: String| Diagnostic::error(file, text, None).key(key.clone()).msg(m);
            let kind = s.kind;
            let needs = match kind {
                SourceKind::Https | SourceKind::Http => ("url", s.url.is_some()),
                SourceKind::File => ("path", s.path.is_some()),
                SourceKind::Apt => ("package", s.package.is_some()),
            };
            if !needs.1 {
                return Err(err(format!("a {} source needs `{}`", s.kind, needs.0)));
            }
            let archive = s.archive.as_deref().unwrap_or(if kind == SourceKind::Apt {
                "deb"
            } else {
                "raw"
            });
            if !["raw", "tar.gz", "tar", "deb"].contains(&archive) {
                return Err(err(format!(
                    "unknown archive {archive:?}; expected raw, tar.gz, tar or deb"
                )));
            }
            if archive != "raw" && s.member.is_none() {
                return Err(err(format!(
                    "an archive of kind {archive} needs `member`: the file to take out of it"
                )));
            }
            if let Some(t) = &s.pins {
                if !cat.pins.contains_key(t) {
                    return Err(err(format!(
                        "pins table {t:?} is not in {}",
                        pins_file.display()
                    )));
                }
            }
        }
    }
    for (os, img) in &cat.os_image {
        let err = |key: String, m: String| Diagnostic::error(file, text, None).key(key).msg(m);
        if OsId::parse(os) != Some(OsId::Debian12) {
            return Err(err(
                format!("os-image.{os}"),
                format!("{os:?}: kiln image builds debian12 images only"),
            ));
        }
        if img.packages.is_empty() {
            return Err(err(
                format!("os-image.{os}.packages"),
                "is empty; list the packages the image installs beyond minbase".into(),
            ));
        }
        if img.kernel.is_empty() {
            return Err(err(
                format!("os-image.{os}.kernel"),
                "has no kernel; add one, e.g. [os-image.debian12.kernel.cloud] with a package and initrd = \"list\"".into(),
            ));
        }
        for (name, k) in &img.kernel {
            if !crate::cluster::is_package_name(&k.package.replace("{arch}", "amd64")) {
                return Err(err(
                    format!("os-image.{os}.kernel.{name}.package"),
                    format!(
                        "{:?} is not a package name (`{{arch}}` may stand for the architecture)",
                        k.package
                    ),
                ));
            }
            if !matches!(k.initrd.as_str(), "list" | "most") {
                return Err(err(
                    format!("os-image.{os}.kernel.{name}.initrd"),
                    format!("{:?}: expected \"list\" (the virtio disk drivers only) or \"most\" (every disk controller)", k.initrd),
                ));
            }
        }
        for (i, p) in img.packages.iter().enumerate() {
            let key = format!("os-image.{os}.packages[{i}]");
            if !crate::cluster::is_package_name(&p.replace("{arch}", "amd64")) {
                return Err(err(
                    key,
                    format!(
                        "{p:?} is not a package name (`{{arch}}` may stand for the architecture)"
                    ),
                ));
            }
            if img.packages[..i].contains(p) {
                return Err(err(key, format!("{p:?} is listed twice")));
            }
        }
    }
    for (i, r) in cat.rpms.iter().enumerate() {
        let err = |m: String| {
            Diagnostic::error(file, text, None)
                .key(format!("rpm[{i}]"))
                .msg(m)
        };
        let os_ok = r.os == "el" || OsId::parse(&r.os).is_some_and(|o| o.family() == "el");
        if !os_ok {
            return Err(err(format!(
                "os {:?} is not an EL release; expected el, centos7 or rocky9",
                r.os
            )));
        }
        if !["x86_64", "aarch64", "noarch"].contains(&r.arch.as_str()) {
            return Err(err(format!(
                "arch {:?}: expected x86_64, aarch64 or noarch",
                r.arch
            )));
        }
        if !crate::cluster::is_package_name(&r.name) {
            return Err(err(format!("{:?} is not an rpm name", r.name)));
        }
        if !["https://", "http://", "file://"]
            .iter()
            .any(|p| r.url.starts_with(p))
            || !r.file_name().ends_with(".rpm")
            || !is_safe_file_name(r.file_name())
        {
            return Err(err(format!("url {:?} must be an http(s):// or file:// URL of a .rpm file with a plain file name", r.url)));
        }
        if r.sha256.len() != 64
            || !r
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(err(format!(
                "sha256 {:?} is not 64 lowercase hex digits",
                r.sha256
            )));
        }
    }
    Ok(cat)
}

fn subst(t: &str, version: &str, arch: Arch) -> String {
    t.replace("{version}", version)
        .replace("{arch}", arch.as_str())
}

/// Why the catalog cannot give an artifact a source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No catalog entry has the name.
    #[error("artifact {artifact:?} is not in the catalog")]
    NotInCatalog {
        /// The artifact.
        artifact: String,
    },
    /// cluster.toml has no version for the artifact's `versions` key.
    #[error("artifact {artifact:?} needs `versions.{key}` in cluster.toml")]
    NoVersion {
        /// The artifact.
        artifact: String,
        /// The `versions` key it reads.
        key: String,
    },
    /// None of the artifact's source kinds is allowed by cluster.toml.
    #[error(
        "artifact {artifact:?} has sources [{}] but cluster.toml allows only [{}]",
        kinds(have),
        kinds(allowed)
    )]
    NoAllowedSource {
        /// The artifact.
        artifact: String,
        /// The kinds its sources have, in catalog order.
        have: Vec<SourceKind>,
        /// cluster.toml's `sources`.
        allowed: Vec<SourceKind>,
    },
}

fn kinds(k: &[SourceKind]) -> String {
    k.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

impl Catalog {
    /// Picks the first source in `prefs` order that the artifact has, and fills in its templates.
    pub fn resolve(
        &self,
        name: &str,
        versions: &BTreeMap<String, String>,
        arch: Arch,
        prefs: &[SourceKind],
    ) -> Result<Resolved, ResolveError> {
        let a = self
            .artifact
            .get(name)
            .ok_or_else(|| ResolveError::NotInCatalog {
                artifact: name.to_string(),
            })?;
        let version = versions
            .get(&a.version)
            .ok_or_else(|| ResolveError::NoVersion {
                artifact: name.to_string(),
                key: a.version.clone(),
            })?;
        let pin_of = |src: &CatalogSource| {
            src.pins.as_ref().and_then(|t| {
                // A file that is the same for every arch (a manifest) is pinned under
                // `no_arch`, as the upstream checksum table keeps it.
                let table = self.pins.get(t)?;
                table
                    .get(arch.as_str())
                    .or_else(|| table.get(NO_ARCH))?
                    .get(version)
            })
        };
        // Within one kind, a source with a pin for this version and arch wins over one without.
        let (kind, src) = prefs
            .iter()
            .find_map(|k| {
                let of_kind: Vec<&CatalogSource> =
                    a.sources.iter().filter(|s| s.kind == *k).collect();
                of_kind
                    .iter()
                    .find(|s| pin_of(s).is_some())
                    .or(of_kind.first())
                    .map(|s| (*k, *s))
            })
            .ok_or_else(|| ResolveError::NoAllowedSource {
                artifact: name.to_string(),
                have: a.sources.iter().map(|s| s.kind).collect(),
                allowed: prefs.to_vec(),
            })?;
        let (pin, pin_sha512) = match pin_of(src) {
            Some(Pin::Sha256(h)) => (Some(h.clone()), None),
            Some(Pin::Sha512(h)) => (None, Some(h.clone())),
            None => (None, None),
        };
        let url = match kind {
            SourceKind::Https | SourceKind::Http => {
                src.url.as_ref().map(|u| subst(u, version, arch))
            }
            // Kept relative to the catalog folder so the lock does not depend on where the project lives.
            SourceKind::File => src.path.as_ref().map(|p| subst(p, version, arch)),
            SourceKind::Apt => None,
        };
        Ok(Resolved {
            name: name.to_string(),
            version: version.clone(),
            arch,
            kind,
            url,
            package: src.package.clone(),
            archive: src.archive.clone().unwrap_or_else(|| {
                if kind == SourceKind::Apt {
                    "deb".into()
                } else {
                    "raw".into()
                }
            }),
            member: src.member.as_ref().map(|m| subst(m, version, arch)),
            pin,
            pin_sha512,
            checksum_url: src.checksum_url.as_ref().map(|u| subst(u, version, arch)),
        })
    }
}

/// The rpms that install `requested` on `os`/`arch`, dependencies first, leaving out
/// `installed` (what bundles installed earlier bring); or the names with no entry.
pub fn rpm_closure<'a>(
    rpms: &'a [CatalogRpm],
    os: OsId,
    arch: Arch,
    requested: &[String],
    installed: &BTreeSet<String>,
) -> Result<Vec<&'a CatalogRpm>, Vec<String>> {
    fn visit<'a>(
        by_name: &BTreeMap<&str, &'a CatalogRpm>,
        name: &str,
        installed: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<&'a CatalogRpm>,
        missing: &mut Vec<String>,
    ) {
        if installed.contains(name) || !seen.insert(name.to_string()) {
            return;
        }
        match by_name.get(name) {
            None => missing.push(name.to_string()),
            Some(r) => {
                for d in &r.requires {
                    visit(by_name, d, installed, seen, out, missing);
                }
                out.push(r);
            }
        }
    }
    let mut by_name: BTreeMap<&str, &CatalogRpm> = BTreeMap::new();
    for r in rpms.iter().filter(|r| r.applies_to(os, arch)) {
        // An entry for the exact OS beats one for the whole family.
        if r.os == os.as_str() || !by_name.contains_key(r.name.as_str()) {
            by_name.insert(&r.name, r);
        }
    }
    let (mut seen, mut out, mut missing) = (BTreeSet::new(), Vec::new(), Vec::new());
    for n in requested {
        visit(&by_name, n, installed, &mut seen, &mut out, &mut missing);
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

impl Resolved {
    /// Whether `kiln lock` can pin this without guessing: a known pin, a checksum file, apt's index, or a local file.
    pub fn has_checksum_source(&self) -> bool {
        self.pin.is_some()
            || self.pin_sha512.is_some()
            || self.checksum_url.is_some()
            || matches!(self.kind, SourceKind::Apt | SourceKind::File)
    }
}

/// Converts kubespray's checksums YAML (`<component>_checksums: {arch: {version: "sha256:hex"}}`) into pins.
/// The input is simple block YAML; this reads exactly that shape and rejects anything else.
pub fn import_checksums_yaml(text: &str) -> Result<Pins, TableError> {
    let mut pins: Pins = BTreeMap::new();
    let (mut table, mut arch): (Option<String>, Option<String>) = (None, None);
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let trimmed = line.trim_end();
        if trimmed.is_empty() || trimmed.trim_start().starts_with('#') || trimmed == "---" {
            continue;
        }
        let indent = trimmed.len() - trimmed.trim_start().len();
        let body = trimmed.trim_start();
        let (k, v) = body
            .split_once(':')
            .ok_or(TableError::NotKeyValue { line: n })?;
        let k = k.trim().trim_matches('"').trim_matches('\'').to_string();
        let v = v.trim().trim_matches('"').trim_matches('\'');
        match indent {
            0 => {
                table = Some(
                    k.strip_suffix("_checksums")
                        .ok_or_else(|| TableError::TopLevelKey {
                            line: n,
                            key: k.clone(),
                        })?
                        .to_string(),
                );
                arch = None;
            }
            2 => arch = Some(k),
            4 => {
                let (Some(t), Some(a)) = (&table, &arch) else {
                    return Err(TableError::Orphan { line: n });
                };
                // kubespray writes `0` for versions it has no checksum for.
                if v == "0" || v.is_empty() {
                    continue;
                }
                let (algo, hex) = match v.split_once(':') {
                    Some((a, h)) => (a, h),
                    None => ("sha256", v),
                };
                let len = match algo {
                    "sha256" => 64,
                    "sha512" => 128,
                    _ => {
                        return Err(TableError::Algorithm {
                            line: n,
                            algo: algo.to_string(),
                        })
                    }
                };
                let not_digest = || TableError::Digest {
                    line: n,
                    value: v.to_string(),
                    algo: algo.to_string(),
                };
                if hex.len() != len || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(not_digest());
                }
                pins.entry(t.clone())
                    .or_default()
                    .entry(a.clone())
                    .or_default()
                    .insert(k, Pin::from_hex(algo, hex).map_err(|_| not_digest())?);
            }
            _ => return Err(TableError::Indentation { line: n, indent }),
        }
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kernel table for `[os-image.debian12]` test texts.
    const KERNEL: &str = "[os-image.debian12.kernel.cloud]\npackage = \"linux-image-cloud-{arch}\"\ninitrd = \"list\"\ndescription = \"virtual machines\"\n";

    #[test]
    fn os_images_are_debian12_only_with_package_names_each_once_and_kernels() {
        let parse_os_image = |t: &str| {
            parse(Path::new("catalog.toml"), t, Path::new("pins.toml"), None)
                .map(|c| c.os_image)
                .map_err(|d| d.to_string())
        };
        let ok = parse_os_image(&format!(
            "[os-image.debian12]\npackages = [\"systemd\", \"curl\"]\n{KERNEL}"
        ))
        .unwrap();
        assert_eq!(ok["debian12"].packages.len(), 2);
        assert_eq!(
            ok["debian12"].kernel["cloud"].package,
            "linux-image-cloud-{arch}"
        );
        let with_kernel = |head: &str| format!("{head}{KERNEL}");
        for (text, key, msg) in [
            (
                "[os-image.ubuntu2404]\npackages = [\"a\"]\nkernel = {}\n".to_owned(),
                "os-image.ubuntu2404",
                "builds debian12 images only",
            ),
            (
                with_kernel("[os-image.debian12]\npackages = []\n"),
                "os-image.debian12.packages",
                "is empty",
            ),
            (
                with_kernel("[os-image.debian12]\npackages = [\"a b\"]\n"),
                "os-image.debian12.packages[0]",
                "\"a b\" is not a package name",
            ),
            (
                with_kernel("[os-image.debian12]\npackages = [\"a\", \"a\"]\n"),
                "os-image.debian12.packages[1]",
                "\"a\" is listed twice",
            ),
            (
                with_kernel("[os-image.debian12]\npackagez = [\"a\"]\n"),
                "packagez",
                "unknown field",
            ),
            (
                "[os-image.debian12]\npackages = [\"a\"]\nkernel = {}\n".to_owned(),
                "os-image.debian12.kernel",
                "has no kernel",
            ),
            (
                with_kernel("[os-image.debian12]\npackages = [\"a\"]\n")
                    .replace("initrd = \"list\"", "initrd = \"dep\""),
                "os-image.debian12.kernel.cloud.initrd",
                "\"dep\": expected \"list\"",
            ),
            (
                with_kernel("[os-image.debian12]\npackages = [\"a\"]\n")
                    .replace("linux-image-cloud-{arch}", "linux image"),
                "os-image.debian12.kernel.cloud.package",
                "\"linux image\" is not a package name",
            ),
        ] {
            let e = parse_os_image(&text).unwrap_err();
            assert!(e.contains(key) && e.contains(msg), "{text}: {e}");
        }
    }

    #[test]
    fn imports_kubespray_shape() {
        let y = "---\netcd_binary_checksums:\n  amd64:\n    3.5.21: sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n    3.5.0: 0\n  arm64:\n    3.5.21: \"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\n";
        let p = import_checksums_yaml(y).unwrap();
        assert_eq!(
            p["etcd_binary"]["amd64"]["3.5.21"].to_string(),
            format!("sha256:{}", "a".repeat(64))
        );
        assert!(!p["etcd_binary"]["amd64"].contains_key("3.5.0"));
        assert_eq!(p["etcd_binary"]["arm64"].len(), 1);
        assert!(import_checksums_yaml("x_checksums:\n  amd64:\n    1.0: sha256:zz\n").is_err());
        assert!(import_checksums_yaml("nope:\n").is_err());
    }
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    const CATALOG: &str = r#"
[artifact.kubelet]
version = "kubernetes"

[[artifact.kubelet.source]]
kind = "https"
url = "https://example.invalid/v{version}/server-{arch}.tar.gz"
archive = "tar.gz"
member = "kubernetes/server/bin/kubelet"
pins = "kubernetes_server"

[[artifact.kubelet.source]]
kind = "https"
url = "https://example.invalid/v{version}/{arch}/kubelet"
pins = "kubelet"

[[rpm]]
os = "el"
name = "keepalived"
version = "1.3.5-19.el7"
arch = "x86_64"
url = "http://127.0.0.1/keepalived-1.3.5-19.el7.x86_64.rpm"
sha256 = "0000000000000000000000000000000000000000000000000000000000000001"
requires = ["net-snmp-libs", "lm_sensors-libs"]

[[rpm]]
os = "centos7"
name = "net-snmp-libs"
version = "5.7.2-49.el7"
arch = "x86_64"
url = "http://127.0.0.1/net-snmp-libs-5.7.2-49.el7.x86_64.rpm"
sha256 = "0000000000000000000000000000000000000000000000000000000000000002"
requires = ["lm_sensors-libs"]

[[rpm]]
os = "el"
name = "lm_sensors-libs"
version = "3.4.0-8.el7"
arch = "x86_64"
url = "http://127.0.0.1/lm_sensors-libs-3.4.0-8.el7.x86_64.rpm"
sha256 = "0000000000000000000000000000000000000000000000000000000000000003"
"#;

    const PINS: &str = "[kubernetes_server.amd64]\n\"1.34.2\" = \"sha512:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n[kubelet.amd64]\n\"1.34.2\" = \"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\n\"1.33.5\" = \"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"\n";

    /// Parses catalog and pins texts under the names the messages use.
    fn parse_texts(catalog: &str, pins: &str) -> Result<Catalog, Diagnostic> {
        parse(
            Path::new("catalog.toml"),
            catalog,
            Path::new("pins.toml"),
            Some(pins),
        )
    }

    fn catalog() -> Catalog {
        parse_texts(CATALOG, PINS).unwrap()
    }

    #[test]
    fn within_a_kind_the_first_source_pinned_for_the_version_wins() {
        let cat = catalog();
        let v = |k: &str| BTreeMap::from([("kubernetes".to_string(), k.to_string())]);
        let r = cat
            .resolve("kubelet", &v("1.34.2"), Arch::Amd64, &[SourceKind::Https])
            .unwrap();
        assert_eq!(
            r.url.as_deref(),
            Some("https://example.invalid/v1.34.2/server-amd64.tar.gz")
        );
        assert_eq!(
            (r.pin.as_deref(), r.pin_sha512.as_deref()),
            (None, Some("a".repeat(128).as_str()))
        );
        assert_eq!(r.member.as_deref(), Some("kubernetes/server/bin/kubelet"));
        // Not in the sha512 table: the per-binary source, pinned by sha256.
        let r = cat
            .resolve("kubelet", &v("1.33.5"), Arch::Amd64, &[SourceKind::Https])
            .unwrap();
        assert_eq!(
            r.url.as_deref(),
            Some("https://example.invalid/v1.33.5/amd64/kubelet")
        );
        assert_eq!(
            (r.pin.as_deref(), r.pin_sha512.as_deref()),
            (Some("c".repeat(64).as_str()), None)
        );
        // Pinned nowhere: the first source of the kind.
        let r = cat
            .resolve("kubelet", &v("1.30.0"), Arch::Amd64, &[SourceKind::Https])
            .unwrap();
        assert!(
            r.url.unwrap().ends_with("server-amd64.tar.gz")
                && r.pin.is_none()
                && r.pin_sha512.is_none()
        );
    }

    #[test]
    fn rpm_closures_put_requirements_first_and_leave_out_what_is_installed() {
        let cat = catalog();
        let names = |v: Vec<&CatalogRpm>| {
            v.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let got = rpm_closure(
            &cat.rpms,
            OsId::Centos7,
            Arch::Amd64,
            &["keepalived".into()],
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(names(got), "lm_sensors-libs net-snmp-libs keepalived");
        let installed = BTreeSet::from(["lm_sensors-libs".to_string()]);
        let got = rpm_closure(
            &cat.rpms,
            OsId::Centos7,
            Arch::Amd64,
            &["keepalived".into()],
            &installed,
        )
        .unwrap();
        assert_eq!(names(got), "net-snmp-libs keepalived");
        // On rocky9 the centos7-only entry does not apply; on arm64 nothing does.
        let err = rpm_closure(
            &cat.rpms,
            OsId::Rocky9,
            Arch::Amd64,
            &["keepalived".into()],
            &BTreeSet::new(),
        )
        .unwrap_err();
        assert_eq!(err, vec!["net-snmp-libs".to_string()]);
        let err = rpm_closure(
            &cat.rpms,
            OsId::Centos7,
            Arch::Arm64,
            &["keepalived".into(), "nginx".into()],
            &BTreeSet::new(),
        )
        .unwrap_err();
        assert_eq!(err, vec!["keepalived".to_string(), "nginx".to_string()]);
    }

    #[test]
    fn bad_rpm_entries_are_refused() {
        for (from, to, want) in [
            ("os = \"centos7\"", "os = \"debian12\"", "not an EL release"),
            (
                "arch = \"x86_64\"\nurl = \"http://127.0.0.1/net",
                "arch = \"amd64\"\nurl = \"http://127.0.0.1/net",
                "expected x86_64",
            ),
            (
                "sha256 = \"0000000000000000000000000000000000000000000000000000000000000002\"",
                "sha256 = \"x\"",
                "64 lowercase hex",
            ),
            (
                "net-snmp-libs-5.7.2-49.el7.x86_64.rpm",
                "net snmp.rpm",
                "plain file name",
            ),
        ] {
            let text = CATALOG.replacen(from, to, 1);
            let err = parse_texts(&text, PINS).unwrap_err();
            assert!(err.to_string().contains(want), "{from}: {err}");
        }
    }

    #[test]
    fn an_unknown_source_kind_is_refused_at_its_key() {
        let text = CATALOG.replacen("kind = \"https\"", "kind = \"ftp\"", 1);
        let err = parse_texts(&text, PINS).unwrap_err();
        assert_eq!(
            err.to_string(),
            "catalog.toml:6:8: error: `artifact.kubelet.source[0].kind`: unknown source kind \"ftp\"; expected one of https, http, file, apt"
        );
    }

    #[test]
    fn a_malformed_pin_is_refused_at_its_key() {
        for bad in [
            "sha256:cc".to_string(),
            format!("md5:{}", "c".repeat(64)),
            format!("sha256:{}", "C".repeat(64)),
            format!("sha512:{}", "c".repeat(64)),
        ] {
            let pins = PINS.replace(&format!("sha256:{}", "c".repeat(64)), &bad);
            let err = parse_texts(CATALOG, &pins).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("pins.toml:5:12: error: `kubelet.amd64.\"1.33.5\"`: {bad:?} is not a pin; expected sha256:<64 lowercase hex digits> or sha512:<128 lowercase hex digits>")
            );
        }
    }
}
