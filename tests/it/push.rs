//! `kiln push` and `kiln pull` against a real docker-registry on 127.0.0.1: a built lab
//! fixture goes up as OCI artifacts (bundles byte for byte as blobs, the build's top-level
//! files, an index) with its images under their own names, never its hosts/; a second push
//! sends nothing; skopeo agrees on what is there; a pull comes back byte-identical and
//! `kiln verify` accepts it, saying the host secrets are absent.

use std::fs;
use std::path::Path;
use std::process::Command as Process;

use kiln_testkit::{have_tools, remote_digest, run, Containerd, Registry, RegistryAuth};
use serde_json::Value;

use crate::common::{kiln, walk, Fixture};
use crate::secrets::entries;

/// A lab fixture built with directory seeds; returns it and its out folder.
fn built() -> (Fixture, std::path::PathBuf) {
    let fx = Fixture::new(false);
    fx.lock();
    kiln()
        .current_dir(&fx.dir)
        .args(["build", "--seed", "dir", "cluster.toml"])
        .assert()
        .success();
    let out = fx.dir.join("out/lab");
    (fx, out)
}

/// `kiln ARGS`: (exit code, stdout, stderr).
fn kiln_run(args: &[&str]) -> (i32, String, String) {
    let out = kiln().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// GET of a registry URL with curl, as hosts will fetch bundles: (status, body).
fn get(url: &str, accept: &str) -> (u16, Vec<u8>) {
    let out = Process::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg(url)
        .output()
        .unwrap();
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap();
    let status = String::from_utf8_lossy(&body[split + 1..]).parse().unwrap();
    body.truncate(split);
    (status, body)
}

/// Uploads (POST to blobs/uploads) the registry's log shows.
fn upload_posts(reg: &Registry) -> usize {
    let log = fs::read_to_string(reg.storage.with_file_name("registry.log")).unwrap();
    log.lines()
        .filter(|l| {
            l.contains("response completed")
                && l.contains("http.request.method=POST")
                && l.contains("/blobs/uploads/")
        })
        .count()
}

#[test]
fn push_then_pull_round_trips_a_build_without_its_host_secrets_and_a_second_push_sends_nothing() {
    let test =
        "push_then_pull_round_trips_a_build_without_its_host_secrets_and_a_second_push_sends_nothing";
    if !have_tools(
        test,
        &["docker-registry", "skopeo", "curl", "containerd", "ctr"],
    ) {
        return;
    }
    let (fx, out) = built();
    let reg = Registry::start(&fx.dir.join("registry"), RegistryAuth::None);
    let target = format!("http://{}/kiln/lab", reg.addr);
    let out_s = out.display().to_string();

    let (code, stdout, stderr) = kiln_run(&["push", &out_s, &target, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(report["blobs_pushed"].as_u64().unwrap() > 3, "{report}");
    let manifest: Value =
        serde_json::from_slice(&fs::read(out.join("MANIFEST.json")).unwrap()).unwrap();
    let build_id = manifest["build-id"].as_str().unwrap();
    let pinned = format!("lab-g1-{}", &build_id[..12]);
    assert_eq!(
        report["tags"],
        serde_json::json!([pinned, "lab"]),
        "{report}"
    );

    // One blob at a time (`--jobs 1`) to a second registry: the same summary, the same index.
    let reg1 = Registry::start(&fx.dir.join("registry-jobs1"), RegistryAuth::None);
    let target1 = format!("http://{}/kiln/lab", reg1.addr);
    let (code, stdout1, stderr) = kiln_run(&["push", &out_s, &target1, "--json", "--jobs", "1"]);
    assert_eq!(code, 0, "{stderr}");
    let same = |s: &str, target: &str| s.replace(target, "TARGET");
    assert_eq!(same(&stdout1, &target1), same(&stdout, &target));

    // The index, as the registry serves it, names kiln's artifacts; skopeo agrees on its digest.
    let index = report["index"].as_str().unwrap();
    assert_eq!(remote_digest(&format!("{}/kiln/lab:lab", reg.addr)), index);
    assert_eq!(
        remote_digest(&format!("{}/kiln/lab:{pinned}", reg.addr)),
        index
    );
    let (status, body) = get(
        &format!("http://{}/v2/kiln/lab/manifests/lab", reg.addr),
        "application/vnd.oci.image.index.v1+json",
    );
    assert_eq!(status, 200);
    let idx: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(idx["artifactType"], "application/vnd.kiln.index.v1");
    assert_eq!(idx["annotations"]["dev.kiln.build-id"], build_id);
    let kinds: Vec<&str> = idx["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    let bundles = manifest["bundles"].as_object().unwrap();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "application/vnd.kiln.bundle.v1")
            .count(),
        bundles.len()
    );
    assert!(kinds.contains(&"application/vnd.kiln.build.v1"));

    // Every bundle is a blob named by its sha256, byte for byte: what hosts will fetch.
    for b in bundles.values() {
        let file = b["file"].as_str().unwrap();
        let sha = manifest["outputs"][file]["sha256"].as_str().unwrap();
        let (status, body) = get(
            &format!("http://{}/v2/kiln/lab/blobs/sha256:{sha}", reg.addr),
            "*/*",
        );
        assert_eq!(status, 200, "{file}");
        assert_eq!(body, fs::read(out.join(file)).unwrap(), "{file}");
    }
    // A bundle's artifact manifest, through skopeo: role, OS and title annotations, one layer.
    let first = &idx["manifests"][0];
    let raw = run(Process::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!(
            "docker://{}/kiln/lab@{}",
            reg.addr,
            first["digest"].as_str().unwrap()
        )));
    let art: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        art["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(art["layers"].as_array().unwrap().len(), 1);
    assert!(art["annotations"]["dev.kiln.role"].is_string(), "{art}");
    assert!(
        art["layers"][0]["annotations"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap()
            .ends_with(".tar.gz")
    );

    // Nothing of hosts/ left the machine (seeds carry copies of bundles and install.sh,
    // which are pushed anyway: only what is the hosts' own counts).
    let outputs = manifest["outputs"].as_object().unwrap();
    let shared: Vec<&Value> = outputs
        .iter()
        .filter(|(p, _)| !p.starts_with("hosts/"))
        .map(|(_, o)| &o["sha256"])
        .collect();
    let host_outputs: Vec<(&String, &Value)> = outputs
        .iter()
        .filter(|(p, o)| p.starts_with("hosts/") && !shared.contains(&&o["sha256"]))
        .collect();
    assert!(host_outputs
        .iter()
        .any(|(p, _)| p.ends_with("/secrets.tar.gz")));
    for (p, o) in &host_outputs {
        let sha = o["sha256"].as_str().unwrap();
        assert!(!reg.blob_data(sha).exists(), "{p} was pushed");
    }

    // The images the bundles carry, under their own names, with the digests the bundles pin.
    let mut seen_images = 0;
    let mut pinned_images = Vec::new();
    for bundle in walk(&out.join("bundles")) {
        let e = entries(&bundle);
        let Some(digests) = e.iter().find(|x| x.0 == "IMAGE-DIGESTS") else {
            continue;
        };
        for line in String::from_utf8(digests.2.clone()).unwrap().lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let (reference, digest) = (f[1], f[2]);
            let name = reference.split('@').next().unwrap();
            let inspect = run(Process::new("skopeo")
                .args(["inspect", "--tls-verify=false"])
                .arg(format!("docker://{}/kiln/lab/{name}", reg.addr)));
            let info: Value = serde_json::from_str(&inspect).unwrap();
            assert_eq!(info["Digest"], digest, "{reference}: {inspect}");
            seen_images += 1;
            pinned_images.push((name.to_owned(), digest.to_owned()));
        }
    }
    assert!(seen_images > 0, "the lab's runtime bundle carries pause");

    // containerd pulls them by their own names through the README's hosts.toml mirror,
    // and nothing else is reachable (a proxy on a closed port for anything but 127.0.0.1).
    let ctrd = Containerd::start(&fx.dir.join("containerd"));
    let certs = fx.dir.join("certs.d");
    for (name, digest) in &pinned_images {
        let (registry, _) = name.split_once('/').unwrap();
        let hosts = certs.join(registry);
        fs::create_dir_all(&hosts).unwrap();
        fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"https://{registry}\"\n\n[host.\"http://{}/v2/kiln/lab/{registry}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n",
                reg.addr
            ),
        )
        .unwrap();
        run(Process::new("ctr")
            .arg("-a")
            .arg(&ctrd.sock)
            .args([
                "-n",
                "k8s.io",
                "images",
                "pull",
                "--snapshotter",
                "native",
                "--hosts-dir",
            ])
            .arg(&certs)
            .arg(name)
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1"));
        assert!(
            ctrd.images().contains(&(name.clone(), digest.clone())),
            "{name}: {:?}",
            ctrd.images()
        );
    }
    assert_eq!(report["images"].as_object().unwrap().len(), seen_images);

    // A second push only asks: nothing uploaded.
    let posts = upload_posts(&reg);
    let (code, stdout, stderr) = kiln_run(&["push", &out_s, &target, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let again: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(again["blobs_pushed"], 0, "{again}");
    assert_eq!(again["bytes_sent"], 0, "{again}");
    assert_eq!(again["index"], report["index"]);
    // Every bundle, the empty config, the 6 top-level files (install.sh, MANIFEST.json and its
    // signature, signing.pub, SHA256SUMS, vagrant.json) and each bundle's SBOM were asked for;
    // the images were found by their tags, so their archives were not even read out of the
    // bundles.
    assert_eq!(
        again["blobs_present"].as_u64().unwrap(),
        (2 * bundles.len() + 7) as u64,
        "{again}"
    );
    assert_eq!(again["images_present"], seen_images, "{again}");
    assert_eq!(again["images"], report["images"]);
    assert_eq!(upload_posts(&reg), posts);

    // Pulled back: byte-identical bundles and top-level files, accepted by verify.
    let pulled = fx.dir.join("pulled");
    let (code, stdout, stderr) = kiln_run(&["pull", &target, &pulled.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("stay on the build machine"), "{stdout}");
    let p = pulled.join("lab");
    for b in bundles.values() {
        let file = b["file"].as_str().unwrap();
        assert_eq!(
            fs::read(p.join(file)).unwrap(),
            fs::read(out.join(file)).unwrap()
        );
    }
    for f in [
        "MANIFEST.json",
        "MANIFEST.json.sig",
        "signing.pub",
        "install.sh",
        "vagrant.json",
    ] {
        assert_eq!(
            fs::read(p.join(f)).unwrap(),
            fs::read(out.join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(!p.join("hosts").exists());
    let p_s = p.display().to_string();
    // The signature came along: the cluster's key proves where the pulled build came from.
    let key = fx.dir.join("pki/signing.pub").display().to_string();
    let (code, stdout, stderr) = kiln_run(&["verify", &p_s, "--key", &key]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("signatures verified: MANIFEST.json signed by"),
        "{stdout}"
    );
    let (code, stdout, stderr) = kiln_run(&["verify", &p_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("host secrets and seeds are absent") && stdout.contains(&target),
        "{stdout}"
    );
    let (code, stdout, stderr) = kiln_run(&["verify", "--digests", &p_s]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("host secrets and seeds are absent"),
        "{stdout}"
    );
    // A build folder says nothing of the kind.
    let (code, stdout, _) = kiln_run(&["verify", &out_s]);
    assert_eq!(code, 0);
    assert!(!stdout.contains("absent"), "{stdout}");

    // Pulling again replaces the pulled folder; a build folder is never replaced.
    let (code, _, stderr) = kiln_run(&["pull", &target, &pulled.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = kiln_run(&["pull", &target, &fx.dir.join("out").display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("holds a build with host secrets"),
        "{stderr}"
    );
    assert!(out.join("hosts").exists());
}

/// A build folder with its hosts/ taken away is not a pulled folder: verify refuses it.
#[test]
fn a_build_folder_without_hosts_and_without_the_pull_marker_fails_verify() {
    let (_fx, out) = built();
    fs::remove_dir_all(out.join("hosts")).unwrap();
    let sums = fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let kept: String = sums
        .lines()
        .filter(|l| !l.contains("  hosts/"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(out.join("SHA256SUMS"), kept).unwrap();
    let (code, _, stderr) = kiln_run(&["verify", &out.display().to_string()]);
    assert_eq!(code, 1);
    assert!(stderr.contains("hosts/"), "{stderr}");
}

#[test]
fn push_refuses_bad_targets_folders_that_are_not_builds_and_wrong_credentials() {
    let test = "push_refuses_bad_targets_folders_that_are_not_builds_and_wrong_credentials";
    if !have_tools(test, &["docker-registry", "htpasswd"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // Not REGISTRY/REPO: a usage error naming what was given and what is expected.
    for bad in ["kiln/lab", "ftp://r.example/kiln", "r.example/Kiln"] {
        let (code, _, stderr) = kiln_run(&["push", ".", bad]);
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains(bad), "{stderr}");
    }
    let (code, _, stderr) = kiln_run(&["push", ".", "kiln/lab"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("registry host"), "{stderr}");

    // A folder that is not a build.
    let htpasswd = dir.join("htpasswd");
    let line = run(Process::new("htpasswd").args(["-Bbn", "kiln", "right"]));
    fs::write(&htpasswd, line.trim()).unwrap();
    let reg = Registry::start(&dir.join("registry"), RegistryAuth::Htpasswd(htpasswd));
    let target = format!("http://{}/kiln/lab", reg.addr);
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let (code, _, stderr) = kiln_run(&["push", &empty.display().to_string(), &target]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("not a kiln out folder") && stderr.contains(&empty.display().to_string()),
        "{stderr}"
    );

    // Wrong credentials: the registry and user are named, the password never.
    let (_fx, out) = built();
    let auth = |password: &str| {
        let file = dir.join(format!("auth-{password}.json"));
        let basic = run(Process::new("sh")
            .arg("-c")
            .arg(format!("printf kiln:{password} | base64 -w0")));
        fs::write(
            &file,
            format!(r#"{{"auths":{{"{}":{{"auth":"{basic}"}}}}}}"#, reg.addr),
        )
        .unwrap();
        file.display().to_string()
    };
    let out_s = out.display().to_string();
    let wrong = auth("wrong");
    let (code, _, stderr) = kiln_run(&["push", &out_s, &target, "--credentials", &wrong]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&reg.addr) && stderr.contains("`kiln`") && stderr.contains(&wrong),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong\n") && !stderr.contains(":wrong"),
        "{stderr}"
    );
    let (code, _, stderr) = kiln_run(&["push", &out_s, &target]);
    assert_eq!(code, 1);
    assert!(stderr.contains("requires authentication"), "{stderr}");
    // The right ones push.
    let right = auth("right");
    let (code, _, stderr) = kiln_run(&["push", &out_s, &target, "--credentials", &right]);
    assert_eq!(code, 0, "{stderr}");
    assert!(Path::new(&reg.blob_data(&sha_of(&out.join("install.sh")))).exists());
}

fn sha_of(path: &Path) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(fs::read(path).unwrap()))
}
