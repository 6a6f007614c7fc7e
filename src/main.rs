//! kiln: turns one cluster description into verified, reproducible offline bundles.
#![cfg_attr(not(test), deny(unused_crate_dependencies))]

mod boot;
mod cli;
mod diff;
mod image;
mod progress;
mod push;
mod serve;
mod verify;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use cli::{CatalogCommand, Cli, Command, NetArgs};
use kiln_engine::{build, fetch, lock};
use kiln_spec::{Diagnostics, FetchSettings, Project};

fn main() -> ExitCode {
    // Behave like other Unix tools when output is piped into `head`: exit quietly on EPIPE.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KILN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

/// Loads and validates; prints warnings. Errors come back as `Diagnostics`.
fn load(path: &Path) -> Result<Project> {
    match kiln_load::project(path) {
        Ok(p) => {
            for w in &p.warnings {
                eprintln!("{w}");
            }
            Ok(p)
        }
        Err(d) => Err(invalid(d)),
    }
}

fn invalid(d: Diagnostics) -> anyhow::Error {
    let n = d.errors().count();
    anyhow::anyhow!("{d}\n{n} error(s): nothing was changed")
}

/// The fetch options of one run: flags over cluster.toml's `[fetch]` over the defaults.
fn fetch_options(
    net: Option<&NetArgs>,
    settings: &FetchSettings,
    allow_network: bool,
) -> kiln_store::FetchOptions {
    let defaults = kiln_store::FetchOptions::default();
    let secs = |flag: Option<u64>| flag.map(Duration::from_secs);
    kiln_store::FetchOptions {
        jobs: net.map_or(defaults.jobs, |n| n.jobs.max(1)),
        retries: net.map_or(defaults.retries, |n| n.retries),
        idle_timeout: secs(net.and_then(|n| n.idle_timeout))
            .or(settings.idle_timeout)
            .unwrap_or(defaults.idle_timeout),
        deadline: secs(net.and_then(|n| n.deadline))
            .or(settings.deadline)
            .unwrap_or(defaults.deadline),
        allow_network,
        ..defaults
    }
}

fn source_date_epoch() -> Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => {
            Ok(Some(v.parse().with_context(|| {
                format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")
            })?))
        }
        _ => Ok(None),
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check(a) => {
            let p = load(&a.cluster)?;
            let plan = kiln_engine::images::full_plan(&p)?;
            println!(
                "{}: cluster {:?} is valid: {} hosts, {} role bundles, {} artifacts",
                a.cluster.display(),
                p.cluster.name,
                p.cluster.hosts.len(),
                plan.bundles.len(),
                plan.artifacts.len()
            );
        }
        Command::Plan(a) => {
            let p = load(&a.cluster.cluster)?;
            let plan = kiln_engine::images::full_plan(&p)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print_plan(&plan);
            }
        }
        Command::Render(a) => {
            let p = load(&a.cluster.cluster)?;
            let plan = kiln_engine::images::full_plan(&p)?;
            let n = kiln_engine::render::render_tree(&plan, &a.out)?;
            println!("{}: {n} rendered file(s)", a.out.display());
        }
        Command::Lock(a) => {
            let p = load(&a.cluster.cluster)?;
            let plan = kiln_engine::images::full_plan(&p)?;
            let existing = lock::read_lock(&p)?;
            let opts = lock::LockOptions {
                offline: a.offline,
                fetch: fetch_options(None, &p.cluster.fetch, true),
                repin_packages: a.repin_packages,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let out = lock::lock(&p, &plan, existing.as_ref(), &opts, now)?;
            let path = &p.cluster.paths.lock;
            let unchanged = lock::write_lock(&p, existing.as_ref(), &out.lock)?;
            if let Some(old) = existing.as_ref().filter(|_| a.repin_packages) {
                for line in lock::package_changes(old, &out.lock) {
                    println!("{line}");
                }
            }
            let pinned = out.lock.artifacts.len();
            let packages = out.lock.packages.len();
            println!(
                "{}: {pinned} artifact(s) ({} new) and {packages} package(s) pinned{}",
                path.display(),
                out.added,
                if unchanged { ", unchanged" } else { "" }
            );
            if !out.images.is_empty() {
                eprintln!(
                    "{} image(s) still need a look-up{}:",
                    out.images.len(),
                    if a.offline {
                        " on a connected machine"
                    } else {
                        ""
                    }
                );
                for i in &out.images {
                    eprintln!("  {i}");
                }
            }
            if !out.unpinned.is_empty() {
                eprintln!(
                    "{} artifact(s) or package(s) could not be pinned{}:",
                    out.unpinned.len(),
                    if a.offline { " offline" } else { "" }
                );
                for u in &out.unpinned {
                    eprintln!("  {u}");
                }
            }
            // What could be pinned is kept in the lock; the lock is not complete yet.
            if !out.unpinned.is_empty() || !out.images.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Fetch(a) => {
            let p = load(&a.cluster.cluster)?;
            let plan = kiln_engine::images::full_plan(&p)?;
            let lk = lock::read_lock(&p)?.with_context(|| {
                format!(
                    "{} not found: run `kiln lock` first",
                    p.cluster.paths.lock.display()
                )
            })?;
            let entries = lock::locked_entries(&p, &plan, &lk)?;
            let store = fetch::open_store(&p)?;
            let bars = progress::Bars::new();
            let opts = fetch_options(Some(&a.net), &p.cluster.fetch, true);
            let report = fetch::fetch(&p, &store, &entries, &opts, &bars)?;
            let blobs = fetch::materialize(&store, &entries)?;
            let images = kiln_engine::images::from_lock(&lk)?;
            let pull = kiln_engine::images::missing(&p, &plan, &store, &images)?;
            kiln_engine::images::pull(&p, &store, &pull, &opts, &bars)?;
            println!(
                "{}: {} download(s) present and verified, {} artifact(s) ready, {} image(s) pulled",
                p.cluster.paths.vendor.display(),
                report.items.len(),
                blobs.len(),
                pull.len()
            );
        }
        Command::Build(a) => {
            let p = load(&a.cluster.cluster)?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| p.cluster.paths.base.join("out"));
            let opts = build::BuildOptions {
                out,
                offline: a.offline,
                fetch: fetch_options(Some(&a.net), &p.cluster.fetch, !a.offline),
                source_date_epoch: source_date_epoch()?,
                force: a.force,
                seeds: kiln_engine::seed::SeedKinds::parse(&a.seed)
                    .map_err(|e| anyhow::anyhow!("--seed: {e}"))?,
                seed_rerun: a.seed_rerun,
                rotate_ca: a.rotate_ca,
                images: a.images.to_lib(),
                delta_from: a.delta_from.clone(),
            };
            let bars = progress::Bars::new();
            let res = build::build(&p, &opts, &bars)?;
            if res.up_to_date {
                println!(
                    "{}: up to date (build {})",
                    res.dir.display(),
                    &res.build_id[..16]
                );
            } else {
                println!(
                    "{}: build {} (generation {})",
                    res.dir.display(),
                    &res.build_id[..16],
                    res.manifest.generation
                );
                for b in res.manifest.bundles.values() {
                    let o = &res.manifest.outputs[&b.file];
                    println!(
                        "  {:<48} {:>12} bytes  hosts: {}",
                        b.file,
                        o.size,
                        b.hosts.join(", ")
                    );
                }
                for (id, d) in &res.manifest.deltas {
                    let full = &res.manifest.outputs[&res.manifest.bundles[id].file];
                    println!(
                        "  {:<48} {:>12} bytes  delta from {} ({} bytes in full)",
                        d.file, res.manifest.outputs[&d.file].size, d.base_file, full.size
                    );
                }
            }
        }
        Command::Images(a) => {
            let p = load(&a.cluster.cluster)?;
            let plan = kiln_engine::images::full_plan(&p)?;
            let locked = match lock::read_lock(&p)? {
                Some(l) => kiln_engine::images::from_lock(&l)?,
                None => Vec::new(),
            };
            let mut rows = Vec::new();
            for n in kiln_engine::images::needs(&p, &plan)? {
                let digest = match n.source.kind {
                    kiln_spec::ImageSourceKind::Registry => locked
                        .iter()
                        .find(|l| l.reference == n.reference)
                        .map(|l| l.manifest_digest.as_str().to_string())
                        .unwrap_or_else(|| "(not locked: run kiln lock)".into()),
                    kiln_spec::ImageSourceKind::Assemble => {
                        "(assembled at build from catalog artifacts)".into()
                    }
                };
                rows.push(serde_json::json!({"bundle": n.bundle, "image": n.reference.to_string(), "source": n.source.kind, "digest": digest}));
            }
            if a.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "{:<22} {:<48} {:<9} {}",
                        r["bundle"].as_str().unwrap_or(""),
                        r["image"].as_str().unwrap_or(""),
                        r["source"].as_str().unwrap_or(""),
                        r["digest"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Command::Certs(a) => {
            let p = load(&a.cluster.cluster)?;
            let out = kiln_engine::secrets::ensure_pki(&p, a.rotate_ca)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&out.table)?);
            } else {
                println!(
                    "{:<10} {:<52} {:<40} {:<21} {:>5}  SANS",
                    "HOST", "FILE", "SUBJECT", "NOT AFTER", "DAYS"
                );
                for r in &out.table {
                    println!(
                        "{:<10} {:<52} {:<40} {:<21} {:>5}  {}",
                        r.host,
                        r.file,
                        r.subject,
                        r.not_after,
                        r.days_left,
                        r.sans.join(",")
                    );
                }
                if !out.written.is_empty() {
                    eprintln!(
                        "{}: {} file(s) written to the PKI state",
                        p.cluster.paths.pki.display(),
                        out.written.len()
                    );
                }
            }
            if let Some(days) = a.check_expiry {
                let soon: Vec<_> = out
                    .table
                    .iter()
                    .filter(|r| r.expires_within(days))
                    .collect();
                if !soon.is_empty() {
                    for r in &soon {
                        eprintln!(
                            "expires in {} day(s): {} {} ({})",
                            r.days_left, r.host, r.file, r.not_after
                        );
                    }
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Command::Boot(a) => {
            let p = load(&a.cluster.cluster)?;
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| p.cluster.paths.base.join("out"))
                .join(&p.cluster.name);
            return boot::run(&a, &out);
        }
        Command::Serve(a) => serve::run(&a)?,
        Command::Image(a) => image::run(&a)?,
        Command::Verify(a) => match verify::run(&a) {
            Ok(msg) => println!("{msg}"),
            Err(e) => {
                eprintln!("verification failed: {e:#}");
                return Ok(ExitCode::from(1));
            }
        },
        Command::Sbom(a) => sbom(&a)?,
        Command::Push(a) => push::push(&a)?,
        Command::Pull(a) => push::pull(&a)?,
        Command::Diff(a) => return Ok(diff::run(&a)),
        Command::Catalog(CatalogCommand::ImportChecksums { tables, out }) => {
            let imported = kiln_engine::pins::import_checksums(&tables)?;
            match out {
                Some(path) => {
                    imported.write(&path)?;
                    println!(
                        "{}: {} tables, {} pins",
                        path.display(),
                        imported.tables,
                        imported.pins
                    );
                }
                None => print!("{}", imported.body),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `kiln sbom`: one bundle's document on stdout, copies into a folder, or the list of them.
fn sbom(a: &cli::SbomArgs) -> Result<()> {
    use std::io::Write;
    let files = kiln_engine::sbom::out::read(&a.out, a.bundle.as_deref())?;
    if let Some(dir) = &a.output {
        for path in kiln_engine::sbom::out::export(&files, dir)? {
            println!("{}", path.display());
        }
    } else if a.bundle.is_some() {
        std::io::stdout().write_all(&files[0].bytes)?;
    } else {
        for f in &files {
            let s = f.summary()?;
            println!(
                "{}  {}  {} artifacts, {} packages, {} images",
                f.bundle,
                f.path.display(),
                s.artifacts,
                s.packages,
                s.images
            );
        }
    }
    Ok(())
}

fn print_plan(plan: &kiln_plan::Plan) {
    println!("cluster {} (generation {})", plan.cluster, plan.generation);
    for b in &plan.bundles {
        println!("\nbundle {}  (hosts: {})", b.id, b.hosts.join(", "));
        if !b.extends.is_empty() {
            println!("  extends: {}", b.extends.join(", "));
        }
        for f in &b.files {
            let src = match &f.source {
                kiln_plan::FileSource::Artifact { name, version } => {
                    format!("artifact {name} {version}")
                }
                kiln_plan::FileSource::Content { origin, .. } => origin.clone(),
                kiln_plan::FileSource::Local { origin, .. } => origin.clone(),
            };
            println!("  {:04o} {:<50} {}", f.mode, f.path, src);
        }
        for (label, v) in [
            ("units", &b.units),
            ("images", &b.images),
            ("modules", &b.modules),
            ("packages", &b.packages),
        ] {
            if !v.is_empty() {
                println!("  {label}: {}", v.join(", "));
            }
        }
    }
    println!();
    for h in &plan.hosts {
        println!(
            "host {:<12} {:<15} {:<10} bundles: {}",
            h.name,
            h.ip,
            h.os.as_str(),
            h.bundles.join(" ")
        );
        for f in &h.files {
            println!("  {:04o} {}", f.mode, f.path);
        }
        for s in &h.secrets {
            println!("  {:04o} {}  (certificates)", s.mode, s.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_limits_come_from_the_flag_then_cluster_toml_then_the_default() {
        let net = |idle_timeout, deadline| NetArgs {
            jobs: 2,
            retries: 1,
            idle_timeout,
            deadline,
        };
        let file = FetchSettings {
            idle_timeout: Some(Duration::from_secs(20)),
            deadline: None,
        };
        let defaults = kiln_store::FetchOptions::default();

        let o = fetch_options(Some(&net(None, None)), &FetchSettings::default(), true);
        assert_eq!(
            (o.idle_timeout, o.deadline),
            (defaults.idle_timeout, defaults.deadline)
        );
        assert_eq!((o.jobs, o.retries), (2, 1));

        let o = fetch_options(Some(&net(None, None)), &file, true);
        assert_eq!(
            (o.idle_timeout, o.deadline),
            (Duration::from_secs(20), defaults.deadline)
        );

        let o = fetch_options(Some(&net(Some(5), Some(50))), &file, false);
        assert_eq!(
            (o.idle_timeout, o.deadline),
            (Duration::from_secs(5), Duration::from_secs(50))
        );
        assert!(!o.allow_network);

        // `kiln lock` has no flags: cluster.toml, then the defaults.
        let o = fetch_options(None, &file, true);
        assert_eq!((o.jobs, o.retries), (defaults.jobs, defaults.retries));
        assert_eq!(o.idle_timeout, Duration::from_secs(20));
    }
}
