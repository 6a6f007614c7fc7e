//! The closed vocabularies of the inputs: artifact source kinds, image source kinds and pins.
//! Each parses from its string form (the one files use) at the spec boundary, so later stages
//! match on enums, not strings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name outside a closed vocabulary, or a malformed pin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    /// Not one of the artifact source kinds.
    #[error("unknown source kind {0:?}; expected one of https, http, file, apt")]
    Source(String),
    /// Not one of the image source kinds.
    #[error("unknown image source kind {0:?}; expected registry or assemble")]
    ImageSource(String),
    /// Not `sha256:` or `sha512:` with the right number of lowercase hex digits.
    #[error("{0:?} is not a pin; expected sha256:<64 lowercase hex digits> or sha512:<128 lowercase hex digits>")]
    Pin(String),
}

/// Serialises through `Display` and deserialises through `FromStr`, so files and messages
/// use one spelling and a bad value's error is the type's own.
macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// `FromStr` (over `ALL`, by `as_str`, else the given [`KindError`] variant), `Display` and
/// serde for a closed vocabulary.
macro_rules! vocabulary {
    ($t:ident, $err:ident) => {
        impl FromStr for $t {
            type Err = KindError;
            fn from_str(s: &str) -> Result<Self, KindError> {
                $t::ALL
                    .into_iter()
                    .find(|k| k.as_str() == s)
                    .ok_or_else(|| KindError::$err(s.to_string()))
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        string_serde!($t);
    };
}

/// Where an artifact is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// Download over HTTPS.
    Https,
    /// Download over plain HTTP (a local mirror).
    Http,
    /// A file on the build machine.
    File,
    /// A Debian/Ubuntu package fetched with the machine's apt client.
    Apt,
}

impl SourceKind {
    /// Every kind, in the default preference order.
    pub const ALL: [SourceKind; 4] = [
        SourceKind::Https,
        SourceKind::Http,
        SourceKind::File,
        SourceKind::Apt,
    ];

    /// The name files use.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Https => "https",
            SourceKind::Http => "http",
            SourceKind::File => "file",
            SourceKind::Apt => "apt",
        }
    }
}

vocabulary!(SourceKind, Source);

/// How a container image is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageSourceKind {
    /// Pulled from a registry by digest.
    Registry,
    /// Assembled from catalog artifacts.
    Assemble,
}

impl ImageSourceKind {
    /// Every kind, in the default preference order.
    pub const ALL: [ImageSourceKind; 2] = [ImageSourceKind::Registry, ImageSourceKind::Assemble];

    /// The name files use.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageSourceKind::Registry => "registry",
            ImageSourceKind::Assemble => "assemble",
        }
    }
}

vocabulary!(ImageSourceKind, ImageSource);

/// A known digest of a file: `sha256:<hex>` or `sha512:<hex>` (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pin {
    /// 64 lowercase hex digits.
    Sha256(String),
    /// 128 lowercase hex digits (upstream publishes only sha512 for some files).
    Sha512(String),
}

impl Pin {
    /// A pin from an algorithm name and hex digits of either case.
    pub fn from_hex(algo: &str, hex: &str) -> Result<Pin, KindError> {
        format!("{algo}:{}", hex.to_ascii_lowercase()).parse()
    }

    /// The hex digits.
    pub fn hex(&self) -> &str {
        match self {
            Pin::Sha256(h) | Pin::Sha512(h) => h,
        }
    }
}

impl FromStr for Pin {
    type Err = KindError;
    fn from_str(s: &str) -> Result<Self, KindError> {
        let hex_of = |len: usize, h: &str| {
            (h.len() == len && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                .then(|| h.to_string())
        };
        let pin = match s.split_once(':') {
            Some(("sha256", h)) => hex_of(64, h).map(Pin::Sha256),
            Some(("sha512", h)) => hex_of(128, h).map(Pin::Sha512),
            _ => None,
        };
        pin.ok_or_else(|| KindError::Pin(s.to_string()))
    }
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Sha256(h) => write!(f, "sha256:{h}"),
            Pin::Sha512(h) => write!(f, "sha512:{h}"),
        }
    }
}

string_serde!(Pin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_list_the_expected() {
        for k in SourceKind::ALL {
            assert_eq!(k.to_string().parse::<SourceKind>(), Ok(k));
        }
        for k in ImageSourceKind::ALL {
            assert_eq!(k.to_string().parse::<ImageSourceKind>(), Ok(k));
        }
        assert_eq!(
            "ftp".parse::<SourceKind>().unwrap_err().to_string(),
            "unknown source kind \"ftp\"; expected one of https, http, file, apt"
        );
        assert_eq!(
            "HTTPS".parse::<SourceKind>().unwrap_err(),
            KindError::Source("HTTPS".into())
        );
        assert_eq!(
            "oci".parse::<ImageSourceKind>().unwrap_err().to_string(),
            "unknown image source kind \"oci\"; expected registry or assemble"
        );
    }

    #[test]
    fn pins_need_a_known_algorithm_and_exact_lowercase_hex() {
        let a = "a".repeat(64);
        assert_eq!(
            format!("sha256:{a}").parse::<Pin>(),
            Ok(Pin::Sha256(a.clone()))
        );
        let p: Pin = format!("sha512:{}", "b".repeat(128)).parse().unwrap();
        assert_eq!(p.to_string(), format!("sha512:{}", "b".repeat(128)));
        assert_eq!(
            Pin::from_hex("sha256", &a.to_uppercase()),
            Ok(Pin::Sha256(a.clone()))
        );
        for bad in [
            format!("md5:{a}"),
            format!("sha256:{}", &a[1..]),
            format!("sha256:{}", a.to_uppercase()),
            format!("sha512:{a}"),
            a.clone(),
        ] {
            assert_eq!(bad.parse::<Pin>(), Err(KindError::Pin(bad.clone())));
        }
    }
}
