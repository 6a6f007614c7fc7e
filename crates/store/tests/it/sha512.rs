//! Downloads pinned by sha512 only (upstream publishes sha512 for the Kubernetes tarballs):
//! verified against the sha512, stored under the sha256 computed from the same bytes, and
//! the sha512 → sha256 record kept in the store.

use std::fs;

use kiln_store::{
    fetch_all, Download, DownloadSource, FetchOptions, Mirrors, NoProgress, Outcome, Store,
    StoreError, TransportError,
};
use sha2::{Digest, Sha512};

use crate::server::{Reply, Server};
use crate::{assert_store, fast_opts, payload, sha};

fn sha512(bytes: &[u8]) -> String {
    hex::encode(Sha512::digest(bytes))
}

fn pinned_by_sha512(label: &str, bytes: &[u8], urls: Vec<String>) -> Download {
    Download {
        label: label.to_owned(),
        sha256: None,
        sha512: Some(sha512(bytes)),
        size: Some(bytes.len() as u64),
        source: DownloadSource::Http { urls },
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("vendor")).unwrap();
    (dir, store)
}

fn fetch(
    store: &Store,
    d: &Download,
    mirrors: &Mirrors,
) -> Result<kiln_store::FetchReport, kiln_store::FetchErrors> {
    fetch_all(
        store,
        std::slice::from_ref(d),
        mirrors,
        &fast_opts(),
        &NoProgress,
    )
}

