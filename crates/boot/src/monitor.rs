//! One host's progress, decided from its console lines alone (pure).
//!
//! A host is ready when install.sh printed `KILN done ok` and cloud-init
//! then printed its final message: waiting for the latter lets every
//! install run of the boot finish (a seed may run install.sh twice to prove
//! the second run changes nothing) and still catch a failing later run.

use std::collections::VecDeque;

use crate::events::HostPhase;
use crate::marker::{
    clean_line, is_cloud_final_failure, is_disk_io_error, is_kernel_panic, FinalMessage, Marker,
};
use crate::report::{FailReason, TAIL_LINES};

/// The step of install.sh's `KILN rollback ok|fail …` marker.
pub(crate) const ROLLBACK_STEP: &str = "rollback";

/// What one line changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Update {
    /// The line's marker, if it had one.
    pub marker: Option<Marker>,
    /// Whether the phase or last step changed.
    pub changed: bool,
}

/// A host's state as its console shows it.
#[derive(Debug)]
pub(crate) struct Monitor {
    final_message: FinalMessage,
    phase: HostPhase,
    markers: Vec<Marker>,
    tail: VecDeque<String>,
    done_seen: bool,
    failure: Option<FailReason>,
    /// An upgrade's run: a fail marker is followed by install.sh's rollback, which ends it.
    awaits_rollback: bool,
    /// The fail marker of such a run, until its rollback marker.
    pending: Option<Marker>,
}

impl Monitor {
    /// A host whose QEMU is about to start.
    pub fn new(final_message: FinalMessage) -> Self {
        Self {
            final_message,
            phase: HostPhase::Starting,
            markers: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            done_seen: false,
            failure: None,
            awaits_rollback: false,
            pending: None,
        }
    }

    /// A host installing an upgrade: after a `KILN … fail` marker it waits for install.sh's
    /// `KILN rollback ok|fail` (the host fails with both), or for the end of cloud-init.
    pub fn await_rollback(&mut self) {
        self.awaits_rollback = true;
    }

    pub fn phase(&self) -> HostPhase {
        self.phase
    }

    pub fn markers(&self) -> &[Marker] {
        &self.markers
    }

    pub fn failure(&self) -> Option<&FailReason> {
        self.failure.as_ref()
    }

    /// The last marker as `<step> <status>`.
    pub fn last_step(&self) -> Option<String> {
        self.markers
            .last()
            .map(|m| format!("{} {}", m.step, m.status))
    }

    /// The last console lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }

    /// QEMU is running.
    pub fn started(&mut self) {
        if self.phase == HostPhase::Starting {
            self.phase = HostPhase::Booting;
        }
    }

    /// Marks the host failed, unless it already reached a final phase; a fail marker still
    /// waiting for its rollback is the reason instead of `reason`.
    pub fn fail(&mut self, reason: FailReason) -> bool {
        if self.phase.is_final() {
            return false;
        }
        let reason = match self.pending.take() {
            Some(m) => FailReason::Marker(m),
            None => reason,
        };
        self.phase = HostPhase::Failed;
        self.failure = Some(reason);
        true
    }

    /// Takes one raw console line (without its newline).
    pub fn line(&mut self, raw: &str) -> Update {
        let line = clean_line(raw);
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line.clone());
        let mut update = Update::default();
        if self.phase.is_final() {
            return update;
        }
        let marker = Marker::parse(&line);
        if let Some(marker) = &marker {
            self.markers.push(marker.clone());
            update.changed = true;
        }
        // First: a seed's final_message may itself look like a marker
        // (`KILN cloud-init final …`).
        if self.final_message.matches(&line) {
            update.changed = true;
            if self.done_seen && self.pending.is_none() {
                self.phase = HostPhase::Ready;
            } else {
                self.fail(FailReason::NoDoneMarker);
            }
        } else if let Some(marker) = &marker {
            if marker.step == ROLLBACK_STEP {
                let failed = self.pending.take().unwrap_or_else(|| marker.clone());
                self.fail(FailReason::RolledBack {
                    failed,
                    rollback: marker.clone(),
                });
            } else if marker.is_fail() && self.awaits_rollback {
                self.pending.get_or_insert_with(|| marker.clone());
            } else if marker.is_fail() {
                self.fail(FailReason::Marker(marker.clone()));
            } else if marker.is_done() {
                self.done_seen = true;
                self.phase = HostPhase::Finishing;
            } else if !self.done_seen {
                self.phase = HostPhase::Installing;
            }
        } else if is_kernel_panic(&line) {
            update.changed = true;
            self.fail(FailReason::KernelPanic(line.trim().to_owned()));
        } else if is_cloud_final_failure(&line) {
            update.changed = true;
            self.fail(FailReason::CloudInitFailed(line.trim().to_owned()));
        } else if is_disk_io_error(&line) {
            update.changed = true;
            self.fail(FailReason::DiskError(line.trim().to_owned()));
        }
        update.marker = marker;
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FINAL: &str =
        "Cloud-init v. 22.4.2 finished at Thu, 01 Jan 2026 00:00:40 +0000. Up 40.10 seconds";

    fn feed(lines: &[&str]) -> Monitor {
        let mut m = Monitor::new(FinalMessage::default());
        m.started();
        for l in lines {
            m.line(l);
        }
        m
    }

