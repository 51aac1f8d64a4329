//! Whether a dead node that may still hold groups can be trusted to hold
//! nothing any more, before this node takes them over: pure. The shell
//! runs the fence command it asks for (src/daemon/fencing.rs) and feeds
//! back the result; a group never starts over an unfenced node (group.rs).
//!
//! How a dead node becomes clean depends on what the cluster has
//! (`Means`): a fence command (attempts with retries, for as long as the
//! node stays dead); a wait, where a cut-off node loses quorum and stops
//! its groups on its own (a witness, or three or more nodes); an
//! administrator's word (`duetctl confirm-off`); or, by explicit choice,
//! deadtime alone (Heartbeat's behaviour). A plain two-node cluster has
//! none of the first two: a silent peer may be a cut link as well as a
//! crash, so nothing is taken over from it until an administrator says so.

use std::time::Duration;

use crate::types::{NodeId, Timestamp};

/// What makes a dead node clean in this cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Means {
    /// The fence command; after a failure the next attempt waits this long.
    Command { retry_delay: Duration },
    /// No command: the dead node lost quorum about when the others saw
    /// it die, and has this long to stop its groups.
    Wait(Duration),
    /// `[cluster] unfenced-takeover`: a node silent for deadtime holds
    /// nothing (a cut link makes both sides active).
    TrustDeadtime,
    /// Nothing: only an administrator's confirm-off makes it clean.
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fence {
    /// Nothing asked (alive, or no group needs it).
    Idle,
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
    /// Asked, and nothing here can fence it.
    Stuck,
    /// Fenced (or confirmed off) since it died: it holds nothing.
    Done,
}

/// Run the fence command against `node`; answer with `finished(.., id, ..)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub node: NodeId,
    pub id: u64,
    pub attempt: u32,
}

pub struct FenceCore {
    means: Means,
    names: Vec<String>,
    nodes: Vec<Fence>,
    runs: u64,
}

impl FenceCore {
    pub fn new(means: Means, names: Vec<String>) -> FenceCore {
        FenceCore {
            means,
            nodes: vec![Fence::Idle; names.len()],
            names,
            runs: 0,
        }
    }

    pub fn means(&self) -> Means {
        self.means
    }

    /// Whether `node`, dead, is known to hold nothing now.
    pub fn clean(&self, node: NodeId) -> bool {
        self.means == Means::TrustDeadtime || self.at(node) == Some(Fence::Done)
    }

    /// Why a takeover from `node` waits, while it does.
    pub fn waiting(&self, node: NodeId) -> Option<String> {
        let name = self.name(node);
        match self.at(node)? {
            Fence::Running { attempt, .. } => Some(format!("fencing {name} (attempt {attempt})")),
            Fence::Retry { attempt, .. } => {
                Some(format!("fencing {name} failed; attempt {attempt} follows"))
            }
            Fence::Waiting { .. } => Some(format!("giving {name} time to stop its groups")),
            Fence::Stuck => Some(format!(
                "{name} is silent but may still run it, and nothing can fence it (no witness, no [fencing]): \
                 `duetctl confirm-off {name}` once {name} is off"
            )),
            Fence::Idle | Fence::Done => None,
        }
    }

    /// The node is alive: a later death needs a fence again.
    pub fn alive(&mut self, node: NodeId) {
        if let Some(f) = self.nodes.get_mut(usize::from(node.0)) {
            // A running attempt's result is still awaited; it is ignored.
            *f = Fence::Idle;
        }
    }

    /// An administrator made sure the node is off (`duetctl confirm-off`):
    /// clean until it is seen alive again.
    pub fn confirm_off(&mut self, node: NodeId) {
        if let Some(f) = self.nodes.get_mut(usize::from(node.0)) {
            tracing::warn!(node = %self.names[usize::from(node.0)], "{} confirmed off by an administrator", self.names[usize::from(node.0)]);
            *f = Fence::Done;
        }
    }

    /// A group wants `node` fenced before it starts here.
    pub fn request(&mut self, node: NodeId, why: &str, now: Timestamp) -> Option<Run> {
        if self.at(node) != Some(Fence::Idle) {
            return None;
        }
        let name = self.name(node).to_string();
        let i = usize::from(node.0);
        match self.means {
            Means::Command { .. } => {
                tracing::warn!(node = %name, "fencing {name} before {why}");
                Some(self.attempt(node, 1))
            }
            Means::Wait(delay) => {
                tracing::warn!(
                    node = %name,
                    "no fence command: {:.1} s for {name}, which lost quorum, to stop its groups before {why}",
                    delay.as_secs_f64()
                );
                self.nodes[i] = Fence::Waiting {
                    until: Timestamp(now.0 + delay),
                };
                None
            }
            Means::Nothing => {
                tracing::error!(
                    node = %name,
                    "not {why}: {name} went silent and may still run it; in a two-node cluster without a witness \
                     or [fencing], a cut link looks like a crash. Run `duetctl confirm-off {name}` once it is off"
                );
                self.nodes[i] = Fence::Stuck;
                None
            }
            Means::TrustDeadtime => None,
        }
    }

