//! `kiln verify --key`: an out folder's signatures checked with the cluster's public key —
//! MANIFEST.json's (`MANIFEST.json.sig`) and, where `hosts/` is present, each host's BUNDLES
//! signature (`BUNDLES.sig` in its secrets archive, over HOST then BUNDLES).
//!
//! Only a key from elsewhere (`--key`) proves who built the folder; the folder's own
//! `signing.pub` shows only that its files agree with each other.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use kiln_bundle::contract::{self, BUNDLES, BUNDLES_SIG, HOST};
use kiln_bundle::{BuildManifest, BUILD_MANIFEST_NAME, BUILD_MANIFEST_SIG_NAME};
use kiln_pki::{BuildVerifier, SignatureError};

use crate::build::SIGNING_PUB_OUT;

/// Where the key that checked the signatures came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `--key FILE`: a key the user holds, which proves origin.
    Given(PathBuf),
    /// The out folder's own `signing.pub`: consistency only.
    OutFolder(PathBuf),
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signatures {
    /// Every signature matched the key.
    Verified {
        /// The key used.
        key: KeySource,
        /// sha256 of the key's DER SubjectPublicKeyInfo.
        fingerprint: String,
        /// Hosts whose BUNDLES signature was checked (0 for a folder without `hosts/`).
        hosts: usize,
    },
    /// No `--key` and no `signing.pub` in the folder: a build by a kiln that did not sign.
    Unsigned,
}

