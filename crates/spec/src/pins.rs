//! catalog/pins.toml: converting upstream checksum tables into pins, merging them, and
//! writing the file (so the file can always be regenerated, never hand-edited).

use std::collections::BTreeMap;

use crate::catalog::{import_checksums_yaml, Pins};
use crate::kinds::Pin;

/// Header of the TSV of Kubernetes release tarball digests.
const TSV_HEADER: &str = "version\tfile\tsha512";

/// What is wrong with one upstream checksum table (lines are 1-based).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// The release TSV does not start with its header.
    #[error("line 1: expected the header {TSV_HEADER:?}")]
    Header,
    /// A TSV row does not have three columns.
    #[error("line {line}: expected 3 tab-separated columns, found {found}")]
    Columns {
        /// The line.
        line: usize,
        /// Columns found.
        found: usize,
    },
    /// A TSV row's version is not a release version.
    #[error("line {line}: {value:?} is not a release version such as 1.34.2")]
    Version {
        /// The line.
        line: usize,
        /// The version column.
        value: String,
    },
    /// A TSV row's file is not a Kubernetes release tarball.
    #[error("line {line}: {value:?} is not kubernetes-{{server,node,client}}-linux-{{amd64,arm64}}.tar.gz")]
    ReleaseFile {
        /// The line.
        line: usize,
        /// The file column.
        value: String,
    },
    /// A TSV row's digest is not a sha512.
    #[error("line {line}: {value:?} is not a sha512 (128 hex digits)")]
    Sha512 {
        /// The line.
        line: usize,
        /// The digest column.
        value: String,
    },
    /// The same release file and version appear twice with different digests.
    #[error("line {line}: {file} {version} is listed twice with different digests")]
    Twice {
        /// The line of the second entry.
        line: usize,
        /// The release file.
        file: String,
        /// Its version.
        version: String,
    },
    /// A YAML line is not `key: value`.
    #[error("line {line}: expected `key: value`")]
    NotKeyValue {
        /// The line.
        line: usize,
    },
    /// A YAML top-level key is not `<component>_checksums`.
    #[error("line {line}: top-level key {key:?} does not end in _checksums")]
    TopLevelKey {
        /// The line.
        line: usize,
        /// The key.
        key: String,
    },
    /// A YAML version line comes before its table and arch.
    #[error("line {line}: version outside a table/arch")]
    Orphan {
        /// The line.
        line: usize,
    },
    /// A YAML digest names an algorithm other than sha256 and sha512.
    #[error("line {line}: unknown digest {algo:?} (expected sha256 or sha512)")]
    Algorithm {
        /// The line.
        line: usize,
        /// The algorithm named.
        algo: String,
    },
    /// A YAML digest has the wrong length or non-hex digits.
    #[error("line {line}: {value:?} is not a {algo} digest")]
    Digest {
        /// The line.
        line: usize,
        /// The value as written.
        value: String,
        /// The algorithm it claims.
        algo: String,
    },
    /// A YAML line is indented other than 0, 2 or 4 spaces.
    #[error("line {line}: unexpected indentation {indent}")]
    Indentation {
        /// The line.
        line: usize,
        /// Its indentation.
        indent: usize,
    },
    /// Two tables pin the same table, arch and version differently.
    #[error("{key}: {old} and {new} disagree")]
    Disagree {
        /// `table.arch.version`.
        key: String,
        /// The pin already merged.
        old: Box<Pin>,
        /// The pin that disagrees.
        new: Box<Pin>,
    },
}

/// An upstream checksum table could not be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {source}")]
pub struct ImportError {
    /// The table's file name.
    pub name: String,
    /// What is wrong in it.
    pub source: TableError,
}

/// Converts the table of Kubernetes release tarball digests (`version`, `file`, `sha512`
/// columns; files `kubernetes-{server,node,client}-linux-{arch}.tar.gz`) into pins:
/// table `kubernetes_{server,node,client}` → arch → version → `sha512:<hex>`.
pub fn import_release_sha512_tsv(text: &str) -> Result<Pins, TableError> {
    let mut pins: Pins = BTreeMap::new();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.trim_end() == TSV_HEADER => {}
        _ => return Err(TableError::Header),
    }
    for (n, line) in lines {
        let n = n + 1;
        let cols: Vec<&str> = line.trim_end().split('\t').collect();
        let [version, file, hex] = cols.as_slice() else {
            return Err(TableError::Columns {
                line: n,
                found: cols.len(),
            });
        };
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(TableError::Version {
                line: n,
                value: version.to_string(),
            });
        }
        let (kind, arch) = file
            .strip_prefix("kubernetes-")
            .and_then(|f| f.strip_suffix(".tar.gz"))
            .and_then(|f| f.split_once("-linux-"))
            .filter(|(k, a)| {
                ["server", "node", "client"].contains(k) && ["amd64", "arm64"].contains(a)
            })
            .ok_or_else(|| TableError::ReleaseFile {
                line: n,
                value: file.to_string(),
            })?;
        let not_sha512 = || TableError::Sha512 {
            line: n,
            value: hex.to_string(),
        };
        if hex.len() != 128 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(not_sha512());
        }
        let value = Pin::from_hex("sha512", hex).map_err(|_| not_sha512())?;
        let slot = pins
            .entry(format!("kubernetes_{kind}"))
            .or_default()
            .entry(arch.to_string())
            .or_default();
        if let Some(old) = slot.insert(version.to_string(), value.clone()) {
            if old != value {
                return Err(TableError::Twice {
                    line: n,
                    file: file.to_string(),
                    version: version.to_string(),
                });
            }
        }
    }
    Ok(pins)
}

