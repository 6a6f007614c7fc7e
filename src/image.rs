//! `kiln image`: the cluster's golden OS image, with one progress line per step.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ClusterArg;

/// `kiln image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(flatten)]
    pub cluster: ClusterArg,
    /// Out folder (the image goes to OUT/CLUSTER-NAME-image/); default: out/ beside cluster.toml.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Builds the image and prints its folder and files.
pub fn run(a: &ImageArgs) -> Result<()> {
    let p = crate::load(&a.cluster.cluster)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| p.cluster.paths.base.join("out"));
    // A spinner on a terminal; plain step lines otherwise (logs, tests).
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed}] {msg}").expect("a valid template"),
    );
    let on_terminal = !bar.is_hidden();
    if on_terminal {
        bar.enable_steady_tick(Duration::from_millis(200));
    }
    let step = |s: kiln_golden::Step| {
        if on_terminal {
            bar.set_message(s.describe());
        } else {
            eprintln!("image: {}", s.describe());
        }
    };
    let res = kiln_engine::golden::image(&p, &out, &step);
    bar.finish_and_clear();
    let res = res?;
    println!("{}", res.dir.display());
    for f in &res.built.files {
        println!("  {:<13} {:>12}  sha256:{}", f.name, f.size, f.sha256);
    }
    Ok(())
}
