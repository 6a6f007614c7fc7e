//! `kiln boot`: boot a built cluster's hosts on a private link and follow them; with
//! `--upgrade-to`, then take them to another build in `kiln diff --plan`'s steps.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cli::BootArgs;
use crate::progress::BootTable;

/// Runs `kiln boot`.
pub fn run(a: &BootArgs, out: &Path) -> Result<ExitCode> {
    // Without --image (only network-booted hosts) nothing reads it.
    let mut opts = kiln_boot::BootOptions::new(out, a.image.clone().unwrap_or_default());
    opts.hosts = a.hosts.clone();
    opts.seed = a.seed.parse().context("--seed")?;
    opts.firmware = a
        .firmware
        .parse()
        .map_err(anyhow::Error::msg)
        .context("--firmware")?;
    opts.timeout = std::time::Duration::from_secs(a.timeout);
    opts.memory_mb = a.memory;
    opts.disk_gb = a.disk_gb;
    // An upgrade restarts the hosts the boot leaves running.
    opts.keep = a.keep || a.upgrade_to.is_some();
    opts.containers = a.containers.clone();
    opts.netboot = a.netboot.clone();
    opts.link_address = a.link_address;
    opts.link_services = a.link_service.clone();
    let steps = match &a.upgrade_to {
        Some(new) => Some(upgrade_steps(out, new, a.hosts.as_deref())?),
        None => None,
    };
    let events = BootTable::new();
    // A failed host comes back as an error carrying the report: its Display names the host,
    // the reason and the last console lines; guests kept with --keep must still be stoppable.
    let report = match kiln_boot::boot(&opts, &events) {
        Ok(r) => r,
        Err(kiln_boot::BootError::HostFailed { failure, report }) => {
            eprintln!("error: {failure}");
            if let Some(k) = report.kept {
                Kept::new(k, a.keep).report(false);
            }
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "{}: every host reached its role in {:.0?} (logs in {})",
        report.cluster,
        report.elapsed,
        report.log_dir.display()
    );
    let Some(kept) = report.kept else {
        return Ok(ExitCode::SUCCESS);
    };
    let mut kept = Kept::new(kept, a.keep);
    let (Some(new), Some(steps)) = (&a.upgrade_to, steps) else {
        kept.report(true);
        return Ok(ExitCode::SUCCESS);
    };
    for (i, step) in steps.iter().enumerate() {
        println!("upgrade step {}: {}", i + 1, step.join(", "));
    }
    let up = kiln_boot::UpgradeOptions::new(new, steps);
    let code = match kiln_boot::upgrade(&opts, kept.get(), &up, &events) {
        Ok(r) => {
            println!(
                "every host runs the build in {} after {:.0?} (consoles in <host>-upgrade.log beside the boot's)",
                new.display(),
                r.elapsed
            );
            ExitCode::SUCCESS
        }
        Err(kiln_boot::BootError::UpgradeFailed { failure, .. }) => {
            eprintln!("error: the upgrade stopped: {failure}");
            ExitCode::from(1)
        }
        Err(e) => {
            kept.report(false);
            return Err(e.into());
        }
    };
    kept.report(code == ExitCode::SUCCESS);
    Ok(code)
}

/// The steps to go from the build in `old` to the one in `new`: `kiln diff --plan`'s, then
/// the hosts on which nothing changes (they still record the new build), limited to `only`.
fn upgrade_steps(old: &Path, new: &Path, only: Option<&[String]>) -> Result<Vec<Vec<String>>> {
    let plan = kiln_engine::diff::upgrade_plan(old, new).with_context(|| {
        format!(
            "planning the upgrade from {} to {}",
            old.display(),
            new.display()
        )
    })?;
    let wanted = |h: &String| only.is_none_or(|o| o.contains(h));
    let mut steps: Vec<Vec<String>> = plan
        .steps
        .iter()
        .map(|s| s.hosts.iter().filter(|h| wanted(h)).cloned().collect())
        .collect();
    steps.push(
        plan.unchanged_hosts
            .iter()
            .filter(|h| wanted(h))
            .cloned()
            .collect(),
    );
    steps.retain(|s: &Vec<String>| !s.is_empty());
    Ok(steps)
}

/// The hosts left running for the upgrade: stopped when dropped unless `--keep`.
struct Kept {
    kept: Option<kiln_boot::Kept>,
    keep: bool,
}

impl Kept {
    fn new(kept: kiln_boot::Kept, keep: bool) -> Self {
        Self {
            kept: Some(kept),
            keep,
        }
    }

    fn get(&mut self) -> &mut kiln_boot::Kept {
        self.kept.as_mut().expect("taken only when dropped")
    }

    /// Says how to stop hosts left running (on stdout after a success, else stderr).
    fn report(&self, success: bool) {
        if let (true, Some(k)) = (self.keep, &self.kept) {
            let line = format!("guests left running; stop them with: {}", k.stop_command());
            match success {
                true => println!("{line}"),
                false => eprintln!("{line}"),
            }
        }
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        if let (false, Some(k)) = (self.keep, self.kept.take()) {
            k.stop();
        }
    }
}
