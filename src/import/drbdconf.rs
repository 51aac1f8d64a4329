//! DRBD's drbd.conf, in the syntax of 8.3, 8.4 and 9: the resources with
//! their hosts, disks and addresses, and the few net, disk and syncer
//! options duet has an equivalent for. Every other option is read and
//! noted; only what cannot be understood, or cannot be carried over at all
//! (several volumes in a resource, stacked resources), is an error.
//!
//! Two passes. The text is first cut into statements (`words... ;` or
//! `words... { statements }`), with the `include`d files spliced in where
//! they are named; every syntax error is found there, so the second pass,
//! which reads the statements by meaning, never has to guess about braces.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;

use super::{ImportError, Note};

/// Everything drbd.conf says that duet can use, and what it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdConf {
    pub resources: Vec<DrbdResource>,
    pub notes: Vec<Note>,
}

/// A `resource NAME { }` section, with `common`'s defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdResource {
    pub name: String,
    /// The file `resource NAME {` is in (drbd.conf or an included one).
    pub file: String,
    /// Where `resource NAME {` is.
    pub line: usize,
    /// 'A', 'B' or 'C', from the resource, its net section, or common.
    pub protocol: Option<char>,
    /// The `on HOST { }` and `floating ADDR { }` sections, in file order.
    pub hosts: Vec<DrbdHost>,
    /// Raw policy words, e.g. "discard-younger-primary".
    pub after_sb_0pri: Option<String>,
    pub after_sb_1pri: Option<String>,
    pub after_sb_2pri: Option<String>,
    /// "detach", "pass_on", "call-local-io-error"...: raw.
    pub on_io_error: Option<String>,
    /// syncer's `rate` (8.3) or disk's `resync-rate` (8.4, 9): raw, "10M".
    pub rate: Option<String>,
    pub c_max_rate: Option<String>,
    pub c_min_rate: Option<String>,
    pub c_fill_target: Option<String>,
    pub verify_alg: Option<String>,
    pub csums_alg: Option<String>,
    pub shared_secret: Option<String>,
    pub cram_hmac_alg: Option<String>,
}

/// One side of a resource: `on HOST { }`, or `floating ADDR { }` (which
/// names no host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrbdHost {
    /// None for a `floating ADDR { }` section.
    pub name: Option<String>,
    pub line: usize,
    /// "/dev/drbd1", also for `device minor 1;`.
    pub device: Option<String>,
    pub disk: Option<String>,
    pub address: Option<SocketAddr>,
    pub meta_disk: Option<MetaDisk>,
}

/// Where DRBD keeps its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaDisk {
    /// `meta-disk internal;`: at the end of the disk itself.
    Internal,
    /// `meta-disk /dev/sdc1;`, `meta-disk /dev/sdc1 [0];` or
    /// `flexible-meta-disk /dev/sdc1;`.
    External { path: String, index: Option<u32> },
}

/// What an `include` pattern expands to: (file name, text), in order.
pub type IncludedFiles = Vec<(String, String)>;

/// Reads drbd.conf. `include` expands an `include "PATTERN";` into the
/// files it names, (name, text), so that nothing here touches the disk.
pub fn parse(
    text: &str,
    file: &str,
    include: &mut dyn FnMut(&str) -> Result<IncludedFiles, String>,
) -> Result<DrbdConf, Vec<ImportError>> {
    let mut loader = Loader::new(file, include);
    let statements = loader.load(file, text);
    let mut reader = Reader {
        errors: loader.errors,
        notes: Vec::new(),
    };
    let conf = reader.top_level(&statements);
    if reader.errors.is_empty() {
        Ok(conf)
    } else {
        Err(reader.errors)
    }
}

// ---------------------------------------------------------------------
// First pass: tokens, statements, includes.

/// A word or a quoted string, unquoted, with the line it is on.
#[derive(Debug, Clone)]
struct Word {
    text: String,
    line: usize,
}

enum Token {
    Word(Word),
    /// `{` and `}` with their lines (for errors), and `;`.
    Open(usize),
    Close(usize),
    Semi,
}

/// `words... ;`, or a section `words... { body }`.
#[derive(Debug, Clone)]
struct Stmt {
    file: Rc<str>,
    line: usize,
    words: Vec<Word>,
    body: Option<Vec<Stmt>>,
}

impl Stmt {
    /// The first word as a keyword ("" for none).
    fn keyword(&self) -> String {
        self.words
            .first()
            .map(|w| keyword(&w.text))
            .unwrap_or_default()
    }

    fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The words as written, for messages.
    fn text(&self) -> String {
        join(&self.words, " ")
    }
}

/// Old files spell some keywords with underscores (`on_io_error`); DRBD's
/// documented spelling has dashes.
fn keyword(word: &str) -> String {
    word.to_ascii_lowercase().replace('_', "-")
}

fn join(words: &[Word], separator: &str) -> String {
    words
        .iter()
        .map(|w| w.text.as_str())
        .collect::<Vec<_>>()
        .join(separator)
}

/// drbdadm reads at most ten nested files; eight is plenty and still
/// stops a file that includes itself under ever new names.
const MAX_INCLUDE_DEPTH: usize = 8;

/// Files read in all, the main one included: a real drbd.conf has a few
/// dozen. Each file including a few others under ever new names (relative
/// patterns resolved from ever deeper folders) would otherwise read
/// few^8 files (found by fuzz target import_files).
const MAX_FILES: usize = 256;

/// DRBD's deepest section is four levels down (resource, connection,
/// volume, disk): anything far deeper is garbage, and the limit keeps
/// the recursive second pass off the end of the stack.
const MAX_NESTING: usize = 16;

