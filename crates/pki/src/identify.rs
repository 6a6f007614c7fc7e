//! Telling certificates apart from their bytes alone (serial, fingerprint), for `kiln diff`'s
//! report of which certificates a build reissued.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::certinfo::parse_pem;
use crate::error::CertError;
use crate::table::CertTime;

/// Who a certificate is and which issuance it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CertIdentity {
    /// Subject, e.g. `CN=etcd1`.
    pub subject: String,
    /// Serial number, lowercase hex without separators.
    pub serial: String,
    /// sha256 of the DER encoding, lowercase hex (what `openssl x509 -fingerprint -sha256` shows).
    pub sha256_fingerprint: String,
    /// notAfter.
    pub not_after: CertTime,
}

/// The identity of a single PEM certificate.
pub fn identify_pem(pem: &[u8]) -> Result<CertIdentity, CertError> {
    let info = parse_pem(pem)?;
    let (_, cert) = X509Certificate::from_der(&info.der).map_err(CertError::Der)?;
    let serial: String = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fingerprint = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &info.der);
    let sha256_fingerprint: String = fingerprint
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(CertIdentity {
        subject: info.subject,
        serial,
        sha256_fingerprint,
        not_after: CertTime::from_unix(info.not_after.unix_timestamp())
            .expect("a certificate's notAfter is a valid time"),
    })
}

/// The identity of a kubeconfig's client certificate (`client-certificate-data`), `None` when
/// it has none (a token kubeconfig).
pub fn identify_kubeconfig(text: &[u8]) -> Option<Result<CertIdentity, CertError>> {
    let text = std::str::from_utf8(text).ok()?;
    let data = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("client-certificate-data:"))?;
    Some(
        STANDARD
            .decode(data.trim())
            .map_err(|_| CertError::NotBase64)
            .and_then(|pem| identify_pem(&pem)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_kubeconfig_has_no_certificate_and_bad_data_is_an_error() {
        assert!(identify_kubeconfig(b"users:\n- name: x\n  user:\n    token: \"t\"\n").is_none());
        assert!(matches!(
            identify_kubeconfig(b"    client-certificate-data: !!notbase64\n"),
            Some(Err(CertError::NotBase64))
        ));
    }
}
