//! user-data as cloud-init reads it: `cloud-init schema`, and PyYAML's YAML 1.1 types.

use std::process::Command;

use cloud_init_config::*;

use crate::fixtures::{rich_config, seed, yaml11_traps};
use crate::tools::{python, run, run_text, tool};

/// Loads each named seed file with PyYAML's `safe_load` and with cloud-init's
/// own loader, checks they agree, and prints them as one JSON object.
const LOAD: &str = r#"
import json, sys, yaml
from cloudinit import util
out = {}
for path in sys.argv[1:]:
    raw = open(path, "rb").read()
    doc = yaml.safe_load(raw)
    assert doc == util.load_yaml(raw), path
    out[path.rsplit("/", 1)[-1]] = doc
print(json.dumps(out, default=lambda o: "NOT-JSON %s %r" % (type(o).__name__, o)))
"#;

/// What PyYAML loads from the rendered files, keyed by file name.
pub fn python_load(paths: &[&std::path::Path]) -> serde_json::Value {
    let out = run_text(python().args(["-c", LOAD]).args(paths));
    serde_json::from_str(&out).expect("JSON from python")
}

fn schema_check(user_data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-data");
    std::fs::write(&file, user_data).unwrap();
    let out = run(Command::new(tool("cloud-init", "cloud-init"))
        .args(["schema", "--config-file"])
        .arg(&file));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Valid cloud-config"), "{text}");
    assert!(!text.to_lowercase().contains("deprecat"), "{text}");
}

#[test]
fn rendered_user_data_starts_with_the_header() {
    let bytes = render_user_data(&rich_config()).unwrap();
    assert!(bytes.starts_with(b"#cloud-config\n"));
    let empty = render_user_data(&CloudConfig::default()).unwrap();
    assert!(
        empty.starts_with(b"#cloud-config\n"),
        "{}",
        String::from_utf8_lossy(&empty)
    );
}

#[test]
fn cloud_init_schema_accepts_every_rendered_user_data() {
    schema_check(&render_user_data(&rich_config()).unwrap());
    schema_check(&render_user_data(&yaml11_traps()).unwrap());
    let minimal = CloudConfig {
        hostname: Some("node-1".into()),
        manage_etc_hosts: Some(ManageEtcHosts::Enabled),
        runcmd: vec![RunCmd::from("true")],
        ..CloudConfig::default()
    };
    schema_check(&render_user_data(&minimal).unwrap());
    let disabled = CloudConfig {
        manage_etc_hosts: Some(ManageEtcHosts::Disabled),
        ..CloudConfig::default()
    };
    schema_check(&render_user_data(&disabled).unwrap());
}

#[test]
fn cloud_init_schema_rejects_a_broken_document() {
    // Guards the check above: schema failures do surface as a failed command.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-data");
    std::fs::write(&file, "#cloud-config\nruncmd: 5\n").unwrap();
    let status = Command::new(tool("cloud-init", "cloud-init"))
        .args(["schema", "--config-file"])
        .arg(&file)
        .output()
        .unwrap()
        .status;
    assert!(!status.success());
}

/// Every value PyYAML (YAML 1.1, as cloud-init) loads equals the model's
/// JSON form: no string came back as a bool, number, date or null.
#[test]
fn pyyaml_loads_every_value_with_its_rust_type() {
    let seed = Seed {
        user_data: yaml11_traps(),
        ..seed()
    };
    let dir = tempfile::tempdir().unwrap();
    write_seed_dir(dir.path(), &seed).unwrap();
    let names = [USER_DATA, META_DATA, NETWORK_CONFIG];
    let paths: Vec<_> = names.iter().map(|n| dir.path().join(n)).collect();
    let loaded = python_load(&paths.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    let expected = serde_json::json!({
        USER_DATA: serde_json::to_value(&seed.user_data).unwrap(),
        META_DATA: serde_json::to_value(&seed.meta_data).unwrap(),
        NETWORK_CONFIG: serde_json::to_value(seed.network_config.as_ref().unwrap()).unwrap(),
    });
    assert_eq!(loaded, expected);
    // The classic traps, spelled out.
    let ud = &loaded[USER_DATA];
    assert_eq!(ud["hostname"], "on");
    assert_eq!(ud["write_files"][0]["content"], "yes");
    assert_eq!(ud["write_files"][0]["permissions"], "0644");
    assert_eq!(
        loaded[NETWORK_CONFIG]["ethernets"]["eth0"]["match"]["macaddress"],
        "52:54:00:12:34:56"
    );
}

#[test]
fn rich_config_round_trips_through_pyyaml() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(USER_DATA);
    std::fs::write(&file, render_user_data(&rich_config()).unwrap()).unwrap();
    let loaded = python_load(&[&file]);
    assert_eq!(
        loaded[USER_DATA],
        serde_json::to_value(rich_config()).unwrap()
    );
}

#[test]
fn rendered_documents_parse_back_into_the_model() {
    let seed = seed();
    let ud = render_user_data(&seed.user_data).unwrap();
    let back: CloudConfig = serde_saphyr_from(&ud);
    assert_eq!(back, seed.user_data);
    let md: MetaData = serde_saphyr_from(&render_meta_data(&seed.meta_data).unwrap());
    assert_eq!(md, seed.meta_data);
    let net = seed.network_config.unwrap();
    let back: NetworkConfig = serde_saphyr_from(&render_network_config(&net).unwrap());
    assert_eq!(back, net);
}

fn serde_saphyr_from<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    serde_saphyr::from_str(std::str::from_utf8(bytes).unwrap()).unwrap()
}

#[test]
fn binary_write_files_are_base64_and_decode_on_the_host_side() {
    let data: Vec<u8> = (0..=255u8).collect();
    let config = CloudConfig {
        write_files: vec![WriteFile::new("/etc/kiln/blob", &data).with_mode(0o600)],
        ..CloudConfig::default()
    };
    let text = String::from_utf8(render_user_data(&config).unwrap()).unwrap();
    assert!(text.contains("encoding: b64"), "{text}");
    schema_check(text.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(USER_DATA);
    std::fs::write(&file, &text).unwrap();
    // cloud-init's own decoder for write_files content.
    let script = r#"
import sys, yaml
from cloudinit.config.cc_write_files import canonicalize_extraction, decode_perms, extract_contents
doc = yaml.safe_load(open(sys.argv[1], "rb"))
entry = doc["write_files"][0]
assert decode_perms(entry["permissions"], None) == 0o600, entry["permissions"]
sys.stdout.buffer.write(extract_contents(entry["content"], canonicalize_extraction(entry["encoding"])))
"#;
    let out = run(python().args(["-c", script]).arg(&file));
    assert_eq!(out.stdout, data);
}
