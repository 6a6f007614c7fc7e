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

    /// The same diagnostic with a message.
    pub fn msg(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
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
    let message = err.message().trim().to_string();
    Diagnostic::error(file, text, err.span()).msg(message)
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
    fn display_has_file_position_key() {
        let d = Diagnostic::error(Path::new("c.toml"), "x\ny", Some(2..3))
            .key("host[0].ip")
            .msg("bad");
        assert_eq!(d.to_string(), "c.toml:2:1: error: `host[0].ip`: bad");
    }
}
