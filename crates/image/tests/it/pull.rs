//! Resolve and pull against a real registry seeded with umoci/skopeo images.

use std::fs;
use std::path::PathBuf;

use kiln_image::{
    Credentials, ImageError, LockedImage, Platform, Reference, RegistryClient, RegistryMirrors,
    DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_MANIFEST,
};
use kiln_store::{FetchOptions, NoProgress, Store};
use tempfile::TempDir;

use crate::fixtures::{
    build_images, free_port, push, remote_digest, Images, Registry, RegistryAuth,
};
use crate::proxy::Proxy;
use crate::{fast_opts, have_tools, names, sha};

/// A registry holding `team/a:1` (OCI), `team/b:1` (Docker v2 schema 2, sharing a's
/// layers) and `team/multi:1` (an index of amd64 and arm64 images).
pub struct Seeded {
    pub reg: Registry,
    pub images: Images,
    pub dir: PathBuf,
    _tmp: TempDir,
}

impl Seeded {
    /// Builds and pushes the images, or `None` (test skipped) without the tools.
    pub fn new(test: &str) -> Option<Seeded> {
        if !have_tools(test, &["docker-registry", "skopeo", "umoci"]) {
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let images = build_images(&dir.join("images"));
        let reg = Registry::start(&dir.join("registry"), RegistryAuth::None);
        push(&images, "a", &format!("{}/team/a:1", reg.addr), &[]);
        push(
            &images,
            "b",
            &format!("{}/team/b:1", reg.addr),
            &["--format", "v2s2"],
        );
        push(&images, "multi", &format!("{}/team/multi:1", reg.addr), &[]);
        Some(Seeded {
            reg,
            images,
            dir,
            _tmp: tmp,
        })
    }

    /// `127.0.0.1:PORT/<rest>`, parsed.
    pub fn r(&self, rest: &str) -> Reference {
        Reference::parse(&format!("{}/{rest}", self.reg.addr)).unwrap()
    }

    /// A fresh store in the test folder.
    pub fn store(&self, name: &str) -> Store {
        Store::open(&self.dir.join(name)).unwrap()
    }
}

/// A client without mirrors or credentials.
pub fn client() -> RegistryClient {
    RegistryClient::new(RegistryMirrors::new(), Credentials::none(), fast_opts()).unwrap()
}

fn amd64() -> Platform {
    Platform::linux("amd64")
}

#[test]
fn resolve_pins_index_and_platform_manifests_with_sizes() {
    let Some(s) = Seeded::new("resolve_pins_index_and_platform_manifests_with_sizes") else {
        return;
    };
    let c = client();

    let multi = c
        .resolve_all(&s.r("team/multi:1"), &[amd64(), Platform::linux("arm64")])
        .unwrap();
    assert_eq!(multi.len(), 2);
    for (image, want, arch) in [
        (&multi[0], &s.images.a_amd64, "amd64"),
        (&multi[1], &s.images.a_arm64, "arm64"),
    ] {
        assert_eq!(
            image.index_digest.as_ref().unwrap().as_str(),
            s.images.multi
        );
        assert!(image.index_size.unwrap() > 0);
        assert_eq!(image.manifest_digest.as_str(), want);
        assert_eq!(image.platform, Platform::linux(arch));
        assert_eq!(image.media_type, OCI_MANIFEST);
        assert_eq!(image.layers[0].digest.as_str(), s.images.big_layer);
        assert_eq!(image.layers[0].size, s.images.big_layer_size);
        assert_eq!(
            image.reference.to_string(),
            format!("{}/team/multi:1", s.reg.addr)
        );
    }

    // The same index converted to a Docker manifest list of schema 2 manifests.
    let list = format!("{}/team/multi-docker:1", s.reg.addr);
    push(&s.images, "multi", &list, &["--format", "v2s2"]);
    let docker = c
        .resolve(&s.r("team/multi-docker:1"), &Platform::linux("arm64"))
        .unwrap();
    assert_eq!(docker.index_digest.unwrap().as_str(), remote_digest(&list));
    assert_eq!(docker.media_type, DOCKER_MANIFEST);
    assert_eq!(docker.platform, Platform::linux("arm64"));
    assert_eq!(docker.layers[0].digest.as_str(), s.images.big_layer);

    let a = c.resolve(&s.r("team/a:1"), &amd64()).unwrap();
    assert_eq!(a.index_digest, None);
    assert_eq!(a.manifest_digest.as_str(), s.images.a);
    assert_eq!(a.layers.len(), 2);

    // b went in as Docker v2 schema 2: its own digest, the same layer blobs.
    let b = c.resolve(&s.r("team/b:1"), &amd64()).unwrap();
    assert_eq!(b.media_type, DOCKER_MANIFEST);
    assert_eq!(
        b.manifest_digest.as_str(),
        remote_digest(&format!("{}/team/b:1", s.reg.addr))
    );
    assert_eq!(b.layers[0].digest.as_str(), s.images.big_layer);
    assert_eq!(b.layers[0].media_type, DOCKER_LAYER_GZIP);
    assert_eq!(b.layers.len(), 3);

    // By digest, the same pins.
    let by_digest = c
        .resolve(&s.r(&format!("team/a@{}", s.images.a)), &amd64())
        .unwrap();
    assert_eq!(by_digest.manifest_digest, a.manifest_digest);

    // The lock entry survives serialisation, and misspelt keys are refused.
    let json = serde_json::to_string(&multi[0]).unwrap();
    assert!(json.contains("\"index-digest\""), "{json}");
    assert_eq!(
        serde_json::from_str::<LockedImage>(&json).unwrap(),
        multi[0]
    );
    let bad = json.replace("\"manifest-size\"", "\"manifest-sise\"");
    assert!(serde_json::from_str::<LockedImage>(&bad).is_err());
}

#[test]
fn missing_tag_unknown_platform_and_non_image_artifacts_are_clear_errors() {
    let Some(s) =
        Seeded::new("missing_tag_unknown_platform_and_non_image_artifacts_are_clear_errors")
    else {
        return;
    };
    let c = client();

    let err = c.resolve(&s.r("team/a:nope"), &amd64()).unwrap_err();
    assert!(
        matches!(err, ImageError::ManifestNotFound { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("team/a:nope") && msg.contains("no such image"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("http://{}/v2/team/a/manifests/nope", s.reg.addr)),
        "{msg}"
    );

    let s390x = Platform::linux("s390x");
    let msg = c
        .resolve(&s.r("team/multi:1"), &s390x)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("linux/s390x") && msg.contains("available: linux/amd64, linux/arm64"),
        "{msg}"
    );
    let msg = c.resolve(&s.r("team/a:1"), &s390x).unwrap_err().to_string();
    assert!(msg.contains("available: linux/amd64"), "{msg}");

    // A Helm chart pushed as an OCI artifact is not a container image.
    let http = reqwest::blocking::Client::new();
    let base = format!("http://{}/v2/team/chart", s.reg.addr);
    let upload = |bytes: &[u8]| {
        let resp = http.post(format!("{base}/blobs/uploads/")).send().unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", s.reg.addr)
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let resp = http
            .put(format!("{location}{sep}digest=sha256:{}", sha(bytes)))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().unwrap());
    };
    let config = br#"{"name":"chart","version":"1.0.0"}"#;
    let content = b"not really a chart";
    upload(config);
    upload(content);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": format!("sha256:{}", sha(config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": format!("sha256:{}", sha(content)), "size": content.len()}]
    });
    let resp = http
        .put(format!("{base}/manifests/1"))
        .header("content-type", OCI_MANIFEST)
        .body(serde_json::to_vec(&manifest).unwrap())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().unwrap());
    let err = c.resolve(&s.r("team/chart:1"), &amd64()).unwrap_err();
    assert!(
        matches!(err, ImageError::UnsupportedMediaType { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("application/vnd.cncf.helm.config.v1+json")
            && msg.contains("not a container image"),
        "{msg}"
    );
}

#[test]
fn pull_through_a_mirror_stores_and_downloads_each_shared_blob_once() {
    let Some(s) = Seeded::new("pull_through_a_mirror_stores_and_downloads_each_shared_blob_once")
    else {
        return;
    };
    let proxy = Proxy::start(&s.reg.addr);
    // A dead mirror first: it is skipped after its retries, then the working one is used.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut mirrors = RegistryMirrors::new();
    mirrors
        .add("docker.io", &[dead, proxy.url.clone()])
        .unwrap();
    let c = RegistryClient::new(mirrors, Credentials::none(), fast_opts()).unwrap();
    let hub = |s: &str| Reference::parse(s).unwrap();
    let a = c.resolve(&hub("team/a:1"), &amd64()).unwrap();
    let b = c.resolve(&hub("docker.io/team/b:1"), &amd64()).unwrap();
    let m = c.resolve(&hub("team/multi:1"), &amd64()).unwrap();
    assert_eq!(a.reference.to_string(), "docker.io/team/a:1");
    let locked = [a, b, m];

    let store = s.store("vendor");
    let report = c.pull(&store, &locked, &NoProgress).unwrap();

    let mut want: Vec<String> = locked
        .iter()
        .flat_map(|i| {
            i.blobs()
                .into_iter()
                .map(|(d, _)| d.hex().to_owned())
                .chain(i.index_digest.iter().map(|d| d.hex().to_owned()))
        })
        .collect();
    want.sort();
    want.dedup();
    // 3 manifests + 1 index + 3 configs + 3 distinct layers (big, hello, other).
    assert_eq!(want.len(), 10, "{want:?}");
    assert_eq!(names(&store.root().join("sha256")), want);
    assert!(names(&store.root().join("tmp")).is_empty());
    for hex in &want {
        assert!(store.verify_blob(hex).unwrap());
    }
    let big = &s.images.big_layer;
    assert_eq!(
        proxy.gets(&format!("/blobs/{big}")).len(),
        1,
        "{:#?}",
        proxy.seen()
    );
    assert_eq!(
        report
            .downloaded
            .iter()
            .filter(|p| p.digest.as_str() == big)
            .count(),
        1
    );
    let layer_gets = proxy
        .seen()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .count();

    // Everything present: a second pull asks nothing of the registry for blobs.
    let again = c.pull(&store, &locked, &NoProgress).unwrap();
    assert!(again.downloaded.is_empty(), "{again:?}");
    assert_eq!(again.present.len(), 10);
    let after = proxy
        .seen()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .count();
    assert_eq!(after, layer_gets);

    // Offline: fine when everything is there, a named error otherwise.
    let offline = FetchOptions {
        allow_network: false,
        ..fast_opts()
    };
    let c_off = RegistryClient::new(RegistryMirrors::new(), Credentials::none(), offline).unwrap();
    c_off.pull(&store, &locked, &NoProgress).unwrap();
    let msg = c_off
        .pull(&s.store("empty"), &locked[..1], &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("docker.io/team/a:1") && msg.contains("network is not allowed"),
        "{msg}"
    );
}

#[test]
fn corrupted_blob_in_the_registry_is_refused_with_expected_and_actual_digests() {
    let Some(s) =
        Seeded::new("corrupted_blob_in_the_registry_is_refused_with_expected_and_actual_digests")
    else {
        return;
    };
    let c = client();
    let a = c.resolve(&s.r("team/a:1"), &amd64()).unwrap();
    let big_hex = &s.images.big_layer["sha256:".len()..];
    let data = s.reg.blob_data(big_hex);
    let mut bytes = fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&data, &bytes).unwrap();

    let store = s.store("vendor");
    let err = c
        .pull(&store, std::slice::from_ref(&a), &NoProgress)
        .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("expected {}", s.images.big_layer)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("got sha256:{}", sha(&bytes))),
        "{msg}"
    );
    assert!(!store.contains(big_hex));
    assert!(
        names(&store.root().join("tmp")).is_empty(),
        "nothing left behind"
    );
}

