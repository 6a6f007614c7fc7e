//! Entry path rules, mode normalisation, and the MANIFEST text format.

use crate::{BundleError, ManifestLine};

/// Name of the manifest entry, always first in an archive and reserved for it.
pub const MANIFEST_NAME: &str = "MANIFEST";

/// Longest entry path accepted, in bytes (bounds what a reader must buffer).
pub(crate) const MAX_PATH_LEN: usize = 4096;

/// Modes kept as given; every other mode becomes 0755 (any x bit) or 0644.
const KEPT_MODES: [u32; 4] = [0o600, 0o640, 0o700, 0o750];

/// Stored mode for a requested one: 0600/0640/0700/0750 kept, else 0755 if any x bit, else 0644.
pub fn normalize_mode(mode: u32) -> u32 {
    // Private modes survive so keys and configs keep them; setuid/setgid/sticky never do.
    let perm = mode & 0o777;
    if KEPT_MODES.contains(&perm) {
        perm
    } else if perm & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Whether `mode` is one that [`normalize_mode`] can return.
pub(crate) fn is_normalized_mode(mode: u32) -> bool {
    mode == 0o644 || mode == 0o755 || KEPT_MODES.contains(&mode)
}

/// Checks that an entry path is relative, '/'-separated, normalised and plain.
// Rules: not empty, at most 4096 bytes, no leading '/', UTF-8, no whitespace (MANIFEST is
// split on spaces), control character or backslash, no empty, `.` or `..` component.
pub fn validate_path(path: &str) -> Result<(), BundleError> {
    match path_problem(path.as_bytes()) {
        None => Ok(()),
        Some(reason) => Err(BundleError::InvalidPath {
            path: path.to_owned(),
            reason,
        }),
    }
}

/// The first rule of [`validate_path`] that `path` breaks, if any.
pub(crate) fn path_problem(path: &[u8]) -> Option<&'static str> {
    if path.is_empty() {
        return Some("empty path");
    }
    if path.len() > MAX_PATH_LEN {
        return Some("longer than 4096 bytes");
    }
    if path[0] == b'/' {
        return Some("absolute path");
    }
    if std::str::from_utf8(path).is_err() {
        return Some("not valid UTF-8");
    }
    for &b in path {
        if b.is_ascii_whitespace() {
            return Some("contains whitespace");
        }
        if b.is_ascii_control() {
            return Some("contains a control character");
        }
        if b == b'\\' {
            return Some("contains a backslash");
        }
    }
    for component in path.split(|&b| b == b'/') {
        match component {
            b"" => return Some("empty component (`//` or trailing `/`)"),
            b"." => return Some("`.` component"),
            b".." => return Some("`..` component"),
            _ => {}
        }
    }
    None
}

/// Whether `s` is 64 lowercase hex digits.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Renders MANIFEST for lines already sorted by path.
pub(crate) fn render(lines: &[ManifestLine]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.len() * 100);
    for line in lines {
        out.extend_from_slice(
            format!(
                "{} {:04o} {} {}\n",
                line.sha256, line.mode, line.size, line.path
            )
            .as_bytes(),
        );
    }
    out
}

/// What is wrong with a MANIFEST line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The text is not UTF-8.
    #[error("not valid UTF-8")]
    NotUtf8,
    /// The text does not end in a newline.
    #[error("last line has no newline")]
    NoNewline,
    /// Fewer than four fields.
    #[error("expected `<sha256> <mode> <size> <path>`")]
    Fields,
    /// The digest field.
    #[error("{0:?} is not 64 lowercase hex digits")]
    Sha256(String),
    /// The mode field.
    #[error("mode {0:?} is not a normalised 4-digit octal mode")]
    Mode(String),
    /// The size field.
    #[error("size {0:?} is not a byte count in canonical decimal")]
    Size(String),
    /// The path field breaks a path rule.
    #[error("path {path:?}: {reason}")]
    Path {
        /// The path.
        path: String,
        /// The rule it breaks.
        reason: &'static str,
    },
    /// MANIFEST names itself.
    #[error("MANIFEST lists itself")]
    ListsItself,
    /// A path listed twice.
    #[error("duplicate path {0:?}")]
    Duplicate(String),
    /// Paths out of byte order.
    #[error("paths not sorted {0:?}")]
    Unsorted(String),
}

/// One parsed MANIFEST line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Path inside the archive.
    pub path: String,
    /// Mode, one of the normalised modes.
    pub mode: u32,
    /// sha256, lowercase hex.
    pub sha256: String,
    /// Content size in bytes: verify refuses an entry whose header says otherwise before
    /// reading any of its content.
    pub size: u64,
}

