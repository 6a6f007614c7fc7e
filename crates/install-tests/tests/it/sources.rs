//! Bundles a seed does not carry: install.sh takes each from its `--source`s (a served out
//! folder, a registry's blob API, the shared medium), with curl, GNU wget and busybox wget,
//! checks the pinned digest before keeping a copy, and a rerun reuses what it fetched.

use std::fs;
use std::path::{Path, PathBuf};

use kiln_install_tests::fixture::Build;
use kiln_install_tests::run::{Sandbox, Shell};
use kiln_testkit::http::{Reply, Server};

use crate::common::{assert_installed, build};

/// A build whose bundles are moved out of its folder into `<sandbox>/served/bundles/`.
fn build_without_bundles(sb: &Sandbox) -> (Build, PathBuf) {
    let b = build(sb, "gen1", 1);
    let served = sb.path().join("served/bundles");
    fs::create_dir_all(&served).unwrap();
    for (name, _) in &b.bundles {
        fs::rename(b.dir.join(name), served.join(name)).unwrap();
    }
    (b, served)
}

/// An HTTP server answering `/out/bundles/<file>` with each file of `served`.
fn serve(served: &Path) -> Server {
    let server = Server::start();
    for e in fs::read_dir(served).unwrap() {
        let e = e.unwrap();
        let path = format!("/out/bundles/{}", e.file_name().to_string_lossy());
        server.always(&path, Reply::Serve(fs::read(e.path()).unwrap()));
    }
    server
}

/// PATH folder holding `wget` as busybox's applet, for `KILN_HTTP_CLIENT=wget` runs.
fn busybox_wget(sb: &Sandbox) -> PathBuf {
    let dir = sb.path().join("busybox-bin");
    fs::create_dir_all(&dir).unwrap();
    let busybox =
        kiln_testkit::run(std::process::Command::new("sh").args(["-c", "command -v busybox"]));
    std::os::unix::fs::symlink(busybox.trim(), dir.join("wget")).unwrap();
    dir
}

