//! kiln-pki: the cluster's offline PKI.
//!
//! What each host gets (certificates, subjects, SANs, file paths) is decided by
//! [`kiln_pki_layout`], which has no crypto; this crate generates and stores the keys and
//! certificates a [`Layout`] lists. A persistent state folder holds the cluster, etcd and front-proxy CAs, the
//! service-account key pair, an optional kubelet bootstrap token and every issued
//! leaf certificate (`issued/<host>/...`). [`ensure`] creates what is missing,
//! re-issues leaves only when they no longer match the input or are due for renewal,
//! and returns per host the exact files it needs in kubeadm's layout. [`table`]
//! reads the state without changing it. [`ensure_signing_key`] keeps the key that signs builds.
//!
//! Choices where the Kubernetes PKI guide and kubeadm differ:
//! - `apiserver-kubelet-client` and `admin.conf` use `O=system:masters` (the guide; kubeadm ≥ 1.29
//!   uses `kubeadm:cluster-admins`, which needs a ClusterRoleBinding only kubeadm creates).
//! - Masters get `ca.key` only with [`KubeletAuth::BootstrapToken`], where kube-controller-manager
//!   signs kubelet CSRs with it (kubeadm always copies it); `front-proxy-ca.key` never leaves the state.
//! - Every leaf is issued per host, including shared identities (admin, kube-proxy, ...), so each
//!   host's secrets are its own; the apiserver certificate lists every master as the guide asks.
//! - keyEncipherment is set only on RSA keys (it means nothing for ECDSA); kubeadm sets it always.
//! - The bootstrap token is a static `token.csv` line for `--token-auth-file` (user
//!   `kubelet-bootstrap`, group `system:bootstrappers`), not a bootstrap-token Secret, so it works
//!   before anything is applied to the API.
//!
//! With kubeadm settings in the input ([`PkiInput::kubeadm`]) the layout follows kubeadm instead:
//! masters get every CA key kubeadm expects, `admin.conf` is `O=kubeadm:cluster-admins`, the
//! token is a bootstrap-token Secret that `kubeadm init` creates, and each kubeadm host's
//! `/etc/kiln/kubeadm.yaml` is rendered here (it needs the token and the CA's public-key pin,
//! [`ca_cert_hash`]).
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod authority;
mod certinfo;
mod clock;
mod error;
mod identify;
mod issue;
mod keys;
mod kubeconfig;
mod sign;
mod state;
mod table;

use std::collections::BTreeMap;
use std::path::Path;

use time::OffsetDateTime;

pub use clock::{Clock, FixedClock, PkiOptions, SystemClock};
pub use error::{CertError, KeyError, PkiError, Result, Unusable};
pub use identify::{identify_kubeconfig, identify_pem, CertIdentity};
pub use kiln_pki_layout::{
    role, KeyType, KubeletAuth, Layout, Lifetimes, PkiHost, PkiInput, BOOTSTRAP_GROUP,
    BOOTSTRAP_USER, KUBELET_PKI_DIR, KUBE_DIR, MODE_PUBLIC, MODE_SECRET, PKI_DIR,
};
pub use sign::{
    ensure_signing_key, BuildSigner, BuildVerifier, SignatureError, SIGNING_KEY, SIGNING_PUB,
};
pub use table::{CertRow, CertTime};

use authority::Authorities;
use issue::Leaf;
use kiln_pki_layout::{Credential, HostLayout, Source};
use state::State;

/// State file holding the bootstrap token.
const TOKEN_FILE: &str = "bootstrap-token";

