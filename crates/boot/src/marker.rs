//! The console lines boot reacts to: install.sh's `KILN <step> <status> …`
//! markers, cloud-init's final message and kernel panics.

use std::collections::BTreeMap;
use std::fmt;

/// The word every install.sh marker starts with.
pub const MARKER_WORD: &str = "KILN";

/// The literal start of cloud-init's default `final_message`
/// (`Cloud-init v. 22.4.2 finished at …`).
pub const CLOUD_INIT_FINAL_DEFAULT: &str = "Cloud-init v. ";

/// A marker's status word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Status {
    /// `ok`: the step succeeded.
    Ok,
    /// `fail`: the step failed; the host will not reach its role.
    Fail,
    /// Any other word, e.g. `start` or `skip`: progress only.
    Other(String),
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ok => f.write_str("ok"),
            Self::Fail => f.write_str("fail"),
            Self::Other(word) => f.write_str(word),
        }
    }
}

/// One `KILN <step> <status> [detail…]` line printed by install.sh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The step, e.g. `verify`, `health`, `done`.
    pub step: String,
    /// `ok`, `fail` or another word.
    pub status: Status,
    /// Everything after the status word, trimmed (e.g. `role=etcd build=… unchanged`).
    pub detail: String,
}

impl Marker {
    /// The marker in `line`, if it has one.
    ///
    /// The word `KILN` may follow other text (a kernel message printed over
    /// the same console, a timestamp) but must start a word, and must be
    /// followed by a step of `[a-z0-9_.-]` and a status word.
    pub fn parse(line: &str) -> Option<Self> {
        let mut search = 0;
        while let Some(found) = line[search..].find(MARKER_WORD) {
            let at = search + found;
            search = at + MARKER_WORD.len();
            let starts_word = line[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '-');
            if !starts_word || !line[search..].starts_with(' ') {
                continue;
            }
            let mut words = line[search..].split_whitespace();
            let (Some(step), Some(status)) = (words.next(), words.next()) else {
                continue;
            };
            let step_ok = step.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            });
            if !step_ok {
                continue;
            }
            let status = match status {
                "ok" => Status::Ok,
                "fail" => Status::Fail,
                other => Status::Other(other.to_owned()),
            };
            let detail = words.collect::<Vec<_>>().join(" ");
            return Some(Self {
                step: step.to_owned(),
                status,
                detail,
            });
        }
        None
    }

    /// `key=value` words of the detail, e.g. `role`, `build`, `generation`.
    pub fn fields(&self) -> BTreeMap<&str, &str> {
        self.detail
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .collect()
    }

    /// Whether the detail has `word` on its own (not as a `key=value`), e.g. `unchanged`.
    pub fn has_word(&self, word: &str) -> bool {
        self.detail.split_whitespace().any(|w| w == word)
    }

    /// `KILN done ok`: install.sh finished and the role is up.
    pub fn is_done(&self) -> bool {
        self.step == "done" && self.status == Status::Ok
    }

    /// Any `KILN <step> fail`.
    pub fn is_fail(&self) -> bool {
        self.status == Status::Fail
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{MARKER_WORD} {} {}", self.step, self.status)?;
        if !self.detail.is_empty() {
            write!(f, " {}", self.detail)?;
        }
        Ok(())
    }
}

/// Recognises cloud-init's final message on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalMessage {
    prefix: String,
}

impl FinalMessage {
    /// From a seed's `final_message`: its literal text up to the first
    /// template variable (`$…` or `{{…}}`), first line only. A message with
    /// too little literal text to be recognised (under 4 characters) falls
    /// back to cloud-init's default.
    pub fn from_template(template: Option<&str>) -> Self {
        let literal = template
            .and_then(|t| t.lines().find(|l| !l.trim().is_empty()))
            .map(|l| l.split(['$', '{']).next().unwrap_or_default().trim())
            .filter(|l| l.chars().count() >= 4);
        Self {
            prefix: literal.unwrap_or(CLOUD_INIT_FINAL_DEFAULT).to_owned(),
        }
    }

    /// Whether `line` is the final message. The default one must also say
    /// `finished at`, so that cloud-init's other `Cloud-init v. …` lines
    /// (running 'init', 'modules:…') do not count.
    pub fn matches(&self, line: &str) -> bool {
        let Some(at) = line.find(&self.prefix) else {
            return false;
        };
        self.prefix != CLOUD_INIT_FINAL_DEFAULT || line[at..].contains(" finished at ")
    }
}

impl Default for FinalMessage {
    fn default() -> Self {
        Self::from_template(None)
    }
}

/// Whether `line` reports a kernel panic (the guest will never finish).
pub fn is_kernel_panic(line: &str) -> bool {
    line.contains("Kernel panic - not syncing")
}

/// Whether `line` is the guest kernel reporting that a write or read of a virtio disk
/// failed (`I/O error, dev vda, sector …`, `Buffer I/O error on dev vda1 …`): the host
/// could not write the guest's disk file, most often because its own disk is full.
pub fn is_disk_io_error(line: &str) -> bool {
    line.contains("I/O error, dev vd") || line.contains("Buffer I/O error on dev vd")
}

