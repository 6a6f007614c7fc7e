//! The run loop: seeds first, then mutants until the time is up; a panic, a hang or a
//! memory overrun stops the run with the input saved and its path printed.

use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::coverage::Coverage;
use crate::mutate::{self, Dictionary};
use crate::rng::Rng;
use crate::targets::{Ctx, Target};
use crate::{alloc, corpus};

/// How a run is bounded and where it reads and writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seed of the mutation sequence.
    pub seed: u64,
    /// How long to mutate (the seeds always run first, whatever the time).
    pub duration: Duration,
    /// Stop after this many mutants (for exact replays of a sequence).
    pub max_runs: Option<u64>,
    /// Longest time one input may take before it counts as a hang.
    pub timeout: Duration,
    /// Most live heap bytes allowed.
    pub max_memory: usize,
    /// Seed corpus folder of the target.
    pub corpus: PathBuf,
    /// Where failing inputs are saved.
    pub crashes: PathBuf,
    /// The repository root (profiles, overlays, catalog the targets read).
    pub root: PathBuf,
}

/// What a run that found nothing did.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Seeds run.
    pub seeds: usize,
    /// Mutants run.
    pub runs: u64,
    /// Inputs in the corpus at the end (seeds and inputs kept for new coverage).
    pub corpus: usize,
    /// Coverage features reached (0 without coverage).
    pub features: usize,
    /// Most live heap bytes seen.
    pub peak_memory: usize,
    /// Time taken.
    pub elapsed: Duration,
}

/// A finding: what went wrong and where the input was saved.
#[derive(Debug)]
pub struct Finding {
    /// `panic`, `hang` or `memory`.
    pub kind: &'static str,
    /// Details (the panic message and place).
    pub detail: String,
    /// The saved input.
    pub saved: Option<PathBuf>,
}

/// The input running now, for the watchdog and the memory handler (which run elsewhere).
struct Current {
    target: &'static str,
    crashes: PathBuf,
    seed: u64,
    timeout: Duration,
    max_memory: usize,
    input: Mutex<Vec<u8>>,
    /// Milliseconds since `epoch` when the current input started; 0 between inputs.
    started: AtomicU64,
    /// Number of the current input (seeds count from 1, mutants continue from there).
    index: AtomicU64,
    epoch: Instant,
}

static CURRENT: OnceLock<Current> = OnceLock::new();
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Runs `target` on its seeds and then on mutants until `opts.duration` has passed.
pub fn fuzz(target: &'static Target, opts: &Options) -> Result<Stats, Finding> {
    let start = Instant::now();
    let current = install(target, opts);
    let scratch = tempfile::tempdir().expect("temporary folder");
    let ctx = Ctx::new(opts.root.clone(), scratch.path().to_owned());
    let seeds = corpus::load(&opts.corpus, target.max_len);
    let mut inputs: Vec<Vec<u8>> = seeds.iter().map(|(_, d)| d.clone()).collect();
    if inputs.is_empty() {
        inputs.push(Vec::new());
    }
    let mut cov = Coverage::new();
    for data in inputs.clone() {
        run_one(target, &ctx, current, &data, &mut cov)?;
    }
    let seed_count = inputs.len();
    let dict = Dictionary {
        tokens: target.tokens,
        shape: target.shape,
    };
    let mut rng = Rng::new(opts.seed);
    let mut runs = 0u64;
    let mut kept_bytes: usize = inputs.iter().map(Vec::len).sum();
    while start.elapsed() < opts.duration && opts.max_runs.is_none_or(|m| runs < m) {
        let mut data = rng.pick(&inputs).clone();
        let other = rng.below(inputs.len());
        mutate::mutate(&mut rng, &mut data, &inputs[other], dict, target.max_len);
        runs += 1;
        let new = run_one(target, &ctx, current, &data, &mut cov)?;
        if new && inputs.len() < MAX_CORPUS && kept_bytes + data.len() <= MAX_CORPUS_BYTES {
            kept_bytes += data.len();
            inputs.push(data);
        }
    }
    Ok(Stats {
        seeds: seed_count,
        runs,
        corpus: inputs.len(),
        features: cov.features(),
        peak_memory: alloc::peak(),
        elapsed: start.elapsed(),
    })
}

/// Most inputs kept in memory (seeds and inputs that reached new code).
const MAX_CORPUS: usize = 4096;

/// Most bytes of inputs kept in memory (they count against the memory bound too).
const MAX_CORPUS_BYTES: usize = 64 << 20;

/// Runs one input (`--replay`).
pub fn replay(target: &'static Target, opts: &Options, data: &[u8]) -> Result<(), Finding> {
    let current = install(target, opts);
    let scratch = tempfile::tempdir().expect("temporary folder");
    let ctx = Ctx::new(opts.root.clone(), scratch.path().to_owned());
    run_one(target, &ctx, current, data, &mut Coverage::new()).map(|_| ())
}

