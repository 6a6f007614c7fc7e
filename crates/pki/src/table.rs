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
    /// notAfter; shown and serialised in RFC 3339 UTC, e.g. `2027-03-01T12:00:00Z`.
    pub not_after: CertTime,
    /// notBefore, for install.sh's clock check (`KILN_NOT_BEFORE`); not in the table.
    #[serde(skip)]
    pub not_before: CertTime,
    /// Whole days from now until notAfter (negative once expired).
    pub days_left: i64,
}

impl CertRow {
    /// Whether the certificate expires within `days` days from the table's "now".
    pub fn expires_within(&self, days: i64) -> bool {
        self.days_left < days
    }
}

/// A certificate time (X.509 has whole seconds), kept typed from the certificate to the table;
/// it displays and serialises as RFC 3339 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertTime(OffsetDateTime);

impl CertTime {
    /// The time of `unix` seconds since the epoch.
    pub fn from_unix(unix: i64) -> Option<CertTime> {
        OffsetDateTime::from_unix_timestamp(unix).ok().map(CertTime)
    }

    /// Seconds since the epoch.
    pub fn unix_timestamp(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// The time itself.
    pub fn datetime(self) -> OffsetDateTime {
        self.0
    }
}

impl std::fmt::Display for CertTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        let s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        // `pad`: the table aligns its columns with widths.
        f.pad(&s)
    }
}

impl serde::Serialize for CertTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The row of `info` placed at `file` on `host`, as seen at `now` (Unix seconds).
pub(crate) fn row(host: &str, file: &str, info: &CertInfo, now: i64) -> CertRow {
    CertRow {
        host: host.to_string(),
        file: file.to_string(),
        subject: info.subject.clone(),
        sans: info.sans.iter().map(ToString::to_string).collect(),
        not_after: CertTime(info.not_after),
        not_before: CertTime(info.not_before),
        days_left: (info.not_after.unix_timestamp() - now).div_euclid(DAY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_counts_days() {
        let t = |unix| CertTime::from_unix(unix).unwrap().to_string();
        assert_eq!(t(0), "1970-01-01T00:00:00Z");
        assert_eq!(t(1_700_000_000), "2023-11-14T22:13:20Z");
        let padded = format!("{:<22}|", CertTime::from_unix(0).unwrap());
        assert_eq!(padded, "1970-01-01T00:00:00Z  |");
        let json = serde_json::to_string(&CertTime::from_unix(0).unwrap()).unwrap();
        assert_eq!(json, "\"1970-01-01T00:00:00Z\"");
        let mk = |days_left| CertRow {
            host: "h".into(),
            file: "f".into(),
            subject: String::new(),
            sans: vec![],
            not_after: CertTime::from_unix(0).unwrap(),
            not_before: CertTime::from_unix(0).unwrap(),
            days_left,
        };
        assert!(mk(29).expires_within(30));
        assert!(!mk(30).expires_within(30));
        assert!(mk(-1).expires_within(0));
    }
}
