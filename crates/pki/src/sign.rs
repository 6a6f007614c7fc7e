//! The cluster's build signing key (`signing.key`, `signing.pub` in the state folder) and the
//! signatures kiln puts on its builds: ECDSA P-256 with SHA-256, DER-encoded, the form
//! `openssl dgst -sha256 -sign` writes and `-verify` (OpenSSL 1.0.2 on CentOS 7 included) reads.
//!
//! Signatures are deterministic (RFC 6979, RustCrypto's `p256`): the same key over the same
//! bytes gives the same signature, so a rebuild stays byte-identical. aws-lc's ECDSA, which
//! made the CA keys, draws a random nonce per signature and would not.

use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, LineEnding};

use crate::error::{PkiError, Result, Unusable};
use crate::keys;
use crate::state::State;
use kiln_pki_layout::{KeyType, MODE_PUBLIC, MODE_SECRET};

/// State file of the signing key's private half (PKCS#8 PEM, mode 0600).
pub const SIGNING_KEY: &str = "signing.key";
/// State file of the signing key's public half (SubjectPublicKeyInfo PEM), the file hosts trust.
pub const SIGNING_PUB: &str = "signing.pub";

/// The loaded build signing key.
#[derive(Clone)]
pub struct BuildSigner {
    key: SigningKey,
    pub_pem: Vec<u8>,
}

impl std::fmt::Debug for BuildSigner {
    // Never print key material, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildSigner")
            .field("public", &String::from_utf8_lossy(&self.pub_pem))
            .finish()
    }
}

impl BuildSigner {
    /// The DER ECDSA-SHA256 signature of `msg` (deterministic: RFC 6979).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: Signature = self.key.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }

    /// The public key as SubjectPublicKeyInfo PEM, exactly as `signing.pub` holds it.
    pub fn public_pem(&self) -> &[u8] {
        &self.pub_pem
    }

    /// The public key, to check this signer's signatures.
    pub fn verifier(&self) -> BuildVerifier {
        BuildVerifier(*self.key.verifying_key())
    }
}

/// Why a public key or a signature is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The public key file is not a P-256 SubjectPublicKeyInfo PEM.
    #[error("not an ECDSA P-256 public key in PEM (-----BEGIN PUBLIC KEY-----): {0}")]
    BadPublicKey(Box<p256::pkcs8::spki::Error>),
    /// The signature is not DER `ECDSA-Sig-Value`.
    #[error("not a DER ECDSA signature")]
    BadSignature,
    /// The signature is well formed but not this key's over these bytes.
    #[error("the signature does not match: another key signed it, or the signed bytes changed")]
    Mismatch,
}

/// A public key that checks build signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildVerifier(VerifyingKey);

impl BuildVerifier {
    /// Parses a SubjectPublicKeyInfo PEM (what `signing.pub` and `openssl ec -pubout` write).
    pub fn from_pem(pem: &[u8]) -> std::result::Result<Self, SignatureError> {
        let text = String::from_utf8_lossy(pem);
        VerifyingKey::from_public_key_pem(text.trim())
            .map(BuildVerifier)
            .map_err(|e| SignatureError::BadPublicKey(Box::new(e)))
    }

    /// The DER SubjectPublicKeyInfo (its sha256 is the key's fingerprint, as
    /// `openssl pkey -pubin -outform DER | sha256sum` prints it).
    pub fn spki_der(&self) -> Vec<u8> {
        self.0
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// Checks `sig` (DER) over `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> std::result::Result<(), SignatureError> {
        let sig = Signature::from_der(sig).map_err(|_| SignatureError::BadSignature)?;
        self.0
            .verify(msg, &sig)
            .map_err(|_| SignatureError::Mismatch)
    }
}

