//! The transport against a real HTTP server on 127.0.0.1: retries, resume, wrong bytes,
//! mirror order, the per-request hook, stalls and the deadline.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiln_testkit::http::{Reply, Server};
use kiln_testkit::{names, payload, sha};
use kiln_transport::{
    try_sources, BlobTarget, Classify, Direct, Done, Exhausted, Mirrors, Pins, Reaction, Sender,
    Success, Transport, TransportError, TransportOptions, Watch,
};
use reqwest::blocking::{RequestBuilder, Response};

/// Options for tests: quick backoff, short timeouts.
fn fast() -> TransportOptions {
    TransportOptions {
        retries: 3,
        connect_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        deadline: Duration::from_secs(60),
        max_backoff: Duration::from_millis(20),
    }
}

/// A blob store layout in a temp folder: `tmp/` for partials, `sha256/` for blobs.
struct Dirs {
    _root: tempfile::TempDir,
    tmp: PathBuf,
    blobs: PathBuf,
}

impl Dirs {
    /// Asserts `body` landed under its sha256 and no partial is left in `tmp/`.
    fn assert_landed(&self, body: &[u8]) {
        assert_eq!(fs::read(self.blobs.join(sha(body))).unwrap(), body);
        assert!(names(&self.tmp).is_empty(), "no partial left");
    }
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let (tmp, blobs) = (root.path().join("tmp"), root.path().join("sha256"));
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&blobs).unwrap();
    Dirs {
        _root: root,
        tmp,
        blobs,
    }
}

/// Records what the transport reports.
#[derive(Default)]
struct Seen {
    position: u64,
    notes: Vec<String>,
}

impl Watch for Seen {
    fn at(&mut self, position: u64) {
        // A restart from zero goes back: keep the furthest point.
        self.position = self.position.max(position);
    }
    fn note(&mut self, msg: &str) {
        self.notes.push(msg.to_owned());
    }
}

/// What a download through the retry loop gives.
type Got<E> = Result<Success<String, Done, E>, Exhausted<E>>;

/// Downloads `sha256` (of `size` bytes) from `urls` in order, as kiln-store does.
fn fetch<S: Sender>(
    sender: &S,
    d: &Dirs,
    sha256: &str,
    size: u64,
    urls: &[String],
    seen: &mut Seen,
) -> Got<S::Error> {
    fetch_with(&fast(), sender, d, sha256, size, urls, seen)
}

/// [`fetch`] with the given options.
fn fetch_with<S: Sender>(
    opts: &TransportOptions,
    sender: &S,
    d: &Dirs,
    sha256: &str,
    size: u64,
    urls: &[String],
    seen: &mut Seen,
) -> Got<S::Error> {
    let t = Transport::new(opts).unwrap();
    let target = BlobTarget {
        partial: d.tmp.join(format!("{sha256}.part")),
        blob_dir: d.blobs.clone(),
        pins: Pins {
            sha256: Some(sha256),
            sha512: None,
        },
        size: Some(size),
    };
    try_sources(
        "blob",
        urls,
        t.options(),
        Clone::clone,
        |_, _| {},
        |url, deadline| t.download(sender, &target, url, deadline, seen),
    )
}

#[test]
fn transient_503s_are_retried_on_the_same_source() {
    let server = Server::start();
    let body = payload(30_000, 1);
    server.script("/f", vec![Reply::Status(503), Reply::Status(503)]);
    server.always("/f", Reply::Serve(body.clone()));
    let d = dirs();
    let got = fetch(
        &Direct,
        &d,
        &sha(&body),
        30_000,
        &[server.url("/f")],
        &mut Seen::default(),
    )
    .unwrap();
    assert_eq!(server.requests("/f").len(), 3);
    assert!(got.skipped.is_empty());
    assert_eq!(got.value.bytes, 30_000);
    d.assert_landed(&body);
}

#[test]
fn a_reset_mid_body_resumes_with_a_range_request() {
    let server = Server::start();
    let body = payload(100_000, 2);
    server.script("/f", vec![Reply::CutAfter(body.clone(), 40_000)]);
    server.always("/f", Reply::Serve(body.clone()));
    let d = dirs();
    let mut seen = Seen::default();
    let got = fetch(
        &Direct,
        &d,
        &sha(&body),
        100_000,
        &[server.url("/f")],
        &mut seen,
    )
    .unwrap();
    let ranges: Vec<Option<String>> = server.requests("/f").into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, vec![None, Some("bytes=40000-".to_owned())]);
    assert_eq!((got.value.bytes, got.value.resumed_from), (100_000, 40_000));
    assert_eq!(seen.position, 100_000);
    d.assert_landed(&body);
}

#[test]
fn a_server_that_ignores_the_range_restarts_from_zero() {
    let server = Server::start();
    let body = payload(50_000, 3);
    server.script("/f", vec![Reply::CutAfter(body.clone(), 10_000)]);
    server.always("/f", Reply::IgnoreRange(body.clone()));
    let d = dirs();
    let mut seen = Seen::default();
    let got = fetch(
        &Direct,
        &d,
        &sha(&body),
        50_000,
        &[server.url("/f")],
        &mut seen,
    )
    .unwrap();
    assert_eq!(got.value.resumed_from, 0);
    assert!(
        seen.notes
            .iter()
            .any(|n| n.contains("restarting from zero")),
        "{:?}",
        seen.notes
    );
    assert_eq!(fs::read(d.blobs.join(sha(&body))).unwrap(), body);
}

