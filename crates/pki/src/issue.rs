//! Leaf certificates: the reuse-or-reissue decision and signing.

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
use time::OffsetDateTime;

use kiln_pki_layout::{KeyType, LeafSpec, Lifetimes, San, MODE_PUBLIC, MODE_SECRET};

use crate::authority::{key_usages, Authorities, Ca};
use crate::certinfo::{self, CertInfo};
use crate::error::{PkiError, Result, Unusable};
use crate::keys;
use crate::state::State;

/// A stored leaf certificate and its key.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    /// PEM certificate.
    pub cert_pem: Vec<u8>,
    /// PEM private key.
    pub key_pem: Vec<u8>,
    /// The parsed certificate.
    pub info: CertInfo,
}

/// The stored leaf and its parsed key, or why it cannot be used.
fn load(state: &State, spec: &LeafSpec) -> Result<std::result::Result<(Leaf, KeyPair), Unusable>> {
    let (Some(cert_pem), Some(key_pem)) =
        (state.read(&spec.cert_rel())?, state.read(&spec.key_rel())?)
    else {
        return Ok(Err(Unusable::NotIssued));
    };
    let info = match certinfo::parse_pem(&cert_pem) {
        Ok(i) => i,
        Err(e) => return Ok(Err(Unusable::LeafCert(e))),
    };
    let key = match keys::parse(&key_pem) {
        Ok(k) => k,
        Err(e) => return Ok(Err(Unusable::LeafKey(e))),
    };
    Ok(Ok((
        Leaf {
            cert_pem,
            key_pem,
            info,
        },
        key,
    )))
}

/// The stored leaf for [`crate::table`], or `None` if it was never issued.
pub(crate) fn load_existing(state: &State, spec: &LeafSpec) -> Result<Option<Leaf>> {
    match load(state, spec)? {
        Ok((leaf, _)) => Ok(Some(leaf)),
        Err(_) if state.read(&spec.cert_rel())?.is_none() => Ok(None),
        Err(reason) => Err(PkiError::CorruptState {
            path: state.path(&spec.cert_rel()),
            reason,
        }),
    }
}

/// Why a stored leaf must be re-issued, or `None` if it can be reused byte for byte.
fn stale_reason(
    leaf: &Leaf,
    key: &KeyPair,
    spec: &LeafSpec,
    ca: &Ca,
    key_type: KeyType,
    now: i64,
    renew_before: i64,
) -> Option<String> {
    let info = &leaf.info;
    let kt = keys::key_type_of(key);
    if keys::spki(key) != info.spki {
        return Some("key does not match certificate".into());
    }
    if kt != Some(key_type) {
        return Some(format!("key type is {kt:?}, wanted {key_type:?}"));
    }
    if info.cn != spec.cn || info.orgs != spec.org.iter().cloned().collect::<Vec<_>>() {
        return Some(format!("subject changed (was {})", info.subject));
    }
    if info.sans != spec.sans {
        return Some("subject alternative names changed".into());
    }
    let want_ke = kt == Some(KeyType::Rsa2048);
    if info.is_ca
        || info.ku_cert_sign
        || !info.ku_digital_signature
        || info.ku_key_encipherment != want_ke
        || info.server_auth != spec.server
        || info.client_auth != spec.client
    {
        return Some("key usages changed".into());
    }
    if !certinfo::signed_by(info, &ca.info) {
        return Some(format!("not signed by the current {}", spec.ca.what()));
    }
    if info.not_before.unix_timestamp() > now {
        return Some("notBefore is in the future".into());
    }
    if now + renew_before >= info.not_after.unix_timestamp() {
        return Some("within the renewal window of its notAfter".into());
    }
    None
}

/// Signs a new leaf for `spec` with a fresh key.
fn issue(
    spec: &LeafSpec,
    ca: &Ca,
    key_type: KeyType,
    lifetimes: &Lifetimes,
    now: OffsetDateTime,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let key = keys::generate(key_type, &spec.rel)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    // Go's order (and kubeadm's): O before CN.
    if let Some(org) = &spec.org {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.distinguished_name.push(DnType::CommonName, &spec.cn);
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|s| match s {
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Dns(d) => d.as_str().try_into().map(SanType::DnsName),
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| PkiError::crypto(format!("SANs of {}", spec.rel), e))?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = key_usages(Some(key_type), false);
    if spec.server {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if spec.client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(keys::serial());
    params.not_before = now - lifetimes.backdate;
    // A leaf never outlives its CA.
    params.not_after = (now + lifetimes.leaf).min(ca.info.not_after);
    let cert = params
        .signed_by(&key, &ca.issuer()?)
        .map_err(|e| PkiError::crypto(format!("sign {}", spec.rel), e))?;
    Ok((cert.pem().into_bytes(), keys::to_pem(&key)))
}

/// Returns the stored leaf for `spec` if still right, else issues, stores and returns a new one.
pub(crate) fn ensure(
    state: &State,
    auth: &Authorities,
    spec: &LeafSpec,
    key_type: KeyType,
    lifetimes: &Lifetimes,
    now: OffsetDateTime,
    written: &mut Vec<String>,
) -> Result<Leaf> {
    let ca = auth.ca(spec.ca);
    let renew = i64::try_from(lifetimes.renew_before.as_secs()).unwrap_or(i64::MAX / 2);
    let reason = match load(state, spec)? {
        Ok((leaf, key)) => {
            match stale_reason(&leaf, &key, spec, ca, key_type, now.unix_timestamp(), renew) {
                None => {
                    tracing::debug!(cert = %spec.cert_rel(), "reusing");
                    return Ok(leaf);
                }
                Some(r) => r,
            }
        }
        Err(r) => r.to_string(),
    };
    tracing::info!(cert = %spec.cert_rel(), %reason, "issuing");
    let (cert_pem, key_pem) = issue(spec, ca, key_type, lifetimes, now)?;
    let info = certinfo::parse_pem(&cert_pem).map_err(|e| PkiError::CorruptState {
        path: state.path(&spec.cert_rel()),
        reason: Unusable::LeafCert(e),
    })?;
    // Key first: a crash in between leaves a mismatched pair, which the next run re-issues.
    state.write(&spec.key_rel(), &key_pem, MODE_SECRET)?;
    state.write(&spec.cert_rel(), &cert_pem, MODE_PUBLIC)?;
    written.extend([spec.key_rel(), spec.cert_rel()]);
    Ok(Leaf {
        cert_pem,
        key_pem,
        info,
    })
}
