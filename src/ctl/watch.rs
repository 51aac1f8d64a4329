//! `duetctl status --watch`: the status view, drawn again whenever duetd
//! signals a change (not on a timer). On a terminal the screen is cleared
//! and the states coloured (unless NO_COLOR is set); elsewhere each view
//! is printed after the last with a time line, which makes a recording.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::events::{now_us, rfc3339, subscribe};
use super::render;
use crate::bus::client::{self, ClientError};

/// Signals that come together (a failover changes a dozen properties)
/// make one view: wait this long for the next before drawing...
const SETTLE: Duration = Duration::from_millis(50);
/// ...but never longer than this after the first.
const MAX_SETTLE: Duration = Duration::from_millis(300);

/// Words of the states, by how well things go.
const GOOD: &[&str] = &[
    "up",
    "running",
    "uptodate",
    "connected",
    "established",
    "reachable",
    "quorate",
];
const BUSY: &[&str] = &[
    "init",
    "late",
    "starting",
    "stopping",
    "connecting",
    "syncsource",
    "synctarget",
    "pausedsync",
    "verifysource",
    "verifytarget",
    "inconsistent",
    "outdated",
    "handshake",
];
const BAD: &[&str] = &[
    "dead",
    "down",
    "failed",
    "blocked",
    "standalone",
    "diskless",
    "UNREACHABLE",
    "NOT",
];

pub fn run(bus: crate::bus::BusKind) -> u8 {
    match watch(bus) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("duetctl: {e}");
            super::cli::exit::NO_DAEMON
        }
    }
}

fn watch(bus: crate::bus::BusKind) -> Result<(), ClientError> {
    let conn = client::connect(bus)?;
    let rx = subscribe(&conn)?;
    let tty = std::io::stdout().is_terminal();
    let colour = tty && std::env::var_os("NO_COLOR").is_none();
    loop {
        let view = match client::read_status(&conn) {
            Ok(s) => render::status_table(&s),
            Err(e) => format!("{e}\n(waiting for duetd to come back)\n"),
        };
        if !draw(&view, tty, colour) {
            return Ok(());
        }
        // The bus connection ended: nothing will come any more.
        if !matches!(rx.recv(), Ok(Ok(_))) {
            return Ok(());
        }
        settle(&rx);
    }
}

/// Waits until the signals stop coming for SETTLE, at most MAX_SETTLE.
fn settle<T>(rx: &mpsc::Receiver<T>) {
    let first = Instant::now();
    while first.elapsed() < MAX_SETTLE {
        if rx.recv_timeout(SETTLE).is_err() {
            return;
        }
    }
}

/// One view; false once stdout is gone.
fn draw(view: &str, tty: bool, colour: bool) -> bool {
    let width = if tty { columns() } else { 80 };
    let now = now_us();
    let mut out = String::new();
    if tty {
        // Home, then clear: the view replaces the last one.
        out.push_str("\x1b[H\x1b[2J");
    }
    out.push_str(&format!("-- {} --\n", &rfc3339(now)[..23]));
    for line in view.lines() {
        for part in wrap(line, width) {
            let part = if colour { coloured(&part) } else { part };
            out.push_str(&part);
            out.push('\n');
        }
    }
    if !tty {
        out.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .is_ok()
}

/// The terminal's width; 80 when it cannot be told.
fn columns() -> usize {
    // SAFETY: TIOCGWINSZ fills the winsize it is given, nothing else.
    let mut ws: nix::libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { nix::libc::ioctl(1, nix::libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col >= 40 {
        usize::from(ws.ws_col)
    } else {
        80
    }
}

/// A line cut at spaces into parts of at most `width` characters, the
/// parts after the first indented by two more than the line.
pub fn wrap(line: &str, width: usize) -> Vec<String> {
    if line.chars().count() <= width {
        return vec![line.to_string()];
    }
    let indent = line.len() - line.trim_start().len() + 2;
    let mut parts = Vec::new();
    let mut current = line[..indent - 2].to_string();
    for word in line.split_whitespace() {
        let len = current.chars().count();
        let fresh = current.trim().is_empty();
        if !fresh && len + 1 + word.chars().count() > width {
            parts.push(current);
            current = " ".repeat(indent);
        } else if !fresh {
            current.push(' ');
        }
        current.push_str(word);
    }
    parts.push(current);
    parts
}

/// The state words of a line in colour: green, yellow or red. A word may
/// hold several (`crossover:up`, `uptodate/outdated`).
pub fn coloured(line: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in line.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            word.push(c);
        } else {
            out.push_str(&paint(&word));
            word.clear();
            out.push(c);
        }
    }
    out.push_str(&paint(&word));
    out
}

fn paint(word: &str) -> String {
    let code = if GOOD.contains(&word) {
        "32"
    } else if BUSY.contains(&word) {
        "33"
    } else if BAD.contains(&word) {
        "31"
    } else {
        return word.to_string();
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_wrap_at_spaces_within_the_width() {
        let line = "replica r0 primary/secondary connected established uptodate/uptodate protocol C device /dev/duet/r0 clients 1";
        let parts = wrap(line, 80);
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert!(parts.iter().all(|p| p.chars().count() <= 80), "{parts:?}");
        assert!(parts[1].starts_with("  protocol") || parts[1].starts_with("  device"));
        assert_eq!(
            parts.join(" ").split_whitespace().collect::<Vec<_>>(),
            line.split_whitespace().collect::<Vec<_>>()
        );
        // Indented lines keep their indent, and two more after a cut.
        let bar =
            "  [########............]  40.0% 120.0 MiB/s eta 0:12 and some more words to wrap";
        let parts = wrap(bar, 40);
        assert!(parts[0].starts_with("  ["), "{parts:?}");
        assert!(
            parts[1..]
                .iter()
                .all(|p| p.starts_with("    ") && p.len() <= 40),
            "{parts:?}"
        );
        assert_eq!(wrap("short", 80), vec!["short"]);
    }

    #[test]
    fn state_words_are_coloured_and_nothing_else_changes() {
        let line = "node2 dead crossover:up uptodate/outdated upstream";
        let c = coloured(line);
        assert!(c.contains("\x1b[31mdead\x1b[0m"), "{c:?}");
        assert!(c.contains("crossover:\x1b[32mup\x1b[0m"), "{c:?}");
        assert!(
            c.contains("\x1b[32muptodate\x1b[0m/\x1b[33moutdated\x1b[0m"),
            "{c:?}"
        );
        assert!(c.contains(" upstream"), "{c:?}");
        let plain: String = {
            let mut s = c.clone();
            for code in ["\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[0m"] {
                s = s.replace(code, "");
            }
            s
        };
        assert_eq!(plain, line);
    }
}