    /// An attempt's result.
    pub fn finished(&mut self, node: NodeId, id: u64, result: Result<(), String>, now: Timestamp) {
        let attempt = match self.at(node) {
            Some(Fence::Running {
                attempt,
                id: running,
            }) if running == id => attempt,
            _ => return,
        };
        let name = self.name(node).to_string();
        let i = usize::from(node.0);
        match result {
            Ok(()) => {
                tracing::warn!(node = %name, "{name} fenced (attempt {attempt})");
                self.nodes[i] = Fence::Done;
            }
            Err(e) => {
                let delay = match self.means {
                    Means::Command { retry_delay } => retry_delay,
                    _ => Duration::ZERO,
                };
                tracing::error!(
                    node = %name,
                    "fencing {name} failed (attempt {attempt}): {e}; its groups stay stopped here, next try in {:.1} s",
                    delay.as_secs_f64()
                );
                self.nodes[i] = Fence::Retry {
                    attempt: attempt + 1,
                    at: Timestamp(now.0 + delay),
                };
            }
        }
    }

    /// Starts the retries that are due; ends the waits that are over.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Run> {
        let mut runs = Vec::new();
        for i in 0..self.nodes.len() {
            match self.nodes[i] {
                Fence::Retry { attempt, at } if now >= at => {
                    runs.push(self.attempt(NodeId(i as u16), attempt));
                }
                Fence::Waiting { until } if now >= until => self.nodes[i] = Fence::Done,
                _ => {}
            }
        }
        runs
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

    fn at(&self, node: NodeId) -> Option<Fence> {
        self.nodes.get(usize::from(node.0)).copied()
    }

    fn name(&self, node: NodeId) -> &str {
        self.names
            .get(usize::from(node.0))
            .map_or("?", |s| s.as_str())
    }

    fn attempt(&mut self, node: NodeId, attempt: u32) -> Run {
        self.runs += 1;
        let id = self.runs;
        self.nodes[usize::from(node.0)] = Fence::Running { attempt, id };
        Run { node, id, attempt }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["node1".into(), "node2".into()]
    }

    fn ms(t: u64) -> Timestamp {
        Timestamp::from_millis(t)
    }

    #[test]
    fn a_command_is_retried_until_it_succeeds_and_stale_results_do_not_count() {
        let means = Means::Command {
            retry_delay: Duration::from_millis(500),
        };
        let mut f = FenceCore::new(means, names());
        let n = NodeId(0);
        let run = f.request(n, "taking over web", ms(0)).expect("a run");
        assert_eq!(run.attempt, 1);
        assert!(f.request(n, "again", ms(1)).is_none(), "asked once");
        f.finished(n, run.id, Err("no answer".into()), ms(10));
        assert!(!f.clean(n));
        assert!(f.tick(ms(100)).is_empty(), "not due yet");
        let second = f.tick(ms(510));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].attempt, 2);
        // The first run's late result is ignored.
        f.finished(n, run.id, Ok(()), ms(520));
        assert!(!f.clean(n));
        f.finished(n, second[0].id, Ok(()), ms(530));
        assert!(f.clean(n));
        f.alive(n);
        assert!(!f.clean(n), "a later death needs a new fence");
    }

    #[test]
    fn without_means_a_node_stays_unclean_until_confirmed_off() {
        let mut f = FenceCore::new(Means::Nothing, names());
        let n = NodeId(0);
        assert!(f.request(n, "taking over web", ms(0)).is_none());
        assert!(!f.clean(n));
        assert!(f.tick(ms(60_000)).is_empty());
        assert!(!f.clean(n), "time alone never makes it clean");
        let why = f.waiting(n).expect("a reason");
        assert!(why.contains("confirm-off node1"), "{why}");
        f.confirm_off(n);
        assert!(f.clean(n));
        assert!(f.waiting(n).is_none());
    }

    #[test]
    fn a_wait_ends_after_its_delay_and_trusting_deadtime_is_clean_at_once() {
        let mut f = FenceCore::new(Means::Wait(Duration::from_secs(2)), names());
        let n = NodeId(1);
        assert!(f.request(n, "taking over web", ms(1000)).is_none());
        f.tick(ms(2999));
        assert!(!f.clean(n));
        assert_eq!(f.next_wakeup(), Some(ms(3000)));
        f.tick(ms(3000));
        assert!(f.clean(n));
        let trust = FenceCore::new(Means::TrustDeadtime, names());
        assert!(trust.clean(n));
    }
}
