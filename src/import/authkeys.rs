//! Heartbeat's authkeys: `auth N` picks the key that signs packets, and
//! lines `N METHOD [KEY]` list the keys. Read the way Heartbeat read it
//! (parse_authfile in heartbeat/config.c): a line is a comment only if it
//! starts with `#`; the key is the one word after the method, so a `#`
//! inside a key is part of it; indexes run from 0 to 15.
//!
//! Neither errors nor notes ever quote a key: notes end up as comments
//! in the imported config.

use super::{ImportError, Note};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Crc,
    Md5,
    Sha1,
}

/// The key `auth` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKeys {
    pub method: AuthMethod,
    /// As written; empty for crc.
    pub key: String,
    pub index: u32,
    /// The line of the key.
    pub line: usize,
    pub notes: Vec<Note>,
}

/// Heartbeat's MAXAUTH is 16.
const MAX_INDEX: u32 = 15;

/// `mode` is the file's permission bits, e.g. `Some(0o600)`.
pub fn parse(text: &str, file: &str, mode: Option<u32>) -> Result<AuthKeys, Vec<ImportError>> {
    let mut parser = Parser::new(file);
    for (i, raw) in text.lines().enumerate() {
        parser.line(i + 1, raw);
    }
    parser.finish(mode)
}

/// One `N METHOD [KEY]` line.
#[derive(Debug)]
struct Entry {
    index: u32,
    method: AuthMethod,
    key: String,
    line: usize,
}

struct Parser<'a> {
    file: &'a str,
    entries: Vec<Entry>,
    /// The index `auth` names and its line; the last `auth` counts.
    auth: Option<(u32, usize)>,
    /// Indexes of key lines in error, which `auth` may name without a
    /// second error.
    failed: Vec<u32>,
    errors: Vec<ImportError>,
    notes: Vec<Note>,
}

/// Heartbeat's whitespace, " \t\n\r\f": exactly ASCII whitespace.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace()
}

fn words(text: &str) -> Vec<&str> {
    text.split(is_space).filter(|w| !w.is_empty()).collect()
}

