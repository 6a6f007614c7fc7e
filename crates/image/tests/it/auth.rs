//! Basic auth against a registry with an htpasswd file; credentials from a config.json.

use std::fs;
use std::process::Command;

use base64::Engine as _;
use kiln_image::{Credentials, ImageError, Platform, Reference, RegistryClient, RegistryMirrors};
use kiln_store::NoProgress;

use crate::fixtures::{build_images, push, Registry, RegistryAuth};
use crate::{fast_opts, have_tools, run};

const USER: &str = "kiln";
const PASSWORD: &str = "s3cret-pass";
const WRONG: &str = "wr0ng-pass";

/// A docker config.json with one login.
fn config_json(host: &str, user: &str, password: &str) -> String {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#)
}

#[test]
fn basic_auth_from_a_credentials_file_and_a_wrong_password_names_registry_and_user() {
    if !have_tools(
        "basic_auth_from_a_credentials_file_and_a_wrong_password_names_registry_and_user",
        &["docker-registry", "skopeo", "umoci", "htpasswd"],
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let htpasswd = dir.join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]));
    fs::write(&htpasswd, line.trim()).unwrap();
    let images = build_images(&dir.join("images"));
    let reg = Registry::start(&dir.join("registry"), RegistryAuth::Htpasswd(htpasswd));
    push(
        &images,
        "a",
        &format!("{}/team/a:1", reg.addr),
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
    );
    let reference = Reference::parse(&format!("{}/team/a:1", reg.addr)).unwrap();
    let amd64 = Platform::linux("amd64");

    // Credentials live outside the repository, in a docker-style file given by path.
    let good = dir.join("auth.json");
    fs::write(&good, config_json(&reg.addr, USER, PASSWORD)).unwrap();
    let creds = Credentials::load(&good).unwrap();
    let c = RegistryClient::new(RegistryMirrors::new(), creds, fast_opts()).unwrap();
    let locked = c.resolve(&reference, &amd64).unwrap();
    assert_eq!(locked.manifest_digest.as_str(), images.a);
    let store = kiln_store::Store::open(&dir.join("vendor")).unwrap();
    c.pull(&store, &[locked], &NoProgress).unwrap();
    assert!(store.contains(&images.big_layer["sha256:".len()..]));

    // A wrong password: the registry and user are named, the password never.
    let bad = dir.join("bad.json");
    fs::write(&bad, config_json(&reg.addr, USER, WRONG)).unwrap();
    let c = RegistryClient::new(
        RegistryMirrors::new(),
        Credentials::load(&bad).unwrap(),
        fast_opts(),
    )
    .unwrap();
    let err = c.resolve(&reference, &amd64).unwrap_err();
    assert!(matches!(err, ImageError::AuthRejected { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&reg.addr) && msg.contains("`kiln`"), "{msg}");
    assert!(msg.contains(&bad.display().to_string()), "{msg}");
    assert!(
        !msg.contains(WRONG) && !format!("{err:?}").contains(WRONG),
        "{msg}"
    );

    // No credentials at all.
    let c = RegistryClient::new(RegistryMirrors::new(), Credentials::none(), fast_opts()).unwrap();
    let msg = c.resolve(&reference, &amd64).unwrap_err().to_string();
    assert!(
        msg.contains(&reg.addr) && msg.contains("requires authentication"),
        "{msg}"
    );
}
