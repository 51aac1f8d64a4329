//! One group on this node, as a pure state machine: told the cluster view,
//! the results of resource operations and the time, it says which resource
//! to start, stop or check next and what to announce to the other nodes.
//!
//! Safety comes first: the group starts here only when no other live node
//! announces it active, after a claim the others had time to hear when
//! another node could race for it; a stop that fails leaves the group
//! Blocked here (still announced active) so no other node starts it over
//! resources that may still be up.

use std::time::Duration;

use crate::config::Group;
use crate::resources::placement::{self, NodeView, Phase, Preferences};
use crate::types::{NodeId, Timestamp};

/// Names one operation, so a late result of an earlier one is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub me: NodeId,
    pub prefs: Preferences,
    /// Per resource, in start order: how the journal names it.
    pub labels: Vec<String>,
    /// Every node's name by id, for the journal's reasons.
    pub node_names: Vec<String>,
    pub start_timeouts: Vec<Duration>,
    pub stop_timeouts: Vec<Duration>,
    pub monitor_interval: Duration,
    pub failure_threshold: u32,
    /// How long a claim is announced before starting, when another live
    /// node could start the group too: long enough for every node to hear
    /// it (a few keepalives).
    pub claim_wait: Duration,
}

/// How long a check of a resource may take.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(20);

impl Settings {
    pub fn new(g: &Group, me: NodeId, keepalive: Duration, node_names: Vec<String>) -> Settings {
        Settings {
            me,
            prefs: Preferences {
                nodes: g.nodes.clone(),
                auto_failback: g.auto_failback,
                stickiness: g.stickiness,
                moved_to: None,
                stopped: false,
            },
            labels: g.resources.iter().map(|r| r.label()).collect(),
            node_names,
            start_timeouts: g.resources.iter().map(|r| r.start_timeout).collect(),
            stop_timeouts: g.resources.iter().map(|r| r.stop_timeout).collect(),
            monitor_interval: g.monitor_interval,
            failure_threshold: g.failure_threshold.max(1),
            claim_wait: keepalive * 3,
        }
    }
}

/// The group's state on this node, as `duetctl` and D-Bus name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// At start: checking which resources are up here from before (a
    /// daemon that crashed or was killed leaves them), one by one.
    Probing,
    Stopped,
    /// Announced, waiting for the others to hear before starting.
    Claiming {
        since: Timestamp,
    },
    /// Starting resource `step` (those before it are up).
    Starting {
        step: usize,
    },
    Running,
    /// Stopping resource `step` (those after it are down), then `then`.
    Stopping {
        step: usize,
        then: Then,
    },
    /// Failed here beyond the threshold: stopped, and not eligible here
    /// until cleaned up.
    Failed {
        reason: String,
    },
    /// A stop failed: resources may still be up. Announced active (no
    /// other node takes the group over them) until an administrator acts.
    Blocked {
        reason: String,
    },
}

/// What follows a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Stopped: the group runs nowhere.
    Idle,
    /// Stopped so that another live node can start it ("moving").
    Away,
    /// Restart in place from this resource up.
    Restart(usize),
    /// A start or check failed past the threshold: Failed.
    Fail,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Probing | State::Stopped => "stopped",
            State::Claiming { .. } | State::Starting { .. } => "starting",
            State::Running => "running",
            State::Stopping {
                then: Then::Away, ..
            } => "moving",
            State::Stopping { .. } => "stopping",
            State::Failed { .. } | State::Blocked { .. } => "failed",
        }
    }

    pub fn phase(&self) -> Phase {
        match self {
            // What a probe may still find up from before counts as held.
            State::Probing => Phase::Stopping,
            State::Stopped | State::Failed { .. } => Phase::Idle,
            State::Claiming { .. } => Phase::Claiming,
            State::Stopping { .. } => Phase::Stopping,
            _ => Phase::Active,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Start {
        op: OpId,
        index: usize,
    },
    Stop {
        op: OpId,
        index: usize,
    },
    Monitor {
        op: OpId,
        index: usize,
    },
    /// Fence this dead node before the group may start here: it may still
    /// run the group. Asked once per node until the view changes.
    Fence {
        node: NodeId,
    },
    /// Tell the other nodes (in heartbeats) what this node does with the
    /// group; sent again whenever it changes.
    Announce {
        phase: Phase,
        eligible: bool,
    },
    /// For the journal and D-Bus.
    Transition {
        from: &'static str,
        to: &'static str,
        reason: String,
    },
}

/// The operation in flight, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Start(usize),
    Stop(usize),
    Monitor(usize),
}