#[test]
fn bundles_come_from_a_served_out_folder_with_curl_gnu_wget_and_busybox_wget() {
    kiln_install_tests::require_tool("curl", "curl");
    kiln_install_tests::require_tool("wget", "wget");
    kiln_install_tests::require_tool("busybox", "busybox");
    for client in ["curl", "wget", "busybox"] {
        let sb = Sandbox::new();
        let (b, served) = build_without_bundles(&sb);
        let server = serve(&served);
        let source = server.url("/out");
        let mut env = vec![(
            "KILN_HTTP_CLIENT",
            if client == "curl" { "curl" } else { "wget" },
        )];
        let path;
        if client == "busybox" {
            path = format!(
                "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
                busybox_wget(&sb).display(),
                sb.stubs.display()
            );
            env.push(("PATH", &path));
        }
        let run = sb.run_with(Shell::Dash, &b, &["--source", &source], &env);
        run.expect_ok();
        let verify = &run.markers()[0];
        let fetched: Vec<String> = b
            .bundles
            .iter()
            .map(|(n, _)| format!("{n}@{source}"))
            .collect();
        assert!(
            verify
                .detail
                .ends_with(&format!("fetched={}", fetched.join(","))),
            "{client}: {}",
            run.describe()
        );
        assert_installed(&sb, 1);
        // The copies are kept by digest, and only those: a rerun asks the server nothing.
        let downloads: Vec<String> = fs::read_dir(sb.root.join("var/lib/kiln/downloads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut want: Vec<String> = b
            .bundles
            .iter()
            .map(|(_, s)| format!("{s}.tar.gz"))
            .collect();
        let mut got = downloads.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{client}");
        let asked = server.all_requests().len();
        assert_eq!(asked, b.bundles.len(), "{client}");
        let again = sb.run_with(Shell::Dash, &b, &["--source", &source], &env);
        assert!(
            again.expect_ok().ends_with(" unchanged"),
            "{client}: {}",
            again.describe()
        );
        assert_eq!(
            server.all_requests().len(),
            asked,
            "{client}: the rerun fetched again"
        );
    }
}

#[test]
fn a_source_with_wrong_bytes_is_passed_over_and_every_answer_is_named_when_none_has_it() {
    let sb = Sandbox::new();
    let (b, served) = build_without_bundles(&sb);
    // The first source serves other bytes under every name; the second is the right one.
    let liar = Server::start();
    for (name, _) in &b.bundles {
        liar.always(
            &format!("/x/bundles/{name}"),
            Reply::Serve(b"not it".to_vec()),
        );
    }
    let good = serve(&served);
    let (bad_src, good_src) = (liar.url("/x"), good.url("/out"));
    let run = sb.run_with(
        Shell::Dash,
        &b,
        &["--source", &bad_src, "--source", &good_src],
        &[],
    );
    let done = run.expect_ok();
    assert!(done.starts_with("role=common,etcd"), "{}", run.describe());
    assert!(
        run.markers()[0].detail.contains(&format!("@{good_src}")),
        "{}",
        run.describe()
    );
    // Nothing with the wrong digest was kept.
    assert_installed(&sb, 1);

    // No source has it: the marker names the bundle, its digest and each source's answer.
    let sb = Sandbox::new();
    let (b, _) = build_without_bundles(&sb);
    let missing = Server::start();
    let missing_src = missing.url("/gone");
    let run = sb.run_with(
        Shell::Dash,
        &b,
        &["--source", &bad_src, "--source", &missing_src],
        &[("KILN_HTTP_CLIENT", "curl")],
    );
    let (name, sha) = &b.bundles[0];
    run.expect_fail(
        "verify",
        &format!(
            "bundle {name} ({sha}) is not in {} and no source has it: {bad_src}: has sha256 {}, not the pinned one; {missing_src}: curl: (22) The requested URL returned error: 404",
            b.dir.display(),
            kiln_install_tests::sha256_hex(b"not it")
        ),
    );
    // A refused fetch keeps nothing and installs nothing.
    let left: Vec<_> = fs::read_dir(sb.root.join("var/lib/kiln/downloads"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!sb.root.join("etc/demo").exists());
}

#[test]
fn without_a_source_a_missing_bundle_is_named_and_bad_sources_are_usage_errors() {
    let sb = Sandbox::new();
    let (b, _) = build_without_bundles(&sb);
    let before = sb.tree();
    let run = sb.run(Shell::Dash, &b, &[]);
    run.expect_fail(
        "verify",
        &format!(
            "missing bundle {}/{} (no --source to fetch it from)",
            b.dir.display(),
            b.bundles[0].0
        ),
    );
    assert_eq!(sb.tree(), before, "a refused run wrote something");
    for (bad, why) in [
        (
            "ftp://h/x",
            "expected medium, http(s)://…, oci://host/repo or oci+http://host/repo",
        ),
        (
            "oci://h",
            "expected medium, http(s)://…, oci://host/repo or oci+http://host/repo",
        ),
        ("http://h/x;reboot", "unexpected character"),
    ] {
        let run = sb.run_with(Shell::Dash, &b, &["--source", bad], &[]);
        run.expect_fail("verify", &format!("usage: --source {bad}: {why}"));
    }
}

#[test]
fn bundles_come_from_the_shared_medium_folder() {
    for shell in Shell::ALL {
        let sb = Sandbox::new();
        let (b, served) = build_without_bundles(&sb);
        let medium = served.parent().unwrap().display().to_string();
        let run = sb.run_with(
            shell,
            &b,
            &["--source", "medium"],
            &[("KILN_BUNDLE_MEDIUM", &medium)],
        );
        run.expect_ok();
        assert!(
            run.markers()[0].detail.contains("@medium"),
            "{shell:?}: {}",
            run.describe()
        );
        assert_installed(&sb, 1);
    }
}

/// Uploads `file` as a blob of `repo` on the registry at `addr` (the distribution API's
/// monolithic upload, with curl, sending `auth` as a header when given), as `kiln push`
/// leaves bundles there.
fn upload_blob(addr: &str, repo: &str, file: &Path, sha: &str, auth: &str) {
    let auth = if auth.is_empty() {
        "X-Kiln: test"
    } else {
        auth
    };
    let headers = kiln_testkit::run(std::process::Command::new("curl").args([
        "-H",
        auth,
        "-fsS",
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{addr}/v2/{repo}/blobs/uploads/"),
    ]));
    let location = headers
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or(l.strip_prefix("location: "))
        })
        .expect("upload location")
        .trim()
        .to_string();
    let location = if location.starts_with('/') {
        format!("http://{addr}{location}")
    } else {
        location
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    kiln_testkit::run(std::process::Command::new("curl").args([
        "-H",
        auth,
        "-fsS",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}{sep}digest=sha256:{sha}"),
    ]));
}

/// A fresh host installs the fixture build, whose bundles are not beside install.sh, from
/// `source` with `client`; its verify marker names the source of each bundle.
fn install_from(source: &str, client: &str) {
    let sb = Sandbox::new();
    let b = build(&sb, "gen1", 1);
    for (name, _) in &b.bundles {
        fs::remove_file(b.dir.join(name)).unwrap();
    }
    let run = sb.run_with(
        Shell::Dash,
        &b,
        &["--source", source],
        &[("KILN_HTTP_CLIENT", client)],
    );
    run.expect_ok();
    assert!(
        run.markers()[0].detail.contains(&format!("@{source}")),
        "{client}: {}",
        run.describe()
    );
    assert_installed(&sb, 1);
}

#[test]
fn bundles_come_from_a_registrys_blob_api_by_digest() {
    kiln_install_tests::require_tool("docker-registry", "docker-registry");
    kiln_install_tests::require_tool("curl", "curl");
    kiln_install_tests::require_tool("wget", "wget");
    let sb = Sandbox::new();
    let (b, served) = build_without_bundles(&sb);
    let registry = kiln_testkit::Registry::start(
        &sb.path().join("registry"),
        kiln_testkit::RegistryAuth::None,
    );
    for (name, sha) in &b.bundles {
        upload_blob(&registry.addr, "kiln/lab", &served.join(name), sha, "");
    }
    let source = format!("oci+http://{}/kiln/lab", registry.addr);
    for client in ["curl", "wget"] {
        install_from(&source, client);
    }
    // A repository without the blob: the registry's answer is named.
    let other = format!("oci+http://{}/kiln/other", registry.addr);
    let run = sb.run_with(
        Shell::Dash,
        &b,
        &["--source", &other],
        &[("KILN_HTTP_CLIENT", "curl")],
    );
    run.expect_fail(
        "verify",
        &format!("{other}: curl: (22) The requested URL returned error: 404"),
    );
}

#[test]
fn a_registry_that_wants_a_bearer_token_gets_an_anonymous_one() {
    kiln_install_tests::require_tool("docker-registry", "docker-registry");
    kiln_install_tests::require_tool("curl", "curl");
    kiln_install_tests::require_tool("openssl", "openssl");
    let sb = Sandbox::new();
    let (b, served) = build_without_bundles(&sb);
    let tokens =
        kiln_testkit::token::TokenServer::start(&sb.path().join("tokens"), "kiln", "pw", true);
    let registry = tokens.registry(&sb.path().join("registry"));
    // The push side authenticates (as `kiln push` does); the host side has no credentials.
    let token = kiln_testkit::run(std::process::Command::new("curl").args([
        "-fsS",
        "-u",
        "kiln:pw",
        &format!(
            "{}?service={}&scope=repository:kiln/lab:pull,push",
            tokens.realm,
            kiln_testkit::token::SERVICE
        ),
    ]));
    let token: serde_json::Value = serde_json::from_str(&token).unwrap();
    let auth = format!("Authorization: Bearer {}", token["token"].as_str().unwrap());
    for (name, sha) in &b.bundles {
        upload_blob(&registry.addr, "kiln/lab", &served.join(name), sha, &auth);
    }
    let before = tokens.seen().len();
    let source = format!("oci+http://{}/kiln/lab", registry.addr);
    for client in ["curl", "wget"] {
        install_from(&source, client);
    }
    // One anonymous pull token per bundle and client, for the repository, without credentials.
    let asked = tokens.seen()[before..].to_vec();
    assert_eq!(asked.len(), 2 * b.bundles.len(), "{asked:?}");
    for r in &asked {
        assert!(r.basic.is_none(), "{r:?}");
        assert!(r.query.contains("scope=repository:kiln/lab:pull"), "{r:?}");
        assert!(
            r.query
                .contains(&format!("service={}", kiln_testkit::token::SERVICE)),
            "{r:?}"
        );
    }
}
