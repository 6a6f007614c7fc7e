//! Small flat apt repositories of packages built on the spot, with a private apt state
//! that uses only them: what the Debian package tests resolve, solve and download against.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run, sha};

/// One package to build into an [`AptRepo`].
pub struct Deb<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its Debian version.
    pub version: &'a str,
    /// Extra control fields, each ending in a newline (`Depends: x\n`).
    pub fields: &'a str,
    /// Files it installs: (path without the leading `/`, content).
    pub files: &'a [(&'a str, &'a str)],
}

/// A `file:` repository and the apt configuration (`APT_CONFIG`) whose only source it is.
pub struct AptRepo {
    _dir: tempfile::TempDir,
    /// The apt.conf: this repository as the only source, private lists, cache and status.
    pub config: PathBuf,
    /// Each package's name and .deb bytes, in the order given.
    pub debs: Vec<(String, Vec<u8>)>,
}

impl AptRepo {
    /// Builds `debs` for `arch` with dpkg-deb (as `<name>_<version>_<arch>.deb`), lists them
    /// with `extra` stanzas appended verbatim (e.g. versions whose file is gone), and runs
    /// `apt-get update` against the private state, which needs root.
    pub fn build(arch: &str, debs: &[Deb], extra: &str) -> AptRepo {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pool = d.join("repo");
        fs::create_dir_all(&pool).unwrap();
        let mut index = String::new();
        let mut built = Vec::new();
        for deb in debs {
            let pkg = d.join("build").join(deb.name);
            fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
            fs::write(
                pkg.join("DEBIAN/control"),
                format!(
                    "Package: {}\nVersion: {}\nArchitecture: {arch}\nMaintainer: kiln <kiln@localhost>\n{}Description: test\n",
                    deb.name, deb.version, deb.fields
                ),
            )
            .unwrap();
            for (path, content) in deb.files {
                let file = pkg.join(path);
                fs::create_dir_all(file.parent().unwrap()).unwrap();
                fs::write(file, content).unwrap();
            }
            let file = format!("{}_{}_{arch}.deb", deb.name, deb.version);
            run(Command::new("dpkg-deb")
                .arg("--root-owner-group")
                .arg("--build")
                .arg(&pkg)
                .arg(pool.join(&file)));
            let bytes = fs::read(pool.join(&file)).unwrap();
            let control = run(Command::new("dpkg-deb").arg("-f").arg(pool.join(&file)));
            index.push_str(&format!(
                "{control}Filename: ./{file}\nSize: {}\nSHA256: {}\n\n",
                bytes.len(),
                sha(&bytes)
            ));
            built.push((deb.name.to_owned(), bytes));
        }
        index.push_str(extra);
        fs::write(pool.join("Packages"), index).unwrap();
        let config = private_apt(d, &pool);
        AptRepo {
            _dir: dir,
            config,
            debs: built,
        }
    }

    /// The .deb bytes of package `name`.
    pub fn deb(&self, name: &str) -> &[u8] {
        &self
            .debs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} is not in the repository"))
            .1
    }
}

/// A private apt state in `d` whose only source is the flat repository `repo`, updated:
/// returns its apt.conf.
pub fn private_apt(d: &Path, repo: &Path) -> PathBuf {
    for sub in [
        "lists/partial",
        "cache/archives/partial",
        "sources.list.d",
        "preferences.d",
    ] {
        fs::create_dir_all(d.join(sub)).unwrap();
    }
    fs::write(
        d.join("sources.list"),
        format!("deb [trusted=yes] file:{} ./\n", repo.display()),
    )
    .unwrap();
    fs::write(d.join("status"), "").unwrap();
    let config = d.join("apt.conf");
    fs::write(
        &config,
        format!(
            "Dir::Etc::SourceList \"{0}/sources.list\";\nDir::Etc::SourceParts \"{0}/sources.list.d\";\n\
             Dir::Etc::PreferencesParts \"{0}/preferences.d\";\nDir::State::Lists \"{0}/lists\";\n\
             Dir::Cache \"{0}/cache\";\nDir::State::status \"{0}/status\";\nAPT::Sandbox::User \"root\";\n",
            d.display()
        ),
    )
    .unwrap();
    run(Command::new("apt-get")
        .arg("update")
        .env("APT_CONFIG", &config));
    config
}
