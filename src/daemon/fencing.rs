//! Runs the configured fence command for a dead node that may still hold
//! groups, before this node takes them over: attempts with a timeout, and
//! after a failure waits and tries again, for as long as the node stays
//! dead. A group never starts over an unfenced node (group.rs).
//!
//! Without a command, in a cluster where a node that is cut off loses
//! quorum (a witness, or three or more nodes), the dead node counts as
//! fenced a delay after it was found dead: the time it has, having lost
//! quorum about when the others lost it, to stop its groups. (Without
//! quorum to lose, as in a plain two-node cluster, no wait makes the other
//! side stop, and none is made.)

use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::Fencing;
use crate::daemon::groups::Done;
use crate::types::{NodeId, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fence {
    /// Nothing asked (alive, or no group needs it).
    None,
    Running {
        attempt: u32,
        /// Unique per command run: a result from before the node came
        /// back and died again must not count for the new death.
        id: u64,
    },
    /// Failed; the next attempt is due then.
    Retry { attempt: u32, at: Timestamp },
    /// No command: waiting until the node has had the time to stop.
    Waiting { until: Timestamp },
    /// Fenced since it died: it holds nothing any more.
    Done,
}

pub struct Fencer {
    config: Option<Fencing>,
    /// Without a command: how long a dead node gets to stop its groups.
    delay: Option<Duration>,
    names: Vec<String>,
    nodes: Vec<Fence>,
    done: mpsc::UnboundedSender<Done>,
    runs: u64,
}

impl Fencer {
    pub fn new(
        config: Option<Fencing>,
        delay: Option<Duration>,
        names: Vec<String>,
        done: mpsc::UnboundedSender<Done>,
    ) -> Fencer {
        let nodes = vec![Fence::None; names.len()];
        let delay = if config.is_some() { None } else { delay };
        Fencer {
            config,
            delay,
            names,
            nodes,
            done,
            runs: 0,
        }
    }

    /// Without a fence command, deadtime alone is trusted.
    pub fn enabled(&self) -> bool {
        self.config.is_some() || self.delay.is_some()
    }

    pub fn fenced(&self, node: NodeId) -> bool {
        self.nodes.get(usize::from(node.0)) == Some(&Fence::Done)
    }

    /// The node is alive: a later death needs a fence again.
    pub fn alive(&mut self, node: NodeId) {
        if let Some(f) = self.nodes.get_mut(usize::from(node.0)) {
            // A running attempt's result is still awaited; it is ignored.
            *f = Fence::None;
        }
    }

    /// A group wants `node` fenced before it starts here.
    pub fn request(&mut self, node: NodeId, why: &str, now: Timestamp) {
        if self.nodes.get(usize::from(node.0)) != Some(&Fence::None) {
            return;
        }
        let name = self.name(node).to_string();
        if let Some(delay) = self.delay {
            tracing::warn!(
                node = %name,
                "no fence command: {:.1} s for {name}, which lost quorum, to stop its groups before {why}",
                delay.as_secs_f64()
            );
            self.nodes[usize::from(node.0)] = Fence::Waiting {
                until: Timestamp(now.0 + delay),
            };
            return;
        }
        tracing::warn!(node = %name, "fencing {name} before {why}");
        self.attempt(node, 1);
    }

    /// An attempt's result.
    pub fn finished(&mut self, node: NodeId, id: u64, result: Result<(), String>, now: Timestamp) {
        let Some(f) = self.nodes.get_mut(usize::from(node.0)) else {
            return;
        };
        let attempt = match *f {
            Fence::Running {
                attempt,
                id: running,
            } if running == id => attempt,
            _ => return,
        };
        let name = self
            .names
            .get(usize::from(node.0))
            .cloned()
            .unwrap_or_default();
        match result {
            Ok(()) => {
                tracing::warn!(node = %name, "{name} fenced (attempt {attempt})");
                *f = Fence::Done;
            }
            Err(e) => {
                let delay = self
                    .config
                    .as_ref()
                    .map(|c| c.retry_delay)
                    .unwrap_or_default();
                tracing::error!(
                    node = %name,
                    "fencing {name} failed (attempt {attempt}): {e}; its groups stay stopped here, next try in {:.1} s",
                    delay.as_secs_f64()
                );
                *f = Fence::Retry {
                    attempt: attempt + 1,
                    at: Timestamp(now.0 + delay),
                };
            }
        }
    }

    /// Starts the retries that are due; ends the waits that are over.
    pub fn tick(&mut self, now: Timestamp) {
        for i in 0..self.nodes.len() {
            match self.nodes[i] {
                Fence::Retry { attempt, at } if now >= at => {
                    self.attempt(NodeId(i as u16), attempt);
                }
                Fence::Waiting { until } if now >= until => self.nodes[i] = Fence::Done,
                _ => {}
            }
        }
    }

    pub fn next_wakeup(&self) -> Option<Timestamp> {
        self.nodes
            .iter()
            .filter_map(|f| match f {
                Fence::Retry { at, .. } => Some(*at),
                Fence::Waiting { until } => Some(*until),
                _ => None,
            })
            .min()
    }

    fn name(&self, node: NodeId) -> &str {
        self.names
            .get(usize::from(node.0))
            .map_or("?", |s| s.as_str())
    }

    fn attempt(&mut self, node: NodeId, attempt: u32) {
        let Some(config) = self.config.clone() else {
            return;
        };
        self.runs += 1;
        let id = self.runs;
        self.nodes[usize::from(node.0)] = Fence::Running { attempt, id };
        let name = self.name(node).to_string();
        let done = self.done.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(config.timeout, run(&config, &name)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "timed out after {:.1} s",
                    config.timeout.as_secs_f64()
                )),
            };
            let _ = done.send(Done::Fence { node, id, result });
        });
    }
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
