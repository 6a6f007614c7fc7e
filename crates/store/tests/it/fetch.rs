//! fetch_all, fetch_text and remote_size against a local fault-injecting server.

use std::fs;
use std::time::Duration;

use kiln_store::{
    fetch_all, fetch_text, remote_size, Download, DownloadSource, FetchOptions, Mirrors,
    NoProgress, Outcome, Store, StoreError, TransportError,
};

use crate::server::{Reply, Server};
use crate::{assert_store, fast_opts, payload, sha, Recorder};

fn http(label: &str, bytes: &[u8], urls: Vec<String>, pinned_size: bool) -> Download {
    Download {
        label: label.to_owned(),
        sha256: Some(sha(bytes)),
        sha512: None,
        size: pinned_size.then_some(bytes.len() as u64),
        source: DownloadSource::Http { urls },
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vendor")).unwrap();
    (dir, store)
}

fn fetch_one(
    store: &Store,
    d: &Download,
    opts: &FetchOptions,
) -> Result<Outcome, kiln_store::FetchErrors> {
    fetch_all(
        store,
        std::slice::from_ref(d),
        &Mirrors::new(),
        opts,
        &NoProgress,
    )
    .map(|r| r.items[0].outcome.clone())
}

#[test]
fn plain_download_lands_verified_and_leaves_no_temp() {
    let server = Server::start();
    let body = payload(300_000, 1);
    server.always("/a", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = http("a", &body, vec![server.url("/a")], true);
    let rec = Recorder::default();
    let report = fetch_all(
        &store,
        std::slice::from_ref(&d),
        &Mirrors::new(),
        &fast_opts(),
        &rec,
    )
    .unwrap();
    assert!(matches!(
        &report.items[0].outcome,
        Outcome::Downloaded {
            bytes: 300_000,
            resumed_from: 0,
            ..
        }
    ));
    assert_eq!(*rec.advanced.lock().unwrap(), 300_000);
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);

    // Present and verified: skipped without a request.
    let before = server.all_requests().len();
    assert_eq!(
        fetch_one(&store, &d, &fast_opts()).unwrap(),
        Outcome::Present
    );
    assert_eq!(server.all_requests().len(), before);
}

#[test]
fn reset_mid_body_is_retried_with_a_range_request() {
    let server = Server::start();
    let body = payload(200_000, 2);
    server.script("/r", vec![Reply::CutAfter(body.clone(), 80_000)]);
    server.always("/r", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = http("r", &body, vec![server.url("/r")], true);
    let outcome = fetch_one(&store, &d, &fast_opts()).unwrap();
    let Outcome::Downloaded { resumed_from, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(resumed_from > 0 && resumed_from <= 80_000, "{resumed_from}");
    let reqs = server.requests("/r");
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].range, None);
    assert_eq!(reqs[1].range, Some(format!("bytes={resumed_from}-")));
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn status_503_then_200_is_retried() {
    let server = Server::start();
    let body = payload(10_000, 3);
    server.script("/s", vec![Reply::Status(503), Reply::Status(500)]);
    server.always("/s", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = http("s", &body, vec![server.url("/s")], false);
    fetch_one(&store, &d, &fast_opts()).unwrap();
    assert_eq!(server.requests("/s").len(), 3);
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn retries_are_bounded_and_every_source_is_named() {
    let server = Server::start();
    let body = payload(1000, 4);
    server.always("/down", Reply::Status(503));
    let (_d, store) = store();
    let d = http("down", &body, vec![server.url("/down")], true);
    let err = fetch_one(&store, &d, &fast_opts()).unwrap_err();
    assert_eq!(server.requests("/down").len(), 4, "1 try + 3 retries");
    let msg = err.to_string();
    assert!(
        msg.contains("down (") && msg.contains(&server.url("/down")) && msg.contains("503"),
        "{msg}"
    );
    assert!(msg.contains("4 tries"), "{msg}");
    assert_store(&store, &[], &[]);
}

#[test]
fn not_found_is_not_retried_and_the_next_url_is_used() {
    let server = Server::start();
    let body = payload(5000, 5);
    server.always("/gone", Reply::Status(404));
    server.always("/forbidden", Reply::Status(403));
    server.always("/ok", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = http(
        "nf",
        &body,
        vec![
            server.url("/gone"),
            server.url("/forbidden"),
            server.url("/ok"),
        ],
        true,
    );
    let report = fetch_all(
        &store,
        std::slice::from_ref(&d),
        &Mirrors::new(),
        &fast_opts(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(server.requests("/gone").len(), 1);
    assert_eq!(server.requests("/forbidden").len(), 1);
    let skipped: Vec<&str> = report.problems.iter().map(|p| p.url.as_str()).collect();
    assert_eq!(skipped, vec![server.url("/gone"), server.url("/forbidden")]);
    assert!(matches!(
        report.problems[0].error,
        TransportError::HttpStatus { status: 404, .. }
    ));
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn wrong_bytes_fail_without_retry_and_leave_nothing() {
    let server = Server::start();
    let body = payload(50_000, 6);
    let wrong = payload(50_000, 7);
    server.always("/w", Reply::Serve(wrong.clone()));
    let (_d, store) = store();
    let d = http("w", &body, vec![server.url("/w")], true);
    let err = fetch_one(&store, &d, &fast_opts()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&server.url("/w")), "{msg}");
    assert!(
        msg.contains(&sha(&body)) && msg.contains(&sha(&wrong)),
        "names expected and actual: {msg}"
    );
    assert_eq!(server.requests("/w").len(), 1);
    assert_store(&store, &[], &[]);
}

#[test]
fn more_bytes_than_pinned_is_an_error_at_once() {
    let server = Server::start();
    let body = payload(40_000, 8);
    let longer = [body.clone(), payload(10, 9)].concat();
    server.always("/announced", Reply::Serve(longer.clone()));
    server.always("/streamed", Reply::NoLength(longer));
    let (_d, store) = store();
    for path in ["/announced", "/streamed"] {
        let d = http("big", &body, vec![server.url(path)], true);
        let err = fetch_one(&store, &d, &fast_opts()).unwrap_err();
        let StoreError::Transport(TransportError::AllSourcesFailed { attempts, .. }) =
            &err.failures[0].error
        else {
            panic!("{err}")
        };
        assert!(
            matches!(
                attempts[0].error,
                TransportError::TooLarge { limit: 40_000, .. }
            ),
            "{err}"
        );
        assert_eq!(server.requests(path).len(), 1);
        assert_store(&store, &[], &[]);
    }
}

#[test]
fn a_stalled_body_hits_the_idle_timeout_and_the_next_source_resumes_it() {
    let server = Server::start();
    let body = payload(100_000, 10);
    server.always(
        "/slow",
        Reply::Stall {
            body: body.clone(),
            first: 30_000,
            stall: Duration::from_secs(6),
        },
    );
    server.always("/other", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = http(
        "slow",
        &body,
        vec![server.url("/slow"), server.url("/other")],
        true,
    );
    let opts = FetchOptions {
        idle_timeout: Duration::from_millis(400),
        ..fast_opts()
    };
    let started = std::time::Instant::now();
    let outcome = fetch_one(&store, &d, &opts).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not wait for the stall"
    );
    assert!(
        matches!(
            &outcome,
            Outcome::Downloaded {
                resumed_from: 30_000,
                url,
                ..
            } if *url == server.url("/other")
        ),
        "{outcome:?}"
    );
    assert_eq!(server.requests("/slow").len(), 1, "a stall is not retried");
    let reqs = server.requests("/other");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].range.as_deref(), Some("bytes=30000-"));
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn a_partial_from_an_earlier_run_is_resumed_with_range() {
    let server = Server::start();
    let body = payload(120_000, 11);
    server.always("/p", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = http("p", &body, vec![server.url("/p")], true);
    fs::write(
        store.partial_path(d.sha256.as_deref().unwrap()),
        &body[..70_000],
    )
    .unwrap();
    let outcome = fetch_one(&store, &d, &fast_opts()).unwrap();
    assert!(matches!(
        outcome,
        Outcome::Downloaded {
            resumed_from: 70_000,
            ..
        }
    ));
    assert_eq!(
        server.requests("/p")[0].range.as_deref(),
        Some("bytes=70000-")
    );
    assert_eq!(server.body_bytes_sent(), 50_000);
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn a_server_ignoring_range_restarts_from_zero() {
    let server = Server::start();
    let body = payload(60_000, 12);
    server.always("/ign", Reply::IgnoreRange(body.clone()));
    let (_d, store) = store();
    let d = http("ign", &body, vec![server.url("/ign")], true);
    // Garbage partial: it must be thrown away, not prepended.
    fs::write(
        store.partial_path(d.sha256.as_deref().unwrap()),
        payload(10_000, 99),
    )
    .unwrap();
    let rec = Recorder::default();
    let report = fetch_all(
        &store,
        std::slice::from_ref(&d),
        &Mirrors::new(),
        &fast_opts(),
        &rec,
    )
    .unwrap();
    assert!(matches!(
        report.items[0].outcome,
        Outcome::Downloaded {
            resumed_from: 0,
            ..
        }
    ));
    let reqs = server.requests("/ign");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].range.as_deref(), Some("bytes=10000-"));
    assert!(rec
        .notes
        .lock()
        .unwrap()
        .iter()
        .any(|n| n.contains("restarting from zero")));
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn a_206_starting_elsewhere_restarts_from_zero() {
    let server = Server::start();
    let body = payload(60_000, 13);
    // Not where we asked: the bytes cannot be appended, so the file is asked for whole.
    server.script("/wr", vec![Reply::WrongRangeStart(body.clone(), 5_000)]);
    server.always("/wr", Reply::Serve(body.clone()));
    // A 206 that starts at 0 is the whole file: used as a restart without another request.
    server.always("/wr0", Reply::WrongRangeStart(body.clone(), 0));
    let (_d, store) = store();
    let d = http("wr", &body, vec![server.url("/wr")], true);
    fs::write(
        store.partial_path(d.sha256.as_deref().unwrap()),
        &body[..20_000],
    )
    .unwrap();
    let outcome = fetch_one(&store, &d, &fast_opts()).unwrap();
    assert!(matches!(
        outcome,
        Outcome::Downloaded {
            resumed_from: 0,
            ..
        }
    ));
    let ranges: Vec<_> = server
        .requests("/wr")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec![Some("bytes=20000-".to_owned()), None]);
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);

    let (_d, store) = self::store();
    let d = http("wr0", &body, vec![server.url("/wr0")], true);
    fs::write(
        store.partial_path(d.sha256.as_deref().unwrap()),
        &body[..20_000],
    )
    .unwrap();
    let outcome = fetch_one(&store, &d, &fast_opts()).unwrap();
    assert!(matches!(
        outcome,
        Outcome::Downloaded {
            resumed_from: 0,
            ..
        }
    ));
    assert_eq!(server.requests("/wr0").len(), 1);
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn a_corrupt_partial_is_never_trusted() {
    let server = Server::start();
    let body = payload(60_000, 14);
    server.always("/cp", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = http("cp", &body, vec![server.url("/cp")], true);
    fs::write(
        store.partial_path(d.sha256.as_deref().unwrap()),
        payload(20_000, 98),
    )
    .unwrap();
    let outcome = fetch_one(&store, &d, &fast_opts()).unwrap();
    assert!(
        matches!(
            outcome,
            Outcome::Downloaded {
                resumed_from: 0,
                ..
            }
        ),
        "{outcome:?}"
    );
    let ranges: Vec<_> = server
        .requests("/cp")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, vec![Some("bytes=20000-".to_owned()), None]);
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn mirrors_are_tried_in_order_and_a_wrong_bytes_mirror_is_skipped_and_reported() {
    let server = Server::start();
    let body = payload(30_000, 15);
    server.always("/m1/pkg/x.tgz", Reply::Serve(payload(30_000, 16)));
    server.always("/m2/pkg/x.tgz", Reply::Serve(body.clone()));
    server.always("/orig/pkg/x.tgz", Reply::Serve(body.clone()));
    let mut mirrors = Mirrors::new();
    mirrors.add(
        server.url("/orig/"),
        vec![server.url("/m1/"), server.url("/m2/")],
    );
    let (_d, store) = store();
    let d = http("x.tgz", &body, vec![server.url("/orig/pkg/x.tgz")], true);
    let rec = Recorder::default();
    let report = fetch_all(
        &store,
        std::slice::from_ref(&d),
        &mirrors,
        &fast_opts(),
        &rec,
    )
    .unwrap();

    let order: Vec<String> = server.all_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        order,
        vec!["/m1/pkg/x.tgz", "/m2/pkg/x.tgz"],
        "original not needed"
    );
    assert!(
        matches!(&report.items[0].outcome, Outcome::Downloaded { url, .. } if url == &server.url("/m2/pkg/x.tgz"))
    );
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].url, server.url("/m1/pkg/x.tgz"));
    assert!(matches!(
        report.problems[0].error,
        TransportError::HashMismatch { .. }
    ));
    let notes = rec.notes.lock().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.contains(&server.url("/m1/pkg/x.tgz")) && n.contains("sha256 mismatch")),
        "{notes:?}"
    );
    assert_store(&store, &[(d.sha256.as_deref().unwrap(), &body)], &[]);
}

#[test]
fn offline_lists_every_missing_download_and_fetches_nothing() {
    let server = Server::start();
    let (dir, store) = store();
    let present = payload(100, 17);
    let local = dir.path().join("present.bin");
    fs::write(&local, &present).unwrap();
    store.insert_file(&local, &sha(&present)).unwrap();
    let (a, b) = (payload(100, 18), payload(100, 19));
    let downloads = [
        http("a.bin", &a, vec![server.url("/a")], true),
        http("present.bin", &present, vec![server.url("/p")], true),
        Download {
            label: "b.deb".into(),
            sha256: Some(sha(&b)),
            sha512: None,
            size: None,
            source: DownloadSource::Apt {
                package: "b".into(),
                version: "1".into(),
                arch: "amd64".into(),
                apt_config: None,
            },
        },
    ];
    let opts = FetchOptions {
        allow_network: false,
        ..fast_opts()
    };
    let err = fetch_all(&store, &downloads, &Mirrors::new(), &opts, &NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("2 of 3 downloads failed"), "{msg}");
    for (label, s) in [("a.bin", sha(&a)), ("b.deb", sha(&b))] {
        assert!(msg.contains(label) && msg.contains(&s), "{msg}");
    }
    assert!(matches!(err.failures[0].error, StoreError::Offline { .. }));
    assert_eq!(err.report.items[1].outcome, Outcome::Present);
    assert!(server.all_requests().is_empty());
    assert_store(&store, &[(&sha(&present), &present)], &[]);
}

#[test]
fn downloads_run_in_parallel_and_duplicates_are_fetched_once() {
    let server = Server::start();
    let (_d, store) = store();
    let mut downloads = Vec::new();
    let mut bodies = Vec::new();
    for i in 0..6u32 {
        let body = payload(20_000 + i as usize, 20 + i);
        let path = format!("/par/{i}");
        server.always(&path, Reply::Serve(body.clone()));
        downloads.push(http(&format!("p{i}"), &body, vec![server.url(&path)], true));
        bodies.push(body);
    }
    downloads.push(http("dup", &bodies[0], vec![server.url("/par/0")], true));
    let opts = FetchOptions {
        jobs: 3,
        ..fast_opts()
    };
    let report = fetch_all(&store, &downloads, &Mirrors::new(), &opts, &NoProgress).unwrap();
    assert_eq!(report.items.len(), 7);
    assert_eq!(report.items[6].outcome, report.items[0].outcome);
    assert_eq!(server.requests("/par/0").len(), 1);
    let shas: Vec<String> = bodies.iter().map(|b| sha(b)).collect();
    let blobs: Vec<(&str, &[u8])> = shas
        .iter()
        .zip(&bodies)
        .map(|(s, b)| (s.as_str(), b.as_slice()))
        .collect();
    assert_store(&store, &blobs, &[]);
}

#[test]
fn local_files_and_file_urls_are_sources_too() {
    let (dir, store) = store();
    let one = payload(5000, 30);
    let two = payload(5000, 31);
    let (p1, p2) = (dir.path().join("one"), dir.path().join("two"));
    fs::write(&p1, &one).unwrap();
    fs::write(&p2, &two).unwrap();
    let downloads = [
        Download {
            label: "one".into(),
            sha256: Some(sha(&one)),
            sha512: None,
            size: None,
            source: DownloadSource::File { path: p1.clone() },
        },
        http("two", &two, vec![format!("file://{}", p2.display())], true),
    ];
    let report = fetch_all(
        &store,
        &downloads,
        &Mirrors::new(),
        &fast_opts(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(report.items[0].outcome, Outcome::Copied { path: p1 });
    assert_store(&store, &[(&sha(&one), &one), (&sha(&two), &two)], &[]);

    // A local file that does not match its pin is refused.
    let bad = Download {
        label: "bad".into(),
        sha256: Some(sha(b"other")),
        sha512: None,
        size: None,
        source: DownloadSource::File { path: p2 },
    };
    let err = fetch_one(&store, &bad, &fast_opts()).unwrap_err();
    assert!(
        matches!(
            err.failures[0].error,
            StoreError::Transport(TransportError::HashMismatch { .. })
        ),
        "{err}"
    );
    assert_store(&store, &[(&sha(&one), &one), (&sha(&two), &two)], &[]);
}

#[test]
fn fetch_text_uses_mirrors_and_retries_and_caps_the_size() {
    let server = Server::start();
    server.always("/m/sums.txt", Reply::Status(404));
    server.script("/up/sums.txt", vec![Reply::Status(502)]);
    server.always("/up/sums.txt", Reply::Serve(b"abc  file\n".to_vec()));
    server.always(
        "/up/huge.txt",
        Reply::Serve(vec![b'a'; 4 * 1024 * 1024 + 1]),
    );
    let mut mirrors = Mirrors::new();
    mirrors.add(server.url("/up/"), vec![server.url("/m/")]);
    let text = fetch_text(&server.url("/up/sums.txt"), &mirrors, &fast_opts()).unwrap();
    assert_eq!(text, "abc  file\n");
    assert_eq!(server.requests("/m/sums.txt").len(), 1);
    assert_eq!(server.requests("/up/sums.txt").len(), 2);

    let err = fetch_text(&server.url("/up/huge.txt"), &Mirrors::new(), &fast_opts()).unwrap_err();
    assert!(
        err.to_string().contains("more than the pinned size")
            || err.to_string().contains("4194304"),
        "{err}"
    );

    let offline = FetchOptions {
        allow_network: false,
        ..fast_opts()
    };
    assert!(matches!(
        fetch_text(&server.url("/up/sums.txt"), &mirrors, &offline),
        Err(StoreError::NetworkDisabled { .. })
    ));
}

#[test]
fn remote_size_reads_content_length() {
    let server = Server::start();
    server.always("/sized", Reply::Serve(payload(12_345, 40)));
    assert_eq!(
        remote_size(&server.url("/sized"), &Mirrors::new(), &fast_opts()).unwrap(),
        Some(12_345)
    );
    assert_eq!(server.requests("/sized")[0].method, "HEAD");
    server.always("/nolen", Reply::NoLength(payload(10, 41)));
    assert_eq!(
        remote_size(&server.url("/nolen"), &Mirrors::new(), &fast_opts()).unwrap(),
        None
    );
    let err = remote_size(&server.url("/missing"), &Mirrors::new(), &fast_opts()).unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}
