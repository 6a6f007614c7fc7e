//! OS packages: closures locked per role and OS, fetched into the store and shipped in the
//! role bundle as `packages/<file>` listed in `PACKAGES` in install order. EL rpms come from
//! the catalog over a local HTTP server; Debian closures from apt against a local repository.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_testkit::{is_root, ready};
use sha2::{Digest, Sha256};

use crate::common::{kiln, walk, without_lb_hosts, Fixture};

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Serves `files` (path → bytes) on 127.0.0.1 with GET and HEAD; 404 for anything else.
fn serve(files: BTreeMap<String, Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap_or(0);
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                    break;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("");
            match files.get(path) {
                Some(body) => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    if !first.starts_with("HEAD") {
                        let _ = conn.write_all(body);
                    }
                }
                None => {
                    let _ = write!(
                        conn,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                }
            }
        }
    });
    port
}

/// The files of the bundle whose name starts with `prefix`: path → bytes.
fn bundle_files(out: &Path, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let bundle = walk(&out.join("bundles"))
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no bundle {prefix}* in {}", out.display()));
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        fs::File::open(bundle).unwrap(),
    ));
    let mut files = BTreeMap::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        files.insert(path, bytes);
    }
    files
}

fn build(fx: &Fixture) -> PathBuf {
    let out = fx.dir.join("out");
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "cluster.toml", "--seed", "none", "--out"])
        .arg(&out)
        .assert()
        .success();
    out.join("lab")
}

