//! `kiln-fuzz`: runs one fuzz target for a fixed time, or replays one input.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kiln_fuzz::alloc::CountingAlloc;
use kiln_fuzz::{engine, Options, DEFAULT_MAX_MEMORY_MIB, DEFAULT_TIMEOUT_SECS};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const USAGE: &str = "\
usage: kiln-fuzz list [--ci]
       kiln-fuzz <target> [--seconds N] [--runs N] [--seed N] [--timeout SECS]
                          [--max-memory-mib N] [--corpus DIR] [--crashes DIR] [--root DIR]
       kiln-fuzz <target> --replay FILE

Runs the target on its seed corpus (default crates/fuzz/corpus/<target>), then on mutants
for --seconds (default 60). A panic, an input running longer than --timeout (default 10 s)
or a live heap above --max-memory-mib (default 512) saves the input under --crashes
(default target/fuzz-crashes), prints its path and exits 1. Exit 2: usage error.";

struct Args {
    target: String,
    replay: Option<PathBuf>,
    opts: Options,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let target = args.next().ok_or("no target given")?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut opts = Options {
        seed: 0,
        duration: Duration::from_secs(60),
        max_runs: None,
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        max_memory: DEFAULT_MAX_MEMORY_MIB << 20,
        corpus: repo.join("crates/fuzz/corpus").join(&target),
        crashes: repo.join("target/fuzz-crashes"),
        root: repo,
    };
    let mut replay = None;
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--seconds" => opts.duration = Duration::from_secs(number(value()?)?),
            "--runs" => opts.max_runs = Some(number(value()?)?),
            "--seed" => opts.seed = number(value()?)?,
            "--timeout" => opts.timeout = Duration::from_secs(number(value()?)?),
            "--max-memory-mib" => opts.max_memory = (number(value()?)? as usize) << 20,
            "--corpus" => opts.corpus = value()?.into(),
            "--crashes" => opts.crashes = value()?.into(),
            "--root" => opts.root = value()?.into(),
            "--replay" => replay = Some(value()?.into()),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Args {
        target,
        replay,
        opts,
    })
}

/// `list`: every target with what it covers; `list --ci`: the names scripts/fuzz runs.
fn list(ci_names: bool) {
    for t in kiln_fuzz::TARGETS {
        if ci_names {
            if t.in_ci {
                println!("{}", t.name);
            }
        } else {
            let ci = if t.in_ci { "" } else { " (not in CI)" };
            println!("{:<11} {}{ci}", t.name, t.about);
        }
    }
}

fn main() -> ExitCode {
    kiln_fuzz::coverage::no_profile_file();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("list") {
        list(argv.get(1).map(String::as_str) == Some("--ci"));
        return ExitCode::SUCCESS;
    }
    let args = match parse(argv.into_iter()) {
        Ok(a) if a.target == "--help" || a.target == "-h" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(a) => a,
        Err(e) => {
            eprintln!("kiln-fuzz: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let Some(target) = kiln_fuzz::find(&args.target) else {
        eprintln!(
            "kiln-fuzz: unknown target {:?} (see `kiln-fuzz list`)",
            args.target
        );
        return ExitCode::from(2);
    };
    let opts = &args.opts;
    if let Some(file) = &args.replay {
        let data = match std::fs::read(file) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("kiln-fuzz: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        return match kiln_fuzz::replay(target, opts, &data) {
            Ok(()) => {
                println!("kiln-fuzz: {}: {} passes", target.name, file.display());
                ExitCode::SUCCESS
            }
            Err(f) => {
                eprintln!("{}", engine::report(target.name, opts.seed, &f, &data));
                ExitCode::FAILURE
            }
        };
    }
    match kiln_fuzz::fuzz(target, opts) {
        Ok(s) => {
            let secs = s.elapsed.as_secs_f64();
            let coverage = if kiln_fuzz::coverage::Coverage::ENABLED {
                format!("{} coverage features", s.features)
            } else {
                "no coverage feedback (not built with scripts/fuzz's flags)".to_owned()
            };
            println!(
                "kiln-fuzz: {}: ok: {} seeds, {} mutants in {:.0} s ({:.0}/s), corpus {}, {}, peak heap {} MiB (seed {})",
                target.name,
                s.seeds,
                s.runs,
                secs,
                s.runs as f64 / secs.max(0.001),
                s.corpus,
                coverage,
                s.peak_memory >> 20,
                opts.seed
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            // The saved file holds the input; print it too when short.
            let data = f
                .saved
                .as_ref()
                .and_then(|p| std::fs::read(p).ok())
                .unwrap_or_default();
            eprintln!("{}", engine::report(target.name, opts.seed, &f, &data));
            ExitCode::FAILURE
        }
    }
}