pub struct GroupCore {
    s: Settings,
    state: State,
    /// Which resources are up here (started and not stopped since).
    up: Vec<bool>,
    failures: Vec<u32>,
    inflight: Option<(OpId, Op, Timestamp)>,
    next_op: u64,
    next_monitor: Option<Timestamp>,
    /// A stop was asked while a start ran: it follows the start.
    stop_after: Option<(Then, String)>,
    /// Why the stop under way began: the reason of the state it ends in.
    stop_why: String,
    announced: Option<(Phase, bool)>,
    /// The dead nodes this core asked to fence, while they stay unclean.
    fence_asked: Vec<NodeId>,
    /// The last view placed the group here (with quorum): a restart in
    /// place goes on only while it does.
    placed_here: bool,
}

impl GroupCore {
    pub fn new(s: Settings) -> GroupCore {
        let n = s.start_timeouts.len();
        GroupCore {
            s,
            state: State::Probing,
            up: vec![false; n],
            failures: vec![0; n],
            inflight: None,
            next_op: 0,
            next_monitor: None,
            stop_after: None,
            stop_why: String::new(),
            announced: None,
            fence_asked: Vec::new(),
            placed_here: false,
        }
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn up(&self) -> &[bool] {
        &self.up
    }

    pub fn failures(&self) -> &[u32] {
        &self.failures
    }

    pub fn eligible(&self) -> bool {
        !matches!(self.state, State::Failed { .. } | State::Blocked { .. })
    }

    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// The administrators' wish: stopped everywhere, or moved to a node
    /// (None: where the preferences say).
    pub fn set_intent(&mut self, stopped: bool, moved_to: Option<NodeId>) {
        self.s.prefs.stopped = stopped;
        self.s.prefs.moved_to = moved_to;
    }

    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let claim = match self.state {
            State::Claiming { since } => Some(Timestamp(since.0 + self.s.claim_wait)),
            _ => None,
        };
        let op = self.inflight.map(|(_, _, deadline)| deadline);
        let monitor = match (&self.state, self.inflight) {
            (State::Running, None) if !self.up.is_empty() => self.next_monitor,
            _ => None,
        };
        [claim, op, monitor].into_iter().flatten().min()
    }

