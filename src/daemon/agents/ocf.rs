//! An OCF resource agent (the resource-agents package's IPaddr2,
//! Filesystem, apache ...): `ROOT/resource.d/PROVIDER/TYPE ACTION` with the
//! resource's parameters as OCF_RESKEY_<name> in the environment, and the
//! exit code read as the OCF resource agent API defines it
//! (`host::ocf` has the environment and the names).
//!
//! duet calls start, stop and monitor only: it does not promote, demote,
//! reload or migrate, so an agent of a promotable resource runs in its
//! unpromoted role, as a plain resource.

use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::Op;
use crate::config::OcfAgent;
use crate::host::ocf::{self, Call};

/// The most of an agent's output kept for its error message: the end is
/// what says why it failed.
const KEPT_OUTPUT: usize = 16 * 1024;

/// Runs `op` on `agent`; `timeout` is the limit the caller holds it to
/// (the agent is told it as OCF_RESKEY_CRM_meta_timeout). Dropped before
/// the end (the caller's timeout), the agent and everything it started in
/// its process group are killed.
pub async fn run(agent: &OcfAgent, op: Op, timeout: Duration) -> Result<(), String> {
    let env = ocf::environment(&Call {
        root: &agent.root,
        agent: &agent.agent,
        instance: &agent.instance,
        params: &agent.params,
        timeout,
        interval: (op == Op::Monitor).then_some(agent.monitor_interval),
    });
    let path = agent.path();
    let mut cmd = tokio::process::Command::from(ocf::command(&path, op.name(), &env));
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{} is not installed on this node (no {}; the heartbeat agents are in the \
             resource-agents package)",
            agent.agent,
            path.display()
        ),
        _ => format!("cannot run {}: {e}", path.display()),
    })?;
    // From here until it is reaped, the agent's pid is its process group's.
    let group = GroupKiller(child.id());
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let status = child.wait().await;
    group.disarm();
    let status = status.map_err(|e| format!("cannot wait for {}: {e}", path.display()))?;
    // A daemon the agent started in the background may hold the pipes
    // open: what came until the agent exited, and shortly after, is all.
    let (out, err) = (stdout.finish().await, stderr.finish().await);
    match judge(op, status) {
        Ok(None) => Ok(()),
        Ok(Some(note)) => {
            tracing::warn!(
                resource = %agent.instance,
                "{} {}: {note}",
                agent.agent,
                op.name()
            );
            Ok(())
        }
        Err(how) => {
            let said = exit_reason(&err).unwrap_or_else(|| super::script::said(&err, &out));
            Err(if said.is_empty() {
                how
            } else {
                format!("{how}: {said}")
            })
        }
    }
}

/// What an agent's exit means for `op`: Ok(None) done, Ok(Some(note)) done
/// but worth a warning, Err(what happened) in words with the code and its
/// OCF name.
pub fn judge(op: Op, status: ExitStatus) -> Result<Option<String>, String> {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(code) => judge_code(op, code),
        None => Err(match status.signal() {
            Some(signal) => format!("the agent was killed by signal {signal}"),
            None => "the agent ended without an exit code".to_string(),
        }),
    }
}

/// `judge` for an exit code.
pub fn judge_code(op: Op, code: i32) -> Result<Option<String>, String> {
    let named = |words: &str| match ocf::exit_name(code) {
        Some(name) => format!("{words} (exit {code}, {name})"),
        None => format!("{words} (exit {code})"),
    };
    match (op, code) {
        (_, 0) => Ok(None),
        // Stopped, or never started: what a stop is for.
        (Op::Stop, 7) => Ok(None),
        // Running, in a role duet does not manage: it runs.
        (Op::Start | Op::Monitor, 8) => Ok(Some(named(
            "runs in the promoted role, which duet does not manage; counted as running",
        ))),
        (Op::Start | Op::Monitor, 190 | 191) => {
            Ok(Some(named("runs degraded; counted as running")))
        }
        (Op::Monitor, 7) => Err(named("not running")),
        (Op::Start, 7) => Err(named("not running after its start")),
        (_, 1) => Err(named("failed")),
        (_, 2) => Err(named("invalid arguments")),
        (_, 3) => Err(named(&format!(
            "{} is not implemented by the agent",
            op.name()
        ))),
        (_, 4) => Err(named("insufficient privileges")),
        (_, 5) => Err(named(
            "not installed: something it needs is missing on this node",
        )),
        (_, 6) => Err(named("not configured: its parameters are wrong")),
        (_, 8 | 190 | 191) => Err(named("still running")),
        (_, 9) => Err(named("failed in the promoted role")),
        _ => Err(named("failed with an exit code outside the OCF API")),
    }
}

/// The last `ocf-exit-reason:` line an agent printed on stderr (what
/// resource-agents' ocf_exit_reason writes, and Pacemaker shows as the
/// failure's reason), without the prefix.
pub fn exit_reason(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ocf-exit-reason:"))
        .map(str::trim)
        .rfind(|r| !r.is_empty())
        .map(|r| super::script::said(r.as_bytes(), b""))
}

