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

/// Seconds since the epoch of an RFC 3339 UTC time as the PKI writes it (`2027-11-22T00:17:20Z`).
pub fn rfc3339_epoch(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // Days from civil (Howard Hinnant's algorithm), proleptic Gregorian.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The earliest notAfter of a host's certificates, in epoch seconds: install.sh refuses to
/// install when the host's clock is past it.
pub fn host_not_after(pki: &PkiOutput, host: &str) -> Option<i64> {
    pki.table
        .iter()
        .filter(|r| r.host == host)
        .filter_map(|r| rfc3339_epoch(&r.not_after))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_to_epoch() {
        assert_eq!(rfc3339_epoch("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_epoch("2000-03-01T00:00:00Z"), Some(951_868_800));
        assert_eq!(rfc3339_epoch("2027-11-22T00:17:20Z"), Some(1_826_842_640));
        assert_eq!(rfc3339_epoch("2027-11-22 00:17:20"), None);
    }
}
