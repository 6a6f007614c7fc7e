//! The one way tests read files from outside the repository: each kind of outside fixture has
//! one folder, overridable by an environment variable (see the crate documentation).

use std::path::{Path, PathBuf};

/// A folder of files from outside the repository that some tests read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// The upstream checksum tables catalog/pins.toml is generated from
    /// (`upstream-checksums.yml`, `kubernetes-release-sha512.tsv`).
    UpstreamTables,
    /// The Debian 12 root and `.deb`s the `debs` test builds once and reuses.
    DebsCache,
}

impl Fixture {
    /// The environment variable that overrides the folder.
    pub fn env(self) -> &'static str {
        match self {
            Fixture::UpstreamTables => "KILN_UPSTREAM_TABLES",
            Fixture::DebsCache => "KILN_DEBS_CACHE",
        }
    }

    /// The folder: the environment variable when set, else the default.
    pub fn dir(self) -> PathBuf {
        match std::env::var_os(self.env()) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => self.default_dir(),
        }
    }

    /// The folder when the environment variable is not set.
    pub fn default_dir(self) -> PathBuf {
        match self {
            Fixture::UpstreamTables => repo_root().join("../shared/data"),
            Fixture::DebsCache => PathBuf::from("/var/tmp/kiln-debs"),
        }
    }

    /// `file` inside the folder.
    pub fn path(self, file: impl AsRef<Path>) -> PathBuf {
        self.dir().join(file)
    }
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_beside_the_repository_or_in_var_tmp() {
        assert!(Fixture::UpstreamTables
            .default_dir()
            .ends_with("../shared/data"));
        assert!(repo_root().join("Cargo.toml").is_file());
        assert_eq!(
            Fixture::DebsCache.default_dir(),
            Path::new("/var/tmp/kiln-debs")
        );
        assert_eq!(Fixture::DebsCache.env(), "KILN_DEBS_CACHE");
    }
}