/// One file a host receives.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Absolute path on the host, e.g. `/etc/kubernetes/pki/etcd/server.crt`.
    pub path: String,
    /// File mode: 0600 for keys, tokens and kubeconfigs, 0644 for certificates.
    pub mode: u32,
    /// The file's contents.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SecretFile {
    // Never print key material, even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.path)
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The result of [`ensure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOutput {
    /// For every input host (lb-only hosts included, with no files), its files sorted by path.
    pub hosts: BTreeMap<String, Vec<SecretFile>>,
    /// Every certificate every host receives, by host then file.
    pub table: Vec<CertRow>,
    /// State-relative paths written by this run (empty when everything was reused).
    pub written: Vec<String>,
}

/// The clock's time, to whole seconds (X.509 has no finer precision).
fn now_of(clock: &dyn Clock) -> OffsetDateTime {
    let t = OffsetDateTime::from(clock.now());
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Creates or reuses the PKI in `state_dir` and returns every host's files.
///
/// Nothing is written unless the input is valid. See [`ensure_layout`].
pub fn ensure(
    state_dir: &Path,
    input: &PkiInput,
    clock: &dyn Clock,
    opts: &PkiOptions,
) -> Result<PkiOutput> {
    ensure_layout(state_dir, &Layout::new(input.clone())?, clock, opts)
}

/// Creates or reuses the PKI in `state_dir` for an already validated layout (the plan's) and
/// returns every host's files.
///
/// CAs and the service-account key are created
/// once; a run that would have to replace one while issued certificates exist fails with
/// [`PkiError::CaReplacementRefused`] unless `opts.rotate_ca`.
pub fn ensure_layout(
    state_dir: &Path,
    layout: &Layout,
    clock: &dyn Clock,
    opts: &PkiOptions,
) -> Result<PkiOutput> {
    let input = layout.input();
    let now = now_of(clock);
    let state = State::create(state_dir)?;
    let mut written = Vec::new();
    let auth = authority::ensure(&state, input, now, opts, &mut written)?;
    // kubeadm's nodes join with the token whatever kubelet_auth says.
    let token = match (input.kubelet_auth, &input.kubeadm) {
        (KubeletAuth::BootstrapToken, _) | (_, Some(_)) => {
            Some(ensure_token(&state, &mut written)?)
        }
        (KubeletAuth::Certificates, None) => None,
    };
    let mut hosts = BTreeMap::new();
    let mut rows = Vec::new();
    for plan in layout.hosts() {
        let leaves = plan
            .leaves
            .iter()
            .map(|spec| {
                let lt = &input.lifetimes;
                issue::ensure(&state, &auth, spec, input.key_type, lt, now, &mut written)
            })
            .collect::<Result<Vec<_>>>()?;
        rows.extend(rows_of(plan, &auth, &leaves, now));
        let files = files_of(plan, input, &auth, &leaves, token.as_deref())?;
        hosts.insert(plan.name.clone(), files);
    }
    Ok(PkiOutput {
        hosts,
        table: rows,
        written,
    })
}

/// Reads the certificate table from the state without writing anything.
///
/// Fails with [`PkiError::NotIssued`] if the input needs a certificate that was never issued.
pub fn table(state_dir: &Path, input: &PkiInput, clock: &dyn Clock) -> Result<Vec<CertRow>> {
    let layout = Layout::new(input.clone())?;
    let now = now_of(clock);
    let state = State::existing(state_dir)?;
    let auth = authority::load(&state)?;
    let mut rows = Vec::new();
    for plan in layout.hosts() {
        let mut leaves = Vec::new();
        for spec in &plan.leaves {
            let leaf = issue::load_existing(&state, spec)?.ok_or_else(|| PkiError::NotIssued {
                host: plan.name.clone(),
                path: state.path(&spec.cert_rel()),
            })?;
            leaves.push(leaf);
        }
        rows.extend(rows_of(plan, &auth, &leaves, now));
    }
    Ok(rows)
}

/// The stored bootstrap token, created on first use.
fn ensure_token(state: &State, written: &mut Vec<String>) -> Result<String> {
    if let Some(bytes) = state.read(TOKEN_FILE)? {
        let token = String::from_utf8_lossy(&bytes).trim().to_string();
        if !keys::is_bootstrap_token(&token) {
            return Err(PkiError::CorruptState {
                path: state.path(TOKEN_FILE),
                reason: Unusable::Token,
            });
        }
        return Ok(token);
    }
    let token = keys::new_bootstrap_token();
    state.write(TOKEN_FILE, format!("{token}\n").as_bytes(), MODE_SECRET)?;
    written.push(TOKEN_FILE.into());
    Ok(token)
}

/// The bytes of every file of `plan`.
fn files_of(
    plan: &HostLayout,
    input: &PkiInput,
    auth: &Authorities,
    leaves: &[Leaf],
    token: Option<&str>,
) -> Result<Vec<SecretFile>> {
    let cluster_ca = &auth.ca(kiln_pki_layout::CaId::Cluster).cert_pem;
    let ca_hash = ca_cert_hash(&auth.ca(kiln_pki_layout::CaId::Cluster).info.spki);
    plan.files
        .iter()
        .map(|f| {
            let bytes = match &f.source {
                Source::CaCert(id) => auth.ca(*id).cert_pem.clone(),
                Source::CaKey(id) => auth.ca(*id).key_pem.clone(),
                Source::LeafCert(i) => leaves[*i].cert_pem.clone(),
                Source::LeafKey(i) => leaves[*i].key_pem.clone(),
                Source::SaKey => auth.sa.key_pem.clone(),
                Source::SaPub => auth.sa.pub_pem.clone(),
                Source::TokenCsv => format!(
                    "{},{BOOTSTRAP_USER},10001,\"{BOOTSTRAP_GROUP}\"\n",
                    token.expect("token.csv is only planned with a bootstrap token")
                )
                .into_bytes(),
                Source::Kubeconfig {
                    user,
                    server,
                    credential,
                } => {
                    let auth = match credential {
                        Credential::Leaf(i) => kubeconfig::Auth::Cert {
                            cert_pem: &leaves[*i].cert_pem,
                            key_pem: &leaves[*i].key_pem,
                        },
                        Credential::Token => kubeconfig::Auth::Token(
                            token.expect("bootstrap kubeconfig is only planned with a token"),
                        ),
                    };
                    kubeconfig::render(&input.cluster_name, server, cluster_ca, user, auth)
                }
                Source::KubeadmConfig(role) => {
                    let settings = input
                        .kubeadm
                        .as_ref()
                        .expect("a kubeadm configuration is only planned with kubeadm settings");
                    let ip = input
                        .hosts
                        .iter()
                        .find(|h| h.name == plan.name)
                        .expect("a layout host is an input host")
                        .ip;
                    let member = kiln_kubeadm::Member {
                        name: &plan.name,
                        ip,
                        role: *role,
                    };
                    let secrets = kiln_kubeadm::JoinSecrets {
                        token: token.expect("kubeadm always has a token"),
                        ca_cert_hash: &ca_hash,
                    };
                    kiln_kubeadm::render(settings, &member, &secrets)?
                }
            };
            Ok(SecretFile {
                path: f.path.clone(),
                mode: f.mode,
                bytes,
            })
        })
        .collect()
}

/// kubeadm's pin of a CA: `sha256:` and the hex sha256 of its DER SubjectPublicKeyInfo
/// (what `kubeadm token create --print-join-command` prints).
pub fn ca_cert_hash(spki_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A row for every certificate file and client-certificate kubeconfig of `plan`.
fn rows_of(
    plan: &HostLayout,
    auth: &Authorities,
    leaves: &[Leaf],
    now: OffsetDateTime,
) -> Vec<CertRow> {
    let now = now.unix_timestamp();
    plan.files
        .iter()
        .filter_map(|f| {
            let info = match &f.source {
                Source::CaCert(id) => &auth.ca(*id).info,
                Source::LeafCert(i)
                | Source::Kubeconfig {
                    credential: Credential::Leaf(i),
                    ..
                } => &leaves[*i].info,
                _ => return None,
            };
            Some(table::row(&plan.name, &f.path, info, now))
        })
        .collect()
}
