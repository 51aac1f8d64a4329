//! Config errors as the user sees them: `FILE:LINE:COL: KEY: MESSAGE`, the
//! format editors and `grep -n` users can jump to.

use std::fmt;
use std::path::PathBuf;

use super::locate::{KeyPath, Locator, Segment};

/// One problem (or warning) in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted key path, e.g. `node[1].address.public`; empty when the
    /// problem is not inside any key (some syntax errors).
    pub key: String,
    pub message: String,
    /// What would be valid.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (valid: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Everything wrong with a config file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.errors {
            writeln!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A problem found by validation, before it is placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub key: KeyPath,
    pub message: String,
    pub hint: Option<String>,
}

impl Issue {
    pub fn new(key: KeyPath, message: impl Into<String>) -> Self {
        Issue {
            key,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn locate(self, file: &std::path::Path, locator: &Locator) -> ConfigError {
        let (line, column) = locator.line_col(locator.offset_of(&self.key));
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key: self.key.to_string(),
            message: one_line(&self.message),
            hint: self.hint.as_deref().map(one_line),
        }
    }
}

/// A toml syntax or serde error, placed by the span toml gives.
pub fn from_toml(
    error: &toml::de::Error,
    file: &std::path::Path,
    locator: &Locator,
) -> ConfigError {
    let offset = error.span().map_or(0, |s| s.start);
    let (line, column) = locator.line_col(offset);
    let raw = one_line(error.message());
    if !locator.is_valid_toml() {
        // toml's "expected" list for a syntax error names tokens, not
        // valid settings; keep the message whole.
        return ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key: locator.table_before(offset).to_string(),
            message: format!("syntax error: {raw}"),
            hint: None,
        };
    }
    let mut key = locator.path_at(offset);
    // serde says "unknown field `x`, expected one of `a`, `b`": the list is
    // what would be valid, so it goes in the hint.
    let (mut message, hint) = match raw.split_once(", expected ") {
        Some((message, expected)) => (message.to_string(), Some(plain_type(expected, &key))),
        None => (raw.clone(), None),
    };
    // A missing field is reported at its table; name the field itself.
    if let Some(field) = backquoted_after(&raw, "missing field ") {
        key = key.key(field);
        message = "missing".to_string();
    }
    ConfigError {
        file: file.to_path_buf(),
        line,
        column,
        key: key.to_string(),
        message,
        hint,
    }
}

/// serde names Rust types ("u16"); users wrote TOML. `key` is where the
/// value was, for an example of what goes there.
fn plain_type(expected: &str, key: &KeyPath) -> String {
    match expected {
        "u8" => "a whole number from 0 to 255".to_string(),
        "u16" => "a whole number from 0 to 65535".to_string(),
        "u32" => "a whole number from 0 to 4294967295".to_string(),
        "a boolean" => "true or false".to_string(),
        "a sequence" => format!("an array, e.g. {}", array_example(key)),
        "a map" => "a table".to_string(),
        other => other.to_string(),
    }
}

fn array_example(key: &KeyPath) -> &'static str {
    let names: Vec<&str> = key
        .segments()
        .iter()
        .filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    match names.as_slice() {
        ["group", "nodes"] => "[\"node1\", \"node2\"]",
        ["group", "resource", "args"] => "[\"650-555-1212\"]",
        _ => "[\"198.51.100.254\"]",
    }
}

fn backquoted_after<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    text.strip_prefix(prefix)?
        .strip_prefix('`')?
        .split('`')
        .next()
}

/// Messages are printed one per line; never let one span several.
fn one_line(text: &str) -> String {
    text.trim()
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_file_line_column_key_message_and_hint() {
        let error = ConfigError {
            file: "/etc/duet/duet.toml".into(),
            line: 7,
            column: 1,
            key: "timings.deadtime".into(),
            message: "deadtime (200ms) must be longer than warntime (600ms)".into(),
            hint: Some("a duration longer than 600ms".into()),
        };
        assert_eq!(
            error.to_string(),
            "/etc/duet/duet.toml:7:1: timings.deadtime: deadtime (200ms) must be longer than \
             warntime (600ms) (valid: a duration longer than 600ms)"
        );
        let bare = ConfigError {
            key: String::new(),
            hint: None,
            ..error.clone()
        };
        assert_eq!(
            bare.to_string(),
            "/etc/duet/duet.toml:7:1: deadtime (200ms) must be longer than warntime (600ms)"
        );
        let all = ConfigErrors {
            errors: vec![error, bare],
        };
        let text = all.to_string();
        assert_eq!(text.lines().count(), 2);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn multi_line_messages_are_folded() {
        assert_eq!(one_line("a\n  b\n"), "a; b");
    }
}
