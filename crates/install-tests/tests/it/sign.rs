//! Signed builds: install.sh checks BUNDLES.sig (kiln's signature over HOST then BUNDLES) with
//! the public key the seed placed, using openssl, before it uses HOST or BUNDLES. It refuses a
//! build signed by another cluster's key, an unsigned build where a key is expected, altered
//! members signed again by another key, members moved between HOST and BUNDLES, and a validly
//! signed older generation; each refusal leaves the host as it was.

use std::path::{Path, PathBuf};

use kiln_bundle::contract::{self, HostMembers};
use kiln_bundle::{BundleSpec, Entry, Source};
use kiln_install_tests::fixture::{
    bundle_refs, host_meta, secrets_entries, write_build, Build, Host,
};
use kiln_install_tests::require_tool;
use kiln_install_tests::run::{Sandbox, Shell};
use kiln_pki::{ensure_signing_key, BuildSigner, SIGNING_PUB};

use crate::common::{build, host, refused, roles};

/// A cluster's signing key, made by kiln in its own PKI state folder under the sandbox.
pub(crate) fn cluster_key(sb: &Sandbox, cluster: &str) -> (BuildSigner, PathBuf) {
    let state = sb.path().join(format!("pki-{cluster}"));
    let signer = ensure_signing_key(&state).expect("signing key");
    (signer, state.join(SIGNING_PUB))
}

/// Puts `public` where the seed's write_files puts it on the host: install.sh's default key.
pub(crate) fn place_key(sb: &Sandbox, public: &Path) {
    let dest = sb.root.join("etc/kiln/signing.pub");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(public, dest).unwrap();
}

/// Writes `dir`/secrets.tar.gz with HOST and BUNDLES as given (bytes, possibly altered) and a
/// BUNDLES.sig by `signer` over `signed` (what it was asked to sign); returns its sha256.
fn write_secrets_with(
    dir: &Path,
    h: &Host,
    bundles: &[(String, String)],
    members: Option<(Vec<u8>, Vec<u8>)>,
    signature: Option<Vec<u8>>,
) -> String {
    let mut entries: Vec<Entry> = secrets_entries(h, bundles)
        .into_iter()
        .map(|(path, mode, content)| {
            let content = match (&members, path.as_str()) {
                (Some((host, _)), contract::HOST) => host.clone(),
                (Some((_, list)), contract::BUNDLES) => list.clone(),
                _ => content,
            };
            Entry {
                path,
                mode,
                source: Source::Bytes(content),
            }
        })
        .collect();
    if let Some(sig) = signature {
        entries.push(HostMembers::signature_entry(sig));
    }
    let spec = BundleSpec { entries, mtime: 0 };
    kiln_bundle::write_archive(&dir.join(contract::SECRETS), 0o600, &spec, true)
        .expect("write secrets")
        .sha256
}

/// The HOST and BUNDLES members kiln writes for `h` and `bundles`.
fn members_of(h: &Host, bundles: &[(String, String)]) -> (Vec<u8>, Vec<u8>) {
    (
        host_meta(h).render().into_bytes(),
        contract::render_bundles(&bundle_refs(bundles)),
    )
}

/// Generation `generation` of the fixture build, its secrets signed by `signer`.
fn signed_build(sb: &Sandbox, name: &str, generation: u32, signer: &BuildSigner) -> Build {
    sign_build(build(sb, name, generation), &host(generation), signer)
}

/// `b` (written for `h`) with its secrets signed by `signer` as kiln signs them (through the
/// contract's [`HostMembers::signed_text`]).
fn sign_build(b: Build, h: &Host, signer: &BuildSigner) -> Build {
    let refs = bundle_refs(&b.bundles);
    let members = HostMembers {
        meta: host_meta(h),
        bundles: &refs,
        deltas: &[],
    };
    let sig = signer.sign(&members.signed_text());
    let secrets_sha256 = write_secrets_with(&b.dir, h, &b.bundles, None, Some(sig));
    Build {
        secrets_sha256,
        ..b
    }
}

pub(crate) fn needs_openssl() {
    require_tool("openssl", "openssl");
}

