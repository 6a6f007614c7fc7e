//! Diagnostics: errors and warnings that point at a file, line, column and key.

use std::fmt;
use std::path::{Path, PathBuf};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Invalid input: nothing may be built from it.
    Error,
    /// Accepted, but probably not what the user wants.
    Warning,
}

/// One finding about an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the finding is about.
    pub file: PathBuf,
    /// 1-based line and column, when the finding has a place in the file.
    pub position: Option<(usize, usize)>,
    /// The dotted key the finding is about, when there is one.
    pub key: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// An error at a byte span of `text` (the contents of `file`).
    pub fn error(file: &Path, text: &str, span: Option<std::ops::Range<usize>>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            position: span.map(|s| line_col(text, s.start)),
            key: None,
            message: String::new(),
        }
    }

    /// The same diagnostic with a key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same diagnostic with a message (a string or an error).
    pub fn msg(mut self, message: impl fmt::Display) -> Self {
        self.message = message.to_string();
        self
    }

    /// The same diagnostic downgraded to a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, ": {level}: ")?;
        if let Some(key) = &self.key {
            write!(f, "`{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// A non-empty list of diagnostics with at least one error: the result of bad input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Where a file's bytes stop being UTF-8: 1-based line and column (in characters) and the
/// 0-based byte offset of the first invalid byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not valid UTF-8 (line {line}, column {column}, byte offset {offset})")]
pub struct NotUtf8 {
    /// Line of the first invalid byte.
    pub line: usize,
    /// Column of the first invalid byte.
    pub column: usize,
    /// Byte offset of the first invalid byte.
    pub offset: usize,
}

impl NotUtf8 {
    /// The text of `bytes`, or where they stop being UTF-8.
    pub fn check(bytes: &[u8]) -> Result<&str, NotUtf8> {
        std::str::from_utf8(bytes).map_err(|e| NotUtf8::at(bytes, e))
    }

    /// The text of `bytes`, taking them without a copy, or where they stop being UTF-8.
    pub fn into_string(bytes: Vec<u8>) -> Result<String, NotUtf8> {
        String::from_utf8(bytes).map_err(|e| NotUtf8::at(e.as_bytes(), e.utf8_error()))
    }

    /// Where `e` (from validating `bytes`) says they stop being UTF-8.
    fn at(bytes: &[u8], e: std::str::Utf8Error) -> NotUtf8 {
        let offset = e.valid_up_to();
        let good = std::str::from_utf8(&bytes[..offset]).expect("valid prefix");
        let (line, column) = line_col(good, offset);
        NotUtf8 {
            line,
            column,
            offset,
        }
    }

    /// The `NotUtf8` an I/O error carries (as [`Files::read`](crate::Files::read) reports it).
    pub fn of(e: &std::io::Error) -> Option<NotUtf8> {
        e.get_ref()?.downcast_ref::<NotUtf8>().copied()
    }

    /// The error as a diagnostic at its place in `file`.
    pub fn diagnostic(&self, file: &Path) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            file: file.to_path_buf(),
            position: Some((self.line, self.column)),
            key: None,
            message: format!("not valid UTF-8 (byte offset {})", self.offset),
        }
    }

    /// The error as [`std::io::ErrorKind::InvalidData`], for readers behind [`crate::Files`].
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, self)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = text[line_start..offset].chars().count() + 1;
    (line, col)
}

/// Turns a TOML parse error into a diagnostic with its position.
pub fn from_toml_error(file: &Path, text: &str, err: &toml::de::Error) -> Diagnostic {
    let message = plain_numbers(err.message().trim());
    Diagnostic::error(file, text, err.span()).msg(message)
}

/// serde's `expected u32` (and the other integer types) said as people write numbers.
fn plain_numbers(message: &str) -> String {
    const RANGES: [(&str, &str); 5] = [
        ("u8", "0 to 255"),
        ("u16", "0 to 65535"),
        ("u32", "0 to 4294967295"),
        ("u64", "0 to 18446744073709551615"),
        ("i64", "-9223372036854775808 to 9223372036854775807"),
    ];
    for (ty, range) in RANGES {
        if let Some(head) = message.strip_suffix(&format!("expected {ty}")) {
            return format!("{head}expected a whole number from {range}");
        }
    }
    message.to_string()
}

