//! Import of a classic Heartbeat + DRBD setup (`duetctl import heartbeat`):
//! ha.cf, haresources, authkeys and drbd.conf are each parsed by a pure
//! module of their own into what they say, with a note for every
//! directive duet carries over differently or not at all; `convert`
//! builds duet's config from the four. Nothing here reads files itself
//! (the caller gives the text, and for drbd.conf's `include` a reader),
//! so every form is unit-tested on strings.

pub mod authkeys;
pub mod convert;
pub mod drbdconf;
pub mod hacf;
pub mod haresources;

use std::fmt;

/// A line of a classic file that cannot be imported: said with its file
/// and line, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", at(file, *line))]
pub struct ImportError {
    pub file: String,
    /// 1-based; 0 when the problem is the whole file.
    pub line: usize,
    pub message: String,
}

impl ImportError {
    pub fn new(file: &str, line: usize, message: impl Into<String>) -> ImportError {
        ImportError {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// A directive that was read and is carried over differently, or not at
/// all, and why: shown to the user and written as a comment into the
/// imported config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: String,
    pub line: usize,
    pub message: String,
    /// Something to act on (printed as a warning), not only a difference.
    pub warning: bool,
}

impl Note {
    pub fn new(file: &str, line: usize, message: impl Into<String>) -> Note {
        Note {
            file: file.to_string(),
            line,
            message: message.into(),
            warning: false,
        }
    }

    pub fn warning(file: &str, line: usize, message: impl Into<String>) -> Note {
        Note {
            warning: true,
            ..Note::new(file, line, message)
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", at(&self.file, self.line), self.message)
    }
}

/// `file:line`, or the file alone for what concerns all of it.
fn at(file: &str, line: usize) -> String {
    if line == 0 {
        file.to_string()
    } else {
        format!("{file}:{line}")
    }
}

/// The lines of a Heartbeat file with comments removed and backslash
/// continuations joined, with the number of the line each starts on.
pub(crate) fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        // A comment line between continued lines comments itself out,
        // not the rest of the entry.
        if pending.is_some() && raw.trim_start().starts_with('#') {
            continue;
        }
        // Heartbeat cuts at the first '#' wherever it is, even inside a word.
        let content = raw.split('#').next().unwrap_or("");
        let trimmed = content.trim_end_matches(|c: char| c.is_ascii_whitespace());
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(b) => (b, true),
            None => (trimmed, false),
        };
        let entry = pending.get_or_insert_with(|| (i + 1, String::new()));
        entry.1.push(' ');
        entry.1.push_str(body);
        if !continues && let Some(done) = pending.take() {
            out.push(done);
        }
    }
    out.extend(pending);
    out
}
