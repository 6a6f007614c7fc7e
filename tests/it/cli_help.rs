//! Help texts are snapshots, so a flag cannot change without the docs noticing.

use crate::common::kiln;

#[test]
fn help_of_every_command() {
    for args in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["plan", "--help"],
        vec!["lock", "--help"],
        vec!["fetch", "--help"],
        vec!["build", "--help"],
        vec!["verify", "--help"],
        vec!["sbom", "--help"],
        vec!["push", "--help"],
        vec!["pull", "--help"],
        vec!["diff", "--help"],
        vec!["certs", "--help"],
        vec!["render", "--help"],
        vec!["images", "--help"],
        vec!["boot", "--help"],
        vec!["serve", "--help"],
        vec!["image", "--help"],
        vec!["catalog", "--help"],
        vec!["catalog", "import-checksums", "--help"],
    ] {
        let out = kiln().args(&args).env("COLUMNS", "100").output().unwrap();
        assert!(out.status.success());
        let name = format!("help_{}", args[..args.len() - 1].join("_"))
            .trim_end_matches('_')
            .to_string();
        let name = if name == "help" {
            "help_kiln".to_string()
        } else {
            name
        };
        insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn readme_documents_every_command() {
    let readme = std::fs::read_to_string(crate::common::repo().join("README.md")).unwrap();
    for cmd in [
        "kiln check",
        "kiln plan",
        "kiln lock",
        "kiln fetch",
        "kiln build",
        "kiln verify",
        "kiln sbom",
        "kiln push",
        "kiln pull",
        "kiln diff",
        "kiln certs",
        "kiln render",
        "kiln serve",
        "kiln image",
        "kiln catalog import-checksums",
    ] {
        assert!(readme.contains(cmd), "README.md does not mention `{cmd}`");
    }
}
