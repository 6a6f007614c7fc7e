//! Test driver for kiln-store: runs one store operation in its own process, so tests
//! can SIGKILL it mid-download or give it its own apt configuration.
//!
//! Usage:
//!   kiln-store-fetch-test fetch <root> <url> <sha256 | sha512:hex> [size]
//!   kiln-store-fetch-test apt-fetch <root> <package> <version> <arch> <sha256>

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use kiln_store::{fetch_all, Download, DownloadSource, FetchOptions, Mirrors, NoProgress, Store};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["fetch", root, url, sha, rest @ ..] => {
            let size = rest.first().map(|s| s.parse().expect("size is a number"));
            let source = DownloadSource::Http {
                urls: vec![url.to_string()],
            };
            fetch(root, sha, size, source)
        }
        ["apt-fetch", root, package, version, arch, sha] => {
            let source = DownloadSource::Apt {
                package: package.to_string(),
                version: version.to_string(),
                arch: arch.to_string(),
                apt_config: None,
            };
            fetch(root, sha, None, source)
        }
        _ => {
            eprintln!("usage: see the source of kiln-store-fetch-test");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", kiln_store::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

fn fetch(
    root: &str,
    sha: &str,
    size: Option<u64>,
    source: DownloadSource,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = Store::open(Path::new(root))?;
    let (sha256, sha512) = match sha.strip_prefix("sha512:") {
        Some(h) => (None, Some(h.to_owned())),
        None => (Some(sha.to_owned()), None),
    };
    let download = Download {
        label: "test".into(),
        sha256,
        sha512,
        size,
        source,
    };
    let opts = FetchOptions {
        jobs: 1,
        retries: 2,
        idle_timeout: Duration::from_secs(10),
        max_backoff: Duration::from_millis(100),
        ..FetchOptions::default()
    };
    let report = fetch_all(&store, &[download], &Mirrors::new(), &opts, &NoProgress)?;
    println!("{:?}", report.items[0].outcome);
    Ok(())
}