/// Like [`from_toml_error`], and when the error is about a value (a bad kind or pin, a wrong
/// type) the diagnostic also names that value's dotted key.
pub fn from_toml_error_keyed(file: &Path, text: &str, err: &toml::de::Error) -> Diagnostic {
    let d = from_toml_error(file, text, err);
    match err.span().and_then(|span| key_at(text, span)) {
        Some(key) => d.key(key),
        None => d,
    }
}

/// The dotted key (`artifact[0].source`, `image."docker.io/x".source[1].kind`) of the innermost
/// value whose span holds `span`, if the text parses and such a value exists.
pub fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    fn part(k: &str) -> String {
        if !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            k.to_string()
        } else {
            format!("{k:?}")
        }
    }
    // Containers' spans are not reliable for array-of-tables, so every child is searched and
    // the smallest value holding the span wins.
    fn walk(
        v: &toml::Spanned<DeValue<'_>>,
        path: String,
        span: &std::ops::Range<usize>,
        best: &mut Option<(usize, String)>,
    ) {
        let s = v.span();
        if s.start <= span.start
            && span.end <= s.end
            && best.as_ref().is_none_or(|(len, _)| s.len() < *len)
        {
            *best = Some((s.len(), path.clone()));
        }
        match v.get_ref() {
            DeValue::Table(t) => table(t, &path, span, best),
            DeValue::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    walk(x, format!("{path}[{i}]"), span, best);
                }
            }
            _ => {}
        }
    }
    fn table(
        t: &DeTable<'_>,
        prefix: &str,
        span: &std::ops::Range<usize>,
        best: &mut Option<(usize, String)>,
    ) {
        for (k, v) in t {
            let key = part(k.get_ref());
            let path = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}.{key}")
            };
            walk(v, path, span, best);
        }
    }
    let doc = DeTable::parse(text).ok()?;
    let mut best = None;
    table(doc.get_ref(), "", &span, &mut best);
    best.map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 4));
    }

    #[test]
    fn not_utf8_names_line_column_and_offset() {
        let bytes = b"a = 1\nb = \"\xc3\xa9\xff\"\n";
        let e = NotUtf8::check(bytes).unwrap_err();
        assert_eq!(
            e,
            NotUtf8 {
                line: 2,
                column: 7,
                offset: 13
            }
        );
        let io = e.into_io();
        assert_eq!(NotUtf8::of(&io), Some(e));
        assert_eq!(
            e.diagnostic(Path::new("c.toml")).to_string(),
            "c.toml:2:7: error: not valid UTF-8 (byte offset 13)"
        );
        assert_eq!(NotUtf8::check(b"ok\n"), Ok("ok\n"));
        assert_eq!(NotUtf8::into_string(bytes.to_vec()), Err(e));
    }

    #[test]
    fn display_has_file_position_key() {
        let d = Diagnostic::error(Path::new("c.toml"), "x\ny", Some(2..3))
            .key("host[0].ip")
            .msg("bad");
        assert_eq!(d.to_string(), "c.toml:2:1: error: `host[0].ip`: bad");
    }

    #[test]
    fn key_at_names_the_innermost_value() {
        let t = "a = 1\n[[artifact]]\nname = \"x\"\nsource = \"ftp\"\n[image.\"docker.io/x\"]\nkind = [\"a\", \"b\"]\n";
        let at = |needle: &str| {
            let i = t.find(needle).unwrap();
            key_at(t, i..i + needle.len())
        };
        assert_eq!(at("\"ftp\"").as_deref(), Some("artifact[0].source"));
        assert_eq!(
            at("\"b\"").as_deref(),
            Some("image.\"docker.io/x\".kind[1]")
        );
        assert_eq!(at("1").as_deref(), Some("a"));
    }
}