    /// The cluster as this node sees it now (and the time): decides
    /// whether to start, stop or wait.
    pub fn on_view(&mut self, view: &[NodeView], quorate: bool, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        let target = placement::target(&self.s.prefs, view, quorate);
        let me = self.s.me;
        self.placed_here = target == Some(me);
        let others: Vec<&NodeView> = view.iter().filter(|v| v.id != me && v.alive).collect();
        let other_active = others.iter().any(|v| v.phase.holds());
        let better_claim = others
            .iter()
            .any(|v| v.phase == Phase::Claiming && self.ranks_before(v.id));
        let unclean: Vec<NodeId> = view
            .iter()
            .filter(|v| v.id != me && !v.alive && !v.clean)
            .map(|v| v.id)
            .collect();
        let stopped = self.s.prefs.stopped;
        let why_not = || match target {
            None if stopped => "stopped by an administrator".to_string(),
            None if !quorate => "no quorum".to_string(),
            None => "no node can run it".to_string(),
            Some(t) => format!("moving to {}", self.node_name(t)),
        };
        match self.state.clone() {
            State::Probing if self.inflight.is_none() => {
                if self.up.is_empty() {
                    self.state = State::Stopped;
                } else {
                    self.issue(Op::Monitor(0), now, &mut out);
                }
            }
            State::Stopped if target == Some(me) && !other_active && !better_claim => {
                if !unclean.is_empty() {
                    self.ask_fence(&unclean, &mut out);
                } else if others.iter().any(|v| self.s.prefs.nodes.contains(&v.id)) {
                    self.set(State::Claiming { since: now }, "claiming", &mut out);
                } else {
                    let from = view
                        .iter()
                        .find(|v| v.id != me && !v.alive && v.phase.holds())
                        .map(|v| format!("taking over from {}, dead", self.node_name(v.id)));
                    let why = from.unwrap_or_else(|| "no other node can have it".to_string());
                    self.start_from(0, now, &why, &mut out);
                }
            }
            State::Claiming { .. }
                if target != Some(me) || other_active || better_claim || !unclean.is_empty() =>
            {
                let reason = if other_active {
                    "another node has it".to_string()
                } else if !unclean.is_empty() {
                    "a dead node must be fenced first".to_string()
                } else if better_claim {
                    "a more preferred node claims it".to_string()
                } else {
                    why_not()
                };
                self.set(State::Stopped, &reason, &mut out);
            }
            State::Claiming { since } if now.since(since) >= self.s.claim_wait => {
                self.start_from(0, now, "claimed", &mut out);
            }
            State::Starting { .. } | State::Running if target != Some(me) => {
                let then = if target.is_some() {
                    Then::Away
                } else {
                    Then::Idle
                };
                self.stop_all(then, &why_not(), now, &mut out);
            }
            _ => {}
        }
        self.fence_asked.retain(|n| unclean.contains(n));
        self.announce(&mut out);
        out
    }

    /// Asks to fence the unclean dead nodes not asked for yet.
    fn ask_fence(&mut self, unclean: &[NodeId], out: &mut Vec<Action>) {
        for &node in unclean {
            if !self.fence_asked.contains(&node) {
                self.fence_asked.push(node);
                out.push(Action::Fence { node });
            }
        }
    }

    fn node_name(&self, id: NodeId) -> String {
        self.s
            .node_names
            .get(usize::from(id.0))
            .cloned()
            .unwrap_or_else(|| format!("node {}", id.0))
    }

    /// Whether `other` comes before this node in the group's preferences.
    fn ranks_before(&self, other: NodeId) -> bool {
        let pos = |id| self.s.prefs.nodes.iter().position(|n| *n == id);
        match (pos(other), pos(self.s.me)) {
            (Some(o), Some(m)) => o < m,
            (Some(_), None) => true,
            _ => false,
        }
    }

    /// The result of an operation.
    pub fn on_done(&mut self, op: OpId, result: Result<(), String>, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        let Some((id, what, _)) = self.inflight else {
            return out;
        };
        if id != op {
            return out;
        }
        self.inflight = None;
        self.finished(what, result, now, &mut out);
        self.announce(&mut out);
        out
    }

    /// The time: operations past their timeout fail; checks fall due.
    pub fn on_tick(&mut self, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some((_, what, deadline)) = self.inflight
            && now >= deadline
        {
            self.inflight = None;
            let limit = match what {
                Op::Start(i) => self.s.start_timeouts[i],
                Op::Stop(i) => self.s.stop_timeouts[i],
                Op::Monitor(_) => MONITOR_TIMEOUT,
            };
            let e = format!("timed out after {:.1} s", limit.as_secs_f64());
            self.finished(what, Err(e), now, &mut out);
        }
        if self.state == State::Running
            && self.inflight.is_none()
            && !self.up.is_empty()
            && self.next_monitor.is_some_and(|t| now >= t)
        {
            self.issue(Op::Monitor(0), now, &mut out);
        }
        self.announce(&mut out);
        out
    }

