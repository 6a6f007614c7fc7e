//! Key pairs (RSA-2048, ECDSA P-256 as PKCS#8 PEM), randomness, serials and bootstrap tokens.

use rcgen::{KeyPair, PublicKeyData, SerialNumber};

use crate::error::{KeyError, PkiError, Result};
use kiln_pki_layout::KeyType;

/// Generates a new key pair of type `kt`.
pub(crate) fn generate(kt: KeyType, what: &str) -> Result<KeyPair> {
    let alg = match kt {
        KeyType::Rsa2048 => &rcgen::PKCS_RSA_SHA256,
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
    };
    let key = match kt {
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(alg, rcgen::RsaKeySize::_2048),
        KeyType::EcdsaP256 => KeyPair::generate_for(alg),
    };
    key.map_err(|e| PkiError::crypto(format!("generate {kt:?} key for {what}"), e))
}

/// Parses a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn parse(pem: &[u8]) -> std::result::Result<KeyPair, KeyError> {
    let text = std::str::from_utf8(pem).map_err(|_| KeyError::NotText)?;
    KeyPair::from_pem(text).map_err(KeyError::Unusable)
}

/// The PKCS#8 PEM encoding of a private key.
pub(crate) fn to_pem(key: &KeyPair) -> Vec<u8> {
    key.serialize_pem().into_bytes()
}

/// The key's type, if it is one kiln generates.
pub(crate) fn key_type_of(key: &KeyPair) -> Option<KeyType> {
    let alg = key.algorithm();
    if alg == &rcgen::PKCS_RSA_SHA256 {
        // Only 2048-bit RSA counts as Rsa2048: the SPKI of a 2048-bit key is 294 bytes.
        (key.subject_public_key_info().len() == 294).then_some(KeyType::Rsa2048)
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Some(KeyType::EcdsaP256)
    } else {
        None
    }
}

/// The DER SubjectPublicKeyInfo of the key, to compare with a certificate's.
pub(crate) fn spki(key: &KeyPair) -> Vec<u8> {
    key.subject_public_key_info()
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) {
    // aws-lc's RNG only fails if the OS refuses entropy, where no key could be made either.
    aws_lc_rs::rand::fill(buf).expect("system random number generator failed");
}

/// A random positive 128-bit serial number (RFC 5280: unique per CA, at most 20 bytes).
pub(crate) fn serial() -> SerialNumber {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[0] &= 0x7f;
    b[0] |= 0x01; // non-zero and always 16 bytes long
    SerialNumber::from_slice(&b)
}

const TOKEN_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random characters from `[a-z0-9]`, unbiased.
fn random_token_chars(n: usize) -> String {
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut b = [0u8; 32];
        fill_random(&mut b);
        // 252 = 7 * 36: rejecting larger bytes keeps every character equally likely.
        for &x in b.iter().filter(|&&x| x < 252) {
            if out.len() < n {
                out.push(TOKEN_ALPHABET[usize::from(x % 36)] as char);
            }
        }
    }
    out
}

/// A new bootstrap token `<6 [a-z0-9]>.<16 [a-z0-9]>`.
pub(crate) fn new_bootstrap_token() -> String {
    format!("{}.{}", random_token_chars(6), random_token_chars(16))
}

/// Whether `s` has the bootstrap-token format `[a-z0-9]{6}\.[a-z0-9]{16}`.
pub(crate) fn is_bootstrap_token(s: &str) -> bool {
    let ok = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(s.split_once('.'), Some((id, secret)) if ok(id, 6) && ok(secret, 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_bootstrap_format_and_differ() {
        let a = new_bootstrap_token();
        let b = new_bootstrap_token();
        assert!(is_bootstrap_token(&a), "{a}");
        assert_ne!(a, b);
        assert!(!is_bootstrap_token("abcdef.0123456789abcdeF"));
        assert!(!is_bootstrap_token("abcde.0123456789abcdef0"));
        assert!(!is_bootstrap_token("abcdef0123456789abcdef"));
    }

    #[test]
    fn key_types_round_trip_through_pem() {
        for kt in [KeyType::Rsa2048, KeyType::EcdsaP256] {
            let key = generate(kt, "test").unwrap();
            let pem = to_pem(&key);
            assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
            let back = parse(&pem).unwrap();
            assert_eq!(key_type_of(&back), Some(kt));
            assert_eq!(spki(&back), spki(&key));
        }
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn serials_are_positive_and_distinct() {
        let a = serial();
        let b = serial();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert!(a.to_bytes()[0] < 0x80);
    }
}
