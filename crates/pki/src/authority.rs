//! The long-lived key material: cluster, etcd and front-proxy CAs and the service-account key pair.

use std::collections::BTreeMap;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use time::OffsetDateTime;

use crate::certinfo::{self, CertInfo};
use crate::error::{PkiError, Result, Unusable};
use kiln_pki_layout::{CaId, KeyType, PkiInput, ISSUED, MODE_PUBLIC, MODE_SECRET};

use crate::clock::PkiOptions;
use crate::keys;
use crate::state::State;

/// A loaded CA: its certificate, key and parsed certificate.
pub(crate) struct Ca {
    /// PEM certificate, exactly as stored.
    pub cert_pem: Vec<u8>,
    /// PEM private key, exactly as stored.
    pub key_pem: Vec<u8>,
    /// The parsed certificate.
    pub info: CertInfo,
    key: KeyPair,
}

impl Ca {
    /// An rcgen issuer for signing leaves (subject and key id taken from the stored certificate).
    pub(crate) fn issuer(&self) -> Result<Issuer<'_, &KeyPair>> {
        Issuer::from_ca_cert_der(&self.info.der.clone().into(), &self.key)
            .map_err(|e| PkiError::crypto("load CA certificate for signing", e))
    }
}

/// The service-account signing key pair (`sa.key`, `sa.pub`).
pub(crate) struct SaKeys {
    /// PEM private key.
    pub key_pem: Vec<u8>,
    /// PEM public key (SubjectPublicKeyInfo).
    pub pub_pem: Vec<u8>,
}

/// All long-lived key material of the cluster.
pub(crate) struct Authorities {
    cas: BTreeMap<CaId, Ca>,
    /// The service-account key pair.
    pub sa: SaKeys,
}

impl Authorities {
    /// The CA `id`.
    pub(crate) fn ca(&self, id: CaId) -> &Ca {
        &self.cas[&id]
    }
}

/// The CA's key material if usable, or why not.
fn load_ca(state: &State, id: CaId) -> Result<std::result::Result<Ca, Unusable>> {
    let cert_pem = state.read(id.cert_rel())?;
    let key_pem = state.read(id.key_rel())?;
    let (cert_pem, key_pem) = match (cert_pem, key_pem) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => return Ok(Err(Unusable::Absent)),
        (None, Some(_)) => return Ok(Err(Unusable::Missing(id.cert_rel().to_string()))),
        (Some(_), None) => return Ok(Err(Unusable::Missing(id.key_rel().to_string()))),
    };
    let info = match certinfo::parse_pem(&cert_pem) {
        Ok(i) => i,
        Err(source) => {
            return Ok(Err(Unusable::Cert {
                file: id.cert_rel().to_string(),
                source,
            }))
        }
    };
    let key = match keys::parse(&key_pem) {
        Ok(k) => k,
        Err(source) => {
            return Ok(Err(Unusable::Key {
                file: id.key_rel().to_string(),
                source,
            }))
        }
    };
    if keys::spki(&key) != info.spki {
        return Ok(Err(Unusable::Mismatch {
            key: id.key_rel().to_string(),
            cert: id.cert_rel().to_string(),
        }));
    }
    if !info.is_ca || !info.ku_cert_sign {
        return Ok(Err(Unusable::NotCa(id.cert_rel().to_string())));
    }
    Ok(Ok(Ca {
        cert_pem,
        key_pem,
        info,
        key,
    }))
}

/// The service-account key pair if usable, or why not.
fn load_sa(state: &State) -> Result<std::result::Result<(KeyPair, Vec<u8>), Unusable>> {
    match state.read("sa.key")? {
        None => Ok(Err(Unusable::NoFile("sa.key"))),
        Some(pem) => Ok(keys::parse(&pem)
            .map(|k| (k, pem))
            .map_err(|source| Unusable::Key {
                file: "sa.key".into(),
                source,
            })),
    }
}

/// Key usages of a certificate with a key of type `kt`: keyEncipherment only makes sense for RSA.
pub(crate) fn key_usages(kt: Option<KeyType>, ca: bool) -> Vec<KeyUsagePurpose> {
    let mut ku = vec![KeyUsagePurpose::DigitalSignature];
    if kt == Some(KeyType::Rsa2048) {
        ku.push(KeyUsagePurpose::KeyEncipherment);
    }
    if ca {
        ku.push(KeyUsagePurpose::KeyCertSign);
    }
    ku
}