    /// `duetctl cleanup`: forget failures; a Failed group may run here
    /// again, a Blocked one tries its stop again.
    pub fn cleanup(&mut self, now: Timestamp) -> Vec<Action> {
        let mut out = Vec::new();
        self.failures.iter_mut().for_each(|f| *f = 0);
        match self.state {
            State::Failed { .. } => self.set(State::Stopped, "cleaned up", &mut out),
            State::Blocked { .. } if self.inflight.is_none() => {
                self.stop_all(Then::Idle, "cleaned up: stopping again", now, &mut out)
            }
            _ => {}
        }
        self.announce(&mut out);
        out
    }

    fn finished(
        &mut self,
        what: Op,
        result: Result<(), String>,
        now: Timestamp,
        out: &mut Vec<Action>,
    ) {
        match (what, result) {
            (Op::Monitor(i), r) if self.state == State::Probing => {
                self.probed(i, r.is_ok(), now, out)
            }
            (Op::Start(i), Ok(())) => {
                self.up[i] = true;
                if let Some((then, why)) = self.stop_after.take() {
                    self.stop_all(then, &why, now, out);
                } else if i + 1 < self.up.len() {
                    self.issue(Op::Start(i + 1), now, out);
                    self.state = State::Starting { step: i + 1 };
                } else {
                    self.next_monitor = Some(Timestamp(now.0 + self.s.monitor_interval));
                    self.set(State::Running, "all resources started", out);
                }
            }
            (Op::Start(i), Err(e)) => {
                self.stop_after = None;
                // A failed start may have left part of it up: stop it too.
                self.up[i] = true;
                let then = self.count_failure(i);
                let why = format!("{} failed to start: {e}", self.label(i));
                self.stop_all(then, &why, now, out);
            }
            (Op::Stop(i), Ok(())) => {
                self.up[i] = false;
                self.stopped_one(i, now, out);
            }
            (Op::Stop(i), Err(e)) => {
                let reason = format!(
                    "{} failed to stop: {e}; the group stays blocked on this node until `duetctl cleanup`",
                    self.label(i)
                );
                self.set(
                    State::Blocked {
                        reason: reason.clone(),
                    },
                    &reason,
                    out,
                );
            }
            (Op::Monitor(i), Ok(())) => {
                if i + 1 < self.up.len() {
                    self.issue(Op::Monitor(i + 1), now, out);
                } else {
                    self.next_monitor = Some(Timestamp(now.0 + self.s.monitor_interval));
                }
            }
            (Op::Monitor(i), Err(e)) => {
                let then = match self.count_failure(i) {
                    Then::Fail => Then::Fail,
                    _ => Then::Restart(i),
                };
                let why = format!("{} failed its check: {e}", self.label(i));
                self.stop_all(then, &why, now, out);
            }
        }
    }

    /// A probe's answer: resource `i` is up here or not. Whatever is found
    /// up is stopped (in reverse): this node cannot know it still belongs
    /// here, and the placement starts it again where it does.
    fn probed(&mut self, i: usize, up: bool, now: Timestamp, out: &mut Vec<Action>) {
        self.up[i] = up;
        if i + 1 < self.up.len() {
            self.issue(Op::Monitor(i + 1), now, out);
            return;
        }
        self.state = State::Stopped;
        if let Some(top) = self.up.iter().rposition(|u| *u) {
            let found: Vec<&str> = (0..self.up.len())
                .filter(|&j| self.up[j])
                .map(|j| self.label(j))
                .collect();
            let why = format!("found up from before: {}", found.join(", "));
            // Resources start in order: those below one found up were
            // started too, whatever their check said (a check can fail
            // to tell), and stopping one that is down does no harm.
            self.up[..top].fill(true);
            self.stop_all(Then::Idle, &why, now, out);
        }
    }

    /// One more failure of resource `i`: restart, or fail past the
    /// threshold.
    fn count_failure(&mut self, i: usize) -> Then {
        self.failures[i] += 1;
        if self.failures[i] >= self.s.failure_threshold {
            Then::Fail
        } else {
            Then::Idle
        }
    }

