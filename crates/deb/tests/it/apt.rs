//! apt_resolve against the machine's apt lists and against a local file: repository, and
//! downloads of a pinned build.

use std::fs;

use kiln_deb::{apt_resolve, download, host_arch, DebError};
use kiln_testkit::{is_root, ready, sha, AptRepo, Deb};

use crate::{is_sha256, lists_know};

#[test]
fn apt_resolve_coreutils_from_the_system_lists() {
    let test = "apt_resolve_coreutils_from_the_system_lists";
    if !ready(
        test,
        lists_know("coreutils"),
        "apt lists are empty (run `apt-get update`)",
    ) {
        return;
    }
    let arch = host_arch().unwrap();
    let candidate = apt_resolve("coreutils", "", &arch, None).unwrap();
    assert!(is_sha256(&candidate.sha256), "{candidate:?}");
    assert!(candidate.size > 0);
    assert!(
        candidate.filename.starts_with("pool/") && candidate.filename.ends_with(".deb"),
        "{candidate:?}"
    );
    assert_eq!(candidate.arch, arch);

    let upstream = candidate.version.split(['-', '+', '~']).next().unwrap();
    let by_prefix = apt_resolve("coreutils", upstream, &arch, None).unwrap();
    assert!(by_prefix.version.starts_with(upstream), "{by_prefix:?}");
    assert!(is_sha256(&by_prefix.sha256) && by_prefix.size > 0);

    let err = apt_resolve("coreutils", "0.0.0.0.1", &arch, None).unwrap_err();
    assert!(matches!(err, DebError::NoVersion { .. }), "{err}");
    assert!(err.to_string().contains(&candidate.version), "{err}");
}

#[test]
fn apt_refuses_another_architecture() {
    let host = host_arch().unwrap();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let err = apt_resolve("coreutils", "", other, None).unwrap_err();
    assert!(matches!(err, DebError::Arch { .. }), "{err}");
    assert!(
        err.to_string().contains(other) && err.to_string().contains(&host),
        "{err}"
    );
}

#[test]
fn option_like_names_never_reach_apt() {
    let dir = tempfile::tempdir().unwrap();
    let arch = host_arch().unwrap();
    let err = download("-oDir=/", "1.0", &arch, None, dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            DebError::Invalid {
                field: "package",
                ..
            }
        ),
        "{err}"
    );
    let err = apt_resolve("coreutils", "--version", &arch, None).unwrap_err();
    assert!(
        matches!(
            err,
            DebError::Invalid {
                field: "version",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn apt_resolves_and_downloads_from_a_local_repository() {
    let test = "apt_resolves_and_downloads_from_a_local_repository";
    if !ready(test, is_root(), "needs root for apt-get update") {
        return;
    }
    let arch = host_arch().unwrap();
    // An older version too, so the prefix has something to choose between.
    let old = format!(
        "Package: kiln-deb-test\nVersion: 1.2.0-1\nArchitecture: {arch}\nFilename: ./old.deb\nSize: 10\nSHA256: {}\nDescription: old\n\n",
        "0".repeat(64)
    );
    let repo = AptRepo::build(
        &arch,
        &[Deb {
            name: "kiln-deb-test",
            version: "1.2.3-1+b2",
            fields: "",
            files: &[("usr/bin/kiln-deb-test", "#!/bin/sh\n")],
        }],
        &old,
    );
    let deb = repo.deb("kiln-deb-test");
    let config = Some(repo.config.as_path());

    let pin = apt_resolve("kiln-deb-test", "1.2", &arch, config).unwrap();
    assert_eq!(pin.version, "1.2.3-1+b2", "newest 1.2.x");
    assert_eq!(pin.sha256, sha(deb));
    assert_eq!(pin.size, deb.len() as u64);
    assert_eq!(pin.arch, arch);
    assert_eq!(
        apt_resolve("kiln-deb-test", "1.2.0", &arch, config)
            .unwrap()
            .version,
        "1.2.0-1"
    );
    // The candidate (no prefix) is apt's own choice: the newest.
    assert_eq!(
        apt_resolve("kiln-deb-test", "", &arch, config)
            .unwrap()
            .version,
        "1.2.3-1+b2"
    );
    let err = apt_resolve("kiln-deb-absent", "", &arch, config).unwrap_err();
    assert!(
        matches!(err, DebError::NotFound { .. }) && err.to_string().contains("kiln-deb-absent"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let got = download("kiln-deb-test", "1.2.3-1+b2", &arch, config, dir.path()).unwrap();
    assert_eq!(fs::read(&got).unwrap(), deb);

    // A version the repository no longer has (an update superseded it) is named as such.
    let dir = tempfile::tempdir().unwrap();
    let err = download("kiln-deb-test", "1.2.3-1+b1", &arch, config, dir.path()).unwrap_err();
    assert!(
        matches!(err, DebError::VersionGone { .. })
            && err.to_string().contains("kiln-deb-test 1.2.3-1+b1")
            && err.to_string().contains("kiln lock --repin-packages"),
        "{err}"
    );
}
