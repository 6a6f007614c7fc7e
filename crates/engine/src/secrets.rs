//! The cluster PKI at build time, and each host's secrets archive.

use std::path::Path;

use sha2::{Digest, Sha256};

use kiln_pki::{PkiOptions, PkiOutput, SystemClock};
use kiln_plan::Plan;
use kiln_spec::Project;

use crate::{io_err, Error};

/// Creates or reuses the PKI state beside cluster.toml (the signing key included) and returns
/// every host's secret files (for `kiln certs`, which needs no full plan).
pub fn ensure_pki(project: &Project, rotate_ca: bool) -> Result<PkiOutput, Error> {
    let input = kiln_plan::certs::pki_input(project);
    // The build signing key is PKI state like the CAs: `kiln certs` makes it too, so a state
    // made by certs and copied elsewhere signs builds the same way.
    kiln_pki::ensure_signing_key(&project.cluster.paths.pki)?;
    Ok(kiln_pki::ensure(
        &project.cluster.paths.pki,
        &input,
        &SystemClock,
        &PkiOptions { rotate_ca },
    )?)
}

/// Creates or reuses the PKI state in `state_dir` for the plan's PKI layout (a build's, built
/// once by the plan) and returns every host's secret files.
pub fn ensure_planned(plan: &Plan, state_dir: &Path, rotate_ca: bool) -> Result<PkiOutput, Error> {
    Ok(kiln_pki::ensure_layout(
        state_dir,
        &plan.pki,
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

/// The earliest notAfter of a host's certificates, in epoch seconds: install.sh refuses to
/// install when the host's clock is past it.
pub fn host_not_after(pki: &PkiOutput, host: &str) -> Option<i64> {
    pki.table
        .iter()
        .filter(|r| r.host == host)
        .map(|r| r.not_after.unix_timestamp())
        .min()
}

/// The latest notBefore of a host's certificates, in epoch seconds: install.sh refuses to
/// install when the host's clock is before it (a dead RTC, a clock never set).
pub fn host_not_before(pki: &PkiOutput, host: &str) -> Option<i64> {
    pki.table
        .iter()
        .filter(|r| r.host == host)
        .map(|r| r.not_before.unix_timestamp())
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_pki::{CertRow, CertTime};

    fn row(host: &str, not_after: i64) -> CertRow {
        CertRow {
            host: host.into(),
            file: format!("/etc/kubernetes/pki/{not_after}.crt"),
            subject: String::new(),
            sans: Vec::new(),
            not_after: CertTime::from_unix(not_after).unwrap(),
            // Issued a year before it expires.
            not_before: CertTime::from_unix(not_after - 31_536_000).unwrap(),
            days_left: 0,
        }
    }

    #[test]
    fn host_not_after_is_the_earliest_of_its_certificates() {
        let pki = PkiOutput {
            hosts: Default::default(),
            table: vec![row("a", 1_826_842_640), row("a", 951_868_800), row("b", 0)],
            written: Vec::new(),
        };
        assert_eq!(host_not_after(&pki, "a"), Some(951_868_800));
        assert_eq!(host_not_after(&pki, "b"), Some(0));
        assert_eq!(host_not_after(&pki, "lb1"), None);
        assert_eq!(host_not_before(&pki, "a"), Some(1_826_842_640 - 31_536_000));
        assert_eq!(host_not_before(&pki, "lb1"), None);
    }
}
