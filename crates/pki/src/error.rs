//! Errors of the PKI crate; each names the file, field or certificate involved.

use std::path::PathBuf;

/// Everything that can go wrong while building or reading the PKI state.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The caller's input cannot produce a valid PKI (bad host name, SAN, lifetime, ...).
    #[error("invalid PKI input: {field}: {reason}")]
    InvalidInput {
        /// Which input field is wrong, e.g. `hosts[2].name`.
        field: String,
        /// Why it is wrong.
        reason: String,
    },

    /// A filesystem operation on the state folder failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create folder`, ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A state file could not be written (created, synced or renamed into place).
    #[error("cannot write {}", path.display())]
    Write {
        /// The state file.
        path: PathBuf,
        /// What failed, on which (temp) file.
        #[source]
        source: kiln_fsio::Error,
    },

    /// A CA (or the service-account key) would have to be created anew while
    /// certificates it signed are still in the state; refused unless `rotate_ca`.
    #[error(
        "refusing to create a new {what} while issued certificates exist in {}: {reason}; \
         restore the file from a backup, or pass rotate_ca to replace it and re-issue \
         every certificate it signed",
        path.display()
    )]
    CaReplacementRefused {
        /// Which key material (`cluster CA`, `etcd CA`, `front-proxy CA`, `service-account key`).
        what: &'static str,
        /// The state folder's issued certificates.
        path: PathBuf,
        /// What is wrong with the existing files.
        reason: Unusable,
    },

    /// A state file exists but cannot be used and kiln will not overwrite it silently.
    #[error("corrupt PKI state file {}: {reason}", path.display())]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: Unusable,
    },

    /// [`crate::table`] found a certificate the input needs that was never issued.
    #[error("{} has not been issued yet (needed by host {host}); run a build first", path.display())]
    NotIssued {
        /// The host that needs it.
        host: String,
        /// Where it would be in the state folder.
        path: PathBuf,
    },

    /// `signing.pub` is in the state but `signing.key` is gone: hosts trust that public key, so
    /// a new key is a rotation, never made silently.
    #[error(
        "{} is missing but {} exists: hosts verify builds with that public key; restore \
         signing.key from a backup, or rotate the key by moving signing.pub aside too (hosts \
         then need new seeds with the new public key)",
        path.display(),
        public.display()
    )]
    SigningKeyLost {
        /// Where the private key should be.
        path: PathBuf,
        /// The public key that is still there.
        public: PathBuf,
    },

    /// A host's kubeadm configuration could not be written.
    #[error(transparent)]
    Kubeadm(#[from] kiln_kubeadm::RenderError),

    /// Key generation or signing failed in the crypto backend.
    #[error("{what}: {source}")]
    Crypto {
        /// What was being generated or signed.
        what: String,
        /// The backend's error.
        #[source]
        source: rcgen::Error,
    },
}

/// Why stored key material (a CA, the service-account key, a leaf, the token) cannot be used.
/// Paths are relative to the PKI state folder.
#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    /// Neither the CA's certificate nor its key exists.
    #[error("it does not exist")]
    Absent,
    /// One of a pair exists, the other not.
    #[error("{0} is missing")]
    Missing(String),
    /// A single key file does not exist.
    #[error("{0} does not exist")]
    NoFile(&'static str),
    /// A certificate does not parse.
    #[error("{file}: {source}")]
    Cert {
        /// The certificate file.
        file: String,
        /// Why it does not parse.
        source: CertError,
    },
    /// A private key does not parse.
    #[error("{file}: {source}")]
    Key {
        /// The key file.
        file: String,
        /// Why it does not parse.
        source: KeyError,
    },
    /// A key is not the certificate's.
    #[error("{key} does not match {cert}")]
    Mismatch {
        /// The key file.
        key: String,
        /// The certificate file.
        cert: String,
    },
    /// A CA's certificate cannot sign certificates.
    #[error("{0} is not a CA certificate")]
    NotCa(String),
    /// A CA's certificate is past notAfter.
    #[error("{0} has expired")]
    Expired(String),
    /// A leaf's certificate or key does not exist.
    #[error("not issued yet")]
    NotIssued,
    /// A leaf's certificate does not parse.
    #[error("certificate unreadable: {0}")]
    LeafCert(CertError),
    /// A leaf's key does not parse.
    #[error("key unreadable: {0}")]
    LeafKey(KeyError),
    /// The build signing key does not parse as an ECDSA P-256 PKCS#8 key.
    #[error("{0}")]
    SigningKey(String),
    /// The bootstrap token file holds something else.
    #[error("not a bootstrap token of the form [a-z0-9]{{6}}.[a-z0-9]{{16}}")]
    Token,
}

/// Why bytes are not a single PEM X.509 certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Not PEM.
    #[error("not a PEM certificate: {0}")]
    Pem(x509_parser::nom::Err<x509_parser::error::PEMError>),
    /// PEM, but of something else.
    #[error("PEM block is {0:?}, not CERTIFICATE")]
    Label(String),
    /// More than the certificate.
    #[error("trailing data after the certificate")]
    Trailing,
    /// The DER inside is not a certificate.
    #[error("not an X.509 certificate: {0}")]
    Der(x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// An IP address SAN of neither 4 nor 16 bytes.
    #[error("malformed IP address SAN ({0} bytes)")]
    IpSan(usize),
    /// A kubeconfig's `client-certificate-data` is not base64.
    #[error("client-certificate-data is not base64")]
    NotBase64,
}

/// Why bytes are not a usable PEM private key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not text.
    #[error("not PEM text")]
    NotText,
    /// Text, but not a key rcgen can use.
    #[error("not a usable private key: {0}")]
    Unusable(rcgen::Error),
}

impl From<kiln_pki_layout::InvalidInput> for PkiError {
    fn from(e: kiln_pki_layout::InvalidInput) -> Self {
        PkiError::InvalidInput {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

impl PkiError {
    /// An [`PkiError::Io`] for `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PkiError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// A [`PkiError::Crypto`].
    pub(crate) fn crypto(what: impl Into<String>, source: rcgen::Error) -> Self {
        PkiError::Crypto {
            what: what.into(),
            source,
        }
    }
}