/// Converts one upstream table, recognised by its content: the Kubernetes release TSV
/// (see [`import_release_sha512_tsv`]) or kubespray's checksums YAML.
pub fn import_table(text: &str) -> Result<Pins, TableError> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.starts_with("version\t") {
        import_release_sha512_tsv(text)
    } else {
        import_checksums_yaml(text)
    }
}

/// Adds `from` to `into`; the same table, arch and version with a different pin is an error.
pub fn merge(into: &mut Pins, from: Pins) -> Result<(), TableError> {
    for (table, arches) in from {
        for (arch, versions) in arches {
            let slot = into
                .entry(table.clone())
                .or_default()
                .entry(arch.clone())
                .or_default();
            for (version, pin) in versions {
                match slot.get(&version) {
                    Some(old) if *old != pin => {
                        return Err(TableError::Disagree {
                            key: format!("{table}.{arch}.{version}"),
                            old: Box::new(old.clone()),
                            new: Box::new(pin),
                        })
                    }
                    _ => {
                        slot.insert(version, pin);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Converts and merges upstream tables given as (file name, text), in order.
pub fn import_tables(tables: &[(String, String)]) -> Result<Pins, ImportError> {
    let mut pins = Pins::new();
    for (name, text) in tables {
        let in_table = |source| ImportError {
            name: name.clone(),
            source,
        };
        let one = import_table(text).map_err(in_table)?;
        merge(&mut pins, one).map_err(in_table)?;
    }
    Ok(pins)
}

/// pins.toml's text: a header naming the tables it came from, then the pins.
pub fn render(pins: &Pins, sources: &[String]) -> String {
    let body = toml::to_string(pins).expect("pins serialise");
    format!(
        "# Generated by `kiln catalog import-checksums {}`; do not edit.\n{body}",
        sources.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn release_tsv_becomes_sha512_pins_per_tarball_kind() {
        let t = format!("version\tfile\tsha512\n1.34.0\tkubernetes-server-linux-amd64.tar.gz\t{}\n1.34.0\tkubernetes-node-linux-arm64.tar.gz\t{A}\n", A.to_uppercase());
        let p = import_table(&t).unwrap();
        assert_eq!(
            p["kubernetes_server"]["amd64"]["1.34.0"].to_string(),
            format!("sha512:{A}")
        );
        assert_eq!(
            p["kubernetes_node"]["arm64"]["1.34.0"].to_string(),
            format!("sha512:{A}")
        );
        assert!(import_release_sha512_tsv(
            "version\tfile\tsha512\n1.34.0\tkubernetes-src.tar.gz\tab\n"
        )
        .unwrap_err()
        .to_string()
        .contains("line 2"));
        assert!(import_release_sha512_tsv("v\tf\n").is_err());
        assert!(import_release_sha512_tsv(&format!(
            "version\tfile\tsha512\n1.34.0\tkubernetes-server-linux-amd64.tar.gz\t{}\n",
            &A[1..]
        ))
        .is_err());
    }

    #[test]
    fn merging_refuses_disagreeing_pins() {
        let tsv =
            format!("version\tfile\tsha512\n1.34.0\tkubernetes-server-linux-amd64.tar.gz\t{A}\n");
        let yaml = format!(
            "kubernetes_server_checksums:\n  amd64:\n    1.34.0: sha512:{}\n",
            "b".repeat(128)
        );
        let err =
            import_tables(&[("a.tsv".into(), tsv.clone()), ("b.yml".into(), yaml)]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("b.yml: kubernetes_server.amd64.1.34.0"),
            "{err}"
        );
        assert!(matches!(err.source, TableError::Disagree { .. }));
        let same = import_tables(&[("a.tsv".into(), tsv.clone()), ("a2.tsv".into(), tsv)]).unwrap();
        assert_eq!(same["kubernetes_server"]["amd64"].len(), 1);
        assert!(render(&same, &["a.tsv".into()])
            .starts_with("# Generated by `kiln catalog import-checksums a.tsv`"));
    }
}
