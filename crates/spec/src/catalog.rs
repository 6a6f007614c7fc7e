//! The catalog: where each artifact comes from, and the table of known upstream pins.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::diag::{from_toml_error, Diagnostic};
use crate::model::{Arch, SourceKind};

/// catalog.toml as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Catalog {
    /// Artifacts by name.
    #[serde(default)]
    pub artifact: BTreeMap<String, CatalogArtifact>,
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
    pub kind: String,
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

/// Known pins: table → arch → version → `sha256:<hex>` (or `sha512:<hex>`, which `lock` cannot use as a store key yet).
pub type Pins = BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>;

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
    /// Upstream checksum file URL.
    pub checksum_url: Option<String>,
}

/// Parses catalog.toml and pins.toml texts.
pub fn parse(file: &Path, text: &str, pins_file: &Path, pins_text: Option<&str>) -> Result<Catalog, Diagnostic> {
    let mut cat: Catalog = toml::from_str(text).map_err(|e| from_toml_error(file, text, &e))?;
    if let Some(p) = pins_text {
        cat.pins = toml::from_str(p).map_err(|e| from_toml_error(pins_file, p, &e))?;
    }
    for (name, a) in &cat.artifact {
        for (i, s) in a.sources.iter().enumerate() {
            let key = format!("artifact.{name}.source[{i}]");
            let err = |m: String| Diagnostic::error(file, text, None).key(key.clone()).msg(m);
            let kind = SourceKind::parse(&s.kind).ok_or_else(|| err(format!("unknown source kind {:?}; expected one of {}", s.kind, SourceKind::NAMES.join(", "))))?;
            let needs = match kind {
                SourceKind::Https | SourceKind::Http => ("url", s.url.is_some()),
                SourceKind::File => ("path", s.path.is_some()),
                SourceKind::Apt => ("package", s.package.is_some()),
            };
            if !needs.1 {
                return Err(err(format!("a {} source needs `{}`", s.kind, needs.0)));
            }
            let archive = s.archive.as_deref().unwrap_or(if kind == SourceKind::Apt { "deb" } else { "raw" });
            if !["raw", "tar.gz", "tar", "deb"].contains(&archive) {
                return Err(err(format!("unknown archive {archive:?}; expected raw, tar.gz, tar or deb")));
            }
            if archive != "raw" && s.member.is_none() {
                return Err(err(format!("an archive of kind {archive} needs `member`: the file to take out of it")));
            }
            if let Some(t) = &s.pins {
                if !cat.pins.contains_key(t) {
                    return Err(err(format!("pins table {t:?} is not in {}", pins_file.display())));
                }
            }
        }
    }
    Ok(cat)
}

fn subst(t: &str, version: &str, arch: Arch) -> String {
    t.replace("{version}", version).replace("{arch}", arch.as_str())
}

impl Catalog {
    /// Picks the first source in `prefs` order that the artifact has, and fills in its templates.
    pub fn resolve(&self, name: &str, versions: &BTreeMap<String, String>, arch: Arch, prefs: &[SourceKind]) -> Result<Resolved, String> {
        let a = self.artifact.get(name).ok_or_else(|| format!("artifact {name:?} is not in the catalog"))?;
        let version = versions.get(&a.version).ok_or_else(|| format!("artifact {name:?} needs `versions.{}` in cluster.toml", a.version))?;
        let (kind, src) = prefs
            .iter()
            .find_map(|k| a.sources.iter().find(|s| SourceKind::parse(&s.kind) == Some(*k)).map(|s| (*k, s)))
            .ok_or_else(|| {
                let have: Vec<&str> = a.sources.iter().map(|s| s.kind.as_str()).collect();
                format!("artifact {name:?} has sources [{}] but cluster.toml allows only [{}]", have.join(", "), prefs.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
            })?;
        let pin = src.pins.as_ref().and_then(|t| self.pins.get(t)?.get(arch.as_str())?.get(version)).and_then(|p| p.strip_prefix("sha256:")).map(str::to_string);
        let url = match kind {
            SourceKind::Https | SourceKind::Http => src.url.as_ref().map(|u| subst(u, version, arch)),
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
            archive: src.archive.clone().unwrap_or_else(|| if kind == SourceKind::Apt { "deb".into() } else { "raw".into() }),
            member: src.member.as_ref().map(|m| subst(m, version, arch)),
            pin,
            checksum_url: src.checksum_url.as_ref().map(|u| subst(u, version, arch)),
        })
    }
}

impl Resolved {
    /// Whether `kiln lock` can pin this without guessing: a known pin, a checksum file, apt's index, or a local file.
    pub fn has_checksum_source(&self) -> bool {
        self.pin.is_some() || self.checksum_url.is_some() || matches!(self.kind, SourceKind::Apt | SourceKind::File)
    }
}

/// Converts kubespray's checksums YAML (`<component>_checksums: {arch: {version: "sha256:hex"}}`) into pins.
/// The input is simple block YAML; this reads exactly that shape and rejects anything else.
pub fn import_checksums_yaml(text: &str) -> Result<Pins, String> {
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
        let (k, v) = body.split_once(':').ok_or_else(|| format!("line {n}: expected `key: value`"))?;
        let k = k.trim().trim_matches('"').trim_matches('\'').to_string();
        let v = v.trim().trim_matches('"').trim_matches('\'');
        match indent {
            0 => {
                table = Some(k.strip_suffix("_checksums").ok_or_else(|| format!("line {n}: top-level key {k:?} does not end in _checksums"))?.to_string());
                arch = None;
            }
            2 => arch = Some(k),
            4 => {
                let (Some(t), Some(a)) = (&table, &arch) else {
                    return Err(format!("line {n}: version outside a table/arch"));
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
                    _ => return Err(format!("line {n}: unknown digest {algo:?} (expected sha256 or sha512)")),
                };
                if hex.len() != len || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("line {n}: {v:?} is not a {algo} digest"));
                }
                pins.entry(t.clone()).or_default().entry(a.clone()).or_default().insert(k, format!("{algo}:{}", hex.to_ascii_lowercase()));
            }
            _ => return Err(format!("line {n}: unexpected indentation {indent}")),
        }
    }
    Ok(pins)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_kubespray_shape() {
        let y = "---\netcd_binary_checksums:\n  amd64:\n    3.5.21: sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n    3.5.0: 0\n  arm64:\n    3.5.21: \"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\n";
        let p = import_checksums_yaml(y).unwrap();
        assert_eq!(p["etcd_binary"]["amd64"]["3.5.21"], format!("sha256:{}", "a".repeat(64)));
        assert!(!p["etcd_binary"]["amd64"].contains_key("3.5.0"));
        assert_eq!(p["etcd_binary"]["arm64"].len(), 1);
        assert!(import_checksums_yaml("x_checksums:\n  amd64:\n    1.0: sha256:zz\n").is_err());
        assert!(import_checksums_yaml("nope:\n").is_err());
    }
}