/// Creates and stores a new self-signed CA.
fn create_ca(state: &State, id: CaId, input: &PkiInput, now: OffsetDateTime) -> Result<Ca> {
    let key = keys::generate(input.key_type, id.what())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, id.cn());
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = key_usages(Some(input.key_type), true);
    params.serial_number = Some(keys::serial());
    params.not_before = now - input.lifetimes.backdate;
    params.not_after = now + input.lifetimes.ca;
    let cert = params
        .self_signed(&key)
        .map_err(|e| PkiError::crypto(format!("self-sign {}", id.what()), e))?;
    let cert_pem = cert.pem().into_bytes();
    let key_pem = keys::to_pem(&key);
    // Key first: a crash in between leaves a cert-less key, which the next run reports.
    state.write(id.key_rel(), &key_pem, MODE_SECRET)?;
    state.write(id.cert_rel(), &cert_pem, MODE_PUBLIC)?;
    let info = certinfo::parse_pem(&cert_pem).map_err(|source| PkiError::CorruptState {
        path: state.path(id.cert_rel()),
        reason: Unusable::Cert {
            file: id.cert_rel().to_string(),
            source,
        },
    })?;
    Ok(Ca {
        cert_pem,
        key_pem,
        info,
        key,
    })
}

/// Loads every CA and the service-account key, creating missing ones.
///
/// Replacing one that is missing, unreadable, mismatched or expired while issued certificates
/// exist is refused unless `opts.rotate_ca`. `written` receives every state path written.
pub(crate) fn ensure(
    state: &State,
    input: &PkiInput,
    now: OffsetDateTime,
    opts: &PkiOptions,
    written: &mut Vec<String>,
) -> Result<Authorities> {
    let mut loaded = BTreeMap::new();
    let mut unusable: Vec<(&'static str, Unusable)> = Vec::new();
    for id in CaId::ALL {
        match load_ca(state, id)? {
            Ok(ca) if ca.info.not_after <= now => {
                unusable.push((id.what(), Unusable::Expired(id.cert_rel().to_string())));
            }
            Ok(ca) => {
                loaded.insert(id, ca);
            }
            Err(reason) => unusable.push((id.what(), reason)),
        }
    }
    let sa = match load_sa(state)? {
        Ok(found) => Some(found),
        Err(reason) => {
            unusable.push(("service-account key", reason));
            None
        }
    };
    // Decide before writing anything, so a refusal leaves the state untouched.
    if !unusable.is_empty() && !opts.rotate_ca && state.has_issued()? {
        let (what, reason) = unusable.swap_remove(0);
        return Err(PkiError::CaReplacementRefused {
            what,
            path: state.path(ISSUED),
            reason,
        });
    }
    for id in CaId::ALL {
        if let std::collections::btree_map::Entry::Vacant(slot) = loaded.entry(id) {
            tracing::info!(ca = id.what(), "creating {}", id.cert_rel());
            slot.insert(create_ca(state, id, input, now)?);
            written.extend([id.key_rel().to_string(), id.cert_rel().to_string()]);
        }
    }
    let (sa_key, sa_key_pem) = match sa {
        Some(found) => found,
        None => {
            tracing::info!("creating sa.key");
            let key = keys::generate(input.key_type, "service-account key")?;
            let pem = keys::to_pem(&key);
            state.write("sa.key", &pem, MODE_SECRET)?;
            written.push("sa.key".into());
            (key, pem)
        }
    };
    // sa.pub is derived from sa.key: rewrite it whenever it differs.
    let pub_pem = sa_key.public_key_pem().into_bytes();
    if state.read("sa.pub")?.as_deref() != Some(&pub_pem[..]) {
        state.write("sa.pub", &pub_pem, MODE_PUBLIC)?;
        written.push("sa.pub".into());
    }
    Ok(Authorities {
        cas: loaded,
        sa: SaKeys {
            key_pem: sa_key_pem,
            pub_pem,
        },
    })
}

/// Loads every CA and the service-account key without writing; any missing or bad one is an error.
pub(crate) fn load(state: &State) -> Result<Authorities> {
    let mut cas = BTreeMap::new();
    for id in CaId::ALL {
        let ca = load_ca(state, id)?.map_err(|reason| PkiError::CorruptState {
            path: state.path(id.cert_rel()),
            reason,
        })?;
        cas.insert(id, ca);
    }
    let (key, key_pem) = load_sa(state)?.map_err(|reason| PkiError::CorruptState {
        path: state.path("sa.key"),
        reason,
    })?;
    Ok(Authorities {
        cas,
        sa: SaKeys {
            key_pem,
            pub_pem: key.public_key_pem().into_bytes(),
        },
    })
}