/// Sets up the shared state, the panic hook, the watchdog and the memory bound once.
fn install(target: &'static Target, opts: &Options) -> &'static Current {
    let current = CURRENT.get_or_init(|| Current {
        target: target.name,
        crashes: opts.crashes.clone(),
        seed: opts.seed,
        timeout: opts.timeout,
        max_memory: opts.max_memory,
        input: Mutex::new(Vec::new()),
        started: AtomicU64::new(0),
        index: AtomicU64::new(0),
        epoch: Instant::now(),
    });
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        // Outside a target (a bug in the harness itself) the panic is printed as usual.
        let in_target = CURRENT
            .get()
            .is_some_and(|c| c.started.load(Ordering::SeqCst) != 0);
        if !in_target {
            return default_hook(info);
        }
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".to_owned());
        *PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{msg}{place}"));
    }));
    std::thread::spawn(move || watchdog(current));
    alloc::arm(opts.max_memory, memory_overrun);
    current
}

/// Runs one input; `Ok(true)` when it reached new coverage.
fn run_one(
    target: &Target,
    ctx: &Ctx,
    current: &Current,
    data: &[u8],
    cov: &mut Coverage,
) -> Result<bool, Finding> {
    {
        let mut input = current.input.lock().unwrap_or_else(|e| e.into_inner());
        input.clear();
        input.extend_from_slice(data);
    }
    current.index.fetch_add(1, Ordering::SeqCst);
    cov.reset();
    let now = current.epoch.elapsed().as_millis() as u64;
    current.started.store(now.max(1), Ordering::SeqCst);
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(ctx, data)));
    current.started.store(0, Ordering::SeqCst);
    match result {
        Ok(()) => Ok(cov.novel()),
        Err(_) => {
            let detail = PANIC
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            let saved = save(current, data);
            Err(Finding {
                kind: "panic",
                detail,
                saved,
            })
        }
    }
}

/// Polls the running input's start time; past the timeout it reports a hang and exits.
fn watchdog(current: &'static Current) {
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let started = current.started.load(Ordering::SeqCst);
        if started == 0 {
            continue;
        }
        let now = current.epoch.elapsed().as_millis() as u64;
        if now.saturating_sub(started) > current.timeout.as_millis() as u64 {
            let data = current
                .input
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let saved = save(current, &data);
            let detail = format!("one input ran longer than {:?}", current.timeout);
            report_and_exit(
                current,
                &Finding {
                    kind: "hang",
                    detail,
                    saved,
                },
                &data,
            );
        }
    }
}

/// Called by the allocator when live memory passes the bound; reports and exits.
fn memory_overrun(live: usize, request: usize) {
    let Some(current) = CURRENT.get() else {
        std::process::exit(1)
    };
    // The thread that owns the input lock may be the one allocating: never wait for it.
    let data = match current.input.try_lock() {
        Ok(input) => Some(input.clone()),
        Err(_) => None,
    };
    let saved = data.as_deref().and_then(|d| save(current, d));
    let detail = format!(
        "live heap {} MiB passed the bound of {} MiB (asking for {} bytes)",
        live >> 20,
        current.max_memory >> 20,
        request
    );
    let finding = Finding {
        kind: "memory",
        detail,
        saved,
    };
    report_and_exit(current, &finding, data.as_deref().unwrap_or_default());
}

fn report_and_exit(current: &Current, finding: &Finding, data: &[u8]) -> ! {
    eprintln!("{}", report(current.target, current.seed, finding, data));
    std::process::exit(1)
}

/// The text printed for a finding: kind, details, the saved file, how to replay it, and the
/// input itself when it is short (so a CI log alone is enough to reproduce it).
pub fn report(target: &str, seed: u64, finding: &Finding, data: &[u8]) -> String {
    let mut out = format!(
        "kiln-fuzz: {target}: {} found (seed {seed}): {}\n",
        finding.kind, finding.detail
    );
    match &finding.saved {
        Some(path) => out.push_str(&format!(
            "  input saved to {}\n  replay: kiln-fuzz {target} --replay {}\n",
            path.display(),
            path.display()
        )),
        None => out.push_str("  input could not be saved\n"),
    }
    if data.len() <= 2048 {
        out.push_str(&format!(
            "  input ({} bytes): b\"{}\"\n",
            data.len(),
            data.escape_ascii()
        ));
    } else {
        out.push_str(&format!("  input: {} bytes\n", data.len()));
    }
    out
}

/// Writes a failing input to `<crashes>/<target>-<hash>` and returns its path.
fn save(current: &Current, data: &[u8]) -> Option<PathBuf> {
    let dir: &Path = &current.crashes;
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{}-{:016x}", current.target, fnv1a(data)));
    std::fs::write(&path, data).ok()?;
    Some(path)
}

/// FNV-1a, to name a saved input by its content.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}