/// Why an out folder's signatures do not hold.
#[derive(Debug, thiserror::Error)]
pub enum SignatureCheckError {
    /// The key file cannot be read.
    #[error("cannot read the public key {}: {source}", file.display())]
    ReadKey {
        /// The key file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The key file is not a P-256 public key.
    #[error("{}: {source}", file.display())]
    BadKey {
        /// The key file.
        file: PathBuf,
        /// What is wrong.
        source: SignatureError,
    },
    /// A file of the folder cannot be read.
    #[error("cannot read {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// MANIFEST.json does not parse (plain `kiln verify` says more).
    #[error("{} is not a build manifest", file.display())]
    NotBuildManifest {
        /// The file.
        file: PathBuf,
    },
    /// A signature that must be there is not.
    #[error("{what} is not signed: no {} (an unsigned build, or one built by a kiln before signatures)", missing.display())]
    Unsigned {
        /// What should be signed.
        what: String,
        /// The signature file or member that is missing.
        missing: PathBuf,
    },
    /// A signature does not match the key.
    #[error("{what}: signature {} does not verify with {}: {source}", signature.display(), key.display())]
    Mismatch {
        /// What was signed.
        what: String,
        /// The signature file or member.
        signature: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: SignatureError,
    },
    /// A secrets archive cannot be read by the strict reader.
    #[error("{}: {source}", file.display())]
    Archive {
        /// The archive.
        file: PathBuf,
        /// The reader's error.
        source: kiln_bundle::VerifyError,
    },
    /// A signed member has a line the signed form does not allow.
    #[error("{}: {member} line {line} is not {expected}: a signed {member} holds nothing else", file.display())]
    BadLine {
        /// The archive.
        file: PathBuf,
        /// HOST or BUNDLES.
        member: &'static str,
        /// 1-based line number.
        line: usize,
        /// The form expected.
        expected: &'static str,
    },
    /// A host's signed HOST names another build or generation than MANIFEST.json.
    #[error("{}: HOST names build {build_id} generation {generation}, MANIFEST.json build {manifest_build_id} generation {manifest_generation}", file.display())]
    OtherBuild {
        /// The archive.
        file: PathBuf,
        /// HOST's build id.
        build_id: String,
        /// HOST's generation.
        generation: u64,
        /// MANIFEST.json's build id.
        manifest_build_id: String,
        /// MANIFEST.json's generation.
        manifest_generation: u64,
    },
}

/// Checks the signatures of the out folder `dir` (already verified by digest) with `key`, or
/// with the folder's own `signing.pub` when no key is given.
pub fn check(dir: &Path, key: Option<&Path>) -> Result<Signatures, SignatureCheckError> {
    let own = dir.join(SIGNING_PUB_OUT);
    let (source, key_file) = match key {
        Some(k) => (KeySource::Given(k.to_owned()), k.to_owned()),
        None if own.is_file() => (KeySource::OutFolder(own.clone()), own),
        None => return Ok(Signatures::Unsigned),
    };
    let pem = std::fs::read(&key_file).map_err(|source| SignatureCheckError::ReadKey {
        file: key_file.clone(),
        source,
    })?;
    let verifier = BuildVerifier::from_pem(&pem).map_err(|source| SignatureCheckError::BadKey {
        file: key_file.clone(),
        source,
    })?;
    let read = |file: PathBuf| {
        std::fs::read(&file).map_err(|source| SignatureCheckError::Read { file, source })
    };
    let mpath = dir.join(BUILD_MANIFEST_NAME);
    let manifest_bytes = read(mpath.clone())?;
    let manifest: BuildManifest = serde_json::from_slice(&manifest_bytes).map_err(|_| {
        SignatureCheckError::NotBuildManifest {
            file: mpath.clone(),
        }
    })?;
    let sig_path = dir.join(BUILD_MANIFEST_SIG_NAME);
    if !sig_path.exists() {
        return Err(SignatureCheckError::Unsigned {
            what: mpath.display().to_string(),
            missing: sig_path,
        });
    }
    let sig = read(sig_path.clone())?;
    verifier
        .verify(&manifest_bytes, &sig)
        .map_err(|source| SignatureCheckError::Mismatch {
            what: mpath.display().to_string(),
            signature: sig_path,
            key: key_file.clone(),
            source,
        })?;
    let mut hosts = 0;
    if dir.join("hosts").is_dir() {
        for info in manifest.hosts.values() {
            check_host(&dir.join(&info.secrets), &manifest, &verifier, &key_file)?;
            hosts += 1;
        }
    }
    Ok(Signatures::Verified {
        key: source,
        fingerprint: hex::encode(Sha256::digest(verifier.spki_der())),
        hosts,
    })
}

/// Checks one secrets archive's BUNDLES.sig over HOST then BUNDLES, in the form install.sh
/// accepts, and that HOST names the manifest's build and generation.
fn check_host(
    file: &Path,
    manifest: &BuildManifest,
    verifier: &BuildVerifier,
    key_file: &Path,
) -> Result<(), SignatureCheckError> {
    let wanted = [HOST, BUNDLES, BUNDLES_SIG];
    let archive = kiln_bundle::read_archive(file, &|l| wanted.contains(&l.path.as_str())).map_err(
        |source| SignatureCheckError::Archive {
            file: file.to_owned(),
            source,
        },
    )?;
    let member = |name: &str| archive.members.get(name);
    let in_archive = |name: &str| PathBuf::from(format!("{}:{name}", file.display()));
    let (Some(host), Some(bundles)) = (member(HOST), member(BUNDLES)) else {
        return Err(SignatureCheckError::Unsigned {
            what: file.display().to_string(),
            missing: in_archive(HOST),
        });
    };
    let Some(sig) = member(BUNDLES_SIG) else {
        return Err(SignatureCheckError::Unsigned {
            what: in_archive(BUNDLES).display().to_string(),
            missing: in_archive(BUNDLES_SIG),
        });
    };
    signed_form(file, host, bundles)?;
    verifier
        .verify(&contract::signed_host_text(host, bundles), sig)
        .map_err(|source| SignatureCheckError::Mismatch {
            what: format!("{} and {}", in_archive(HOST).display(), BUNDLES),
            signature: in_archive(BUNDLES_SIG),
            key: key_file.to_owned(),
            source,
        })?;
    let meta = contract::HostMeta::parse(host).map_err(|_| SignatureCheckError::BadLine {
        file: file.to_owned(),
        member: HOST,
        line: 0,
        expected: "a complete HOST member",
    })?;
    if (meta.build_id.as_str(), meta.generation)
        != (manifest.build_id.as_str(), manifest.generation)
    {
        return Err(SignatureCheckError::OtherBuild {
            file: file.to_owned(),
            build_id: meta.build_id,
            generation: meta.generation,
            manifest_build_id: manifest.build_id.clone(),
            manifest_generation: manifest.generation,
        });
    }
    Ok(())
}

/// The form install.sh requires of signed members, so their concatenation splits one way only:
/// HOST only `KILN_<A-Z0-9_>=…` lines, BUNDLES only `<64 hex> <file>` lines and delta lines.
fn signed_form(file: &Path, host: &[u8], bundles: &[u8]) -> Result<(), SignatureCheckError> {
    let bad = |member, line, expected| SignatureCheckError::BadLine {
        file: file.to_owned(),
        member,
        line,
        expected,
    };
    let host_line = |l: &[u8]| {
        l.strip_prefix(b"KILN_").is_some_and(|rest| {
            let key_len = rest
                .iter()
                .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_')
                .count();
            rest.get(key_len) == Some(&b'=')
        })
    };
    for (i, l) in host.split_inclusive(|b| *b == b'\n').enumerate() {
        if !l.ends_with(b"\n") || !host_line(&l[..l.len() - 1]) {
            return Err(bad(HOST, i + 1, "KILN_<KEY>=<value>"));
        }
    }
    let sha = |w: &[u8]| {
        w.len() == 64
            && w.iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let name = |w: &[u8]| {
        !w.is_empty()
            && w[0].is_ascii_alphanumeric()
            && w.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
    };
    // `<sha256> <file>`, or a delta's `#delta <sha256> <sha256> <file> <sha256>`.
    let bundle_line = |l: &[u8]| match l.split(|b| *b == b' ').collect::<Vec<_>>()[..] {
        [s, f] => sha(s) && name(f),
        [d, s1, s2, f, s3] => {
            d == contract::DELTA_LINE.as_bytes() && sha(s1) && sha(s2) && name(f) && sha(s3)
        }
        _ => false,
    };
    for (i, l) in bundles.split_inclusive(|b| *b == b'\n').enumerate() {
        if !l.ends_with(b"\n") || !bundle_line(&l[..l.len() - 1]) {
            return Err(bad(
                BUNDLES,
                i + 1,
                "<sha256> <bundle file> (or a #delta line)",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_bundle::contract::{BundleRef, HostMembers, HostMeta};
    use kiln_bundle::{BundleSpec, HostInfo};
    use kiln_pki::BuildSigner;

    /// An out folder of one host, `etcd1`: MANIFEST.json (build `b`, generation 2) signed by
    /// `manifest_key`, and secrets whose HOST says `generation`, signed by `host_key` (or not).
    fn folder(
        dir: &Path,
        manifest_key: &BuildSigner,
        host_key: Option<&BuildSigner>,
        generation: u64,
    ) {
        let build_id = "b".repeat(64);
        let mut manifest = BuildManifest {
            kiln: "test".into(),
            cluster: "lab".into(),
            build_id: build_id.clone(),
            generation: 2,
            health_wait_seconds: None,
            source_date_epoch: 0,
            inputs: Default::default(),
            bundles: Default::default(),
            hosts: Default::default(),
            outputs: Default::default(),
            deltas: Default::default(),
        };
        manifest.hosts.insert(
            "etcd1".into(),
            HostInfo {
                ip: "10.77.0.11".into(),
                mac: "52:54:00:00:00:01".into(),
                bundles: Vec::new(),
                secrets: "hosts/etcd1/secrets.tar.gz".into(),
                seeds: Vec::new(),
            },
        );
        let bytes = kiln_bundle::json_bytes(&manifest);
        std::fs::write(dir.join(BUILD_MANIFEST_NAME), &bytes).unwrap();
        std::fs::write(dir.join(BUILD_MANIFEST_SIG_NAME), manifest_key.sign(&bytes)).unwrap();
        let refs = [BundleRef {
            sha256: "a".repeat(64),
            file: "etcd-debian12-aaaa.tar.gz".into(),
        }];
        let members = HostMembers {
            meta: HostMeta {
                cluster: "lab".into(),
                host: "etcd1".into(),
                ip: "10.77.0.11".into(),
                build_id,
                generation,
                arch: "amd64".into(),
                os: "debian12".into(),
                family: "debian".into(),
                not_after: None,
                not_before: None,
                extra: Vec::new(),
            },
            bundles: &refs,
            deltas: &[],
        };
        let mut entries = members.entries();
        if let Some(k) = host_key {
            entries.push(HostMembers::signature_entry(k.sign(&members.signed_text())));
        }
        let hdir = dir.join("hosts/etcd1");
        std::fs::create_dir_all(&hdir).unwrap();
        let spec = BundleSpec { entries, mtime: 0 };
        kiln_bundle::write_archive(&hdir.join(contract::SECRETS), 0o600, &spec, true).unwrap();
    }

    #[test]
    fn every_hosts_bundles_signature_is_checked_with_the_key() {
        let t = tempfile::tempdir().unwrap();
        let ours = kiln_pki::ensure_signing_key(&t.path().join("ours")).unwrap();
        let theirs = kiln_pki::ensure_signing_key(&t.path().join("theirs")).unwrap();
        let key = t.path().join("ours/signing.pub");
        let dir = t.path().join("out");
        std::fs::create_dir_all(&dir).unwrap();

        folder(&dir, &ours, Some(&ours), 2);
        let Signatures::Verified {
            hosts, key: source, ..
        } = check(&dir, Some(&key)).unwrap()
        else {
            panic!("not verified")
        };
        assert_eq!((hosts, source), (1, KeySource::Given(key.clone())));

        // Another cluster's (or an attacker's) signature on one host's HOST and BUNDLES.
        folder(&dir, &ours, Some(&theirs), 2);
        let e = check(&dir, Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("secrets.tar.gz:BUNDLES.sig does not verify with"),
            "{e}"
        );
        // No signature at all.
        folder(&dir, &ours, None, 2);
        let e = check(&dir, Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("is not signed: no") && e.contains("BUNDLES.sig"),
            "{e}"
        );
        // Validly signed, but of another generation than the manifest says.
        folder(&dir, &ours, Some(&ours), 1);
        let e = check(&dir, Some(&key)).unwrap_err().to_string();
        assert!(
            e.contains("HOST names build") && e.contains("generation 1, MANIFEST.json"),
            "{e}"
        );
        // Without --key and without signing.pub in the folder: nothing to check against.
        assert_eq!(check(&dir, None).unwrap(), Signatures::Unsigned);
    }

    #[test]
    fn signed_members_allow_one_split_only() {
        let f = Path::new("secrets.tar.gz");
        let sha = "a".repeat(64);
        let host = b"KILN_HOST=etcd1\nKILN_GENERATION=2\n";
        let bundles = format!("{sha} etcd-debian12-aaaa.tar.gz\n");
        signed_form(f, host, bundles.as_bytes()).unwrap();
        // A BUNDLES line moved to the end of HOST (dropping a bundle) is refused.
        let moved = format!("KILN_HOST=etcd1\n{sha} etcd-debian12-aaaa.tar.gz\n");
        let e = signed_form(f, moved.as_bytes(), b"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOST line 2 is not KILN_<KEY>=<value>"), "{e}");
        // And a HOST line moved into BUNDLES.
        let e = signed_form(f, b"KILN_HOST=etcd1\n", b"KILN_GENERATION=2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("BUNDLES line 1"), "{e}");
        // A comment, a blank line or a missing final newline is not the signed form either.
        assert!(signed_form(f, b"# x\n", b"").is_err());
        assert!(signed_form(f, host, b"\n").is_err());
        assert!(signed_form(f, b"KILN_HOST=etcd1", b"").is_err());
    }
}
