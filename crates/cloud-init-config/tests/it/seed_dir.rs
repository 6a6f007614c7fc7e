//! The NoCloud seed folder, read back by cloud-init's own seed reader.

use cloud_init_config::*;

use crate::fixtures::seed;
use crate::tools::{python, run_text};

#[test]
fn seed_dir_holds_exactly_the_rendered_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("hosts/etcd-1/seed");
    let seed = seed();
    write_seed_dir(&target, &seed).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [META_DATA, NETWORK_CONFIG, USER_DATA]);
    for file in seed.render().unwrap() {
        assert_eq!(
            std::fs::read(target.join(file.name)).unwrap(),
            file.bytes,
            "{}",
            file.name
        );
    }
}

#[test]
fn cloud_init_reads_the_seed_dir() {
    let dir = tempfile::tempdir().unwrap();
    let seed = seed();
    write_seed_dir(dir.path(), &seed).unwrap();
    // cloud-init 22.4's NoCloud helper for seed folders and URLs.
    let script = r#"
import json, sys
from cloudinit import util
md, ud, vd = util.read_seeded(base="file://" + sys.argv[1] + "/", retries=0)
print(json.dumps({"md": md, "ud": util.load_yaml(ud)}))
"#;
    let out = run_text(python().args(["-c", script]).arg(dir.path()));
    let got: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        got["md"]["instance-id"],
        seed.meta_data.instance_id.as_str()
    );
    assert_eq!(got["md"]["local-hostname"], "etcd-1");
    assert_eq!(got["ud"], serde_json::to_value(&seed.user_data).unwrap());
}

#[test]
fn rewriting_without_network_config_removes_the_stale_one() {
    let dir = tempfile::tempdir().unwrap();
    write_seed_dir(dir.path(), &seed()).unwrap();
    let dhcp = Seed {
        network_config: None,
        ..seed()
    };
    write_seed_dir(dir.path(), &dhcp).unwrap();
    assert!(!dir.path().join(NETWORK_CONFIG).exists());
    assert!(dir.path().join(USER_DATA).exists());
}

#[test]
fn invalid_network_config_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("seed");
    let mut bad = seed();
    let net = bad.network_config.as_mut().unwrap();
    net.ethernets.get_mut("eth0").unwrap().addresses = vec!["10.0.0.300/24".into()];
    let err = write_seed_dir(&target, &bad).unwrap_err().to_string();
    assert!(err.contains("10.0.0.300/24"), "{err}");
    assert!(!target.exists());
}
