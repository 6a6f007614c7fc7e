//! The cluster PKI at build time, and each host's secrets archive.

use std::path::Path;

use sha2::{Digest, Sha256};

use kiln_pki::{PkiOptions, PkiOutput, SystemClock};
use kiln_spec::Project;

use crate::{io_err, Error};

/// Creates or reuses the PKI state beside cluster.toml and returns every host's secret files.
pub fn ensure_pki(project: &Project, rotate_ca: bool) -> Result<PkiOutput, Error> {
    let input = kiln_plan::certs::pki_input(project);
    Ok(kiln_pki::ensure(
        &project.cluster.paths.pki,
        &input,
        &SystemClock,
        &PkiOptions { rotate_ca },
    )?)
}

/// A digest of every file in the PKI state (names and bytes), so a changed CA or leaf changes the build id.
pub fn state_digest(dir: &Path) -> Result<String, Error> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Io { path: d, source: e }),
        };
        for e in rd {
            let e = e.map_err(io_err(&d))?;
            let p = e.path();
            if e.file_type().map_err(io_err(&p))?.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut h = Sha256::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(io_err(&f))?;
        h.update(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        h.update([0]);
        h.update(Sha256::digest(&bytes));
    }
    Ok(hex::encode(h.finalize()))
}