/// Loads the signing key from `state_dir`, creating it (and the folder) on first use.
///
/// Like a CA key it is made once and reused by every later build. A state that has
/// `signing.pub` but lost `signing.key` is refused rather than given a new key silently:
/// hosts trust that public key, so a new one is a rotation (move both files aside).
pub fn ensure_signing_key(state_dir: &Path) -> Result<BuildSigner> {
    let state = State::create(state_dir)?;
    let (key, written) = match state.read(SIGNING_KEY)? {
        Some(pem) => (parse_key(&state, &pem)?, false),
        None if state.read(SIGNING_PUB)?.is_some() => {
            return Err(PkiError::SigningKeyLost {
                path: state.path(SIGNING_KEY),
                public: state.path(SIGNING_PUB),
            })
        }
        None => {
            tracing::info!("creating {SIGNING_KEY}");
            // aws-lc makes the key (as it makes the CA keys); p256 only signs with it.
            let pem = keys::to_pem(&keys::generate(KeyType::EcdsaP256, "build signing key")?);
            let key = parse_key(&state, &pem)?;
            state.write(SIGNING_KEY, &pem, MODE_SECRET)?;
            (key, true)
        }
    };
    let pub_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| PkiError::CorruptState {
            path: state.path(SIGNING_KEY),
            reason: Unusable::SigningKey(e.to_string()),
        })?
        .into_bytes();
    // signing.pub is derived from signing.key: rewrite it whenever it differs.
    if written || state.read(SIGNING_PUB)?.as_deref() != Some(&pub_pem[..]) {
        state.write(SIGNING_PUB, &pub_pem, MODE_PUBLIC)?;
    }
    Ok(BuildSigner { key, pub_pem })
}

/// The P-256 key of a PKCS#8 PEM, or why the state file is unusable.
fn parse_key(state: &State, pem: &[u8]) -> Result<SigningKey> {
    let corrupt = |why: String| PkiError::CorruptState {
        path: state.path(SIGNING_KEY),
        reason: Unusable::SigningKey(why),
    };
    let text = std::str::from_utf8(pem).map_err(|_| corrupt("not PEM text".into()))?;
    SigningKey::from_pkcs8_pem(text.trim())
        .map_err(|e| corrupt(format!("not an ECDSA P-256 PKCS#8 private key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_created_once_and_signatures_are_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let a = ensure_signing_key(&pki).unwrap();
        let key_pem = std::fs::read(pki.join(SIGNING_KEY)).unwrap();
        let mode = std::fs::metadata(pki.join(SIGNING_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(a.public_pem().starts_with(b"-----BEGIN PUBLIC KEY-----\n"));
        let b = ensure_signing_key(&pki).unwrap();
        assert_eq!(std::fs::read(pki.join(SIGNING_KEY)).unwrap(), key_pem);
        assert_eq!(a.public_pem(), b.public_pem());
        assert_eq!(a.sign(b"MANIFEST"), b.sign(b"MANIFEST"));
        assert_ne!(a.sign(b"MANIFEST"), a.sign(b"MANIFEST!"));
        let v = BuildVerifier::from_pem(&std::fs::read(pki.join(SIGNING_PUB)).unwrap()).unwrap();
        v.verify(b"MANIFEST", &a.sign(b"MANIFEST")).unwrap();
        assert!(matches!(
            v.verify(b"MANIFEST!", &a.sign(b"MANIFEST")),
            Err(SignatureError::Mismatch)
        ));
        assert!(matches!(
            v.verify(b"MANIFEST", b"not der"),
            Err(SignatureError::BadSignature)
        ));
    }

    #[test]
    fn another_state_signs_with_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let ours = ensure_signing_key(&dir.path().join("a")).unwrap();
        let theirs = ensure_signing_key(&dir.path().join("b")).unwrap();
        assert!(matches!(
            ours.verifier().verify(b"x", &theirs.sign(b"x")),
            Err(SignatureError::Mismatch)
        ));
    }

    #[test]
    fn a_lost_private_key_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let first = ensure_signing_key(&pki).unwrap();
        std::fs::remove_file(pki.join(SIGNING_KEY)).unwrap();
        let err = ensure_signing_key(&pki).unwrap_err().to_string();
        assert!(
            err.contains("signing.key") && err.contains("signing.pub"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(pki.join(SIGNING_PUB)).unwrap(),
            first.public_pem()
        );
    }

    #[test]
    fn a_corrupt_private_key_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir_all(&pki).unwrap();
        std::fs::write(pki.join(SIGNING_KEY), b"garbage").unwrap();
        let err = ensure_signing_key(&pki).unwrap_err().to_string();
        assert!(
            err.contains("corrupt PKI state file") && err.contains("signing.key"),
            "{err}"
        );
        assert_eq!(std::fs::read(pki.join(SIGNING_KEY)).unwrap(), b"garbage");
    }

    #[test]
    fn a_missing_public_half_is_derived_again() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let first = ensure_signing_key(&pki).unwrap();
        std::fs::write(pki.join(SIGNING_PUB), b"stale").unwrap();
        ensure_signing_key(&pki).unwrap();
        assert_eq!(
            std::fs::read(pki.join(SIGNING_PUB)).unwrap(),
            first.public_pem()
        );
    }
}