#[test]
fn interrupted_blob_download_resumes_with_range_in_the_same_run_and_the_next() {
    let Some(s) =
        Seeded::new("interrupted_blob_download_resumes_with_range_in_the_same_run_and_the_next")
    else {
        return;
    };
    let proxy = Proxy::start(&s.reg.addr);
    let mut mirrors = RegistryMirrors::new();
    mirrors.add(&s.reg.addr, &[&proxy.url]).unwrap();
    let c = RegistryClient::new(mirrors, Credentials::none(), fast_opts()).unwrap();
    let a = c.resolve(&s.r("team/a:1"), &amd64()).unwrap();
    let big = s.images.big_layer.clone();
    let suffix = format!("/blobs/{big}");

    // The connection breaks after 150000 bytes: the retry asks for the rest only.
    proxy.cut_next(&suffix, 150_000);
    let store = s.store("vendor");
    let report = c
        .pull(&store, std::slice::from_ref(&a), &NoProgress)
        .unwrap();
    let gets = proxy.gets(&suffix);
    assert_eq!(gets.len(), 2, "{gets:#?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=150000-"));
    let pulled = report
        .downloaded
        .iter()
        .find(|p| p.digest.as_str() == big)
        .unwrap();
    assert_eq!(
        (pulled.resumed_from, pulled.bytes),
        (150_000, s.images.big_layer_size)
    );
    assert!(store.verify_blob(&big["sha256:".len()..]).unwrap());

    // A run killed mid-blob leaves a partial: the next run resumes from it.
    let store2 = s.store("vendor2");
    let data = fs::read(s.reg.blob_data(&big["sha256:".len()..])).unwrap();
    fs::write(
        store2.partial_path(&big["sha256:".len()..]),
        &data[..100_000],
    )
    .unwrap();
    let report = c
        .pull(&store2, std::slice::from_ref(&a), &NoProgress)
        .unwrap();
    let gets = proxy.gets(&suffix);
    assert_eq!(gets.len(), 3, "{gets:#?}");
    assert_eq!(gets[2].range.as_deref(), Some("bytes=100000-"));
    let pulled = report
        .downloaded
        .iter()
        .find(|p| p.digest.as_str() == big)
        .unwrap();
    assert_eq!(pulled.resumed_from, 100_000);
    assert!(store2.verify_blob(&big["sha256:".len()..]).unwrap());
    assert!(names(&store2.root().join("tmp")).is_empty());
}

