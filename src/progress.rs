//! Rendering of fetch progress: bars on a terminal, one line per download otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use kiln_store::{Outcome, Progress};

/// Silence shorter than this is ordinary network jitter, not worth a word on the bar.
const STALL_SHOWN_AFTER: Duration = Duration::from_secs(3);

/// Progress bars (indicatif) when stderr is a terminal; plain lines otherwise.
pub struct Bars {
    multi: Option<MultiProgress>,
    bars: Mutex<HashMap<String, (ProgressBar, LastByte)>>,
}

/// When a download's last byte arrived; a bar shows how long ago while it waits.
#[derive(Clone)]
struct LastByte(Arc<Mutex<Instant>>);

impl LastByte {
    fn now() -> LastByte {
        LastByte(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }
}

/// The bar's message for a download that has had no byte for `idle`, if any.
fn stall_message(idle: Duration) -> Option<String> {
    (idle >= STALL_SHOWN_AFTER).then(|| format!("stalled {}s", idle.as_secs()))
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
            let last = LastByte::now();
            let seen = last.clone();
            let style = ProgressStyle::with_template(
                "{prefix:40!} {bar:30} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {stall}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key(
                "stall",
                move |_: &ProgressState, w: &mut dyn std::fmt::Write| {
                    if let Some(msg) = stall_message(seen.idle()) {
                        let _ = w.write_str(&msg);
                    }
                },
            );
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            // Redraw while nothing arrives, so the stall count goes up on its own.
            bar.enable_steady_tick(Duration::from_secs(1));
            self.bars
                .lock()
                .expect("progress lock")
                .insert(label.to_string(), (bar, last));
        }
    }

    fn advance(&self, label: &str, bytes: u64) {
        if let Some((b, last)) = self.bars.lock().expect("progress lock").get(label) {
            last.touch();
            b.inc(bytes);
        }
    }

    fn finish(&self, label: &str, outcome: &Outcome) {
        if let Some((b, _)) = self.bars.lock().expect("progress lock").remove(label) {
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

    fn link_service_ready(&self, service: &str, pid: u32) {
        eprintln!(
            "{:>5.0?} link service {service} ready (pid {pid})",
            self.start.elapsed()
        );
    }

    fn stopping(&self, hosts: &[String]) {
        eprintln!("stopping {}", hosts.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_says_stalled_with_the_seconds_once_silence_is_long_enough() {
        assert_eq!(stall_message(Duration::from_millis(2_900)), None);
        assert_eq!(
            stall_message(Duration::from_millis(12_400)).as_deref(),
            Some("stalled 12s")
        );
    }
}