/// SIGKILL to the agent's process group when dropped armed: the operation
/// was given up (its timeout) while the agent ran.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            ocf::kill_group(pid);
        }
    }
}

/// One pipe of the agent, read on a task of its own into a buffer that
/// keeps the last KEPT_OUTPUT bytes.
struct Collected {
    buf: Arc<Mutex<Vec<u8>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn collect(pipe: Option<impl AsyncRead + Unpin + Send + 'static>) -> Collected {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let task = pipe.map(|mut pipe| {
        let buf = buf.clone();
        tokio::spawn(async move {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut b) = buf.lock() {
                    b.extend_from_slice(&chunk[..n]);
                    let excess = b.len().saturating_sub(KEPT_OUTPUT);
                    b.drain(..excess);
                }
            }
        })
    });
    Collected { buf, task }
}

impl Collected {
    /// What came, waiting at most OUTPUT_GRACE for the pipe's end.
    async fn finish(mut self) -> Vec<u8> {
        if let Some(task) = &mut self.task
            && tokio::time::timeout(ocf::OUTPUT_GRACE, task).await.is_ok()
        {
            self.task = None;
        }
        self.buf.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Drop for Collected {
    /// A reader left behind would wait on the pipe as long as whatever
    /// holds it lives.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_0_and_for_a_stop_also_not_running() {
        for op in [Op::Start, Op::Stop, Op::Monitor] {
            assert_eq!(judge_code(op, 0), Ok(None), "{op:?}");
        }
        assert_eq!(judge_code(Op::Stop, 7), Ok(None));
    }

    #[test]
    fn not_running_fails_a_monitor_and_a_start() {
        assert_eq!(
            judge_code(Op::Monitor, 7),
            Err("not running (exit 7, OCF_NOT_RUNNING)".to_string())
        );
        assert_eq!(
            judge_code(Op::Start, 7),
            Err("not running after its start (exit 7, OCF_NOT_RUNNING)".to_string())
        );
    }

    #[test]
    fn errors_say_what_the_code_means() {
        let cases = [
            (1, "failed (exit 1, OCF_ERR_GENERIC)"),
            (2, "invalid arguments (exit 2, OCF_ERR_ARGS)"),
            (
                3,
                "start is not implemented by the agent (exit 3, OCF_ERR_UNIMPLEMENTED)",
            ),
            (4, "insufficient privileges (exit 4, OCF_ERR_PERM)"),
            (
                5,
                "not installed: something it needs is missing on this node (exit 5, OCF_ERR_INSTALLED)",
            ),
            (
                6,
                "not configured: its parameters are wrong (exit 6, OCF_ERR_CONFIGURED)",
            ),
            (
                9,
                "failed in the promoted role (exit 9, OCF_FAILED_PROMOTED)",
            ),
            (42, "failed with an exit code outside the OCF API (exit 42)"),
        ];
        for (code, want) in cases {
            assert_eq!(judge_code(Op::Start, code), Err(want.to_string()), "{code}");
        }
        assert_eq!(
            judge_code(Op::Stop, 1),
            Err("failed (exit 1, OCF_ERR_GENERIC)".to_string())
        );
    }

    #[test]
    fn promoted_and_degraded_count_as_running_but_not_as_stopped() {
        for op in [Op::Start, Op::Monitor] {
            for code in [8, 190, 191] {
                assert!(matches!(judge_code(op, code), Ok(Some(_))), "{op:?} {code}");
            }
            assert_eq!(
                judge_code(op, 9),
                Err("failed in the promoted role (exit 9, OCF_FAILED_PROMOTED)".to_string())
            );
        }
        assert_eq!(
            judge_code(Op::Stop, 8),
            Err("still running (exit 8, OCF_RUNNING_PROMOTED)".to_string())
        );
    }

    #[test]
    fn the_exit_reason_line_is_the_reason() {
        let err =
            b"INFO: trying\nocf-exit-reason:first\nocf-exit-reason: Unable to find nic\nnoise\n";
        assert_eq!(exit_reason(err), Some("Unable to find nic".to_string()));
        assert_eq!(exit_reason(b"ERROR: no reason line\n"), None);
        assert_eq!(exit_reason(b"ocf-exit-reason:\n"), None);
    }

    #[test]
    fn a_signal_is_named() {
        use std::os::unix::process::ExitStatusExt;
        // A wait status of 9: killed by SIGKILL.
        assert_eq!(
            judge(Op::Monitor, ExitStatus::from_raw(9)),
            Err("the agent was killed by signal 9".to_string())
        );
        assert_eq!(
            judge(Op::Monitor, ExitStatus::from_raw(7 << 8)),
            judge_code(Op::Monitor, 7)
        );
    }
}
