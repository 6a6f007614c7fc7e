//! The loader against real files: the repository's example project, a lock, bad bytes.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_lab_example_loads_with_every_input_it_read() {
    let p = kiln_load::project(&repo().join("examples/lab/cluster.toml")).unwrap();
    assert!(p.profiles.contains_key("common"));
    assert!(p.inputs.iter().any(|f| f.ends_with("catalog/catalog.toml")));
    assert!(p.inputs.iter().any(|f| f.ends_with("cluster.toml")));
    let lock = kiln_load::lock(&p.cluster.paths.lock).unwrap().unwrap();
    assert_eq!(lock.bytes, std::fs::read(&p.cluster.paths.lock).unwrap());
    assert_eq!(lock.lock.version, 1);
}

#[test]
fn a_missing_lock_is_none_and_a_bad_one_names_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.lock");
    assert!(kiln_load::lock(&path).unwrap().is_none());
    std::fs::write(&path, "version = 2\nsource-date-epoch = 1\n").unwrap();
    let err = kiln_load::lock(&path).unwrap_err();
    assert!(matches!(err, kiln_load::LoadError::Invalid(_)), "{err}");
    assert!(
        err.to_string().contains("unsupported lock version 2"),
        "{err}"
    );
}

#[test]
fn text_that_is_not_utf8_is_refused_at_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kiln.lock");
    std::fs::write(&path, b"version = 1\nsource-\xffdate-epoch = 1\n").unwrap();
    let err = kiln_load::read_text(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(
        err.to_string(),
        "not valid UTF-8 (line 2, column 8, byte offset 19)"
    );
    let err = kiln_load::lock(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:2:8: error: not valid UTF-8 (byte offset 19)",
            path.display()
        )
    );
    // A project file: the diagnostic names the file.
    let cluster = dir.path().join("cluster.toml");
    std::fs::write(&cluster, b"name = \"\xc3\"\n").unwrap();
    let d = kiln_load::project(&cluster).unwrap_err();
    assert_eq!(
        d.to_string(),
        format!(
            "{}:1:9: error: not valid UTF-8 (byte offset 8)",
            cluster.display()
        )
    );
}

#[test]
fn overlay_trees_refuse_links_and_mark_executables() {
    use kiln_spec::Files;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("files");
    std::fs::create_dir_all(root.join("etc/x")).unwrap();
    std::fs::write(root.join("etc/x/a.conf"), "a").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let got = kiln_load::Disk.overlay_files(&root).unwrap();
    let got: Vec<(&str, u32)> = got.iter().map(|(r, m, _)| (r.as_str(), *m)).collect();
    assert_eq!(got, [("etc/x/a.conf", 0o644), ("run.sh", 0o755)]);
    assert!(kiln_load::Disk
        .overlay_files(&dir.path().join("none"))
        .unwrap()
        .is_empty());
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
    let err = kiln_load::Disk.overlay_files(&root).unwrap_err();
    assert!(err.message.contains("no links"), "{err}");
}