fn tokenize(text: &str, file: &str, errors: &mut Vec<ImportError>) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' => {
                // Up to, not over, the newline: it still counts the line.
                while chars.next_if(|&c| c != '\n').is_some() {}
            }
            '{' => tokens.push(Token::Open(line)),
            '}' => tokens.push(Token::Close(line)),
            ';' => tokens.push(Token::Semi),
            '"' => {
                let text = quoted(&mut chars, file, line, errors);
                tokens.push(Token::Word(Word { text, line }));
            }
            c if c.is_whitespace() => {}
            c => {
                let mut text = c.to_string();
                while let Some(c) = chars.next_if(|&c| is_word_char(c)) {
                    text.push(c);
                }
                tokens.push(Token::Word(Word { text, line }));
            }
        }
    }
    tokens
}

fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '{' | '}' | ';' | '"' | '#')
}

/// The rest of a double-quoted string, its opening quote already read. A
/// backslash takes the next character as it is; like DRBD's scanner, a
/// string ends on its line.
fn quoted(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    file: &str,
    line: usize,
    errors: &mut Vec<ImportError>,
) -> String {
    let mut text = String::new();
    loop {
        match chars.next_if(|&c| c != '\n') {
            Some('"') => return text,
            Some('\\') => match chars.next_if(|&c| c != '\n') {
                Some(c) => text.push(c),
                None => break,
            },
            Some(c) => text.push(c),
            None => break,
        }
    }
    errors.push(ImportError::new(
        file,
        line,
        "unterminated string: a quoted string ends with `\"` on its line",
    ));
    text
}

/// A section being read: its header words and the statements so far.
struct Frame {
    header: Vec<Word>,
    line: usize,
    body: Vec<Stmt>,
}

/// Cuts tokens into statements, reporting missing `;` and unbalanced
/// braces and carrying on as well as it can.
struct Builder<'e> {
    file: Rc<str>,
    errors: &'e mut Vec<ImportError>,
    /// The top level first, the innermost open section last.
    stack: Vec<Frame>,
    /// The words of the statement being read.
    pending: Vec<Word>,
}

impl Builder<'_> {
    fn statements(tokens: Vec<Token>, file: Rc<str>, errors: &mut Vec<ImportError>) -> Vec<Stmt> {
        let root = Frame {
            header: Vec::new(),
            line: 0,
            body: Vec::new(),
        };
        let mut builder = Builder {
            file,
            errors,
            stack: vec![root],
            pending: Vec::new(),
        };
        for token in tokens {
            let carry_on = match token {
                Token::Word(word) => {
                    builder.word(word);
                    true
                }
                Token::Semi => {
                    builder.flush();
                    true
                }
                Token::Open(line) => builder.open(line),
                Token::Close(line) => {
                    builder.close(line);
                    true
                }
            };
            if !carry_on {
                break;
            }
        }
        builder.finish()
    }

    fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors
            .push(ImportError::new(&self.file, line, message));
    }

    fn word(&mut self, word: Word) {
        // drbdadm reads newlines as spaces, yet a statement rarely spans
        // lines: a word on a new line after a keyword and its value starts
        // a new statement (the `;` before it was forgotten), and only a
        // keyword alone, or with an address family, continues there.
        let continues = match self.pending.as_slice() {
            [_] => true,
            [.., af] => matches!(af.text.as_str(), "ipv4" | "ipv6" | "ssocks" | "sdp" | "sci"),
            [] => true,
        };
        if !continues
            && self
                .pending
                .last()
                .is_some_and(|last| last.line != word.line)
        {
            self.missing_semicolon();
        }
        self.pending.push(word);
    }

    fn missing_semicolon(&mut self) {
        let line = self.pending.last().map_or(0, |w| w.line);
        let text = join(&self.pending, " ");
        self.error(line, format!("missing `;` after `{text}`"));
        self.flush();
    }

    /// Ends the pending statement (an empty one, a lone `;`, is nothing).
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let words = std::mem::take(&mut self.pending);
        let stmt = Stmt {
            file: self.file.clone(),
            line: words[0].line,
            words,
            body: None,
        };
        self.innermost().body.push(stmt);
    }

    fn innermost(&mut self) -> &mut Frame {
        self.stack
            .last_mut()
            .expect("the top level is never popped")
    }

    /// False when the sections nest too deep to go on.
    fn open(&mut self, line: usize) -> bool {
        if self.stack.len() > MAX_NESTING {
            self.error(
                line,
                format!("sections nested more than {MAX_NESTING} deep"),
            );
            return false;
        }
        if self.pending.is_empty() {
            self.error(line, "`{` without a section name before it");
        }
        let header = std::mem::take(&mut self.pending);
        let line = header.first().map_or(line, |w| w.line);
        self.stack.push(Frame {
            header,
            line,
            body: Vec::new(),
        });
        true
    }

    fn close(&mut self, line: usize) {
        if !self.pending.is_empty() {
            self.missing_semicolon();
        }
        if self.stack.len() == 1 {
            self.error(line, "`}` without a `{` to close");
            return;
        }
        self.pop();
    }

    fn pop(&mut self) {
        let Some(frame) = self.stack.pop() else {
            return;
        };
        // A nameless section was reported when it opened; its content means nothing.
        if frame.header.is_empty() {
            return;
        }
        let stmt = Stmt {
            file: self.file.clone(),
            line: frame.line,
            words: frame.header,
            body: Some(frame.body),
        };
        self.innermost().body.push(stmt);
    }

    fn finish(mut self) -> Vec<Stmt> {
        if !self.pending.is_empty() {
            self.missing_semicolon();
        }
        while self.stack.len() > 1 {
            if let Some(frame) = self.stack.last() {
                let (line, text) = (frame.line, join(&frame.header, " "));
                self.error(
                    line,
                    format!("`{text} {{` is never closed: a `}}` is missing"),
                );
            }
            self.pop();
        }
        std::mem::take(&mut self.innermost().body)
    }
}