#[test]
fn el_rpms_from_the_catalog_are_locked_fetched_over_http_and_bundled_dependencies_first() {
    let chrony = b"not really an rpm: chrony".to_vec();
    let seccomp = b"not really an rpm: libseccomp".to_vec();
    let files = BTreeMap::from([
        (
            "/el9/Packages/chrony-4.3-1.el9.x86_64.rpm".to_string(),
            chrony.clone(),
        ),
        (
            "/el9/Packages/libseccomp-2.5.2-2.el9.x86_64.rpm".to_string(),
            seccomp.clone(),
        ),
    ]);
    let port = serve(files);
    let fx = Fixture::small();
    fx.edit(|t| {
        without_lb_hosts(t)
            .replace("os = \"debian12\"", "os = \"rocky9\"")
            .replace("bundle = false", "bundle = true")
    });
    let cat = fx.dir.join("catalog/catalog.toml");
    let rpm = |name: &str, version: &str, bytes: &[u8], requires: &str| {
        format!(
            "\n[[rpm]]\nos = \"el\"\nname = \"{name}\"\nversion = \"{version}\"\narch = \"x86_64\"\nurl = \"http://127.0.0.1:{port}/el9/Packages/{name}-{version}.x86_64.rpm\"\nsha256 = \"{}\"\nsize = {}\nrequires = [{requires}]\n",
            sha(bytes),
            bytes.len()
        )
    };
    let mut text = fs::read_to_string(&cat).unwrap();
    text.push_str(&rpm("chrony", "4.3-1.el9", &chrony, "\"libseccomp\""));
    fs::write(&cat, &text).unwrap();

    // Without the dependency's entry, lock names exactly what is missing, and where to add it.
    let out = kiln()
        .current_dir(&fx.dir)
        .args(["lock", "--offline", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("package libseccomp (x86_64) of common on rocky9: no [[rpm]] entry in"),
        "{stderr}"
    );
    assert!(!stderr.contains("package chrony"), "{stderr}");

    text.push_str(&rpm("libseccomp", "2.5.2-2.el9", &seccomp, ""));
    fs::write(&cat, &text).unwrap();
    kiln()
        .current_dir(&fx.dir)
        .args(["lock", "--offline", "cluster.toml"])
        .assert()
        .success();
    let lock = fs::read_to_string(fx.dir.join("kiln.lock")).unwrap();
    assert!(
        lock.contains("[[closure]]\nos = \"rocky9\"\nrole = \"common\"")
            && lock.contains("install = [\"libseccomp\", \"chrony\"]"),
        "{lock}"
    );

    let lab = build(&fx);
    let files = bundle_files(&lab, "common-rocky9-");
    assert_eq!(
        String::from_utf8_lossy(&files["PACKAGES"]),
        "packages/libseccomp-2.5.2-2.el9.x86_64.rpm\npackages/chrony-4.3-1.el9.x86_64.rpm\n"
    );
    assert_eq!(files["packages/chrony-4.3-1.el9.x86_64.rpm"], chrony);
    assert_eq!(files["packages/libseccomp-2.5.2-2.el9.x86_64.rpm"], seccomp);
    let manifest = String::from_utf8_lossy(&files["MANIFEST"]);
    assert!(
        manifest.contains(&format!(
            "{} 0644 {} packages/chrony-4.3-1.el9.x86_64.rpm",
            sha(&chrony),
            chrony.len()
        )),
        "{manifest}"
    );
    let etcd = bundle_files(&lab, "etcd-rocky9-");
    assert_eq!(etcd["PACKAGES"], b"", "a role without packages lists none");

    // A profile asking for another package makes the lock stale: the build says so.
    let profile = fx.dir.join("profiles/common/profile.toml");
    let p = fs::read_to_string(&profile).unwrap().replacen(
        "packages = [\"chrony\"]",
        "packages = [\"chrony\", \"libseccomp\"]",
        1,
    );
    fs::write(&profile, p).unwrap();
    let out = kiln()
        .current_dir(&fx.dir)
        .args([
            "build",
            "cluster.toml",
            "--seed",
            "none",
            "--offline",
            "--force",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "packages of common on rocky9: the profiles' packages or the assumed base changed"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds a .deb of `version` with the given control fields.
fn deb_version(dir: &Path, name: &str, version: &str, fields: &str) -> (String, Vec<u8>) {
    let pkg = dir.join("build").join(name);
    fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
    fs::create_dir_all(pkg.join("usr/share/kiln-test")).unwrap();
    fs::write(pkg.join("usr/share/kiln-test").join(name), name).unwrap();
    fs::write(pkg.join("DEBIAN/control"), format!("Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: kiln <kiln@localhost>\n{fields}Description: test\n")).unwrap();
    let file = format!("{name}_{version}_amd64.deb");
    let st = Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("--build")
        .arg(&pkg)
        .arg(dir.join("repo").join(&file))
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    (
        file.clone(),
        fs::read(dir.join("repo").join(&file)).unwrap(),
    )
}

/// A file: repository that apt sees as Debian bookworm, and an apt.conf using only it. Its
/// chrony has `chrony_version`; a second call replaces the index (an update superseding it).
fn bookworm_repo(dir: &Path, chrony_version: &str) -> BTreeMap<String, Vec<u8>> {
    fs::create_dir_all(dir.join("repo")).unwrap();
    let mut debs = BTreeMap::new();
    let mut index = String::new();
    let mut add = |name: &str, fields: &str| {
        let version = if name == "chrony" {
            chrony_version
        } else {
            "1.0-1"
        };
        let (file, bytes) = deb_version(dir, name, version, fields);
        let control = String::from_utf8(
            Command::new("dpkg-deb")
                .arg("-f")
                .arg(dir.join("repo").join(&file))
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap();
        index.push_str(&format!(
            "{control}Filename: ./{file}\nSize: {}\nSHA256: {}\n\n",
            bytes.len(),
            sha(&bytes)
        ));
        debs.insert(name.to_string(), bytes);
    };
    add("kt-required", "Priority: required\nEssential: yes\n");
    for assumed in [
        "systemd",
        "systemd-sysv",
        "udev",
        "dbus",
        "iproute2",
        "procps",
    ] {
        add(assumed, "Priority: optional\n");
    }
    add("kt-libchrony", "Priority: optional\nDepends: kt-required\n");
    add(
        "chrony",
        "Priority: optional\nDepends: kt-libchrony (>= 1.0), systemd\n",
    );
    fs::write(dir.join("repo/Packages"), &index).unwrap();
    let release = format!(
        "Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 01 Jan 2000 00:00:00 UTC\nArchitectures: amd64\nSHA256:\n {} {} Packages\n",
        sha(index.as_bytes()),
        index.len()
    );
    fs::write(dir.join("repo/Release"), release).unwrap();
    kiln_testkit::private_apt(dir, &dir.join("repo"));
    debs
}

#[test]
fn debian_closures_come_from_apt_with_a_private_status_and_ship_in_install_order() {
    let test = "debian_closures_come_from_apt_with_a_private_status_and_ship_in_install_order";
    let amd64 = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .is_ok_and(|o| o.stdout == b"amd64\n");
    if !ready(
        test,
        is_root() && amd64,
        "needs root (apt-get update of a local repository) on amd64",
    ) {
        return;
    }
    let fx = Fixture::small();
    let debs = bookworm_repo(&fx.dir.join("apt"), "1.0-1");
    fx.edit(|t| {
        without_lb_hosts(t).replace(
            "bundle = false",
            "bundle = true\napt-config = { debian12 = \"apt/apt.conf\" }",
        )
    });
    kiln()
        .current_dir(&fx.dir)
        .args(["lock", "--offline", "cluster.toml"])
        .assert()
        .success();
    let lock = fs::read_to_string(fx.dir.join("kiln.lock")).unwrap();
    // The assumed base (minbase: kt-required; a booted systemd host) stays out of the closure.
    assert!(
        lock.contains("install = [\"kt-libchrony\", \"chrony\"]"),
        "{lock}"
    );
    assert!(
        lock.contains("base = \"minbase + dbus, iproute2, procps, systemd, systemd-sysv, udev\""),
        "{lock}"
    );
    assert!(
        lock.contains(&format!("sha256 = \"{}\"", sha(&debs["chrony"]))),
        "pinned by apt's index: {lock}"
    );

    // Fetched with apt under the same configuration, then bundled in install order.
    let lab = build(&fx);
    let files = bundle_files(&lab, "common-debian12-");
    assert_eq!(
        String::from_utf8_lossy(&files["PACKAGES"]),
        "packages/kt-libchrony_1.0-1_amd64.deb\npackages/chrony_1.0-1_amd64.deb\n"
    );
    assert_eq!(files["packages/chrony_1.0-1_amd64.deb"], debs["chrony"]);

    // A relock keeps the closure as it is (versions do not move under a reviewed lock).
    kiln()
        .current_dir(&fx.dir)
        .args(["lock", "--offline", "cluster.toml"])
        .assert()
        .success();
    assert_eq!(fs::read_to_string(fx.dir.join("kiln.lock")).unwrap(), lock);

    // Assuming more of the hosts shrinks the closure.
    fx.edit(|t| {
        t.replace(
            "bundle = true",
            "bundle = true\nassume-installed = [\"kt-libchrony\"]",
        )
    });
    kiln()
        .current_dir(&fx.dir)
        .args(["lock", "--offline", "cluster.toml"])
        .assert()
        .success();
    let lock = fs::read_to_string(fx.dir.join("kiln.lock")).unwrap();
    assert!(
        lock.contains("install = [\"chrony\"]") && lock.contains("kt-libchrony, procps"),
        "{lock}"
    );

    // An update supersedes the pinned chrony and the repository drops it: fetch names the
    // package, its pinned version and the command that re-pins; that command re-pins it alone.
    let old_chrony = sha(&debs["chrony"]);
    let debs = bookworm_repo(&fx.dir.join("apt"), "1.0-2");
    fs::remove_dir_all(fx.dir.join("vendor")).unwrap();
    let out = kiln()
        .current_dir(&fx.dir)
        .args(["fetch", "cluster.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("apt package chrony 1.0-1 (amd64) is pinned in kiln.lock but this machine's apt sources no longer offer it")
            && err.contains("run `kiln lock --repin-packages`"),
        "{err}"
    );
    let out = kiln()
        .current_dir(&fx.dir)
        .args(["lock", "--offline", "--repin-packages", "cluster.toml"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("repinned debian12 chrony (amd64) 1.0-1 -> 1.0-2\n")
            && !said.contains("kt-libchrony"),
        "{said}"
    );
    let relocked = fs::read_to_string(fx.dir.join("kiln.lock")).unwrap();
    assert!(
        relocked.contains(&format!("sha256 = \"{}\"", sha(&debs["chrony"])))
            && relocked.contains("chrony_1.0-2_amd64.deb\"")
            && !relocked.contains(&old_chrony),
        "{relocked}"
    );
    kiln()
        .current_dir(&fx.dir)
        .args(["fetch", "cluster.toml"])
        .assert()
        .success();
}

#[test]
fn a_release_other_than_the_index_is_named_with_what_to_configure() {
    let lists_ready = Command::new("apt-cache")
        .args(["policy"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("n=bookworm,"));
    let test = "a_release_other_than_the_index_is_named_with_what_to_configure";
    if !ready(
        test,
        lists_ready,
        "this machine's apt index is not Debian 12",
    ) {
        return;
    }
    let fx = Fixture::small();
    fx.edit(|t| {
        t.replace("os = \"debian12\"", "os = \"ubuntu2204\"")
            .replace("bundle = false", "bundle = true")
    });
    let out = kiln()
        .current_dir(&fx.dir)
        .args(["lock", "--offline", "cluster.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("packages chrony of common on ubuntu2204: this machine's apt configuration has no index for Ubuntu jammy"), "{stderr}");
    assert!(
        stderr.contains("[packages.apt-config] ubuntu2204"),
        "{stderr}"
    );
}
