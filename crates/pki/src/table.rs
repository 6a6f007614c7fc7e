//! The certificate table for `kiln certs` and `--check-expiry`.

use time::OffsetDateTime;

use crate::certinfo::CertInfo;

const DAY: i64 = 24 * 60 * 60;

/// One certificate a host receives (a `.crt` file or a kubeconfig's embedded client certificate).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertRow {
    /// Host name.
    pub host: String,
    /// Absolute path on the host (`.crt` or kubeconfig).
    pub file: String,
    /// Subject, e.g. `O=system:masters, CN=kubernetes-admin`.
    pub subject: String,
    /// Subject alternative names, `DNS:name` or `IP:address`, sorted.
    pub sans: Vec<String>,
    /// notAfter in RFC 3339 UTC, e.g. `2027-03-01T12:00:00Z`.
    pub not_after: String,
    /// Whole days from now until notAfter (negative once expired).
    pub days_left: i64,
}

impl CertRow {
    /// Whether the certificate expires within `days` days from the table's "now".
    pub fn expires_within(&self, days: i64) -> bool {
        self.days_left < days
    }
}

/// RFC 3339 UTC with second precision.
fn rfc3339(unix: i64) -> String {
    match OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

/// The row of `info` placed at `file` on `host`, as seen at `now` (Unix seconds).
pub(crate) fn row(host: &str, file: &str, info: &CertInfo, now: i64) -> CertRow {
    CertRow {
        host: host.to_string(),
        file: file.to_string(),
        subject: info.subject.clone(),
        sans: info.sans.iter().map(ToString::to_string).collect(),
        not_after: rfc3339(info.not_after),
        days_left: (info.not_after - now).div_euclid(DAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_counts_days() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let mk = |days_left| CertRow {
            host: "h".into(),
            file: "f".into(),
            subject: String::new(),
            sans: vec![],
            not_after: String::new(),
            days_left,
        };
        assert!(mk(29).expires_within(30));
        assert!(!mk(30).expires_within(30));
        assert!(mk(-1).expires_within(0));
    }
}