/// Reads a file into statements with its includes spliced in.
struct Loader<'r> {
    include: &'r mut dyn FnMut(&str) -> Result<IncludedFiles, String>,
    errors: Vec<ImportError>,
    /// Every file read so far: like drbdadm, a file is read once, so
    /// overlapping globs (`*.conf` and `global_common.conf`) are harmless.
    seen: Vec<String>,
    /// The files being read, the main one first: one of them named again
    /// is an include loop.
    reading: Vec<String>,
}

impl<'r> Loader<'r> {
    fn new(file: &str, include: &'r mut dyn FnMut(&str) -> Result<IncludedFiles, String>) -> Self {
        Loader {
            include,
            errors: Vec::new(),
            seen: vec![file.to_string()],
            reading: vec![file.to_string()],
        }
    }

    fn load(&mut self, file: &str, text: &str) -> Vec<Stmt> {
        let tokens = tokenize(text, file, &mut self.errors);
        let statements = Builder::statements(tokens, Rc::from(file), &mut self.errors);
        self.expand(statements)
    }

    fn expand(&mut self, statements: Vec<Stmt>) -> Vec<Stmt> {
        let mut out = Vec::with_capacity(statements.len());
        for mut stmt in statements {
            if stmt.keyword() == "include" {
                out.extend(self.included(&stmt));
                continue;
            }
            if let Some(body) = stmt.body.take() {
                stmt.body = Some(self.expand(body));
            }
            out.push(stmt);
        }
        out
    }

    fn error(&mut self, at: &Stmt, message: impl Into<String>) {
        self.errors
            .push(ImportError::new(&at.file, at.line, message));
    }

    fn included(&mut self, stmt: &Stmt) -> Vec<Stmt> {
        let pattern = match (stmt.args(), &stmt.body) {
            ([pattern], None) => pattern.text.clone(),
            _ => {
                self.error(
                    stmt,
                    "include takes one file or pattern: include \"drbd.d/*.res\";",
                );
                return Vec::new();
            }
        };
        if self.reading.len() > MAX_INCLUDE_DEPTH {
            let message = format!(
                "include \"{pattern}\": includes nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)"
            );
            self.error(stmt, message);
            return Vec::new();
        }
        // As drbdadm: a relative pattern is found from the folder of the
        // file that includes it.
        let resolved = match std::path::Path::new(&*stmt.file).parent() {
            Some(dir) if !pattern.starts_with('/') => dir.join(&pattern).display().to_string(),
            _ => pattern.clone(),
        };
        let files = match (self.include)(&resolved) {
            Ok(files) => files,
            Err(e) => {
                self.error(stmt, format!("include \"{pattern}\": {e}"));
                return Vec::new();
            }
        };
        // As drbdadm: a pattern that matches nothing is fine, a plain
        // file name that matches nothing is a missing file.
        if files.is_empty() && !pattern.contains(['*', '?', '[']) {
            self.error(stmt, format!("include \"{pattern}\": no such file"));
        }
        let mut out = Vec::new();
        for (name, text) in files {
            out.extend(self.included_file(stmt, &pattern, name, &text));
        }
        out
    }

    fn included_file(&mut self, stmt: &Stmt, pattern: &str, name: String, text: &str) -> Vec<Stmt> {
        if self.reading.contains(&name) {
            let chain = self.reading.join(" -> ");
            let message = format!("include \"{pattern}\": include loop: {chain} -> {name}");
            self.error(stmt, message);
            return Vec::new();
        }
        if self.seen.contains(&name) {
            return Vec::new();
        }
        if self.seen.len() >= MAX_FILES {
            // Said once: the includes after it are skipped alike.
            if self.seen.len() == MAX_FILES {
                let message = format!(
                    "include \"{pattern}\": more than {MAX_FILES} files included in all (the same files under other paths?)"
                );
                self.error(stmt, message);
                self.seen.push(name);
            }
            return Vec::new();
        }
        self.seen.push(name.clone());
        self.reading.push(name.clone());
        let statements = self.load(&name, text);
        self.reading.pop();
        statements
    }
}

// ---------------------------------------------------------------------
// Second pass: what the statements mean.

/// The options duet has an equivalent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Setting {
    Protocol,
    AfterSb0pri,
    AfterSb1pri,
    AfterSb2pri,
    OnIoError,
    Rate,
    CMaxRate,
    CMinRate,
    CFillTarget,
    VerifyAlg,
    CsumsAlg,
    SharedSecret,
    CramHmacAlg,
}

/// Options as one scope (common, or a resource) sets them, raw.
type Settings = BTreeMap<Setting, String>;

/// Which option is where. verify-alg and csums-alg moved from syncer to
/// net in 8.4, syncer's `rate` became disk's `resync-rate`, and the c-*
/// controller options went from syncer to disk: all spellings are read.
const NET_OPTIONS: &[(&str, Setting)] = &[
    ("protocol", Setting::Protocol),
    ("after-sb-0pri", Setting::AfterSb0pri),
    ("after-sb-1pri", Setting::AfterSb1pri),
    ("after-sb-2pri", Setting::AfterSb2pri),
    ("shared-secret", Setting::SharedSecret),
    ("cram-hmac-alg", Setting::CramHmacAlg),
    ("verify-alg", Setting::VerifyAlg),
    ("csums-alg", Setting::CsumsAlg),
];