/// Parses MANIFEST text strictly; on error returns the 1-based line (0: the whole text) and
/// what is wrong with it.
pub(crate) fn parse(text: &[u8]) -> Result<Vec<Listed>, (usize, LineError)> {
    let text = std::str::from_utf8(text).map_err(|_| (0, LineError::NotUtf8))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err((text.lines().count(), LineError::NoNewline));
    }
    let mut out: Vec<Listed> = Vec::new();
    for (i, line) in text.split_terminator('\n').enumerate() {
        let n = i + 1;
        let mut fields = line.splitn(4, ' ');
        let (Some(sha), Some(mode), Some(size), Some(path)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err((n, LineError::Fields));
        };
        if !is_sha256_hex(sha) {
            return Err((n, LineError::Sha256(sha.to_owned())));
        }
        let mode_ok = mode.len() == 4 && mode.bytes().all(|b| (b'0'..=b'7').contains(&b));
        let mode_value = u32::from_str_radix(mode, 8).ok().filter(|_| mode_ok);
        let Some(mode_value) = mode_value.filter(|m| is_normalized_mode(*m)) else {
            return Err((n, LineError::Mode(mode.to_owned())));
        };
        // Canonical decimal only: one spelling per size keeps MANIFEST (and the bundle) unique.
        let size_ok = size.bytes().all(|b| b.is_ascii_digit())
            && !size.is_empty()
            && (size == "0" || !size.starts_with('0'));
        let Some(size_value) = size.parse::<u64>().ok().filter(|_| size_ok) else {
            return Err((n, LineError::Size(size.to_owned())));
        };
        if let Some(reason) = path_problem(path.as_bytes()) {
            return Err((
                n,
                LineError::Path {
                    path: path.to_owned(),
                    reason,
                },
            ));
        }
        if path == MANIFEST_NAME {
            return Err((n, LineError::ListsItself));
        }
        if let Some(prev) = out.last() {
            if prev.path.as_bytes() >= path.as_bytes() {
                let e = if prev.path == path {
                    LineError::Duplicate(path.to_owned())
                } else {
                    LineError::Unsorted(path.to_owned())
                };
                return Err((n, e));
            }
        }
        out.push(Listed {
            path: path.to_owned(),
            mode: mode_value,
            sha256: sha.to_owned(),
            size: size_value,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_normalised() {
        assert_eq!(normalize_mode(0o777), 0o755);
        assert_eq!(normalize_mode(0o100), 0o755);
        assert_eq!(normalize_mode(0o4755), 0o755);
        assert_eq!(normalize_mode(0o666), 0o644);
        assert_eq!(normalize_mode(0o400), 0o644);
        assert_eq!(normalize_mode(0o2750), 0o750);
        for kept in KEPT_MODES {
            assert_eq!(normalize_mode(kept), kept);
        }
    }

    #[test]
    fn bad_paths_are_named() {
        for (path, reason) in [
            ("", "empty path"),
            ("/etc/passwd", "absolute path"),
            ("a//b", "empty component (`//` or trailing `/`)"),
            ("a/", "empty component (`//` or trailing `/`)"),
            ("./a", "`.` component"),
            ("a/../b", "`..` component"),
            ("..", "`..` component"),
            ("a b", "contains whitespace"),
            ("a\tb", "contains whitespace"),
            ("a\u{1}b", "contains a control character"),
            ("a\\b", "contains a backslash"),
        ] {
            match validate_path(path) {
                Err(BundleError::InvalidPath { path: p, reason: r }) => {
                    assert_eq!((p.as_str(), r), (path, reason));
                }
                other => panic!("{path:?}: {other:?}"),
            }
        }
        assert!(validate_path(&"x".repeat(4097)).is_err());
        assert!(validate_path(&"x".repeat(4096)).is_ok());
        assert!(validate_path("rootfs/usr/local/bin/kubelet").is_ok());
        assert!(validate_path("..a/b..").is_ok());
    }

    #[test]
    fn manifest_round_trips_and_rejects_bad_lines() {
        let lines = vec![
            ManifestLine {
                path: "a".into(),
                mode: 0o755,
                sha256: "ab".repeat(32),
                size: 1,
            },
            ManifestLine {
                path: "b/c".into(),
                mode: 0o600,
                sha256: "01".repeat(32),
                size: 2,
            },
        ];
        let text = render(&lines);
        let expected = format!(
            "{} 0755 1 a\n{} 0600 2 b/c\n",
            "ab".repeat(32),
            "01".repeat(32)
        );
        assert_eq!(String::from_utf8(text.clone()).unwrap(), expected);
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            (parsed[1].path.as_str(), parsed[1].mode, parsed[1].size),
            ("b/c", 0o600, 2)
        );

        let sha = "ab".repeat(32);
        for (bad, line, want) in [
            (
                format!("{sha} 0755 0 b\n{sha} 0755 0 a\n"),
                2,
                LineError::Unsorted("a".into()),
            ),
            (
                format!("{sha} 0755 0 a\n{sha} 0755 0 a\n"),
                2,
                LineError::Duplicate("a".into()),
            ),
            (
                format!("{sha} 0777 0 a\n"),
                1,
                LineError::Mode("0777".into()),
            ),
            (format!("{sha} 755 0 a\n"), 1, LineError::Mode("755".into())),
            (
                format!("{} 0755 0 a\n", "AB".repeat(32)),
                1,
                LineError::Sha256("AB".repeat(32)),
            ),
            (
                format!("{sha} 0755 0 ../a\n"),
                1,
                LineError::Path {
                    path: "../a".into(),
                    reason: "`..` component",
                },
            ),
            (
                format!("{sha} 0755 0 MANIFEST\n"),
                1,
                LineError::ListsItself,
            ),
            (format!("{sha} 0755 0 a"), 1, LineError::NoNewline),
            (format!("{sha}  0755 0 a\n"), 1, LineError::Mode("".into())),
            (format!("{sha} 0755 a\n"), 1, LineError::Fields),
            (
                format!("{sha} 0755 01 a\n"),
                1,
                LineError::Size("01".into()),
            ),
            (
                format!("{sha} 0755 -1 a\n"),
                1,
                LineError::Size("-1".into()),
            ),
            (
                format!("{sha} 0755 18446744073709551616 a\n"),
                1,
                LineError::Size("18446744073709551616".into()),
            ),
        ] {
            assert_eq!(parse(bad.as_bytes()).unwrap_err(), (line, want), "{bad:?}");
        }
    }
}