    #[test]
    fn done_then_final_is_ready() {
        let m = feed(&[
            "[    0.0] Linux version 6.1",
            "KILN verify ok role=etcd",
            "KILN health ok role=etcd",
            "KILN done ok role=etcd build=b1 generation=1",
        ]);
        assert_eq!(m.phase(), HostPhase::Finishing);
        assert_eq!(m.last_step().as_deref(), Some("done ok"));
        let m = feed(&[
            "KILN verify ok role=etcd",
            "KILN done ok role=etcd build=b1 generation=1",
            "KILN verify ok role=etcd",
            "KILN done ok role=etcd build=b1 generation=1 unchanged",
            FINAL,
        ]);
        assert_eq!(m.phase(), HostPhase::Ready);
        assert_eq!(m.markers().len(), 4);
    }

    #[test]
    fn a_fail_marker_fails_even_after_done() {
        let m = feed(&[
            "KILN done ok role=etcd",
            "KILN verify fail changed files",
            FINAL,
        ]);
        assert_eq!(m.phase(), HostPhase::Failed);
        assert_eq!(
            m.failure(),
            Some(&FailReason::Marker(
                Marker::parse("KILN verify fail changed files").unwrap()
            ))
        );
    }

    #[test]
    fn final_without_done_fails() {
        let m = feed(&["KILN verify ok", FINAL]);
        assert_eq!(m.failure(), Some(&FailReason::NoDoneMarker));
    }

    #[test]
    fn panic_fails_and_nothing_changes_after_a_final_phase() {
        let mut m = feed(&["[ 1.9] Kernel panic - not syncing: VFS: Unable to mount root fs"]);
        assert!(matches!(m.failure(), Some(FailReason::KernelPanic(l)) if l.contains("VFS")));
        assert_eq!(m.line("KILN done ok"), Update::default());
        assert!(!m.fail(FailReason::NoDoneMarker));
        assert_eq!(m.phase(), HostPhase::Failed);
        assert_eq!(m.tail().last().map(String::as_str), Some("KILN done ok"));
    }

    #[test]
    fn a_disk_io_error_fails_the_host_mid_install() {
        let m = feed(&[
            "KILN prep ok modules=7",
            "[  180.2] I/O error, dev vda, sector 2107392 op 0x1:(WRITE) flags 0x800",
        ]);
        assert!(matches!(m.failure(), Some(FailReason::DiskError(l)) if l.contains("dev vda")));
        assert_eq!(m.phase(), HostPhase::Failed);
        assert!(FailReason::DiskError("x".into())
            .to_string()
            .contains("full?"));
    }

    #[test]
    fn a_final_message_that_looks_like_a_marker_ends_the_boot() {
        // What `kiln build` seeds set: `KILN cloud-init final <host> after $UPTIME seconds`.
        let fm =
            FinalMessage::from_template(Some("KILN cloud-init final etcd1 after $UPTIME seconds"));
        let mut m = Monitor::new(fm.clone());
        m.line("KILN done ok role=etcd");
        let u = m.line("KILN cloud-init final etcd1 after 41.20 seconds");
        assert_eq!(m.phase(), HostPhase::Ready);
        assert_eq!(u.marker.unwrap().step, "cloud-init");
        assert_eq!(m.last_step().as_deref(), Some("cloud-init final"));

        let mut m = Monitor::new(fm);
        m.line("KILN cloud-init final etcd1 after 41.20 seconds");
        assert_eq!(m.failure(), Some(&FailReason::NoDoneMarker));
    }

    #[test]
    fn cloud_final_failing_fails_the_host() {
        let m = feed(&[
            "[FAILED] Failed to start cloud-final.service - Execute cloud user/final scripts.",
        ]);
        assert!(
            matches!(m.failure(), Some(FailReason::CloudInitFailed(l)) if l.contains("cloud-final"))
        );
    }

    #[test]
    fn an_upgrade_fails_at_its_rollback_marker_not_at_the_health_failure() {
        let health = "KILN health fail role=etcd unhealthy after 3 tries in 10 s: refused";
        let rollback =
            "KILN rollback ok generation=2 build=b2 (generation 3 build b3 was unhealthy)";
        let mut m = Monitor::new(FinalMessage::default());
        m.await_rollback();
        m.started();
        m.line("KILN units ok units=etcd.service restarted=1");
        m.line(health);
        assert_eq!(
            m.phase(),
            HostPhase::Installing,
            "the rollback is still to come"
        );
        // The rollback run's own markers come in between.
        m.line("KILN verify ok role=etcd");
        m.line("KILN health ok role=etcd");
        m.line(rollback);
        assert_eq!(
            m.failure(),
            Some(&FailReason::RolledBack {
                failed: Marker::parse(health).unwrap(),
                rollback: Marker::parse(rollback).unwrap(),
            })
        );
        // cloud-init ending first: the fail marker is the reason.
        let mut m = Monitor::new(FinalMessage::default());
        m.await_rollback();
        m.line(health);
        m.line(FINAL);
        assert_eq!(
            m.failure(),
            Some(&FailReason::Marker(Marker::parse(health).unwrap()))
        );
        // A first boot does not wait.
        let m = feed(&[health]);
        assert_eq!(m.phase(), HostPhase::Failed);
    }

    #[test]
    fn tail_keeps_the_last_lines_cleaned() {
        let mut m = Monitor::new(FinalMessage::default());
        for i in 0..100 {
            m.line(&format!("\u{1b}[1mline {i}\u{1b}[0m\r"));
        }
        let tail = m.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail[0], "line 70");
        assert_eq!(tail[TAIL_LINES - 1], "line 99");
    }
}