const DISK_OPTIONS: &[(&str, Setting)] = &[
    ("on-io-error", Setting::OnIoError),
    ("resync-rate", Setting::Rate),
    ("c-max-rate", Setting::CMaxRate),
    ("c-min-rate", Setting::CMinRate),
    ("c-fill-target", Setting::CFillTarget),
];

const SYNCER_OPTIONS: &[(&str, Setting)] = &[
    ("rate", Setting::Rate),
    ("resync-rate", Setting::Rate),
    ("verify-alg", Setting::VerifyAlg),
    ("csums-alg", Setting::CsumsAlg),
    ("c-max-rate", Setting::CMaxRate),
    ("c-min-rate", Setting::CMinRate),
    ("c-fill-target", Setting::CFillTarget),
];

const GLOBAL_WHY: &str = "has nothing to carry over: it tunes drbdadm itself";
const STARTUP_WHY: &str = "is not carried over: duet's membership decides when a node waits for its peer (docs/quorum.md, wait-for-all)";
const HANDLERS_WHY: &str = "are not carried over: duet runs no DRBD handlers; fencing is its [fencing] section (docs/config.md)";
const OPTIONS_WHY: &str =
    "are not carried over: duet's quorum and placement are the cluster's (docs/quorum.md)";
const FENCING_WHY: &str =
    "is not carried over: duet fences with its [fencing] section (docs/config.md)";

/// A file and line, for an error found after the statement is gone.
#[derive(Debug, Clone)]
struct Place {
    file: Rc<str>,
    line: usize,
}

impl Place {
    fn of(stmt: &Stmt) -> Place {
        Place {
            file: stmt.file.clone(),
            line: stmt.line,
        }
    }
}

/// device, disk and meta-disk of one volume, as far as given.
#[derive(Debug, Clone, Default)]
struct Volume {
    device: Option<String>,
    disk: Option<String>,
    meta_disk: Option<MetaDisk>,
}

impl Volume {
    /// This volume's values, or `defaults`' where it has none.
    fn or(self, defaults: &Volume) -> Volume {
        Volume {
            device: self.device.or_else(|| defaults.device.clone()),
            disk: self.disk.or_else(|| defaults.disk.clone()),
            meta_disk: self.meta_disk.or_else(|| defaults.meta_disk.clone()),
        }
    }
}

/// Volumes by number; statements straight in a section are DRBD's
/// implicit volume 0.
type Volumes = BTreeMap<u32, Volume>;

/// An `on` or `floating` section as read.
struct HostSpec {
    name: Option<String>,
    place: Place,
    address: Option<SocketAddr>,
    volumes: Volumes,
}

/// What a `common` or `resource` section says.
#[derive(Default)]
struct Scope {
    settings: Settings,
    /// Resource-level device, disk and meta-disk: the hosts' defaults.
    volumes: Volumes,
    hosts: Vec<HostSpec>,
    /// Every volume number used, in file order, with where it first is.
    volume_numbers: Vec<(u32, Place)>,
    /// DRBD 9 `connection { host NAME address ...; }`.
    peer_addresses: Vec<(String, SocketAddr, Place)>,
}

impl Scope {
    fn uses_volume(&mut self, number: u32, at: &Stmt) {
        if !self.volume_numbers.iter().any(|(n, _)| *n == number) {
            self.volume_numbers.push((number, Place::of(at)));
        }
    }
}

/// Who a statement belongs to, for messages: "common" or "resource r0".
struct Owner {
    label: String,
    common: bool,
}

struct ResourceSpec {
    name: String,
    place: Place,
    scope: Scope,
}

struct Reader {
    errors: Vec<ImportError>,
    notes: Vec<Note>,
}

impl Reader {
    fn error(&mut self, at: &Stmt, message: impl Into<String>) {
        self.errors
            .push(ImportError::new(&at.file, at.line, message));
    }

    fn error_at(&mut self, at: &Place, message: impl Into<String>) {
        self.errors
            .push(ImportError::new(&at.file, at.line, message));
    }

    fn note(&mut self, at: &Stmt, message: impl Into<String>) {
        self.notes.push(Note::new(&at.file, at.line, message));
    }

    fn not_carried_over(&mut self, at: &Stmt, owner: &str) {
        let message = format!("{owner}: `{}` is not carried over", at.text());
        self.note(at, message);
    }

    fn top_level(&mut self, statements: &[Stmt]) -> DrbdConf {
        let mut common = Settings::new();
        let mut specs: Vec<ResourceSpec> = Vec::new();
        for stmt in statements {
            match (stmt.keyword().as_str(), &stmt.body) {
                ("global", Some(body)) => {
                    self.section_note(stmt, body, "global section", GLOBAL_WHY)
                }
                ("common", Some(body)) => {
                    let owner = Owner {
                        label: "common".to_string(),
                        common: true,
                    };
                    common.extend(self.resource_body(body, &owner).settings);
                }
                ("resource", Some(body)) => {
                    if let Some(spec) = self.resource(stmt, body, &specs) {
                        specs.push(spec);
                    }
                }
                ("skip", _) => self.note(stmt, "a `skip` section is skipped, as drbdadm does"),
                (word, None) if word.starts_with("require-drbd-module-version") => {
                    self.not_carried_over(stmt, "drbd.conf")
                }
                (word @ ("global" | "common" | "resource"), None) => self.error(
                    stmt,
                    format!("`{word}` must be followed by a `{{ }}` section"),
                ),
                _ => self.error(
                    stmt,
                    format!(
                        "unknown top-level `{}`: expected global, common, resource or include",
                        stmt.text()
                    ),
                ),
            }
        }
        let resources = specs
            .into_iter()
            .map(|spec| self.finish(spec, &common))
            .collect();
        DrbdConf {
            resources,
            notes: std::mem::take(&mut self.notes),
        }
    }