#[test]
fn a_stalled_blob_moves_to_the_next_endpoint_at_once_which_resumes_it() {
    let Some(s) = Seeded::new("a_stalled_blob_moves_to_the_next_endpoint_at_once_which_resumes_it")
    else {
        return;
    };
    let proxy = Proxy::start(&s.reg.addr);
    let mut mirrors = RegistryMirrors::new();
    mirrors.add(&s.reg.addr, &[&proxy.url]).unwrap();
    let opts = kiln_store::FetchOptions {
        idle_timeout: std::time::Duration::from_secs(1),
        ..fast_opts()
    };
    let c = RegistryClient::new(mirrors, Credentials::none(), opts).unwrap();
    let a = c.resolve(&s.r("team/a:1"), &amd64()).unwrap();
    let big = s.images.big_layer.clone();
    let suffix = format!("/blobs/{big}");

    // The mirror sends 150000 bytes, then nothing: after the idle timeout the registry
    // itself (the next endpoint) is asked for the rest; the mirror is not asked again.
    proxy.stall_next(&suffix, 150_000);
    let store = s.store("vendor");
    let started = std::time::Instant::now();
    let report = c
        .pull(&store, std::slice::from_ref(&a), &NoProgress)
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(
        proxy.gets(&suffix).len(),
        1,
        "the stalled mirror is not retried"
    );
    let pulled = report
        .downloaded
        .iter()
        .find(|p| p.digest.as_str() == big)
        .unwrap();
    assert_eq!(pulled.resumed_from, 150_000);
    assert!(
        pulled.url.starts_with(&format!("http://{}/", s.reg.addr)),
        "{}",
        pulled.url
    );
    assert!(store.verify_blob(&big["sha256:".len()..]).unwrap());
}

