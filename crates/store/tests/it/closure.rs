//! Package closures computed by apt against a private status: a local repository with known
//! dependencies, and the machine's own index.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_store::{host_arch, is_sha256, AptIndex, StoreError};

use crate::{sh, sha};

/// A file: repository of small packages and an apt configuration that uses only it.
struct Repo {
    _dir: tempfile::TempDir,
    config: PathBuf,
    debs: Vec<(String, Vec<u8>)>,
}

/// Packages: (name, extra control fields).
fn repo(arch: &str, packages: &[(&str, &str)]) -> Option<Repo> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pool = d.join("repo");
    fs::create_dir_all(&pool).unwrap();
    let mut index = String::new();
    let mut debs = Vec::new();
    for (name, fields) in packages {
        let pkg = d.join("build").join(name);
        fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        fs::write(
            pkg.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: 1.0-1\nArchitecture: {arch}\nMaintainer: kiln <kiln@localhost>\n{fields}Description: test\n"),
        )
        .unwrap();
        let file = format!("{name}_1.0-1_{arch}.deb");
        sh(Command::new("dpkg-deb")
            .arg("--root-owner-group")
            .arg("--build")
            .arg(&pkg)
            .arg(pool.join(&file)));
        let deb = fs::read(pool.join(&file)).unwrap();
        let control = sh(Command::new("dpkg-deb").arg("-f").arg(pool.join(&file)));
        index.push_str(&format!(
            "{control}Filename: ./{file}\nSize: {}\nSHA256: {}\n\n",
            deb.len(),
            sha(&deb)
        ));
        debs.push((name.to_string(), deb));
    }
    fs::write(pool.join("Packages"), index).unwrap();
    let config = crate::private_apt(d, &pool)?;
    Some(Repo {
        _dir: dir,
        config,
        debs,
    })
}

fn is_root() -> bool {
    sh(Command::new("id").arg("-u")).trim() == "0"
}

fn digest(path: &Path) -> Option<String> {
    fs::read(path).ok().map(|b| sha(&b))
}

#[test]
fn closures_come_from_apt_with_a_private_status_in_dependency_order() {
    if !is_root() {
        eprintln!("SKIPPED closures_come_from_apt_with_a_private_status_in_dependency_order: needs root for apt-get update");
        return;
    }
    let arch = host_arch().unwrap();
    let r = repo(
        &arch,
        &[
            ("kt-req", "Priority: required\nDepends: kt-reqlib\n"),
            ("kt-reqlib", "Priority: optional\n"),
            ("kt-extra", "Priority: optional\n"),
            ("kt-app", "Priority: optional\nDepends: kt-lib (>= 1.0), kt-reqlib, kt-virtual\nRecommends: kt-unrelated\n"),
            ("kt-lib", "Priority: optional\nPre-Depends: kt-dep\n"),
            ("kt-dep", "Priority: optional\n"),
            ("kt-provider", "Priority: optional\nProvides: kt-virtual\n"),
            ("kt-unrelated", "Priority: optional\n"),
        ],
    )
    .expect("a local apt repository works as root");
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
        let deb = &r.debs.iter().find(|(n, _)| *n == p.package).unwrap().1;
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
        matches!(err, StoreError::AptNotFound { .. }) && err.to_string().contains("kt-missing"),
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
    let lists_ready = Command::new("apt-cache")
        .args(["show", "keepalived"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("\nSHA256: "))
        .unwrap_or(false);
    if !lists_ready {
        eprintln!("SKIPPED the_machines_index_gives_a_closure_for_keepalived_without_the_base: apt lists know no keepalived");
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