    /// One note for a whole section duet has no use for, naming its options.
    fn section_note(&mut self, at: &Stmt, body: &[Stmt], what: &str, why: &str) {
        if body.is_empty() {
            return;
        }
        let names: Vec<String> = body
            .iter()
            .filter_map(|s| s.words.first().map(|w| w.text.clone()))
            .collect();
        let message = format!("{what} ({}) {why}", names.join(", "));
        self.note(at, message);
    }

    fn resource(
        &mut self,
        stmt: &Stmt,
        body: &[Stmt],
        earlier: &[ResourceSpec],
    ) -> Option<ResourceSpec> {
        let name = match stmt.args() {
            [name] => name.text.clone(),
            [] => {
                self.error(stmt, "resource section without a name: resource NAME { }");
                return None;
            }
            _ => {
                self.error(stmt, format!("`{}`: a resource has one name", stmt.text()));
                return None;
            }
        };
        if let Some(first) = earlier.iter().find(|r| r.name == name) {
            let message = format!(
                "resource {name} is defined twice (first at {}:{})",
                first.place.file, first.place.line
            );
            self.error(stmt, message);
            return None;
        }
        let owner = Owner {
            label: format!("resource {name}"),
            common: false,
        };
        let scope = self.resource_body(body, &owner);
        Some(ResourceSpec {
            name,
            place: Place::of(stmt),
            scope,
        })
    }

    fn resource_body(&mut self, body: &[Stmt], owner: &Owner) -> Scope {
        let mut scope = Scope::default();
        for stmt in body {
            self.resource_statement(stmt, owner, &mut scope);
        }
        scope
    }

    fn resource_statement(&mut self, stmt: &Stmt, owner: &Owner, scope: &mut Scope) {
        let label = owner.label.as_str();
        let key = stmt.keyword();
        if !owner.common && self.implicit_volume_statement(stmt, &mut scope.volumes) {
            scope.uses_volume(0, stmt);
            return;
        }
        match (key.as_str(), &stmt.body) {
            ("protocol", None) => self.setting(stmt, Setting::Protocol, &mut scope.settings),
            ("net", Some(b)) => self.options(b, "net", NET_OPTIONS, &mut scope.settings, label),
            ("disk", Some(b)) => self.options(b, "disk", DISK_OPTIONS, &mut scope.settings, label),
            ("syncer", Some(b)) => self.options(b, "syncer", SYNCER_OPTIONS, &mut scope.settings, label),
            ("startup", Some(b)) => self.section_note(stmt, b, &format!("{label}: startup"), STARTUP_WHY),
            ("handlers", Some(b)) => self.section_note(stmt, b, &format!("{label}: handlers"), HANDLERS_WHY),
            ("options", Some(b)) => self.section_note(stmt, b, &format!("{label}: options"), OPTIONS_WHY),
            ("on" | "floating", _) if owner.common => {
                self.error(stmt, "host sections (`on`, `floating`) belong in a resource, not in common")
            }
            ("on", Some(b)) => self.on_section(stmt, b, scope, label),
            ("floating", _) => self.floating_section(stmt, scope, label),
            ("volume", Some(b)) if !owner.common => {
                if let Some((number, volume)) = self.volume_section(stmt, b, scope, label) {
                    scope.volumes.insert(number, volume);
                }
            }
            ("connection", Some(b)) => self.connection(b, scope, label),
            ("connection-mesh", Some(b)) => self.connection_mesh(b, scope, label),
            ("stacked-on-top-of", _) => self.error(
                stmt,
                format!("{label}: stacked resources (stacked-on-top-of) cannot be carried over: a duet replica is one disk on each node"),
            ),
            ("skip", _) => self.note(stmt, format!("{label}: a `skip` section is skipped, as drbdadm does")),
            _ => self.not_carried_over(stmt, label),
        }
    }

    /// The options of a net, disk or syncer section: those duet uses by
    /// `table`, a note for each other one.
    fn options(
        &mut self,
        body: &[Stmt],
        section: &str,
        table: &[(&str, Setting)],
        settings: &mut Settings,
        owner: &str,
    ) {
        for stmt in body {
            let key = stmt.keyword();
            match table.iter().find(|(name, _)| *name == key) {
                Some((_, setting)) => self.setting(stmt, *setting, settings),
                None if key == "fencing" => {
                    self.note(stmt, format!("{owner}: `{}` {FENCING_WHY}", stmt.text()))
                }
                None => {
                    let message = format!(
                        "{owner}: {section} option `{}` is not carried over",
                        stmt.text()
                    );
                    self.note(stmt, message);
                }
            }
        }
    }

    fn setting(&mut self, stmt: &Stmt, setting: Setting, settings: &mut Settings) {
        let key = stmt.keyword();
        let value = match (stmt.args(), &stmt.body) {
            ([value], None) => value.text.clone(),
            _ => {
                self.error(
                    stmt,
                    format!("`{}`: {key} takes one value: {key} VALUE;", stmt.text()),
                );
                return;
            }
        };
        let value = if setting == Setting::Protocol {
            match protocol(&value) {
                Some(letter) => letter.to_string(),
                None => {
                    self.error(
                        stmt,
                        format!("protocol `{value}`: DRBD's protocols are A, B and C"),
                    );
                    return;
                }
            }
        } else {
            value
        };
        settings.insert(setting, value);
    }

    /// `device`, `disk PATH`, `meta-disk` or `flexible-meta-disk` straight
    /// in a section, into its volume 0. False if `stmt` is none of them.
    fn implicit_volume_statement(&mut self, stmt: &Stmt, volumes: &mut Volumes) -> bool {
        let mut volume = volumes.get(&0).cloned().unwrap_or_default();
        if !self.volume_statement(stmt, &mut volume) {
            return false;
        }
        volumes.insert(0, volume);
        true
    }