#[test]
fn a_signed_build_installs_with_the_key_the_seed_placed_and_reruns_unchanged() {
    needs_openssl();
    for shell in Shell::ALL {
        let sb = Sandbox::new();
        let (signer, public) = cluster_key(&sb, "lab");
        let b = signed_build(&sb, "gen1", 1, &signer);
        // Named on the command line, as the seed's runcmd does.
        let key = public.display().to_string();
        let run = sb.run_with(shell, &b, &["--signing-key", &key], &[]);
        run.expect_ok();
        assert!(
            run.stderr
                .contains(&format!("HOST and BUNDLES signed by {key}")),
            "{}",
            run.describe()
        );
        crate::common::assert_installed(&sb, 1);
        // A run by hand without the flag takes the seed's key from /etc/kiln/signing.pub.
        place_key(&sb, &public);
        let again = sb.run(shell, &b, &[]);
        assert!(
            again.expect_ok().ends_with("unchanged"),
            "{}",
            again.describe()
        );
        assert!(
            again.stderr.contains("etc/kiln/signing.pub"),
            "{}",
            again.describe()
        );
    }
}

#[test]
fn a_build_of_another_cluster_is_refused_at_verify() {
    needs_openssl();
    let sb = Sandbox::new();
    let (_, ours) = cluster_key(&sb, "ours");
    let (theirs, _) = cluster_key(&sb, "theirs");
    let b = signed_build(&sb, "theirs", 1, &theirs);
    place_key(&sb, &ours);
    refused(
        &sb,
        &b,
        &[],
        "verify",
        "signature of HOST and BUNDLES does not verify with",
    );
}

#[test]
fn an_unsigned_build_is_refused_where_a_key_is_expected() {
    needs_openssl();
    let sb = Sandbox::new();
    let (_, public) = cluster_key(&sb, "lab");
    let unsigned = build(&sb, "unsigned", 1);
    place_key(&sb, &public);
    refused(
        &sb,
        &unsigned,
        &[],
        "verify",
        "signature missing: secrets.tar.gz has no BUNDLES.sig",
    );
    // A key named on the command line that is not there is no reason to skip the check.
    let run = sb.run_with(
        Shell::Dash,
        &unsigned,
        &["--signing-key", "/nonexistent/signing.pub"],
        &[],
    );
    run.expect_fail(
        "verify",
        "signing key /nonexistent/signing.pub does not exist",
    );
}

#[test]
fn altered_bundles_signed_again_by_another_key_are_refused() {
    needs_openssl();
    let sb = Sandbox::new();
    let (ours, public) = cluster_key(&sb, "ours");
    let (attacker, _) = cluster_key(&sb, "attacker");
    let b = signed_build(&sb, "b", 1, &ours);
    // Their etcd bundle under our BUNDLES: the pins changed, so they sign again, with their key.
    let mut other_roles = roles(1);
    other_roles[1].files[0].content = b"generation=1 but another build\n".to_vec();
    let theirs = write_build(&sb.path().join("theirs"), &host(1), &other_roles);
    std::fs::copy(
        theirs.dir.join(&theirs.bundles[1].0),
        b.dir.join(&theirs.bundles[1].0),
    )
    .unwrap();
    let mut bundles = b.bundles.clone();
    bundles[1] = theirs.bundles[1].clone();
    let h = host(1);
    let (host_text, list) = members_of(&h, &bundles);
    let sig = attacker.sign(&contract::signed_host_text(&host_text, &list));
    let secrets_sha256 = write_secrets_with(&b.dir, &h, &bundles, None, Some(sig));
    let resigned = Build {
        secrets_sha256,
        bundles,
        ..b.clone()
    };
    place_key(&sb, &public);
    refused(&sb, &resigned, &[], "verify", "does not verify with");

    // The same alteration keeping our signature fails the same way.
    let (host_text, list) = members_of(&h, &b.bundles);
    let ours_sig = ours.sign(&contract::signed_host_text(&host_text, &list));
    let secrets_sha256 = write_secrets_with(&b.dir, &h, &resigned.bundles, None, Some(ours_sig));
    let kept_sig = Build {
        secrets_sha256,
        ..resigned
    };
    refused(&sb, &kept_sig, &[], "verify", "does not verify with");
}

#[test]
fn a_bundle_line_moved_into_host_is_refused_although_the_signed_bytes_are_the_same() {
    needs_openssl();
    let sb = Sandbox::new();
    let (signer, public) = cluster_key(&sb, "lab");
    let b = signed_build(&sb, "b", 1, &signer);
    let h = host(1);
    let (host_text, list) = members_of(&h, &b.bundles);
    let sig = signer.sign(&contract::signed_host_text(&host_text, &list));
    // The first BUNDLES line moved to the end of HOST: the same bytes in the same order, and
    // the common bundle would be left out.
    let text = String::from_utf8(list).unwrap();
    let (first, rest) = text.split_at(text.find('\n').unwrap() + 1);
    let moved_line = host_text.iter().filter(|b| **b == b'\n').count() + 1;
    let moved_host = [host_text, first.as_bytes().to_vec()].concat();
    let secrets_sha256 = write_secrets_with(
        &b.dir,
        &h,
        &b.bundles,
        Some((moved_host, rest.as_bytes().to_vec())),
        Some(sig),
    );
    place_key(&sb, &public);
    refused(
        &sb,
        &Build {
            secrets_sha256,
            ..b
        },
        &[],
        "verify",
        &format!("signature: HOST line {moved_line} is not KILN_<KEY>=<value>"),
    );
}

