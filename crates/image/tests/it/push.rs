//! Pushes to a real docker-registry (behind the logging proxy): blobs by digest, skipped
//! when present, mounted across repositories, resumed after a connection reset mid-chunk;
//! manifests checked against what the registry and skopeo say; basic auth.

use std::fs;
use std::process::Command;

use kiln_image::{
    BlobOutcome, BlobSource, BlobToPush, Credentials, Digest, ImageError, NoPushEvents, PushTarget,
    Pusher,
};
use kiln_testkit::payload;

use crate::fixtures::{remote_digest, Registry, RegistryAuth};
use crate::proxy::Proxy;
use crate::{fast_opts, have_tools, run};

/// A blob of `bytes` from a file written in `dir`.
fn file_blob(dir: &std::path::Path, name: &str, bytes: &[u8]) -> BlobToPush {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    BlobToPush {
        digest: Digest::of(bytes),
        size: bytes.len() as u64,
        source: BlobSource::File { path, offset: 0 },
        label: name.to_owned(),
    }
}

/// An OCI artifact manifest: the empty config and one layer.
fn artifact(layer: &BlobToPush) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.kiln.test.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": Digest::of(b"{}").to_string(), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer.digest.to_string(), "size": layer.size}]
    }))
    .unwrap()
}

#[test]
fn blobs_are_skipped_when_present_mounted_across_repositories_and_resumed_after_a_reset() {
    let test =
        "blobs_are_skipped_when_present_mounted_across_repositories_and_resumed_after_a_reset";
    if !have_tools(test, &["docker-registry", "skopeo"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg = Registry::start(&dir.join("registry"), RegistryAuth::None);
    let proxy = Proxy::start(&reg.addr);
    let pusher = Pusher::new(Credentials::none(), fast_opts())
        .unwrap()
        .with_chunk_size(64 * 1024);
    let target = PushTarget::parse(&format!("{}/kiln/lab", proxy.url)).unwrap();

    // 300 000 bytes in 64 KiB chunks: the third PATCH is cut after 1000 of its bytes.
    let big = file_blob(dir, "big", &payload(300_000, 3));
    proxy.cut_request("PATCH", 2, 1000);
    let outcome = pusher.push_blob(&target, &big, &NoPushEvents).unwrap();
    match outcome {
        BlobOutcome::Uploaded { resumes, sent } => {
            assert_eq!(resumes, 1, "{outcome:?}");
            assert!(sent > big.size, "{outcome:?}");
        }
        other => panic!("{other:?}"),
    }
    // The status was asked for (GET of the upload), and the registry holds the right bytes.
    assert!(
        proxy
            .seen()
            .iter()
            .any(|s| s.method == "GET" && s.path.contains("/blobs/uploads/")),
        "{:?}",
        proxy.seen()
    );
    assert_eq!(
        fs::read(reg.blob_data(big.digest.hex())).unwrap(),
        payload(300_000, 3)
    );
    // The cut PATCH did not make the upload start again from zero.
    assert_eq!(proxy.count("POST"), 1, "{:?}", proxy.seen());
    assert_eq!(proxy.count("PATCH"), 6, "{:?}", proxy.seen());

    // A second push only asks.
    let before = proxy.seen().len();
    assert_eq!(
        pusher.push_blob(&target, &big, &NoPushEvents).unwrap(),
        BlobOutcome::Present
    );
    let again: Vec<_> = proxy.seen()[before..].to_vec();
    assert!(again.iter().all(|s| s.method == "HEAD"), "{again:?}");

    // A small blob goes in one PUT; pushed to another repository it is mounted.
    let small = file_blob(dir, "small", b"small blob\n");
    assert!(matches!(
        pusher.push_blob(&target, &small, &NoPushEvents).unwrap(),
        BlobOutcome::Uploaded { resumes: 0, .. }
    ));
    let other = PushTarget::parse(&format!("{}/kiln/other", proxy.url)).unwrap();
    assert_eq!(
        pusher.push_blob(&other, &small, &NoPushEvents).unwrap(),
        BlobOutcome::Mounted {
            from: "kiln/lab".into()
        }
    );
    assert!(proxy
        .seen()
        .iter()
        .any(|s| s.method == "POST" && s.path.contains("mount=")));

    // A manifest: the registry's Docker-Content-Digest, skopeo and a read back agree.
    let empty = BlobToPush {
        digest: Digest::of(b"{}"),
        size: 2,
        source: BlobSource::Bytes(b"{}".to_vec()),
        label: "empty".into(),
    };
    pusher.push_blob(&target, &empty, &NoPushEvents).unwrap();
    let manifest = artifact(&big);
    let digest = pusher
        .push_manifest(
            &target,
            "v1",
            "application/vnd.oci.image.manifest.v1+json",
            &manifest,
        )
        .unwrap();
    assert_eq!(digest, Digest::of(&manifest));
    assert_eq!(
        remote_digest(&format!("{}/kiln/lab:v1", reg.addr)),
        digest.to_string()
    );
    let back = pusher
        .get_manifest(&target, "v1", "application/vnd.oci.image.manifest.v1+json")
        .unwrap();
    assert_eq!(back.bytes, manifest);
    let skopeo = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{}/kiln/lab@{digest}", reg.addr)));
    assert!(skopeo.contains("application/vnd.kiln.test.v1"), "{skopeo}");

    // Pulled back by digest, verified into a folder.
    let into = dir.join("pulled");
    fs::create_dir_all(&into).unwrap();
    let mut watch = NoWatch;
    let path = pusher
        .download_blob(&target, &big.digest, big.size, &into, &mut watch)
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), payload(300_000, 3));
    // Asked for with a wrong size, nothing lands.
    let err = pusher
        .download_blob(&target, &small.digest, 5, &into, &mut watch)
        .unwrap_err();
    assert!(!into.join(small.digest.hex()).exists(), "{err}");
}

