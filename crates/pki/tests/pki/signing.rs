//! openssl checks kiln's build signatures (`openssl dgst -sha256 -verify`, as install.sh does),
//! and kiln checks openssl's: the two agree on key and signature formats.

use std::path::Path;

use kiln_pki::{ensure_signing_key, BuildVerifier, SignatureError, SIGNING_KEY, SIGNING_PUB};

use crate::common::*;

/// `openssl dgst -sha256 -verify PUB -signature SIG FILE`: (success, what it printed).
fn openssl_verify(public: &Path, sig: &Path, file: &Path) -> (bool, String) {
    let out = run(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-verify",
            public.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn openssl_verifies_kilns_signature_and_refuses_altered_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let signer = ensure_signing_key(&pki).unwrap();
    let file = dir.path().join("MANIFEST.json");
    std::fs::write(&file, b"{\"build-id\": \"abc\", \"generation\": 3}\n").unwrap();
    let sig = dir.path().join("MANIFEST.json.sig");
    std::fs::write(&sig, signer.sign(&std::fs::read(&file).unwrap())).unwrap();

    let (good, text) = openssl_verify(&pki.join(SIGNING_PUB), &sig, &file);
    assert!(good, "openssl refused kiln's signature: {text}");
    assert!(text.contains("Verified OK"), "{text}");

    std::fs::write(&file, b"{\"build-id\": \"abc\", \"generation\": 4}\n").unwrap();
    let (good, text) = openssl_verify(&pki.join(SIGNING_PUB), &sig, &file);
    assert!(
        !good,
        "openssl accepted a signature over other bytes: {text}"
    );
    // "Verification Failure" (1.0.2) or "Verification failure" (3.x).
    assert!(
        text.to_lowercase().contains("verification failure"),
        "{text}"
    );
}

#[test]
fn openssl_reads_the_key_files_and_kiln_checks_openssls_signature() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    let signer = ensure_signing_key(&pki).unwrap();
    let key = pki.join(SIGNING_KEY);
    // The public key openssl derives from signing.key is signing.pub, byte for byte.
    let derived = ok(
        "openssl",
        &["pkey", "-in", key.to_str().unwrap(), "-pubout"],
    );
    assert_eq!(derived.as_bytes(), signer.public_pem());
    let text = ok(
        "openssl",
        &["pkey", "-in", key.to_str().unwrap(), "-noout", "-text"],
    );
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );

    let file = dir.path().join("BUNDLES");
    std::fs::write(&file, b"KILN_GENERATION=2\n").unwrap();
    let sig = dir.path().join("BUNDLES.sig");
    let f = file.to_str().unwrap();
    ok(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-sign",
            key.to_str().unwrap(),
            "-out",
            sig.to_str().unwrap(),
            f,
        ],
    );
    let v = BuildVerifier::from_pem(&std::fs::read(pki.join(SIGNING_PUB)).unwrap()).unwrap();
    v.verify(b"KILN_GENERATION=2\n", &std::fs::read(&sig).unwrap())
        .unwrap();
    assert!(matches!(
        v.verify(b"KILN_GENERATION=3\n", &std::fs::read(&sig).unwrap()),
        Err(SignatureError::Mismatch)
    ));
}

#[test]
fn a_key_made_by_openssl_is_not_ours() {
    let dir = tempfile::tempdir().unwrap();
    let ours = ensure_signing_key(&dir.path().join("pki")).unwrap();
    let other = dir.path().join("other.pem");
    ok(
        "openssl",
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            other.to_str().unwrap(),
        ],
    );
    let file = dir.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let sig = dir.path().join("f.sig");
    ok(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-sign",
            other.to_str().unwrap(),
            "-out",
            sig.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    assert!(matches!(
        ours.verifier().verify(b"x", &std::fs::read(&sig).unwrap()),
        Err(SignatureError::Mismatch)
    ));
    assert!(matches!(
        BuildVerifier::from_pem(&std::fs::read(&other).unwrap()),
        Err(SignatureError::BadPublicKey(_))
    ));
}