    fn label(&self, i: usize) -> &str {
        &self.s.labels[i]
    }

    /// Stops from the topmost resource up here down, then `then`.
    fn stop_all(&mut self, then: Then, why: &str, now: Timestamp, out: &mut Vec<Action>) {
        if matches!(self.inflight, Some((_, Op::Start(_), _))) {
            self.stop_after = Some((then, why.to_string()));
            return;
        }
        // A check in flight is simply forgotten.
        self.inflight = None;
        let lowest = match then {
            Then::Restart(i) => i,
            _ => 0,
        };
        match (lowest..self.up.len()).rev().find(|&i| self.up[i]) {
            Some(top) => {
                self.stop_why = why.to_string();
                self.issue(Op::Stop(top), now, out);
                self.set(State::Stopping { step: top, then }, why, out);
            }
            None => {
                self.state = State::Stopping { step: lowest, then };
                self.after_stop(then, why, now, out);
            }
        }
    }

    fn stopped_one(&mut self, i: usize, now: Timestamp, out: &mut Vec<Action>) {
        let State::Stopping { then, .. } = self.state else {
            return;
        };
        let lowest = match then {
            Then::Restart(r) => r,
            _ => 0,
        };
        match (lowest..i).rev().find(|&j| self.up[j]) {
            Some(next) => {
                self.issue(Op::Stop(next), now, out);
                self.state = State::Stopping { step: next, then };
            }
            None => {
                let why = std::mem::take(&mut self.stop_why);
                self.after_stop(then, &why, now, out)
            }
        }
    }

    fn after_stop(&mut self, then: Then, why: &str, now: Timestamp, out: &mut Vec<Action>) {
        match then {
            Then::Idle | Then::Away => self.set(State::Stopped, why, out),
            Then::Fail => self.set(
                State::Failed {
                    reason: why.to_string(),
                },
                why,
                out,
            ),
            // Quorum (or the placement) went while it stopped: what is
            // still up below goes too, instead of the restart.
            Then::Restart(_) if !self.placed_here => {
                let why = format!("{why}; not restarted here");
                self.stop_all(Then::Idle, &why, now, out)
            }
            Then::Restart(i) => self.start_from(i, now, "restarting in place", out),
        }
    }

    fn start_from(&mut self, i: usize, now: Timestamp, why: &str, out: &mut Vec<Action>) {
        if i >= self.up.len() {
            self.next_monitor = Some(Timestamp(now.0 + self.s.monitor_interval));
            self.set(State::Running, why, out);
            return;
        }
        self.issue(Op::Start(i), now, out);
        self.set(State::Starting { step: i }, why, out);
    }

    fn issue(&mut self, what: Op, now: Timestamp, out: &mut Vec<Action>) {
        self.next_op += 1;
        let op = OpId(self.next_op);
        let (limit, action) = match what {
            Op::Start(index) => (self.s.start_timeouts[index], Action::Start { op, index }),
            Op::Stop(index) => (self.s.stop_timeouts[index], Action::Stop { op, index }),
            Op::Monitor(index) => (MONITOR_TIMEOUT, Action::Monitor { op, index }),
        };
        self.inflight = Some((op, what, Timestamp(now.0 + limit)));
        out.push(action);
    }

    fn set(&mut self, state: State, reason: &str, out: &mut Vec<Action>) {
        let from = self.state.name();
        let changed = std::mem::discriminant(&self.state) != std::mem::discriminant(&state);
        self.state = state;
        if changed {
            out.push(Action::Transition {
                from,
                to: self.state.name(),
                reason: reason.to_string(),
            });
        }
    }

    fn announce(&mut self, out: &mut Vec<Action>) {
        let now = (self.state.phase(), self.eligible());
        if self.announced != Some(now) {
            self.announced = Some(now);
            out.push(Action::Announce {
                phase: now.0,
                eligible: now.1,
            });
        }
    }
}