impl<'a> Parser<'a> {
    fn new(file: &'a str) -> Parser<'a> {
        Parser {
            file,
            entries: Vec::new(),
            auth: None,
            failed: Vec::new(),
            errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn note(&mut self, line: usize, message: impl Into<String>) {
        self.notes.push(Note::new(self.file, line, message));
    }

    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(ImportError::new(self.file, line, message));
    }

    fn line(&mut self, line: usize, raw: &str) {
        let body = raw.trim_start_matches(is_space);
        if body.is_empty() || body.starts_with('#') {
            return;
        }
        // Heartbeat tells the auth line by its first letter.
        if body.starts_with('a') {
            self.auth_line(line, body);
        } else {
            self.key_line(line, body);
        }
    }

    fn auth_line(&mut self, line: usize, body: &str) {
        let Some(index) = body.strip_prefix("auth").and_then(leading_number) else {
            self.error(line, "not an auth line: `auth N` selects key N");
            return;
        };
        if let Some((_, before)) = self.auth.replace((index, line)) {
            self.note(
                line,
                format!(
                    "auth is given again (also on line {before}): the last counts, as in Heartbeat"
                ),
            );
        }
    }

    fn key_line(&mut self, line: usize, body: &str) {
        let words = words(body);
        let [index, rest @ ..] = words.as_slice() else {
            return;
        };
        let Some(index) = index.parse::<u32>().ok() else {
            self.error(
                line,
                "not a key line: a key is `N METHOD [KEY]`, e.g. `1 sha1 SECRET`",
            );
            return;
        };
        if index > MAX_INDEX {
            self.error(line, format!("key {index}: an index is 0 to {MAX_INDEX}"));
            return;
        }
        match self.entry(line, index, rest) {
            Ok(entry) => self.add(entry),
            Err(why) => {
                self.failed.push(index);
                self.error(line, format!("key {index}: {why}"));
            }
        }
    }

    /// The method and key after an index, with Heartbeat's rules.
    fn entry(&mut self, line: usize, index: u32, rest: &[&str]) -> Result<Entry, String> {
        let [method, after @ ..] = rest else {
            return Err(
                "no method: a key is `N METHOD [KEY]`, METHOD crc, md5 or sha1".to_string(),
            );
        };
        let method = match *method {
            "crc" => AuthMethod::Crc,
            "md5" => AuthMethod::Md5,
            "sha1" => AuthMethod::Sha1,
            other => {
                return Err(format!(
                    "unknown method `{other}`: Heartbeat's are crc, md5 and sha1"
                ));
            }
        };
        let key = match (method, after) {
            (AuthMethod::Crc, []) => String::new(),
            // Not a key but a comment; Heartbeat would have refused it.
            (AuthMethod::Crc, [comment, ..]) if comment.starts_with('#') => String::new(),
            (AuthMethod::Crc, _) => return Err("crc takes no key".to_string()),
            (_, []) => return Err("md5 and sha1 need a key after the method".to_string()),
            (_, [key, extra @ ..]) => {
                self.key_notes(line, index, key, extra);
                key.to_string()
            }
        };
        Ok(Entry {
            index,
            method,
            key,
            line,
        })
    }

    fn key_notes(&mut self, line: usize, index: u32, key: &str, extra: &[&str]) {
        if key.starts_with('#') {
            self.note(
                line,
                format!("key {index} starts with #: Heartbeat took it as the key, not as a comment, and so does the import"),
            );
        }
        if extra.first().is_some_and(|w| !w.starts_with('#')) {
            self.note(
                line,
                format!("key {index}: only the first word after the method is the key, as in Heartbeat; the rest of the line is ignored"),
            );
        }
    }

    fn add(&mut self, entry: Entry) {
        if let Some(first) = self.entries.iter().find(|e| e.index == entry.index) {
            let message = format!(
                "key {} is defined twice (first on line {})",
                entry.index, first.line
            );
            self.error(entry.line, message);
            return;
        }
        self.entries.push(entry);
    }

    fn finish(mut self, mode: Option<u32>) -> Result<AuthKeys, Vec<ImportError>> {
        let selected = self.selected();
        let Some(selected) = selected.filter(|_| self.errors.is_empty()) else {
            return Err(self.errors);
        };
        let mut notes = mode_note(self.file, mode).into_iter().collect::<Vec<_>>();
        notes.append(&mut self.notes);
        if selected.method == AuthMethod::Crc {
            notes.push(Note::new(
                self.file,
                selected.line,
                format!(
                    "key {} is crc, which authenticates nothing: the import makes a new key (hmac-sha256) \
                     instead; copy duet.key to every node",
                    selected.index
                ),
            ));
        }
        notes.extend(self.others_note(&selected));
        Ok(AuthKeys {
            method: selected.method,
            key: selected.key,
            index: selected.index,
            line: selected.line,
            notes,
        })
    }

    /// The key `auth` names, or an error saying why there is none.
    fn selected(&mut self) -> Option<Entry> {
        let Some((index, line)) = self.auth else {
            self.error(0, "no `auth N` line: it says which key signs packets");
            return None;
        };
        let Some(at) = self.entries.iter().position(|e| e.index == index) else {
            if self.failed.contains(&index) {
                return None;
            }
            let listed: Vec<String> = self.entries.iter().map(|e| e.index.to_string()).collect();
            let listed = if listed.is_empty() {
                "there are none".to_string()
            } else {
                format!("the keys are {}", listed.join(", "))
            };
            self.error(line, format!("auth {index} names no key: {listed}"));
            return None;
        };
        Some(self.entries.remove(at))
    }

    /// The keys left out, which Heartbeat still accepted packets signed with.
    fn others_note(&self, selected: &Entry) -> Option<Note> {
        let others: Vec<String> = self.entries.iter().map(|e| e.index.to_string()).collect();
        if others.is_empty() {
            return None;
        }
        let line = self.auth.map_or(selected.line, |(_, line)| line);
        Some(Note::new(
            self.file,
            line,
            format!(
                "only key {} is imported (duet has one key); key(s) {} are left out: Heartbeat also accepted \
                 packets signed with them, for changing keys without a restart",
                selected.index,
                others.join(", ")
            ),
        ))
    }
}

/// The number after `auth`, as sscanf's " %d" reads it: spaces, digits,
/// then anything (ignored).
fn leading_number(text: &str) -> Option<u32> {
    let text = text.trim_start_matches(is_space);
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    text.get(..end)?.parse().ok()
}

/// Heartbeat refuses an authkeys that group or others may read; one they
/// may write is as bad for duet, which takes the key over: it may be
/// theirs.
fn mode_note(file: &str, mode: Option<u32>) -> Option<Note> {
    let mode = mode? & 0o7777;
    let message = if mode & 0o044 != 0 {
        format!(
            "authkeys is readable by others (mode {mode:04o}): Heartbeat refuses that; \
             the key imported into duet's key file gets mode 0600, but others may have read it: \
             consider a new key (`duetctl keygen`, then copy it to every node)"
        )
    } else if mode & 0o022 != 0 {
        format!(
            "authkeys is writable by others (mode {mode:04o}): the key imported may be one they put there; \
             duet's key file gets mode 0600, but consider a new key (`duetctl keygen`, then copy it to every node)"
        )
    } else {
        return None;
    };
    Some(Note::warning(file, 0, message))
}

#[cfg(test)]
#[path = "authkeys_tests.rs"]
mod tests;