/// `jobs` blobs go up at once: the proxy holds each upload until two are at the registry's
/// door together, which blobs pushed one after the other never are; the outcomes come back in
/// list order, a digest listed twice goes up once, and the registry serves every blob.
#[test]
fn blobs_go_up_concurrently_up_to_jobs_with_outcomes_in_list_order() {
    let test = "blobs_go_up_concurrently_up_to_jobs_with_outcomes_in_list_order";
    if !have_tools(test, &["docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg = Registry::start(&dir.join("registry"), RegistryAuth::None);
    let proxy = Proxy::start(&reg.addr);
    let target = PushTarget::parse(&format!("{}/kiln/lab", proxy.url)).unwrap();
    let mut blobs: Vec<BlobToPush> = (0..4u8)
        .map(|i| {
            file_blob(
                dir,
                &format!("b{i}"),
                &payload(200_000 + usize::from(i), u32::from(i)),
            )
        })
        .collect();
    blobs.push(BlobToPush {
        label: "b1 again".to_owned(),
        ..blobs[1].clone()
    });

    proxy.hold_uploads_until(2);
    let opts = kiln_store::FetchOptions {
        jobs: 3,
        ..fast_opts()
    };
    let pusher = Pusher::new(Credentials::none(), opts).unwrap();
    let outcomes = pusher.push_blobs(&target, &blobs, &NoPushEvents).unwrap();
    assert!(
        proxy.peak_uploads() >= 2,
        "uploads were never concurrent: {:?}",
        proxy.seen()
    );
    assert!(proxy.peak_uploads() <= 3, "more than jobs at once");
    let sent: Vec<u64> = outcomes
        .iter()
        .map(|o| match o {
            BlobOutcome::Uploaded { sent, resumes: 0 } => *sent,
            BlobOutcome::Present => 0,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sent, [200_000, 200_001, 200_002, 200_003, 0]);
    assert_eq!(proxy.count("POST"), 4, "{:?}", proxy.seen());
    for b in &blobs {
        assert_eq!(pusher.blob_size(&target, &b.digest).unwrap(), Some(b.size));
        let hex = b.digest.hex();
        assert_eq!(fs::read(reg.blob_data(hex)).unwrap().len() as u64, b.size);
    }

    // One at a time: the same outcomes, never two uploads at once.
    let proxy1 = Proxy::start(&reg.addr);
    let other = PushTarget::parse(&format!("{}/kiln/one", proxy1.url)).unwrap();
    let opts = kiln_store::FetchOptions {
        jobs: 1,
        ..fast_opts()
    };
    let one = Pusher::new(Credentials::none(), opts).unwrap();
    let outcomes1 = one.push_blobs(&other, &blobs, &NoPushEvents).unwrap();
    assert_eq!(outcomes1, outcomes);
    assert_eq!(proxy1.peak_uploads(), 1);
}

#[test]
fn a_blob_the_registry_already_has_is_not_sent_and_a_wrong_digest_is_refused_by_name() {
    let test = "a_blob_the_registry_already_has_is_not_sent_and_a_wrong_digest_is_refused_by_name";
    if !have_tools(test, &["docker-registry"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let reg = Registry::start(&dir.join("registry"), RegistryAuth::None);
    let proxy = Proxy::start(&reg.addr);
    let target = PushTarget::parse(&format!("{}/kiln/lab", proxy.url)).unwrap();
    let blob = file_blob(dir, "b", &payload(10_000, 9));

    // Put there by another client (a plain monolithic upload).
    let client = reqwest::blocking::Client::new();
    let start = client
        .post(format!("http://{}/v2/kiln/lab/blobs/uploads/", reg.addr))
        .send()
        .unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_owned();
    let put = client
        .put(format!("{location}&digest={}", blob.digest))
        .body(payload(10_000, 9))
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);

    let pusher = Pusher::new(Credentials::none(), fast_opts()).unwrap();
    assert_eq!(
        pusher.push_blob(&target, &blob, &NoPushEvents).unwrap(),
        BlobOutcome::Present
    );
    assert_eq!(proxy.count("HEAD"), 1);
    assert_eq!(
        proxy.count("POST") + proxy.count("PUT"),
        0,
        "{:?}",
        proxy.seen()
    );

    // Bytes that are not what the digest says: the registry's refusal names the blob.
    let lie = BlobToPush {
        digest: Digest::of(b"something else"),
        ..file_blob(dir, "lie", b"these bytes")
    };
    let err = pusher.push_blob(&target, &lie, &NoPushEvents).unwrap_err();
    assert!(matches!(err, ImageError::UploadRefused { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(lie.digest.as_str())
            && msg.contains("kiln/lab")
            && msg.contains("DIGEST_INVALID"),
        "{msg}"
    );
}

#[test]
fn pushes_authenticate_with_basic_auth_and_wrong_credentials_name_registry_and_user() {
    let test = "pushes_authenticate_with_basic_auth_and_wrong_credentials_name_registry_and_user";
    if !have_tools(test, &["docker-registry", "htpasswd"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let htpasswd = dir.join("htpasswd");
    let line = run(Command::new("htpasswd").args(["-Bbn", "kiln", "push-secret"]));
    fs::write(&htpasswd, line.trim()).unwrap();
    let reg = Registry::start(&dir.join("registry"), RegistryAuth::Htpasswd(htpasswd));
    let target = PushTarget::parse(&format!("http://{}/kiln/lab", reg.addr)).unwrap();
    let blob = file_blob(dir, "b", &payload(5_000, 1));

    let mut good = Credentials::none();
    good.insert(&reg.addr, "kiln", "push-secret");
    let pusher = Pusher::new(good, fast_opts()).unwrap();
    assert!(matches!(
        pusher.push_blob(&target, &blob, &NoPushEvents).unwrap(),
        BlobOutcome::Uploaded { .. }
    ));
    assert!(reg.blob_data(blob.digest.hex()).exists());

    let mut bad = Credentials::none();
    bad.insert(&reg.addr, "kiln", "wrong-secret");
    let err = Pusher::new(bad, fast_opts())
        .unwrap()
        .push_blob(&target, &blob, &NoPushEvents)
        .unwrap_err();
    assert!(matches!(err, ImageError::AuthRejected { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&reg.addr) && msg.contains("`kiln`"), "{msg}");
    assert!(!msg.contains("wrong-secret"), "{msg}");

    let err = Pusher::new(Credentials::none(), fast_opts())
        .unwrap()
        .push_blob(&target, &blob, &NoPushEvents)
        .unwrap_err();
    assert!(matches!(err, ImageError::AuthRequired { .. }), "{err:?}");
}

/// A download watch that ignores progress.
struct NoWatch;

impl kiln_transport::Watch for NoWatch {
    fn at(&mut self, _: u64) {}
    fn note(&mut self, _: &str) {}
}