#[test]
fn server_errors_are_retried_and_refusals_are_not() {
    let Some(s) = Seeded::new("server_errors_are_retried_and_refusals_are_not") else {
        return;
    };
    let proxy = Proxy::start(&s.reg.addr);
    let mut mirrors = RegistryMirrors::new();
    mirrors.add(&s.reg.addr, &[&proxy.url]).unwrap();
    let c = RegistryClient::new(mirrors, Credentials::none(), fast_opts()).unwrap();

    // A 503 is retried on the same endpoint.
    proxy.fail_next("/team/a/manifests/1", 503);
    let a = c.resolve(&s.r("team/a:1"), &amd64()).unwrap();
    assert_eq!(
        proxy.gets("/team/a/manifests/1").len(),
        2,
        "503 retried once"
    );

    // A 403 is not retried: the next endpoint (the registry itself) is asked instead.
    let big = s.images.big_layer.clone();
    let suffix = format!("/blobs/{big}");
    proxy.fail_next(&suffix, 403);
    let store = s.store("vendor");
    let report = c
        .pull(&store, std::slice::from_ref(&a), &NoProgress)
        .unwrap();
    assert_eq!(proxy.gets(&suffix).len(), 1, "a 403 is not retried");
    let pulled = report
        .downloaded
        .iter()
        .find(|p| p.digest.as_str() == big)
        .unwrap();
    assert!(
        pulled.url.starts_with(&format!("http://{}/", s.reg.addr)),
        "{pulled:?}"
    );

    // With no other endpoint, the refusal is the error, naming the registry and URL.
    let through_proxy = Reference::parse(&format!(
        "{}/team/a@{}",
        proxy.url.trim_start_matches("http://"),
        a.manifest_digest
    ))
    .unwrap();
    let by_digest = format!("/manifests/{}", a.manifest_digest);
    let before = proxy.gets(&by_digest).len();
    proxy.fail_next(&by_digest, 403);
    let err = client().resolve(&through_proxy, &amd64()).unwrap_err();
    assert!(matches!(err, ImageError::AccessDenied { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("denied access") && msg.contains(&proxy.url),
        "{msg}"
    );
    assert_eq!(proxy.gets(&by_digest).len(), before + 1, "not retried");
}