    /// `device`, `disk PATH`, `meta-disk` or `flexible-meta-disk` into
    /// `volume`. False if `stmt` is none of them.
    fn volume_statement(&mut self, stmt: &Stmt, volume: &mut Volume) -> bool {
        if stmt.body.is_some() {
            return false;
        }
        let args = stmt.args();
        let result = match stmt.keyword().as_str() {
            "device" => device(args).map(|d| volume.device = Some(d)),
            "disk" => disk(args).map(|d| volume.disk = Some(d)),
            "meta-disk" => meta_disk(args).map(|m| volume.meta_disk = Some(m)),
            "flexible-meta-disk" => flexible_meta_disk(args).map(|m| volume.meta_disk = Some(m)),
            _ => return false,
        };
        if let Err(message) = result {
            self.error(stmt, message);
        }
        true
    }

    /// `volume N { device ...; disk ...; meta-disk ...; }`.
    fn volume_section(
        &mut self,
        stmt: &Stmt,
        body: &[Stmt],
        scope: &mut Scope,
        owner: &str,
    ) -> Option<(u32, Volume)> {
        let number = match stmt.args() {
            [n] => n.text.parse::<u32>().ok(),
            _ => None,
        };
        let Some(number) = number else {
            self.error(
                stmt,
                format!("`{}`: a volume has a number: volume N {{ }}", stmt.text()),
            );
            return None;
        };
        scope.uses_volume(number, stmt);
        let owner = format!("{owner}, volume {number}");
        let mut volume = Volume::default();
        for s in body {
            if self.volume_statement(s, &mut volume) {
                continue;
            }
            match (s.keyword().as_str(), &s.body) {
                ("disk", Some(b)) => {
                    self.options(b, "disk", DISK_OPTIONS, &mut scope.settings, &owner)
                }
                _ => self.not_carried_over(s, &owner),
            }
        }
        Some((number, volume))
    }

    /// `on HOST { }`.
    fn on_section(&mut self, stmt: &Stmt, body: &[Stmt], scope: &mut Scope, owner: &str) {
        let name = match stmt.args() {
            [name] => name.text.clone(),
            [] => {
                self.error(
                    stmt,
                    format!("{owner}: `on` section without a host name: on HOST {{ }}"),
                );
                return;
            }
            _ => {
                let message = format!(
                    "{owner}: `{}`: one section for several hosts cannot be carried over; give each host its own `on` section",
                    stmt.text()
                );
                self.error(stmt, message);
                return;
            }
        };
        if let Some(first) = scope
            .hosts
            .iter()
            .find(|h| h.name.as_deref() == Some(name.as_str()))
        {
            let message = format!(
                "{owner}: host {name} has two `on` sections (first at {}:{})",
                first.place.file, first.place.line
            );
            self.error(stmt, message);
            return;
        }
        let mut host = HostSpec {
            name: Some(name),
            place: Place::of(stmt),
            address: None,
            volumes: Volumes::new(),
        };
        let owner = format!("{owner}, on {}", host.name.as_deref().unwrap_or_default());
        self.host_body(body, &mut host, scope, &owner, false);
        scope.hosts.push(host);
    }

    /// `floating [AF] ADDR:PORT { }`, or without a body `floating ADDR;`.
    fn floating_section(&mut self, stmt: &Stmt, scope: &mut Scope, owner: &str) {
        let address = match address(stmt.args()) {
            Ok(a) => a,
            Err(message) => {
                self.error(stmt, format!("{owner}: floating: {message}"));
                return;
            }
        };
        let mut host = HostSpec {
            name: None,
            place: Place::of(stmt),
            address: Some(address),
            volumes: Volumes::new(),
        };
        if let Some(body) = &stmt.body {
            let owner = format!("{owner}, floating {address}");
            self.host_body(body, &mut host, scope, &owner, true);
        }
        scope.hosts.push(host);
    }

    fn host_body(
        &mut self,
        body: &[Stmt],
        host: &mut HostSpec,
        scope: &mut Scope,
        owner: &str,
        floating: bool,
    ) {
        for stmt in body {
            if self.implicit_volume_statement(stmt, &mut host.volumes) {
                scope.uses_volume(0, stmt);
                continue;
            }
            match (stmt.keyword().as_str(), &stmt.body) {
                ("address", None) if floating => self.error(
                    stmt,
                    format!(
                        "{owner}: no `address` in a floating section: its address is in its header"
                    ),
                ),
                ("address", None) => match address(stmt.args()) {
                    Ok(a) => host.address = Some(a),
                    Err(message) => self.error(stmt, format!("{owner}: {message}")),
                },
                // DRBD 9 numbers its nodes; duet names them.
                ("node-id", None) => {}
                ("volume", Some(b)) => {
                    if let Some((number, volume)) = self.volume_section(stmt, b, scope, owner) {
                        host.volumes.insert(number, volume);
                    }
                }
                ("disk", Some(b)) => {
                    self.options(b, "disk", DISK_OPTIONS, &mut scope.settings, owner)
                }
                ("skip", _) => self.note(
                    stmt,
                    format!("{owner}: a `skip` section is skipped, as drbdadm does"),
                ),
                _ => self.not_carried_over(stmt, owner),
            }
        }
    }