#[test]
fn a_validly_signed_older_generation_is_refused_and_its_number_cannot_be_raised() {
    needs_openssl();
    let sb = Sandbox::new();
    let (signer, public) = cluster_key(&sb, "lab");
    place_key(&sb, &public);
    sb.run(Shell::Dash, &signed_build(&sb, "gen2", 2, &signer), &[])
        .expect_ok();
    let gen1 = signed_build(&sb, "gen1", 1, &signer);
    refused(
        &sb,
        &gen1,
        &[],
        "verify",
        "generation 1 is older than the installed generation 2",
    );
    // Generation 1's members with KILN_GENERATION raised to 3, under its valid signature.
    let h = host(1);
    let (host_text, list) = members_of(&h, &gen1.bundles);
    let sig = signer.sign(&contract::signed_host_text(&host_text, &list));
    let raised = String::from_utf8(host_text)
        .unwrap()
        .replace("KILN_GENERATION=1\n", "KILN_GENERATION=3\n");
    assert!(raised.contains("KILN_GENERATION=3\n"));
    let secrets_sha256 = write_secrets_with(
        &gen1.dir,
        &h,
        &gen1.bundles,
        Some((raised.into_bytes(), list)),
        Some(sig),
    );
    refused(
        &sb,
        &Build {
            secrets_sha256,
            ..gen1
        },
        &[],
        "verify",
        "does not verify with",
    );
    crate::common::assert_installed(&sb, 2);
}

#[test]
fn a_missing_openssl_is_named_like_the_other_tools() {
    needs_openssl();
    let sb = Sandbox::new();
    let (signer, public) = cluster_key(&sb, "lab");
    let b = signed_build(&sb, "b", 1, &signer);
    place_key(&sb, &public);
    let path = sb.path_without(&["openssl"]);
    for shell in Shell::ALL {
        let before = sb.tree();
        let run = sb.run(shell, &b, &[("PATH", path.as_str())]);
        let m = run.markers();
        assert!(
            !run.status.success()
                && m.len() == 1
                && m[0].step == "preflight"
                && m[0].status == "fail"
                && m[0].detail == "missing tools: openssl (signed builds)",
            "{shell:?}: {}",
            run.describe()
        );
        assert_eq!(before, sb.tree(), "{shell:?}: a refused run changed files");
    }
    // Without a key nothing is expected of the host: an unsigned host needs no openssl.
    std::fs::remove_file(sb.root.join("etc/kiln/signing.pub")).unwrap();
    sb.run(Shell::Dash, &b, &[("PATH", path.as_str())])
        .expect_ok();
}

#[test]
fn a_rollback_reinstalls_the_kept_generation_signed_by_a_key_since_rotated() {
    needs_openssl();
    let sb = Sandbox::new();
    let (old_key, old_public) = cluster_key(&sb, "old");
    place_key(&sb, &old_public);
    sb.run(Shell::Dash, &signed_build(&sb, "gen1", 1, &old_key), &[])
        .expect_ok();
    // The key is rotated (a new seed placed the new public key) and generation 2, signed by
    // the new key, fails its health check: the kept generation 1 goes back on, unchecked.
    let (new_key, new_public) = cluster_key(&sb, "new");
    place_key(&sb, &new_public);
    let mut broken = roles(2);
    broken[1].health = "false".into();
    let gen2 = write_build(&sb.path().join("gen2"), &host(2), &broken);
    let gen2 = sign_build(gen2, &host(2), &new_key);
    let run = sb.run(Shell::Dash, &gen2, &[]);
    let last = run.markers().pop().unwrap();
    assert!(
        !run.status.success()
            && (last.step.as_str(), last.status.as_str()) == ("rollback", "ok")
            && last.detail.starts_with("generation=1 "),
        "{}",
        run.describe()
    );
    crate::common::assert_installed(&sb, 1);
    // Generation 1 itself, given again from outside the kept copy, is checked: the old key
    // no longer verifies it.
    refused(
        &sb,
        &signed_build(&sb, "gen1-again", 1, &old_key),
        &[],
        "verify",
        "does not verify with",
    );
}
