//! Reading certificates back (subject, SANs, usages, validity, key ids) for reuse decisions and the table.

use std::collections::BTreeSet;
use std::net::IpAddr;

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::CertError;
use kiln_pki_layout::San;
use time::OffsetDateTime;

/// What kiln needs to know about a stored certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// DER encoding.
    pub der: Vec<u8>,
    /// Subject common name.
    pub cn: String,
    /// Subject organisations, sorted.
    pub orgs: Vec<String>,
    /// Subject as `CN=..., O=...`.
    pub subject: String,
    /// Subject alternative names.
    pub sans: BTreeSet<San>,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// keyUsage digitalSignature.
    pub ku_digital_signature: bool,
    /// keyUsage keyEncipherment.
    pub ku_key_encipherment: bool,
    /// keyUsage keyCertSign.
    pub ku_cert_sign: bool,
    /// extendedKeyUsage serverAuth.
    pub server_auth: bool,
    /// extendedKeyUsage clientAuth.
    pub client_auth: bool,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// Subject key identifier.
    pub ski: Option<Vec<u8>>,
    /// Authority key identifier (key id part).
    pub aki: Option<Vec<u8>>,
}

/// Parses a single PEM certificate.
pub(crate) fn parse_pem(pem: &[u8]) -> Result<CertInfo, CertError> {
    let (rest, block) = x509_parser::pem::parse_x509_pem(pem).map_err(CertError::Pem)?;
    if block.label != "CERTIFICATE" {
        return Err(CertError::Label(block.label));
    }
    if !rest.iter().all(u8::is_ascii_whitespace) {
        return Err(CertError::Trailing);
    }
    parse_der(&block.contents)
}

/// Parses a DER certificate.
pub(crate) fn parse_der(der: &[u8]) -> Result<CertInfo, CertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(CertError::Der)?;
    let attr = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let cn = attr(&mut cert.subject().iter_common_name())
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut orgs = attr(&mut cert.subject().iter_organization());
    orgs.sort();
    let mut info = CertInfo {
        der: der.to_vec(),
        subject: cert.subject().to_string(),
        cn,
        orgs,
        sans: BTreeSet::new(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca: false,
        ku_digital_signature: false,
        ku_key_encipherment: false,
        ku_cert_sign: false,
        server_auth: false,
        client_auth: false,
        spki: cert.public_key().raw.to_vec(),
        ski: None,
        aki: None,
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => {
                            info.sans.insert(San::Dns(d.to_ascii_lowercase()));
                        }
                        GeneralName::IPAddress(b) => {
                            let ip = match b.len() {
                                4 => IpAddr::from(<[u8; 4]>::try_from(*b).expect("4 bytes")),
                                16 => IpAddr::from(<[u8; 16]>::try_from(*b).expect("16 bytes")),
                                n => return Err(CertError::IpSan(n)),
                            };
                            info.sans.insert(San::Ip(ip));
                        }
                        // A SAN kiln never writes: make the certificate differ from any spec.
                        other => {
                            info.sans.insert(San::Dns(format!("unsupported:{other:?}")));
                        }
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => info.is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => {
                info.ku_digital_signature = ku.digital_signature();
                info.ku_key_encipherment = ku.key_encipherment();
                info.ku_cert_sign = ku.key_cert_sign();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                info.server_auth = eku.server_auth;
                info.client_auth = eku.client_auth;
            }
            ParsedExtension::SubjectKeyIdentifier(id) => info.ski = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                info.aki = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Whether `cert` names `ca` as issuer and carries a valid signature by `ca`'s key.
pub(crate) fn signed_by(cert: &CertInfo, ca: &CertInfo) -> bool {
    let (Ok((_, c)), Ok((_, issuer))) = (
        X509Certificate::from_der(&cert.der),
        X509Certificate::from_der(&ca.der),
    ) else {
        return false;
    };
    c.issuer().as_raw() == issuer.subject().as_raw()
        && (cert.aki.is_none() || cert.aki == ca.ski)
        && c.verify_signature(Some(issuer.public_key())).is_ok()
}
