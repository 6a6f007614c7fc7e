//! `kiln push` and `kiln pull`: arguments, progress and summaries; and how `kiln verify`
//! speaks of a pulled folder.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_engine::push as engine;
use kiln_image::{BlobOutcome, Credentials, PushEvents, PushTarget, Pusher};

/// `kiln push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The out folder to push (out/CLUSTER-NAME, as `kiln build` wrote it).
    pub dir: PathBuf,
    /// REGISTRY/REPOSITORY or REGISTRY/REPOSITORY:TAG; `http://` first for a plain-HTTP registry, HTTPS otherwise.
    #[arg(value_name = "REGISTRY/REPO", value_parser = parse_target)]
    pub target: PushTarget,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Blobs uploaded at a time (bundles, top-level files, an image's config and layers); the
    /// summary is the same for any N.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
}

/// `kiln pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// REGISTRY/REPOSITORY or …:TAG as given to `kiln push`; default tag: the repository's last
    /// component (push tags each build with its cluster name).
    #[arg(value_name = "REGISTRY/REPO", value_parser = parse_target)]
    pub source: PushTarget,
    /// Folder to pull into: the build lands in OUT/CLUSTER-NAME/.
    pub out: PathBuf,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What push and pull share: credentials, output form, and how hard they try.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Registry logins: a docker config.json-style file (the same form as cluster.toml's
    /// registry-credentials); default: anonymous.
    #[arg(long, value_name = "FILE")]
    pub credentials: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Retries of a request on 5xx and resets; an upload chunk that breaks resumes from
    /// where the registry says it stands, this many times per blob.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// Seconds without a byte from the registry before a request ends as a stall.
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub idle_timeout: u64,
    /// Seconds one blob or manifest may take over all its tries and resumes.
    #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub deadline: u64,
}

fn parse_target(s: &str) -> Result<PushTarget, String> {
    PushTarget::parse(s).map_err(|e| e.to_string())
}

/// A pusher from the shared arguments; `jobs`: blobs pushed at a time.
fn pusher(net: &RegistryArgs, jobs: usize) -> Result<Pusher> {
    let creds = match &net.credentials {
        Some(path) => Credentials::load(path)?,
        None => Credentials::none(),
    };
    let opts = kiln_store::FetchOptions {
        retries: net.retries,
        idle_timeout: Duration::from_secs(net.idle_timeout),
        deadline: Duration::from_secs(net.deadline),
        jobs,
        ..kiln_store::FetchOptions::default()
    };
    Ok(Pusher::new(creds, opts)?)
}

/// Runs `kiln push`; prints the summary.
pub fn push(a: &PushArgs) -> Result<()> {
    let pusher = pusher(&a.registry, usize::from(a.jobs))?;
    let bars = PushBars::new();
    let r = engine::push(&a.dir, &a.target, &pusher, &bars)?;
    if a.registry.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{}: pushed to {} as {} (index {}): {} bundle(s), {} image(s) ({} there already); blobs: {} pushed, {} already present, {} mounted; {} bytes sent",
        a.dir.display(),
        r.target,
        r.tags.join(", "),
        r.index,
        r.bundles.len(),
        r.images.len(),
        r.images_present,
        r.blobs_pushed,
        r.blobs_present,
        r.blobs_mounted,
        r.bytes_sent
    );
    println!("host secrets and seeds (hosts/) were not pushed: they never leave this machine");
    Ok(())
}

/// Runs `kiln pull`; prints the summary.
pub fn pull(a: &PullArgs) -> Result<()> {
    let pusher = pusher(&a.registry, kiln_store::FetchOptions::default().jobs)?;
    let bars = crate::progress::Bars::new();
    let r = engine::pull(&a.source, &a.out, &pusher, &bars)?;
    if a.registry.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "{}: pulled {} (index {}): {} file(s), {} bytes, verified; {} host file(s) (secrets, seeds) stay on the build machine",
        r.dir.display(),
        r.source,
        r.index,
        r.files,
        r.bytes,
        r.absent
    );
    Ok(())
}

/// `kiln verify` of a pulled folder: `None` when `path` is not one.
pub fn verify_pulled(
    path: &Path,
    digests_only: bool,
) -> Option<Result<String, kiln_bundle::VerifyError>> {
    if !path.is_dir() || !kiln_bundle::is_pulled(path) {
        return None;
    }
    let absent = |n: usize| {
        format!("; a pulled folder: host secrets and seeds are absent ({n} file(s) under hosts/ stay on the build machine)")
    };
    Some(if digests_only {
        kiln_bundle::verify_digests(path).and_then(|r| {
            let marker = kiln_bundle::verify_pulled(path)?.marker;
            Ok(format!(
                "{}: {} files, {} bytes match SHA256SUMS{}",
                path.display(),
                r.files,
                r.bytes,
                absent(marker.absent.len())
            ))
        })
    } else {
        kiln_bundle::verify_pulled(path).map(|r| {
            format!(
                "{}: {} files, {} bundles, {} bytes verified (pulled from {}){}",
                path.display(),
                r.out.files,
                r.out.bundles.len(),
                r.out.bytes,
                r.marker.source,
                absent(r.marker.absent.len())
            )
        })
    })
}

/// Upload progress: bars on a terminal, one line per uploaded blob otherwise.
struct PushBars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl PushBars {
    fn new() -> Self {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        PushBars {
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, line: String) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

impl PushEvents for PushBars {
    fn start(&self, label: &str, size: u64) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(size));
            let style = ProgressStyle::with_template(
                "{prefix:40!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label.to_owned());
            self.bars
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(label.to_owned(), bar);
        }
    }

    fn advance(&self, label: &str, bytes: u64) {
        if let Some(b) = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(label)
        {
            b.inc(bytes);
        }
    }

    fn finish(&self, label: &str, outcome: &BlobOutcome) {
        if let Some(b) = self
            .bars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(label)
        {
            b.finish_and_clear();
        }
        match outcome {
            BlobOutcome::Present => {}
            BlobOutcome::Mounted { from } => self.line(format!("mounted {label} from {from}")),
            BlobOutcome::Uploaded { sent, resumes: 0 } => {
                self.line(format!("pushed {label} ({sent} bytes)"))
            }
            BlobOutcome::Uploaded { sent, resumes } => self.line(format!(
                "pushed {label} ({sent} bytes sent, resumed {resumes} time(s))"
            )),
        }
    }

    fn note(&self, label: &str, msg: &str) {
        self.line(format!("{label}: {msg}"));
    }
}
