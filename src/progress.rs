//! Rendering of fetch progress: bars on a terminal, one line per download otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_store::{Outcome, Progress};

/// Progress bars (indicatif) when stderr is a terminal; plain lines otherwise.
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Chooses bars or lines from whether stderr is a terminal.
    pub fn new() -> Self {
        let multi = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Bars {
            multi,
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn start(&self, label: &str, total: Option<u64>) {
        if let Some(m) = &self.multi {
            let bar = m.add(ProgressBar::new(total.unwrap_or(0)));
            let style = ProgressStyle::with_template(
                "{prefix:40!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            self.bars
                .lock()
                .expect("progress lock")
                .insert(label.to_string(), bar);
        }
    }

    fn advance(&self, label: &str, bytes: u64) {
        if let Some(b) = self.bars.lock().expect("progress lock").get(label) {
            b.inc(bytes);
        }
    }

    fn finish(&self, label: &str, outcome: &Outcome) {
        if let Some(b) = self.bars.lock().expect("progress lock").remove(label) {
            b.finish_and_clear();
        }
        let line = match outcome {
            Outcome::Present => return,
            Outcome::Downloaded {
                url,
                bytes,
                resumed_from,
            } if *resumed_from > 0 => {
                format!("fetched {label} ({bytes} bytes, resumed at {resumed_from}) from {url}")
            }
            Outcome::Downloaded { url, bytes, .. } => {
                format!("fetched {label} ({bytes} bytes) from {url}")
            }
            Outcome::Copied { path } => format!("copied {label} from {}", path.display()),
            Outcome::Apt { package, version } => {
                format!("fetched {label} with apt ({package} {version})")
            }
            Outcome::Failed { error } => format!("failed {label}: {error}"),
        };
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn note(&self, label: &str, msg: &str) {
        let line = format!("{label}: {msg}");
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

/// `kiln boot`'s per-host status lines (one line whenever a host's row changes).
pub struct BootTable {
    start: std::time::Instant,
}

impl BootTable {
    /// A table starting now.
    pub fn new() -> Self {
        BootTable {
            start: std::time::Instant::now(),
        }
    }
}

impl kiln_boot::BootEvents for BootTable {
    fn host_started(&self, host: &str, pid: u32, serial_log: &std::path::Path) {
        eprintln!(
            "{:>5.0?} {host:<12} started (qemu pid {pid}, console {})",
            self.start.elapsed(),
            serial_log.display()
        );
    }

    fn host_status(&self, host: &str, status: &kiln_boot::HostStatus) {
        eprintln!(
            "{:>5.0?} {host:<12} {:<11} {}",
            self.start.elapsed(),
            status.phase.to_string(),
            status.last_step.as_deref().unwrap_or("")
        );
    }

    fn stopping(&self, hosts: &[String]) {
        eprintln!("stopping {}", hosts.join(", "));
    }
}
