//! `kiln catalog import-checksums`: upstream checksum tables turned into the catalog's pins file.

use std::path::{Path, PathBuf};

use crate::{write_atomic, Error};

/// The pins file made from checksum tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedPins {
    /// The file's text.
    pub body: String,
    /// Number of tables read.
    pub tables: usize,
    /// Number of pins in it.
    pub pins: usize,
}

/// Reads checksum tables and renders the pins file; tables are named by file name only, so the
/// generated header does not depend on where they are.
pub fn import_checksums(tables: &[PathBuf]) -> Result<ImportedPins, Error> {
    let mut texts = Vec::new();
    for t in tables {
        let text = kiln_load::read_text(t).map_err(|e| Error::Io {
            path: t.clone(),
            source: e,
        })?;
        texts.push((
            t.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| t.display().to_string()),
            text,
        ));
    }
    let pins = kiln_spec::pins::import_tables(&texts)?;
    let body = kiln_spec::pins::render(
        &pins,
        &texts.iter().map(|t| t.0.clone()).collect::<Vec<_>>(),
    );
    Ok(ImportedPins {
        body,
        tables: pins.len(),
        pins: pins
            .values()
            .flat_map(|a| a.values())
            .map(|v| v.len())
            .sum(),
    })
}

impl ImportedPins {
    /// Writes the pins file to `path` atomically.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        write_atomic(path, self.body.as_bytes())
    }
}
