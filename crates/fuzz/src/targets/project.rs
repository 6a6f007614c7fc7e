//! The repository's profiles, overlays and catalog held in memory, served through kiln-spec's
//! [`Files`] with one file (the input) replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

use kiln_spec::project::OverlayFile;
use kiln_spec::{Diagnostic, Files};

/// Files read once from the repository, by normalised absolute path.
#[derive(Debug, Default)]
pub struct MemFiles {
    root: PathBuf,
    texts: BTreeMap<PathBuf, String>,
    trees: BTreeMap<PathBuf, Vec<OverlayFile>>,
}

impl MemFiles {
    /// Reads `profiles/`, `overlays/` and `catalog/` (text files only) under `root`.
    pub fn load(root: &Path) -> Self {
        let root = &normalise(root);
        let mut files = MemFiles {
            root: root.to_owned(),
            ..Default::default()
        };
        for dir in ["profiles", "overlays", "catalog"] {
            files.read_tree(&root.join(dir));
        }
        let overlays = root.join("overlays");
        for name in files.subdirs_with(&overlays, "overlay.toml") {
            let tree = overlays.join(name).join("files");
            let found = kiln_load::Disk.overlay_files(&tree).unwrap_or_default();
            files.trees.insert(tree, found);
        }
        files
    }

    fn read_tree(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                self.read_tree(&path);
            } else if let Ok(text) = kiln_load::read_text(&path) {
                self.texts.insert(path, text);
            }
        }
    }

    /// The repository root the files came from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The text of a file read at load time.
    pub fn get(&self, path: &Path) -> Option<&str> {
        self.texts.get(&normalise(path)).map(String::as_str)
    }

    /// These files with `path` holding `data` instead (`None`: bytes that are not UTF-8).
    pub fn with<'a>(&'a self, path: &'a Path, data: Option<&'a str>) -> WithInput<'a> {
        WithInput {
            files: self,
            path,
            data,
        }
    }

    /// A file of the same name in any profile's folder: one profile.toml input can then name
    /// the templates of every role.
    pub fn any_profile_file(&self, path: &Path) -> io::Result<String> {
        let profiles = self.root.join("profiles");
        let name = path.file_name();
        self.texts
            .iter()
            .find(|(p, _)| p.starts_with(&profiles) && p.file_name() == name)
            .map(|(_, text)| text.clone())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// A reader of template files, as kiln-spec's profile and overlay loaders take it.
    pub fn read(&self, path: &Path) -> io::Result<String> {
        self.get(path)
            .map(str::to_owned)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

/// [`MemFiles`] with the input in place of one file.
#[derive(Debug)]
pub struct WithInput<'a> {
    files: &'a MemFiles,
    path: &'a Path,
    data: Option<&'a str>,
}

impl Files for WithInput<'_> {
    fn read(&self, path: &Path) -> io::Result<String> {
        if normalise(path) == normalise(self.path) {
            return self
                .data
                .map(str::to_owned)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not valid UTF-8"));
        }
        self.files.read(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        normalise(path) == normalise(self.path) || self.files.get(path).is_some()
    }

    fn subdirs_with(&self, dir: &Path, file: &str) -> BTreeSet<String> {
        self.files.subdirs_with(dir, file)
    }

    fn overlay_files(&self, root: &Path) -> Result<Vec<OverlayFile>, Diagnostic> {
        Ok(self
            .files
            .trees
            .get(&normalise(root))
            .cloned()
            .unwrap_or_default())
    }
}

impl MemFiles {
    fn subdirs_with(&self, dir: &Path, file: &str) -> BTreeSet<String> {
        let dir = normalise(dir);
        self.texts
            .keys()
            .filter_map(|p| {
                let rel = p.strip_prefix(&dir).ok()?;
                let mut parts = rel.components();
                let (Some(Component::Normal(name)), Some(Component::Normal(f)), None) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return None;
                };
                (f == file).then(|| name.to_string_lossy().into_owned())
            })
            .collect()
    }
}

/// `path` with `.` and `..` resolved lexically, as the disk would resolve them.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
