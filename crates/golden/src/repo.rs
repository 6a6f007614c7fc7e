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
