//! Logs go to journald with structured fields when the daemon runs under
//! systemd, to stderr otherwise.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Whether stderr is connected to the journal (systemd sets JOURNAL_STREAM
/// to stderr's device and inode for services).
fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal()
        && let Ok(journal) = tracing_journald::layer()
    {
        // Fields as they are named (NODE, GROUP, REPLICA, MESSAGE_ID), not
        // behind tracing-journald's default "F_" prefix: journalctl
        // matches and the catalog's @NODE@ use them.
        let journal = journal
            .with_syslog_identifier("duetd".into())
            .with_field_prefix(None);
        tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .init();
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