/// Whether `line` is systemd reporting that cloud-init's last stage (which
/// runs the seed's runcmd) failed: nothing will run after it.
pub fn is_cloud_final_failure(line: &str) -> bool {
    line.contains("Failed to start cloud-final.service")
}

/// `line` without terminal escape sequences (colours, cursor moves) and
/// carriage returns, so markers and error tails read cleanly.
pub fn clean_line(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters… final byte in @..~; other escapes: one more char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c if c.is_control() && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_markers_with_fields_and_words() {
        let m = Marker::parse("KILN done ok role=etcd build=b1 generation=3 unchanged").unwrap();
        assert_eq!(m.step, "done");
        assert!(m.is_done());
        assert_eq!(m.fields()["role"], "etcd");
        assert_eq!(m.fields()["generation"], "3");
        assert!(m.has_word("unchanged"));
        assert!(!m.has_word("role"));
        assert_eq!(
            m.to_string(),
            "KILN done ok role=etcd build=b1 generation=3 unchanged"
        );

        let f = Marker::parse("KILN verify fail sha256 mismatch for etcd.tar.gz").unwrap();
        assert!(f.is_fail());
        assert_eq!(f.detail, "sha256 mismatch for etcd.tar.gz");

        let other = Marker::parse("KILN stage start").unwrap();
        assert_eq!(other.status, Status::Other("start".into()));
        assert!(!other.is_done() && !other.is_fail());
    }

    #[test]
    fn finds_markers_after_console_noise() {
        let m = Marker::parse("[   41.2] cloud-init[312]: KILN health ok role=etcd").unwrap();
        assert_eq!(m.step, "health");
        // A later real marker after a false start on the same line.
        let m = Marker::parse("XKILN a ok; KILN done ok").unwrap();
        assert_eq!(m.step, "done");
    }

    #[test]
    fn refuses_lookalikes() {
        for line in [
            "",
            "KILN",
            "KILN done",
            "KILNdone ok",
            "MYKILN done ok",
            "KILN Done ok",
            "the KILN_DONE ok",
            "KILN do$ne ok",
        ] {
            assert_eq!(Marker::parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn default_final_message_needs_finished_at() {
        let f = FinalMessage::default();
        assert!(f.matches(
            "[   40.1] cloud-init[501]: Cloud-init v. 22.4.2 finished at Thu, 01 Jan 2026 00:00:40 +0000. Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].  Up 40.10 seconds"
        ));
        assert!(!f.matches(
            "cloud-init[300]: Cloud-init v. 22.4.2 running 'modules:final' at Thu, 01 Jan 2026"
        ));
    }

    #[test]
    fn custom_final_message_uses_its_literal_start() {
        let f = FinalMessage::from_template(Some("KILN cloud-init final after $UPTIME s"));
        assert!(f.matches("KILN cloud-init final after 40.2 s"));
        assert!(!f.matches("Cloud-init v. 22.4.2 finished at now"));
        // Nothing literal to recognise: back to the default.
        assert_eq!(
            FinalMessage::from_template(Some("${uptime}")),
            FinalMessage::default()
        );
        assert_eq!(
            FinalMessage::from_template(Some("\n{{v}} up")),
            FinalMessage::default()
        );
    }

    #[test]
    fn cleans_escapes_and_carriage_returns() {
        assert_eq!(
            clean_line("[\u{1b}[0;32m  OK  \u{1b}[0m] Started x.\r"),
            "[  OK  ] Started x."
        );
        assert_eq!(clean_line("a\u{1b}cb\u{7}\tc"), "ab\tc");
    }

    #[test]
    fn cloud_final_failure_is_seen() {
        assert!(is_cloud_final_failure(
            "[FAILED] Failed to start cloud-final.service - Execute cloud user/final scripts."
        ));
        assert!(!is_cloud_final_failure("Starting cloud-final.service"));
    }

    #[test]
    fn disk_io_errors_are_seen() {
        assert!(is_disk_io_error(
            "[  180.2] I/O error, dev vda, sector 2107392 op 0x1:(WRITE) flags 0x800 phys_seg 1 prio class 2"
        ));
        assert!(is_disk_io_error(
            "[  180.3] Buffer I/O error on dev vda, logical block 263424, lost async page write"
        ));
        assert!(!is_disk_io_error(
            "[    1.1] virtio_blk virtio1: [vda] 8388608 512-byte logical blocks"
        ));
        assert!(!is_disk_io_error(
            "KILN install fail could not write: Input/output error"
        ));
    }

    #[test]
    fn kernel_panic_is_seen() {
        assert!(is_kernel_panic(
            "[    1.9] Kernel panic - not syncing: VFS: Unable to mount root fs"
        ));
        assert!(!is_kernel_panic("panic"));
    }
}
