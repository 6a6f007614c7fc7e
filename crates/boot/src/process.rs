//! Running commands with errors that name them, and guards that stop the
//! long-running processes boot starts (SIGTERM, then SIGKILL).

use std::io::ErrorKind;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::error::BootError;
use crate::options::package_of;

/// How long a process gets between SIGTERM and SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// `word` quoted for a POSIX shell when it needs to be.
pub(crate) fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command line of `cmd`, quoted so it can be pasted into a shell.
pub(crate) fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| shell_quote(&w.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The spawn error for `cmd`, with the Debian package when the program is missing.
pub(crate) fn spawn_error(cmd: &Command, source: std::io::Error) -> BootError {
    let hint = match (source.kind(), package_of(cmd.get_program().as_ref())) {
        (ErrorKind::NotFound, Some(pkg)) => format!(" (install the Debian package {pkg})"),
        _ => String::new(),
    };
    BootError::Spawn {
        command: display(cmd),
        source,
        hint,
    }
}

/// The last `max` bytes of `text`, trimmed, on a character boundary.
pub(crate) fn tail_text(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// Runs `cmd` to completion; a failure names the command and its stderr.
pub(crate) fn run(mut cmd: Command) -> Result<Output, BootError> {
    cmd.stdin(Stdio::null());
    let output = cmd.output().map_err(|e| spawn_error(&cmd, e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(BootError::Command {
            command: display(&cmd),
            status: output.status.to_string(),
            stderr: tail_text(&String::from_utf8_lossy(&output.stderr), 4000),
        })
    }
}

/// How a started process relates to boot's own lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// Dies with boot: same process group (a Ctrl-C reaches it) and
    /// SIGTERM when the thread that started it exits, even if boot is killed.
    Tied,
    /// May outlive boot (`keep`): its own process group.
    Detached,
}

/// Prepares `cmd` for `lifetime`.
pub(crate) fn set_lifetime(cmd: &mut Command, lifetime: Lifetime) {
    match lifetime {
        Lifetime::Tied => {
            // SAFETY: prctl is async-signal-safe and touches only the child.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        Lifetime::Detached => {
            cmd.process_group(0);
        }
    }
}

/// What a [`Guard`] stops.
#[derive(Debug)]
enum Target {
    /// A child of this process.
    Child(Child),
    /// A daemon that forked away, known by its pid.
    Pid(u32),
}

/// Stops its process when dropped, unless disarmed.
#[derive(Debug)]
pub(crate) struct Guard {
    target: Target,
    label: String,
    armed: bool,
}

impl Guard {
    /// Guards a child; `label` names it in logs.
    pub fn child(child: Child, label: impl Into<String>) -> Self {
        Self {
            target: Target::Child(child),
            label: label.into(),
            armed: true,
        }
    }

    /// Guards a daemon by pid.
    pub fn pid(pid: u32, label: impl Into<String>) -> Self {
        Self {
            target: Target::Pid(pid),
            label: label.into(),
            armed: true,
        }
    }

    pub fn pid_of(&self) -> u32 {
        match &self.target {
            Target::Child(c) => c.id(),
            Target::Pid(p) => *p,
        }
    }

    /// Leaves the process running when the guard is dropped.
    pub fn disarm(&mut self) {
        self.armed = false;
    }

    /// Its exit status if it has exited (`None` for a daemon, or still running).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        match &mut self.target {
            Target::Child(c) => c.try_wait().ok().flatten(),
            Target::Pid(_) => None,
        }
    }

    /// Whether the process is still there.
    pub fn is_running(&mut self) -> bool {
        self.alive()
    }

    fn alive(&mut self) -> bool {
        match &mut self.target {
            Target::Child(c) => matches!(c.try_wait(), Ok(None)),
            // SAFETY: signal 0 only checks that the pid exists.
            Target::Pid(p) => unsafe { libc::kill(*p as libc::pid_t, 0) == 0 },
        }
    }

    fn signal(&mut self, signal: libc::c_int) {
        if self.alive() {
            // SAFETY: plain kill(2) of a pid this guard started and has not reaped.
            unsafe {
                libc::kill(self.pid_of() as libc::pid_t, signal);
            }
        }
    }

    /// Waits until `deadline` for the process to exit; then SIGKILL.
    fn finish(&mut self, deadline: Instant) {
        while self.alive() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        if self.alive() {
            tracing::warn!(process = %self.label, "still running after SIGTERM; sending SIGKILL");
            self.signal(libc::SIGKILL);
            if let Target::Child(c) = &mut self.target {
                let _ = c.wait();
            }
        }
        self.armed = false;
    }

    /// SIGTERM, up to [`STOP_GRACE`] to exit, then SIGKILL.
    pub fn stop(&mut self) {
        stop_all(std::slice::from_mut(self));
    }
}

/// Stops every armed guard: SIGTERM to all first, so they shut down in
/// parallel, then one shared grace period, then SIGKILL.
pub(crate) fn stop_all(guards: &mut [Guard]) {
    for g in guards.iter_mut().filter(|g| g.armed) {
        tracing::debug!(process = %g.label, pid = g.pid_of(), "SIGTERM");
        g.signal(libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    for g in guards.iter_mut().filter(|g| g.armed) {
        g.finish(deadline);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.armed {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_round_trips_through_sh() {
        for word in ["plain-1.2", "with space", "it's", "", "$HOME", "a\nb"] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", shell_quote(word)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word);
        }
    }

    #[test]
    fn failures_name_the_command_and_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo bad thing >&2; exit 3"]);
        let err = run(cmd).unwrap_err().to_string();
        assert!(
            err.contains("`sh -c 'echo bad thing >&2; exit 3'`"),
            "{err}"
        );
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.ends_with("bad thing"), "{err}");

        let err = run(Command::new("/nonexistent/qemu-img")).unwrap_err();
        assert!(
            err.to_string()
                .contains("install the Debian package qemu-utils"),
            "{err}"
        );
    }

    #[test]
    fn tail_text_keeps_the_end() {
        assert_eq!(tail_text("  short \n", 10), "short");
        assert_eq!(tail_text("0123456789abc", 3), "…abc");
        assert_eq!(tail_text("ééé", 3), "…é");
    }

    #[test]
    fn guard_stops_with_sigterm_then_sigkill() {
        let child = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = child.id();
        drop(Guard::child(child, "sleep"));
        // Reaped: the pid is gone (or reused by something else, not a zombie of ours).
        assert!(std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains("(sleep)"))
            .unwrap_or(true));

        // Ignores SIGTERM: killed after the grace period.
        let child = Command::new("sh")
            .args(["-c", "trap '' TERM; while :; do sleep 0.1; done"])
            .spawn()
            .unwrap();
        let started = Instant::now();
        let mut g = Guard::child(child, "stubborn");
        sleep(Duration::from_millis(200));
        g.stop();
        assert!(started.elapsed() >= STOP_GRACE);
        assert!(g.try_wait().is_some());
    }
}
