//! `[fencing]`: the command that powers off (fences) a node before
//! another takes its groups over.

use std::time::Duration;

use super::Check;
use crate::config::locate::KeyPath;
use crate::config::model::Fencing;
use crate::config::raw::RawFencing;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);
const COMMAND_HINT: &str = "an absolute path of a program that fences the node named last on its command line, e.g. \"/usr/local/sbin/fence-ipmi\"";

impl Check {
    pub(super) fn fencing(&mut self, raw: Option<RawFencing>, key: &KeyPath) -> Option<Fencing> {
        let raw = raw?;
        let Some(text) = raw.command.as_deref() else {
            self.error(
                key.key("command"),
                "missing: [fencing] needs a command",
                COMMAND_HINT,
            );
            return None;
        };
        let command = self.absolute_path(&key.key("command"), text, COMMAND_HINT);
        let timeout = self.duration(key.key("timeout"), raw.timeout.as_deref(), DEFAULT_TIMEOUT);
        let retry_delay = self.duration(
            key.key("retry-delay"),
            raw.retry_delay.as_deref(),
            DEFAULT_RETRY_DELAY,
        );
        if timeout.is_some_and(|t| t.is_zero()) {
            self.error(
                key.key("timeout"),
                "timeout must be longer than 0",
                "e.g. \"60s\"",
            );
            return None;
        }
        Some(Fencing {
            command: command?,
            args: raw.args.unwrap_or_default(),
            timeout: timeout?,
            retry_delay: retry_delay?,
        })
    }
}