    /// DRBD 9 `connection { host A address ...; net { } ... }`: its
    /// options count for the resource (duet has one link per replica).
    fn connection(&mut self, body: &[Stmt], scope: &mut Scope, owner: &str) {
        let owner = format!("{owner}, connection");
        for stmt in body {
            match (stmt.keyword().as_str(), &stmt.body) {
                ("host", None) => self.connection_host(stmt, scope, &owner),
                ("path", Some(b)) => {
                    for s in b {
                        match (s.keyword().as_str(), &s.body) {
                            ("host", None) => self.connection_host(s, scope, &owner),
                            _ => self.not_carried_over(s, &owner),
                        }
                    }
                }
                ("net", Some(b)) => {
                    self.options(b, "net", NET_OPTIONS, &mut scope.settings, &owner)
                }
                ("disk", Some(b)) => {
                    self.options(b, "disk", DISK_OPTIONS, &mut scope.settings, &owner)
                }
                ("volume", Some(b)) => {
                    // Per-peer options of a volume: its disk section only.
                    for s in b {
                        match (s.keyword().as_str(), &s.body) {
                            ("disk", Some(d)) => {
                                self.options(d, "disk", DISK_OPTIONS, &mut scope.settings, &owner)
                            }
                            _ => self.not_carried_over(s, &owner),
                        }
                    }
                }
                ("skip", _) => self.note(
                    stmt,
                    format!("{owner}: a `skip` section is skipped, as drbdadm does"),
                ),
                _ => self.not_carried_over(stmt, &owner),
            }
        }
    }

    /// `host NAME [address [AF] IP:PORT | port N] [via ...];`: an address
    /// fills in a host whose `on` section has none.
    fn connection_host(&mut self, stmt: &Stmt, scope: &mut Scope, owner: &str) {
        let args = stmt.args();
        let Some(name) = args.first() else {
            self.error(stmt, format!("{owner}: `host` without a name"));
            return;
        };
        let rest = args.get(1..).unwrap_or(&[]);
        if rest.first().map(|w| keyword(&w.text)).as_deref() != Some("address") {
            return;
        }
        let end = rest
            .iter()
            .position(|w| keyword(&w.text) == "via")
            .unwrap_or(rest.len());
        match address(rest.get(1..end).unwrap_or(&[])) {
            Ok(a) => scope
                .peer_addresses
                .push((name.text.clone(), a, Place::of(stmt))),
            Err(message) => self.error(stmt, format!("{owner}: {message}")),
        }
    }

    /// DRBD 9 `connection-mesh { hosts A B C; net { } }`.
    fn connection_mesh(&mut self, body: &[Stmt], scope: &mut Scope, owner: &str) {
        let owner = format!("{owner}, connection-mesh");
        for stmt in body {
            match (stmt.keyword().as_str(), &stmt.body) {
                // The mesh is every host with an `on` section, which is what duet does anyway.
                ("hosts", None) => {}
                ("net", Some(b)) => {
                    self.options(b, "net", NET_OPTIONS, &mut scope.settings, &owner)
                }
                _ => self.not_carried_over(stmt, &owner),
            }
        }
    }

    /// The resource with common's defaults under its own values, and the
    /// resource-level volume under each host's.
    fn finish(&mut self, spec: ResourceSpec, common: &Settings) -> DrbdResource {
        let ResourceSpec { name, place, scope } = spec;
        let mut settings = common.clone();
        settings.extend(scope.settings);
        let number = self.single_volume(&name, &scope.volume_numbers);
        let defaults = scope.volumes.get(&number).cloned().unwrap_or_default();
        let mut hosts: Vec<DrbdHost> = scope
            .hosts
            .into_iter()
            .map(|h| host(h, number, &defaults))
            .collect();
        self.peer_addresses(&name, &mut hosts, &scope.peer_addresses);
        let get = |s: Setting| settings.get(&s).cloned();
        DrbdResource {
            name,
            file: place.file.to_string(),
            line: place.line,
            protocol: get(Setting::Protocol).and_then(|p| p.chars().next()),
            hosts,
            after_sb_0pri: get(Setting::AfterSb0pri),
            after_sb_1pri: get(Setting::AfterSb1pri),
            after_sb_2pri: get(Setting::AfterSb2pri),
            on_io_error: get(Setting::OnIoError),
            rate: get(Setting::Rate),
            c_max_rate: get(Setting::CMaxRate),
            c_min_rate: get(Setting::CMinRate),
            c_fill_target: get(Setting::CFillTarget),
            verify_alg: get(Setting::VerifyAlg),
            csums_alg: get(Setting::CsumsAlg),
            shared_secret: get(Setting::SharedSecret),
            cram_hmac_alg: get(Setting::CramHmacAlg),
        }
    }

    /// The one volume number a resource uses (0 if it names none); more
    /// than one is an error at the first mention of the second.
    fn single_volume(&mut self, resource: &str, numbers: &[(u32, Place)]) -> u32 {
        let Some((first, _)) = numbers.first() else {
            return 0;
        };
        if let Some((_, second)) = numbers.get(1) {
            let list: Vec<String> = numbers.iter().map(|(n, _)| n.to_string()).collect();
            let message = format!(
                "resource {resource} has volumes {}: duet replicates one disk per replica; make each volume a resource of its own",
                list.join(", ")
            );
            self.error_at(second, message);
        }
        *first
    }

    fn peer_addresses(
        &mut self,
        resource: &str,
        hosts: &mut [DrbdHost],
        addresses: &[(String, SocketAddr, Place)],
    ) {
        for (name, address, place) in addresses {
            match hosts.iter_mut().find(|h| h.name.as_ref() == Some(name)) {
                Some(host) => {
                    host.address.get_or_insert(*address);
                }
                None => self.error_at(
                    place,
                    format!("resource {resource}: connection names host {name}, which has no `on` section"),
                ),
            }
        }
    }
}

