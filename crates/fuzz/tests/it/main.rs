//! The harness's own tests: the `selftest` target panics, hangs or over-allocates on request,
//! and each must end the run with exit 1, the kind named and the input saved for replay.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs kiln-fuzz on `selftest` with a corpus holding one file with `seed_input`.
fn run_selftest(dir: &Path, seed_input: &[u8], extra: &[&str]) -> Output {
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    std::fs::write(corpus.join("input"), seed_input).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
        .arg("selftest")
        .arg("--corpus")
        .arg(&corpus)
        .arg("--crashes")
        .arg(dir.join("crashes"))
        .args(extra)
        .output()
        .unwrap()
}

/// The one saved input under `dir/crashes`.
fn saved(dir: &Path) -> Vec<u8> {
    let files: Vec<_> = std::fs::read_dir(dir.join("crashes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    std::fs::read(&files[0]).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_panic_fails_the_run_and_saves_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_selftest(dir.path(), b"PANIC here", &["--seconds", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("selftest: panic found"), "{err}");
    assert!(err.contains("selftest: asked to panic"), "{err}");
    assert!(err.contains("input saved to "), "{err}");
    assert!(err.contains(r#"input (10 bytes): b"PANIC here""#), "{err}");
    assert_eq!(saved(dir.path()), b"PANIC here");
}

#[test]
fn a_hang_fails_the_run_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let out = run_selftest(dir.path(), b"HANG", &["--seconds", "1", "--timeout", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("selftest: hang found"), "{err}");
    assert!(err.contains("longer than 1s"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(saved(dir.path()), b"HANG");
}

#[test]
fn a_memory_overrun_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_selftest(dir.path(), b"ALLOC", &["--seconds", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("selftest: memory found"), "{err}");
    assert!(err.contains("passed the bound of 512 MiB"), "{err}");
    assert_eq!(saved(dir.path()), b"ALLOC");
}

#[test]
fn the_saved_input_replays_the_failure_and_a_good_one_passes() {
    let dir = tempfile::tempdir().unwrap();
    let crash = dir.path().join("crash");
    std::fs::write(&crash, b"PANIC").unwrap();
    let replay = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
            .args(["selftest", "--crashes"])
            .arg(dir.path().join("crashes"))
            .arg("--replay")
            .arg(file)
            .output()
            .unwrap()
    };
    let out = replay(&crash);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("panic found"), "{}", stderr(&out));
    let good = dir.path().join("good");
    std::fs::write(&good, b"fine").unwrap();
    let out = replay(&good);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn mutation_reaches_a_failing_input_from_a_passing_seed() {
    // The selftest target's tokens are its triggers: the token mutator must find one.
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--seconds",
        "20",
        "--runs",
        "20000",
        "--seed",
        "1",
        "--timeout",
        "1",
    ];
    let out = run_selftest(dir.path(), b"ok", &args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(" found (seed 1)"), "{err}");
    let input = saved(dir.path());
    assert!(
        [&b"PANIC"[..], b"HANG", b"ALLOC"]
            .iter()
            .any(|t| input.starts_with(t)),
        "{input:?}"
    );
}

#[test]
fn every_ci_target_passes_its_own_seeds() {
    for target in kiln_fuzz::TARGETS.iter().filter(|t| t.in_ci) {
        let out = Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
            .args([target.name, "--runs", "0"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}: {}", target.name, stderr(&out));
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
        .args(["no-such-target"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
        .args(["cluster", "--seconds", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
