//! Package closures computed by apt against a private status: a local repository with known
//! dependencies, and the machine's own index.

use std::fs;
use std::path::Path;

use kiln_deb::{host_arch, AptIndex, DebError};
use kiln_testkit::{is_root, ready, sha, AptRepo, Deb};

use crate::{is_sha256, lists_know};

/// A package of version 1.0-1 with `fields` and no files.
fn deb<'a>(name: &'a str, fields: &'a str) -> Deb<'a> {
    Deb {
        name,
        version: "1.0-1",
        fields,
        files: &[],
    }
}

fn digest(path: &Path) -> Option<String> {
    fs::read(path).ok().map(|b| sha(&b))
}

#[test]
fn closures_come_from_apt_with_a_private_status_in_dependency_order() {
    let test = "closures_come_from_apt_with_a_private_status_in_dependency_order";
    if !ready(test, is_root(), "needs root for apt-get update") {
        return;
    }
    let arch = host_arch().unwrap();
    let r = AptRepo::build(
        &arch,
        &[
            deb("kt-req", "Priority: required\nDepends: kt-reqlib\n"),
            deb("kt-reqlib", "Priority: optional\n"),
            deb("kt-extra", "Priority: optional\n"),
            deb("kt-app", "Priority: optional\nDepends: kt-lib (>= 1.0), kt-reqlib, kt-virtual\nRecommends: kt-unrelated\n"),
            deb("kt-lib", "Priority: optional\nPre-Depends: kt-dep\n"),
            deb("kt-dep", "Priority: optional\n"),
            deb("kt-provider", "Priority: optional\nProvides: kt-virtual\n"),
            deb("kt-unrelated", "Priority: optional\n"),
        ],
        "",
    );
    let machine_status = digest(Path::new("/var/lib/dpkg/status"));

    let index = AptIndex::load(&arch, Some(&r.config)).unwrap();
    let mut base = index.base(&["kt-extra".to_owned()]).unwrap();
    base.sort();
    assert_eq!(base, vec!["kt-extra", "kt-req", "kt-reqlib"]);

    let closure = index.closure(&base, &["kt-app".to_owned()]).unwrap();
    let names: Vec<&str> = closure.iter().map(|p| p.package.as_str()).collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .unwrap_or_else(|| panic!("{n} not in {names:?}"))
    };
    assert_eq!(
        names.len(),
        4,
        "{names:?}: the base and recommends stay out"
    );
    assert!(
        pos("kt-dep") < pos("kt-lib")
            && pos("kt-lib") < pos("kt-app")
            && pos("kt-provider") < pos("kt-app"),
        "{names:?}"
    );
    for p in &closure {
        let deb = r.deb(&p.package);
        assert_eq!(p.sha256, sha(deb), "{}", p.package);
        assert!(is_sha256(&p.sha256) && p.size == deb.len() as u64 && p.version == "1.0-1");
        assert!(
            p.filename
                .ends_with(&format!("{}_1.0-1_{arch}.deb", p.package)),
            "{p:?}"
        );
    }

    // What an earlier bundle installed is left out; what apt cannot find is named.
    let mut installed = base.clone();
    installed.push("kt-dep".into());
    let again = index.closure(&installed, &["kt-app".to_owned()]).unwrap();
    assert!(!again.iter().any(|p| p.package == "kt-dep"));
    let err = index
        .closure(&base, &["kt-missing".to_owned()])
        .unwrap_err();
    assert!(
        matches!(err, DebError::NotFound { .. }) && err.to_string().contains("kt-missing"),
        "{err}"
    );

    assert_eq!(
        digest(Path::new("/var/lib/dpkg/status")),
        machine_status,
        "the machine's dpkg status is never touched"
    );
}

#[test]
fn the_machines_index_gives_a_closure_for_keepalived_without_the_base() {
    let test = "the_machines_index_gives_a_closure_for_keepalived_without_the_base";
    if !ready(
        test,
        lists_know("keepalived"),
        "apt lists know no keepalived",
    ) {
        return;
    }
    let index = AptIndex::load(&host_arch().unwrap(), None).unwrap();
    let base = index.base(&["systemd".to_owned()]).unwrap();
    for required in ["dpkg", "libc6", "systemd", "apt"] {
        assert!(
            base.iter().any(|b| b == required),
            "{required} not in the base: {base:?}"
        );
    }
    let closure = index.closure(&base, &["keepalived".to_owned()]).unwrap();
    let names: Vec<&str> = closure.iter().map(|p| p.package.as_str()).collect();
    assert_eq!(names.last(), Some(&"keepalived"), "{names:?}");
    assert!(
        !names.contains(&"libc6") && !names.contains(&"systemd"),
        "{names:?}"
    );
    assert!(
        closure
            .iter()
            .all(|p| is_sha256(&p.sha256) && p.filename.starts_with("pool/")),
        "{closure:?}"
    );
}
