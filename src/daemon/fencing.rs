//! Runs the fence command the policy asks for (src/resources/fence.rs
//! decides when): one attempt with a timeout, its result sent back to the
//! main loop.

use std::process::Stdio;

use tokio::sync::mpsc;

use crate::config::Fencing;
use crate::daemon::groups::Done;
use crate::resources::fence::Run;

/// Starts one attempt; its result arrives as `Done::Fence`.
pub fn spawn(config: &Fencing, name: String, run: Run, done: mpsc::UnboundedSender<Done>) {
    let config = config.clone();
    tokio::spawn(async move {
        let result = match tokio::time::timeout(config.timeout, self::run(&config, &name)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {:.1} s",
                config.timeout.as_secs_f64()
            )),
        };
        let _ = done.send(Done::Fence {
            node: run.node,
            id: run.id,
            result,
        });
    });
}

/// The fence command with its arguments and the node's name last; exit 0
/// means the node is off.
async fn run(config: &Fencing, node: &str) -> Result<(), String> {
    let out = tokio::process::Command::new(&config.command)
        .args(&config.args)
        .arg(node)
        .env("DUET_FENCE_NODE", node)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", config.command.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let said = crate::daemon::agents::script::said(&out.stderr, &out.stdout);
    let how = match out.status.code() {
        Some(code) => format!("exited with {code}"),
        None => "was killed by a signal".to_string(),
    };
    Err(format!(
        "{} {how}{}",
        config.command.display(),
        if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        }
    ))
}