/// The sha512 records of the store: file name → content.
fn records(store: &Store) -> Vec<(String, String)> {
    let dir = store.root().join("sha512");
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = rd
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_sha512_pinned_download_is_verified_stored_by_sha256_and_recorded() {
    let server = Server::start();
    let body = payload(200_000, 60);
    server.always(
        "/kubernetes-server-linux-amd64.tar.gz",
        Reply::Serve(body.clone()),
    );
    let (_d, store) = store();
    let d = pinned_by_sha512(
        "kubernetes-server-linux-amd64.tar.gz",
        &body,
        vec![server.url("/kubernetes-server-linux-amd64.tar.gz")],
    );

    let report = fetch(&store, &d, &Mirrors::new()).unwrap();
    assert!(
        matches!(report.items[0].outcome, Outcome::Downloaded { .. }),
        "{report:?}"
    );
    assert_eq!(report.items[0].sha256.as_deref(), Some(sha(&body).as_str()));
    assert_eq!(report.items[0].pin, format!("sha512:{}", sha512(&body)));
    assert_store(&store, &[(&sha(&body), &body)], &[]);
    assert_eq!(
        records(&store),
        vec![(sha512(&body), format!("{}\n", sha(&body)))]
    );
    assert_eq!(
        store.sha256_of_sha512(&sha512(&body)).unwrap(),
        Some(sha(&body))
    );

    // A second fetch finds it through the record, re-checks both digests, downloads nothing.
    let report = fetch(&store, &d, &Mirrors::new()).unwrap();
    assert_eq!(report.items[0].outcome, Outcome::Present);
    assert_eq!(
        server
            .requests("/kubernetes-server-linux-amd64.tar.gz")
            .len(),
        1
    );
}

#[test]
fn wrong_bytes_are_refused_naming_both_sha512_values_and_leave_nothing() {
    let server = Server::start();
    let body = payload(80_000, 61);
    let wrong = payload(80_000, 62);
    server.always("/w.tar.gz", Reply::Serve(wrong.clone()));
    let (_d, store) = store();
    let d = pinned_by_sha512("w.tar.gz", &body, vec![server.url("/w.tar.gz")]);
    let err = fetch(&store, &d, &Mirrors::new()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sha512 mismatch"), "{msg}");
    assert!(
        msg.contains(&sha512(&body)) && msg.contains(&sha512(&wrong)),
        "names expected and actual: {msg}"
    );
    assert_eq!(
        server.requests("/w.tar.gz").len(),
        1,
        "wrong bytes are not retried"
    );
    assert_store(&store, &[], &[]);
    assert!(records(&store).is_empty());
}

#[test]
fn mirrors_retries_and_resume_hold_for_sha512_pins() {
    let server = Server::start();
    let body = payload(150_000, 63);
    // The mirror serves wrong bytes; the original breaks once mid-way, then resumes.
    server.always("/mirror/k.tar.gz", Reply::Serve(payload(150_000, 64)));
    server.script(
        "/up/k.tar.gz",
        vec![Reply::CutAfter(body.clone(), 50_000), Reply::Status(503)],
    );
    server.always("/up/k.tar.gz", Reply::Serve(body.clone()));
    let mut mirrors = Mirrors::new();
    mirrors.add(server.url("/up/"), vec![server.url("/mirror/")]);
    let (_d, store) = store();
    let d = pinned_by_sha512("k.tar.gz", &body, vec![server.url("/up/k.tar.gz")]);

    let report = fetch(&store, &d, &mirrors).unwrap();
    assert!(
        matches!(
            report.items[0].outcome,
            Outcome::Downloaded {
                resumed_from: 50_000,
                ..
            }
        ),
        "{:?}",
        report.items[0].outcome
    );
    assert!(matches!(
        report.problems[0].error,
        TransportError::HashMismatch {
            algorithm: "sha512",
            ..
        }
    ));
    let ranges: Vec<Option<String>> = server
        .requests("/up/k.tar.gz")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(
        ranges,
        vec![
            None,
            Some("bytes=50000-".into()),
            Some("bytes=50000-".into())
        ]
    );
    assert_store(&store, &[(&sha(&body), &body)], &[]);
}

#[test]
fn a_partial_is_named_by_the_sha512_when_no_sha256_is_known() {
    let server = Server::start();
    let body = payload(90_000, 65);
    server.always("/p.tar.gz", Reply::Serve(body.clone()));
    let (_d, store) = store();
    let d = pinned_by_sha512("p.tar.gz", &body, vec![server.url("/p.tar.gz")]);
    let part = store.partial_path_sha512(&sha512(&body));
    fs::write(&part, &body[..40_000]).unwrap();
    let report = fetch(&store, &d, &Mirrors::new()).unwrap();
    assert!(matches!(
        report.items[0].outcome,
        Outcome::Downloaded {
            resumed_from: 40_000,
            ..
        }
    ));
    assert!(!part.exists());
    assert_store(&store, &[(&sha(&body), &body)], &[]);

    // Offline, a sha512 pin that is not in the store is named as missing.
    let other = payload(10, 66);
    let offline = FetchOptions {
        allow_network: false,
        ..fast_opts()
    };
    let missing = pinned_by_sha512("other.tar.gz", &other, vec![server.url("/other")]);
    let err = fetch_all(&store, &[missing], &Mirrors::new(), &offline, &NoProgress).unwrap_err();
    assert!(matches!(err.failures[0].error, StoreError::Offline { .. }));
    assert!(
        err.to_string()
            .contains(&format!("sha512:{}", sha512(&other))),
        "{err}"
    );
}

#[test]
fn a_record_pointing_at_the_wrong_blob_is_dropped_and_the_file_fetched_again() {
    let server = Server::start();
    let body = payload(30_000, 67);
    server.always("/r.tar.gz", Reply::Serve(body.clone()));
    let (dir, store) = store();
    // Another blob, and a record claiming it has this download's sha512.
    let decoy = payload(100, 68);
    let decoy_file = dir.path().join("decoy");
    fs::write(&decoy_file, &decoy).unwrap();
    store.insert_file(&decoy_file, &sha(&decoy)).unwrap();
    fs::create_dir_all(store.root().join("sha512")).unwrap();
    fs::write(store.root().join("sha512").join(sha512(&body)), sha(&decoy)).unwrap();

    let d = pinned_by_sha512("r.tar.gz", &body, vec![server.url("/r.tar.gz")]);
    let report = fetch(&store, &d, &Mirrors::new()).unwrap();
    assert!(matches!(
        report.items[0].outcome,
        Outcome::Downloaded { .. }
    ));
    assert_eq!(
        store.sha256_of_sha512(&sha512(&body)).unwrap(),
        Some(sha(&body))
    );
    assert_store(&store, &[(&sha(&decoy), &decoy), (&sha(&body), &body)], &[]);
}
