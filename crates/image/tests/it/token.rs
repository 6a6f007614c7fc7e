//! Bearer-token auth: the registry delegates to the token service of kiln-testkit (JWTs
//! signed with an openssl key whose certificate the registry trusts).

use kiln_image::{
    BlobSource, BlobToPush, Credentials, Digest, ImageError, NoPushEvents, Platform, PushTarget,
    Pusher, Reference, RegistryClient, RegistryMirrors,
};
use kiln_store::{NoProgress, Store};
use kiln_testkit::token::{TokenRequest, TokenServer, SERVICE};

use crate::fixtures::{build_images, push};
use crate::{fast_opts, have_tools};

const USER: &str = "kiln";
const PASSWORD: &str = "t0ken-pass";

#[test]
fn bearer_token_auth_through_a_token_service_reuses_the_token_and_names_a_refusal() {
    let test = "bearer_token_auth_through_a_token_service_reuses_the_token_and_names_a_refusal";
    if !have_tools(test, &["docker-registry", "skopeo", "umoci", "openssl"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tokens = TokenServer::start(&dir.join("tokens"), USER, PASSWORD, false);
    let reg = tokens.registry(&dir.join("registry"));
    let images = build_images(&dir.join("images"));
    push(
        &images,
        "a",
        &format!("{}/team/a:1", reg.addr),
        &["--dest-creds", &format!("{USER}:{PASSWORD}")],
    );
    let pushed = tokens.seen().len();
    let reference = Reference::parse(&format!("{}/team/a:1", reg.addr)).unwrap();
    let amd64 = Platform::linux("amd64");

    let mut creds = Credentials::none();
    creds.insert(&reg.addr, USER, PASSWORD);
    let c = RegistryClient::new(RegistryMirrors::new(), creds, fast_opts()).unwrap();
    let locked = c.resolve(&reference, &amd64).unwrap();
    assert_eq!(locked.manifest_digest.as_str(), images.a);
    let store = Store::open(&dir.join("vendor")).unwrap();
    c.pull(&store, &[locked], &NoProgress).unwrap();
    assert!(store.contains(&images.big_layer["sha256:".len()..]));
    let ours: Vec<TokenRequest> = tokens.seen()[pushed..].to_vec();
    assert_eq!(
        ours.len(),
        1,
        "one token for the repository, reused: {ours:#?}"
    );
    assert!(
        ours[0].query.contains("scope=repository%3Ateam%2Fa%3Apull"),
        "{ours:?}"
    );
    assert!(
        ours[0].query.contains(&format!("service={SERVICE}")),
        "{ours:?}"
    );
    assert_eq!(
        ours[0].basic.as_deref(),
        Some(&*format!("{USER}:{PASSWORD}"))
    );

    // The token service refuses a wrong password: registry and user named, password not.
    let mut wrong = Credentials::none();
    wrong.insert(&reg.addr, USER, "not-the-password");
    let c = RegistryClient::new(RegistryMirrors::new(), wrong, fast_opts()).unwrap();
    let err = c.resolve(&reference, &amd64).unwrap_err();
    assert!(matches!(err, ImageError::AuthRejected { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&reg.addr) && msg.contains("`kiln`"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");

    // Anonymous pulls are refused by this token service.
    let c = RegistryClient::new(RegistryMirrors::new(), Credentials::none(), fast_opts()).unwrap();
    let msg = c.resolve(&reference, &amd64).unwrap_err().to_string();
    assert!(msg.contains("requires authentication"), "{msg}");

    // A push asks for a token scoped pull and push and gets its blob and manifest in. (The
    // scope is the registry's challenge's, whose actions docker-registry lists in either order.)
    let before = tokens.seen().len();
    let mut creds = Credentials::none();
    creds.insert(&reg.addr, USER, PASSWORD);
    let pusher = Pusher::new(creds, fast_opts()).unwrap();
    let target = PushTarget::parse(&format!("http://{}/team/pushed", reg.addr)).unwrap();
    let blob = BlobToPush {
        digest: Digest::of(b"{}"),
        size: 2,
        source: BlobSource::Bytes(b"{}".to_vec()),
        label: "empty".into(),
    };
    pusher.push_blob(&target, &blob, &NoPushEvents).unwrap();
    assert!(reg.blob_data(blob.digest.hex()).exists());
    let ours: Vec<TokenRequest> = tokens.seen()[before..].to_vec();
    assert!(
        ours.iter().any(|t| [
            "scope=repository%3Ateam%2Fpushed%3Apull%2Cpush",
            "scope=repository%3Ateam%2Fpushed%3Apush%2Cpull",
        ]
        .iter()
        .any(|scope| t.query.contains(scope))),
        "{ours:#?}"
    );
}