#[test]
fn wrong_bytes_are_not_retried_and_leave_nothing_behind() {
    let server = Server::start();
    let body = payload(20_000, 4);
    let wrong = payload(20_000, 5);
    server.always("/w", Reply::Serve(wrong.clone()));
    let d = dirs();
    let err = fetch(
        &Direct,
        &d,
        &sha(&body),
        20_000,
        &[server.url("/w")],
        &mut Seen::default(),
    )
    .unwrap_err()
    .into_error("blob");
    let TransportError::AllSourcesFailed { attempts, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(attempts[0].tries, 1);
    assert!(
        matches!(&attempts[0].error, TransportError::HashMismatch { expected, actual, .. }
            if *expected == sha(&body) && *actual == sha(&wrong)),
        "{err}"
    );
    assert_eq!(server.requests("/w").len(), 1);
    assert!(names(&d.tmp).is_empty(), "no partial left");
    assert!(names(&d.blobs).is_empty(), "no blob");
}

#[test]
fn surplus_bytes_stop_at_the_pinned_size() {
    let server = Server::start();
    let body = payload(10_000, 6);
    let longer = [body.clone(), payload(10, 7)].concat();
    server.always("/l", Reply::NoLength(longer));
    let d = dirs();
    let err = fetch(
        &Direct,
        &d,
        &sha(&body),
        10_000,
        &[server.url("/l")],
        &mut Seen::default(),
    )
    .unwrap_err()
    .into_error("blob");
    assert!(
        err.to_string()
            .contains("more than the pinned size of 10000 bytes"),
        "{err}"
    );
    assert!(names(&d.tmp).is_empty());
}

/// The URLs to try for `/up/{path}` with mirrors `/m1/` and `/m2/` before it.
fn via_m1_m2(server: &Server, path: &str) -> Vec<String> {
    let mut mirrors = Mirrors::new();
    mirrors.add(
        server.url("/up/"),
        vec![server.url("/m1/"), server.url("/m2/")],
    );
    mirrors.candidates(&server.url(&format!("/up/{path}")))
}

#[test]
fn mirrors_are_tried_in_order_before_the_original() {
    let server = Server::start();
    let body = payload(5_000, 8);
    server.always("/m2/dl/x.tgz", Reply::Serve(body.clone()));
    server.always("/up/dl/x.tgz", Reply::Serve(body.clone()));
    let urls = via_m1_m2(&server, "dl/x.tgz");
    let d = dirs();
    let got = fetch(&Direct, &d, &sha(&body), 5_000, &urls, &mut Seen::default()).unwrap();
    assert_eq!(got.source, server.url("/m2/dl/x.tgz"));
    let paths: Vec<String> = server.all_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/m1/dl/x.tgz", "/m2/dl/x.tgz"]);
    assert_eq!(got.skipped.len(), 1);
    assert!(matches!(
        got.skipped[0].error,
        TransportError::HttpStatus { status: 404, .. }
    ));
}

/// A source's own error, wrapping the transport's: what a registry's auth flow does.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("refused by the hook")]
    Refused,
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl Classify for HookError {
    fn reaction(&self) -> Reaction {
        match self {
            HookError::Refused => Reaction::NextSource,
            HookError::Transport(e) => e.reaction(),
        }
    }
}

/// Refuses one path without sending; sends the rest with a header added.
struct Hook(String);

impl Sender for Hook {
    type Error = HookError;
    fn send(&self, url: &str, build: &dyn Fn() -> RequestBuilder) -> Result<Response, HookError> {
        if url == self.0 {
            return Err(HookError::Refused);
        }
        Ok(Transport::execute(url, build().header("x-kiln-test", "1"))?)
    }
}

#[test]
fn the_per_request_hook_sends_every_request_and_its_errors_steer_the_loop() {
    let server = Server::start();
    let body = payload(3_000, 9);
    server.always("/ok", Reply::Serve(body.clone()));
    let d = dirs();
    let refused = server.url("/refused");
    let got = fetch(
        &Hook(refused.clone()),
        &d,
        &sha(&body),
        3_000,
        &[refused, server.url("/ok")],
        &mut Seen::default(),
    )
    .unwrap();
    assert!(matches!(got.skipped[0].error, HookError::Refused));
    assert!(
        server.requests("/refused").is_empty(),
        "the hook sent nothing"
    );
    assert_eq!(server.requests("/ok").len(), 1);
}

#[test]
fn file_urls_are_a_transport_too() {
    let d = dirs();
    let body = payload(4_000, 10);
    let src = d.tmp.parent().unwrap().join("src.bin");
    fs::write(&src, &body).unwrap();
    let url = format!("file://{}", src.display());
    let got = fetch(
        &Direct,
        &d,
        &sha(&body),
        4_000,
        std::slice::from_ref(&url),
        &mut Seen::default(),
    )
    .unwrap();
    assert_eq!(got.source, url);
    assert_eq!(fs::read(d.blobs.join(sha(&body))).unwrap(), body);
}

/// A server that sends the headers and 64 KiB, then nothing (for far longer than the test).
fn stalling(server: &Server, path: &str, body: &[u8]) {
    server.always(
        path,
        Reply::Stall {
            body: body.to_vec(),
            first: 64 * 1024,
            stall: Duration::from_secs(60),
        },
    );
}

/// Downloads `body` (pinned by sha256 and size) from `urls` with `opts`; how long it took.
fn timed(
    opts: &TransportOptions,
    d: &Dirs,
    body: &[u8],
    urls: &[String],
) -> (Got<TransportError>, Duration) {
    let started = Instant::now();
    let size = body.len() as u64;
    let got = fetch_with(
        opts,
        &Direct,
        d,
        &sha(body),
        size,
        urls,
        &mut Seen::default(),
    );
    (got, started.elapsed())
}

/// Fast options with the given idle timeout.
fn idle(idle_timeout: Duration) -> TransportOptions {
    TransportOptions {
        idle_timeout,
        ..fast()
    }
}

#[test]
fn a_stalled_body_ends_the_try_after_the_idle_timeout_naming_the_url() {
    let server = Server::start();
    let body = payload(200_000, 11);
    stalling(&server, "/stall", &body);
    let d = dirs();
    let half = Duration::from_millis(500);
    let (got, took) = timed(&idle(half), &d, &body, &[server.url("/stall")]);
    assert!(took < Duration::from_secs(5), "waited {took:?}");
    let err = got.unwrap_err().into_error("blob");
    let TransportError::AllSourcesFailed { attempts, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(attempts[0].tries, 1, "a stalled source is not retried");
    assert!(
        matches!(&attempts[0].error, TransportError::Stalled { url, idle, received: 65_536 }
            if *url == server.url("/stall") && *idle == half),
        "{err}"
    );
    let said = format!("{}: stalled: no data for 500ms", server.url("/stall"));
    assert!(err.to_string().contains(&said), "{err}");
    assert_eq!(server.requests("/stall").len(), 1);
    // The bytes that did arrive are kept for the next source or run.
    assert_eq!(names(&d.tmp), vec![format!("{}.part", sha(&body))]);
}

#[test]
fn a_stall_moves_to_the_next_mirror_at_once_which_resumes_the_partial() {
    let server = Server::start();
    let body = payload(200_000, 12);
    stalling(&server, "/m1/x.tgz", &body);
    server.always("/m2/x.tgz", Reply::Serve(body.clone()));
    server.always("/up/x.tgz", Reply::Serve(body.clone()));
    let urls = via_m1_m2(&server, "x.tgz");
    let d = dirs();
    let (got, took) = timed(&idle(Duration::from_millis(500)), &d, &body, &urls);
    assert!(took < Duration::from_secs(5), "waited {took:?}");
    let got = got.unwrap();
    assert_eq!(got.source, server.url("/m2/x.tgz"));
    assert_eq!(got.value.resumed_from, 65_536);
    let seen: Vec<(String, Option<String>)> = server
        .all_requests()
        .into_iter()
        .map(|r| (r.path, r.range))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("/m1/x.tgz".to_owned(), None),
            ("/m2/x.tgz".to_owned(), Some("bytes=65536-".to_owned())),
        ],
        "the stalled source is not retried before the next one"
    );
    assert!(matches!(
        got.skipped[0].error,
        TransportError::Stalled { .. }
    ));
    d.assert_landed(&body);
}

