//! Platforms (`linux/amd64`, `linux/arm64/v8`) and how an index entry is matched to one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ImageError;

/// An OS/architecture pair with an optional CPU variant, written `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// Architecture in Go's naming, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v8` for arm64, `v7` for arm.
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<arch>`.
    pub fn linux(architecture: &str) -> Platform {
        Platform {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, ImageError> {
        let bad = || ImageError::InvalidPlatform {
            input: s.to_owned(),
        };
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(|p| ok(p)) {
            return Err(bad());
        }
        Ok(Platform {
            os: parts[0].to_owned(),
            architecture: parts[1].to_owned(),
            variant: parts.get(2).map(|v| (*v).to_owned()),
        })
    }

    /// Whether an image built for `other` runs here: same OS and architecture, and the
    /// same variant when this platform names one (arm64 without variant means v8).
    pub fn accepts(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match &self.variant {
            None => true,
            Some(want) => {
                let default = (self.architecture == "arm64").then_some("v8");
                other.variant.as_deref().or(default) == Some(want.as_str())
            }
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

impl Serialize for Platform {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Platform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Platform::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_and_match() {
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(amd, Platform::linux("amd64"));
        assert_eq!(amd.to_string(), "linux/amd64");
        let v8 = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(v8.to_string(), "linux/arm64/v8");
        assert!(
            v8.accepts(&Platform::linux("arm64")),
            "arm64 defaults to v8"
        );
        assert!(Platform::linux("arm64").accepts(&v8));
        assert!(!amd.accepts(&Platform::linux("arm64")));
        assert!(!Platform::parse("linux/arm/v7")
            .unwrap()
            .accepts(&Platform::parse("linux/arm/v6").unwrap()));
        for bad in ["linux", "linux/", "Linux/amd64", "a/b/c/d", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