fn host(spec: HostSpec, number: u32, defaults: &Volume) -> DrbdHost {
    let HostSpec {
        name,
        place,
        address,
        mut volumes,
    } = spec;
    let volume = volumes.remove(&number).unwrap_or_default().or(defaults);
    DrbdHost {
        name,
        line: place.line,
        device: volume.device,
        disk: volume.disk,
        address,
        meta_disk: volume.meta_disk,
    }
}

/// A protocol letter, in either case.
fn protocol(text: &str) -> Option<char> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if matches!(c.to_ascii_uppercase(), 'A' | 'B' | 'C') => {
            Some(c.to_ascii_uppercase())
        }
        _ => None,
    }
}

/// `device /dev/drbd1;`, `device minor 1;` or `device /dev/drbd1 minor 1;`.
fn device(args: &[Word]) -> Result<String, String> {
    let texts: Vec<&str> = args.iter().map(|w| w.text.as_str()).collect();
    match texts.as_slice() {
        [path] if keyword(path) != "minor" => Ok(path.to_string()),
        [m, n] if keyword(m) == "minor" => minor(n).map(|n| format!("/dev/drbd{n}")),
        [path, m, n] if keyword(m) == "minor" => {
            let n = minor(n)?;
            // As drbdadm: the name and the number must not disagree.
            match path.strip_prefix("/dev/drbd").map(str::parse::<u32>) {
                Some(Ok(named)) if named != n => Err(format!(
                    "device {path} minor {n}: the minor must match the name (/dev/drbd{n})"
                )),
                _ => Ok(path.to_string()),
            }
        }
        _ => Err(format!(
            "`device {}`: expected device /dev/drbdN; device minor N; or device /dev/drbdN minor N;",
            texts.join(" ")
        )),
    }
}

fn minor(text: &str) -> Result<u32, String> {
    text.parse::<u32>()
        .map_err(|_| format!("minor `{text}` is not a number"))
}

fn disk(args: &[Word]) -> Result<String, String> {
    match args {
        [path] => Ok(path.text.clone()),
        _ => Err(format!(
            "`disk {}`: expected disk /dev/PATH;",
            join(args, " ")
        )),
    }
}

/// `internal`, `/dev/sdc1`, `/dev/sdc1 [0]` or `/dev/sdc1[0]`.
fn meta_disk(args: &[Word]) -> Result<MetaDisk, String> {
    let usage = || {
        format!(
            "`meta-disk {}`: expected meta-disk internal; meta-disk /dev/PATH; or meta-disk /dev/PATH [INDEX];",
            join(args, " ")
        )
    };
    let Some((first, rest)) = args.split_first() else {
        return Err(usage());
    };
    if rest.is_empty() && keyword(&first.text) == "internal" {
        return Ok(MetaDisk::Internal);
    }
    // DRBD's scanner cuts `[` and `]` out of words, so the index may be
    // glued to the path or spaced out: join the words back.
    let rest = join(rest, "");
    if !rest.is_empty() && !rest.starts_with('[') {
        return Err(usage());
    }
    let whole = format!("{}{rest}", first.text);
    let Some((path, index)) = whole.split_once('[') else {
        return Ok(MetaDisk::External {
            path: whole,
            index: None,
        });
    };
    let index = index
        .strip_suffix(']')
        .and_then(|i| i.parse::<u32>().ok())
        .ok_or_else(usage)?;
    if path.is_empty() {
        return Err(usage());
    }
    Ok(MetaDisk::External {
        path: path.to_string(),
        index: Some(index),
    })
}

/// `flexible-meta-disk internal;` or `flexible-meta-disk /dev/PATH;`: no index.
fn flexible_meta_disk(args: &[Word]) -> Result<MetaDisk, String> {
    match args {
        [w] if keyword(&w.text) == "internal" => Ok(MetaDisk::Internal),
        [w] if !w.text.contains('[') => Ok(MetaDisk::External {
            path: w.text.clone(),
            index: None,
        }),
        _ => Err(format!(
            "`flexible-meta-disk {}`: expected flexible-meta-disk internal; or flexible-meta-disk /dev/PATH;",
            join(args, " ")
        )),
    }
}

/// `IP:PORT`, `ipv4 IP:PORT` or `ipv6 [IP]:PORT`.
fn address(args: &[Word]) -> Result<SocketAddr, String> {
    let family = args.first().map(|w| keyword(&w.text));
    let (family, rest) = match family.as_deref() {
        Some(f @ ("ipv4" | "ipv6" | "ssocks" | "sdp" | "sci")) => {
            (Some(f), args.get(1..).unwrap_or(&[]))
        }
        _ => (None, args),
    };
    if let Some(f @ ("ssocks" | "sdp" | "sci")) = family {
        return Err(format!(
            "address family {f} cannot be carried over: duet replicates over TCP (ipv4 or ipv6)"
        ));
    }
    // DRBD's scanner cuts `:`, `[` and `]` out of words: `1.2.3.4 : 7789`
    // is the same address.
    let text = join(rest, "");
    let parsed: SocketAddr = text.parse().map_err(|_| {
        format!("`{text}` is not an address: expected IP:PORT, e.g. 203.0.113.1:7789 or ipv6 [2001:db8::1]:7789")
    })?;
    match (family, parsed) {
        (Some("ipv4"), SocketAddr::V6(_)) => {
            Err(format!("`ipv4 {text}`: an IPv6 address needs `ipv6`"))
        }
        (Some("ipv6"), SocketAddr::V4(_)) => {
            Err(format!("`ipv6 {text}`: an IPv4 address needs `ipv4`"))
        }
        _ if parsed.port() == 0 => Err(format!("`{text}`: port 0 cannot be listened on")),
        _ => Ok(parsed),
    }
}

#[cfg(test)]
#[path = "drbdconf_tests.rs"]
mod tests;
