//! `[fencing]`: the command that powers off (fences) a node before
//! another takes its groups over.

use std::time::Duration;

use super::Check;
use crate::config::error::Issue;
use crate::config::locate::KeyPath;
use crate::config::model::{Fencing, SelfFence};
use crate::config::raw::{RawFencing, RawSelfFence};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);
const COMMAND_HINT: &str = "an absolute path of a program that fences the node named last on its command line, e.g. \"/usr/local/sbin/fence-ipmi\"";

const SELF_FENCE_HINT: &str = "an absolute path of a program that stops this node at once, e.g. \"/usr/bin/systemctl\" with args = [\"reboot\", \"--force\", \"--force\"]";

impl Check {
    pub(super) fn self_fence(
        &mut self,
        raw: Option<RawSelfFence>,
        deadtime: Duration,
        key: &KeyPath,
    ) -> Option<SelfFence> {
        let raw = raw?;
        let Some(text) = raw.command.as_deref() else {
            self.error(
                key.key("command"),
                "missing: [self-fence] needs a command",
                SELF_FENCE_HINT,
            );
            return None;
        };
        let command = self.absolute_path(&key.key("command"), text, SELF_FENCE_HINT);
        // The others wait twice the deadtime before taking over from a
        // node that lost quorum (docs/groups.md): this must come first.
        let after = self.duration(key.key("after"), raw.after.as_deref(), deadtime * 3 / 2)?;
        // A node that keeps the witness's vote holds on for up to a
        // deadtime after losing quorum (docs/quorum.md): not a hang.
        if after <= deadtime {
            self.error(
                key.key("after"),
                format!(
                    "after ({:.1} s) must be longer than the deadtime ({:.1} s)",
                    after.as_secs_f64(),
                    deadtime.as_secs_f64()
                ),
                "between one and two deadtimes, e.g. 1.5 × deadtime (the default)",
            );
            return None;
        }
        if after >= deadtime * 2 {
            self.warnings.push(
                Issue::new(
                    key.key("after"),
                    format!(
                        "after ({:.1} s) is not shorter than twice the deadtime: the other nodes may start this node's groups before it fences itself",
                        after.as_secs_f64()
                    ),
                )
                .hint("less than twice the deadtime, e.g. 1.5 × deadtime (the default)"),
            );
        }
        Some(SelfFence {
            command: command?,
            args: raw.args.unwrap_or_default(),
            after,
        })
    }

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