#[test]
fn the_deadline_ends_a_source_that_trickles_under_the_idle_timeout() {
    let server = Server::start();
    let body = payload(100_000, 13);
    server.always(
        "/trickle",
        Reply::Trickle {
            body: body.clone(),
            chunk: 1_000,
            pause: Duration::from_millis(100),
        },
    );
    server.always("/never", Reply::Serve(body.clone()));
    let d = dirs();
    let opts = TransportOptions {
        deadline: Duration::from_secs(1),
        ..idle(Duration::from_secs(2))
    };
    let urls = [server.url("/trickle"), server.url("/never")];
    let (got, took) = timed(&opts, &d, &body, &urls);
    assert!(took < Duration::from_secs(3), "waited {took:?}");
    let err = got.unwrap_err().into_error("blob");
    let TransportError::AllSourcesFailed { attempts, .. } = &err else {
        panic!("{err}")
    };
    let tried: Vec<(&str, u32)> = attempts.iter().map(|a| (a.url.as_str(), a.tries)).collect();
    assert_eq!(tried, vec![(urls[0].as_str(), 1), (urls[1].as_str(), 0)]);
    for a in attempts {
        assert!(
            matches!(&a.error, TransportError::DeadlineExceeded { url, limit }
                if *url == a.url && *limit == Duration::from_secs(1)),
            "{err}"
        );
    }
    assert!(server.requests("/never").is_empty());
}
