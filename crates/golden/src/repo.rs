//! A flat apt repository of exactly the recipe's .deb files: `pool/`, `Packages` (each
//! package's own control fields plus Filename, Size and SHA256) and a `Release` naming the
//! codename, which mmdebstrap's package selection matches. Nothing is signed: the repository
//! lives for one build in kiln's scratch folder and is used as `[trusted=yes]`.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::disk::{command, run};
use crate::{GoldenError, Recipe};

/// Writes the repository of `recipe` into `dir` (created), re-hashing every .deb against its
/// pin while copying it.
pub fn write(dir: &Path, recipe: &Recipe) -> Result<(), GoldenError> {
    let pool = dir.join("pool");
    fs::create_dir_all(&pool).map_err(GoldenError::io("create folder", &pool))?;
    let mut debs: Vec<_> = recipe.debs.iter().collect();
    debs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut index = String::new();
    for d in debs {
        let dest = pool.join(&d.file_name);
        let (sha, size) = copy_hashing(&d.path, &dest)?;
        if sha != d.sha256 {
            return Err(GoldenError::Corrupt {
                path: d.path.clone(),
                name: d.name.clone(),
                version: d.version.clone(),
                expected: d.sha256.clone(),
                actual: sha,
            });
        }
        let out = run(command("dpkg-deb").arg("-f").arg(&dest), "dpkg-deb -f")?;
        let control = String::from_utf8_lossy(&out);
        index.push_str(control.trim_end_matches('\n'));
        index.push_str(&format!(
            "\nFilename: ./pool/{}\nSize: {size}\nSHA256: {sha}\n\n",
            d.file_name
        ));
    }
    let packages = dir.join("Packages");
    fs::write(&packages, &index).map_err(GoldenError::io("write", &packages))?;
    let release = format!(
        "Origin: kiln\nLabel: kiln\nSuite: {c}\nCodename: {c}\nArchitectures: {a} all\nSHA256:\n {} {} Packages\n",
        hex::encode(Sha256::digest(index.as_bytes())),
        index.len(),
        c = recipe.codename,
        a = recipe.arch,
    );
    let path = dir.join("Release");
    fs::write(&path, release).map_err(GoldenError::io("write", &path))
}

/// Copies `from` to `to`, returning the sha256 and size of the bytes copied.
fn copy_hashing(from: &Path, to: &Path) -> Result<(String, u64), GoldenError> {
    let mut src = File::open(from).map_err(GoldenError::io("open", from))?;
    let mut dst = File::create(to).map_err(GoldenError::io("create", to))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf).map_err(GoldenError::io("read", from))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])
            .map_err(GoldenError::io("write", to))?;
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Deb;
    use std::process::Command;

    /// A real .deb built by dpkg-deb: its path and sha256.
    fn deb(dir: &Path, name: &str) -> (std::path::PathBuf, String) {
        let root = dir.join(format!("build-{name}"));
        fs::create_dir_all(root.join("DEBIAN")).unwrap();
        fs::write(
            root.join("DEBIAN/control"),
            format!("Package: {name}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: kiln <kiln@localhost>\nPriority: required\nDescription: test\n"),
        )
        .unwrap();
        let file = dir.join(format!("{name}.blob"));
        let st = Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let sha = hex::encode(Sha256::digest(fs::read(&file).unwrap()));
        (file, sha)
    }

    fn recipe(debs: Vec<Deb>) -> Recipe {
        Recipe {
            os: "debian12".into(),
            codename: "bookworm".into(),
            arch: "amd64".into(),
            debs,
            source_date_epoch: 1,
            kernel: "cloud".into(),
            initrd_modules: "list".into(),
        }
    }

    fn entry(name: &str, path: std::path::PathBuf, sha256: String) -> Deb {
        Deb {
            name: name.into(),
            version: "1.0-1".into(),
            arch: "all".into(),
            path,
            file_name: format!("{name}_1.0-1_all.deb"),
            sha256,
        }
    }

    #[test]
    fn the_index_lists_each_package_with_its_own_control_fields_and_the_release_its_hash() {
        let t = tempfile::tempdir().unwrap();
        let (b, sb) = deb(t.path(), "bbb");
        let (a, sa) = deb(t.path(), "aaa");
        let repo = t.path().join("repo");
        write(
            &repo,
            &recipe(vec![
                entry("bbb", b, sb.clone()),
                entry("aaa", a, sa.clone()),
            ]),
        )
        .unwrap();
        let index = fs::read_to_string(repo.join("Packages")).unwrap();
        // Sorted by name, each with the fields apt needs to take the file from the pool.
        let first = index.find("Package: aaa").unwrap();
        assert!(first < index.find("Package: bbb").unwrap());
        assert!(index.contains(&format!(
            "Priority: required\nDescription: test\nFilename: ./pool/aaa_1.0-1_all.deb\nSize: {}\nSHA256: {sa}\n\n",
            fs::metadata(repo.join("pool/aaa_1.0-1_all.deb")).unwrap().len()
        )), "{index}");
        assert_eq!(
            hex::encode(Sha256::digest(
                fs::read(repo.join("pool/bbb_1.0-1_all.deb")).unwrap()
            )),
            sb
        );
        let release = fs::read_to_string(repo.join("Release")).unwrap();
        assert!(release.contains("Codename: bookworm\n"), "{release}");
        assert!(release.ends_with(&format!(
            "SHA256:\n {} {} Packages\n",
            hex::encode(Sha256::digest(index.as_bytes())),
            index.len()
        )));
    }

    #[test]
    fn a_blob_that_does_not_match_its_pin_is_refused_naming_both_hashes() {
        let t = tempfile::tempdir().unwrap();
        let (a, sa) = deb(t.path(), "aaa");
        let wrong = "0".repeat(64);
        let err = write(
            &t.path().join("repo"),
            &recipe(vec![entry("aaa", a, wrong.clone())]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!("expected sha256 {wrong}, got {sa}"))
                && err.contains("(aaa 1.0-1)")
                && err.contains("run `kiln fetch` again"),
            "{err}"
        );
    }
}
