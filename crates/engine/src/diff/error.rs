//! Why two out folders could not be compared; each names the folder or file and what was expected.

use std::path::PathBuf;

/// `kiln diff` (and the upgrade plan) refused its input.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The path is not a folder.
    #[error("{}: not a folder (expected an out folder, out/<cluster>, as `kiln build` or `kiln pull` writes it)", dir.display())]
    NotAFolder {
        /// The path given.
        dir: PathBuf,
    },
    /// The folder has no MANIFEST.json: not the out folder of a build.
    #[error("{}: not an out folder: it has no MANIFEST.json (expected out/<cluster>, as `kiln build` or `kiln pull` writes it; out/ itself holds one folder per cluster)", dir.display())]
    NotOutFolder {
        /// The folder given.
        dir: PathBuf,
    },
    /// The folder failed `kiln verify`'s checks (its SHA256SUMS, MANIFEST.json or a bundle).
    #[error("{}: failed verification, so it is not compared", dir.display())]
    Verify {
        /// The folder.
        dir: PathBuf,
        /// What verify found.
        #[source]
        source: kiln_bundle::VerifyError,
    },
    /// The two folders are builds of different clusters.
    #[error("{} is a build of cluster {old_cluster:?} but {} of cluster {new_cluster:?}: only builds of one cluster are compared", old.display(), new.display())]
    OtherCluster {
        /// The old folder.
        old: PathBuf,
        /// Its cluster.
        old_cluster: String,
        /// The new folder.
        new: PathBuf,
        /// Its cluster.
        new_cluster: String,
    },
    /// An archive could not be read (after verification: it changed meanwhile).
    #[error("{}: cannot read the archive", file.display())]
    Archive {
        /// The archive.
        file: PathBuf,
        /// The reader's error.
        #[source]
        source: kiln_bundle::VerifyError,
    },
    /// A contract member of an archive does not parse.
    #[error("{}: member {member}", file.display())]
    Contract {
        /// The archive.
        file: PathBuf,
        /// The member.
        member: &'static str,
        /// What is wrong with it.
        #[source]
        source: kiln_bundle::contract::ContractError,
    },
    /// MANIFEST.json names a file the folder's archives do not include.
    #[error("{}: MANIFEST.json names {path}, which is not a verified archive of the folder", dir.display())]
    Unlisted {
        /// The folder.
        dir: PathBuf,
        /// The path MANIFEST.json names.
        path: String,
    },
    /// A certificate in a secrets archive does not parse.
    #[error("{}: {member}: not a readable certificate", file.display())]
    Certificate {
        /// The secrets archive.
        file: PathBuf,
        /// The member.
        member: String,
        /// What is wrong with it.
        #[source]
        source: kiln_pki::CertError,
    },
}
