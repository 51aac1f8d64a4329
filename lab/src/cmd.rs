//! Running host commands. The lab is test machinery: a command that must
//! work and does not is a failed test, so these panic with what ran and
//! what it said.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs and returns the output, whatever the exit status.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs and panics unless it succeeds; returns stdout.
pub fn succeed(cmd: &mut Command) -> String {
    let out = output(cmd);
    succeeded(&out, &format!("{cmd:?}"))
}

/// Panics, naming `what`, unless `out` is a success; returns its stdout.
pub fn succeeded(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and ignores failure (cleanup of what may already be gone).
pub fn quietly(cmd: &mut Command) {
    let _ = cmd.output();
}

pub fn ip(args: &[&str]) -> String {
    succeed(Command::new("ip").args(args))
}

/// Polls `probe` every 20 ms until it returns Some, or panics after
/// `timeout` naming `what`. Returns the value and the time it took.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return (v, start.elapsed());
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
