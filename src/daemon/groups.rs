//! The shell around the group cores: builds each group's view of the
//! cluster from the membership (who is alive, what each node announced),
//! runs the resource operations the cores ask for as tasks, feeds back
//! their results, and tells the membership what to announce.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::bus::{GroupStatus, ResourceStatus};
use crate::config::{Config, Group};
use crate::daemon::agents::{self, Host, Op};
use crate::daemon::fencing::Fencer;
use crate::daemon::intents;
use crate::membership::node_state::{GroupIntent, GroupState, NodeState};
use crate::membership::{Membership, PeerState};
use crate::resources::group::{Action, GroupCore, OpId, Settings, State};
use crate::resources::intent::Intent;
use crate::resources::placement::{NodeView, Phase};
use crate::types::{NodeId, Timestamp};

/// A finished resource operation or fence attempt, back from its task.
pub enum Done {
    Op {
        group: usize,
        op: OpId,
        result: Result<(), String>,
    },
    Fence {
        node: NodeId,
        /// Which command run (Fencer).
        id: u64,
        result: Result<(), String>,
    },
}

/// The last transition of a group, for status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transition {
    pub to: String,
    pub reason: String,
    /// From leaving Stopped (or Running) to settling, when it settled.
    pub took: Option<Duration>,
}

struct Running {
    group: Group,
    core: GroupCore,
    last: Transition,
    /// When the current start or stop sequence began, and why.
    since: Option<(Timestamp, String)>,
    /// The administrators' newest wish for it, agreed through heartbeats.
    intent: Intent,
}

/// An administrator's wish for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wish {
    Start,
    Stop,
    /// Run it on this node (by name) while the node can.
    Move(String),
}

pub struct Groups {
    local: NodeId,
    node_names: Vec<String>,
    groups: Vec<Running>,
    host: Host,
    done: mpsc::UnboundedSender<Done>,
    standby: bool,
    /// Exactly two nodes: a survivor alone has no majority, yet runs the
    /// groups, as Heartbeat did (corosync's two_node). What keeps both
    /// from running them when only the link between them broke is a
    /// tie-breaker and fencing, which a two-node cluster should have.
    two_node: bool,
    /// Two nodes and ping nodes: a survivor that reaches none of them
    /// has lost the network, not its peer, and runs nothing; the side
    /// that still reaches the network keeps the groups (and fences the
    /// other, with [fencing]).
    ping_tie_breaker: bool,
    /// With a witness: since when this node has been without quorum, and
    /// for how long it may hold on (see `holding_on`).
    quorum_lost_at: Option<Timestamp>,
    /// wait-for-all: false until every node was seen up at once.
    all_seen: bool,
    self_fence: Option<crate::config::SelfFence>,
    /// The self-fence command ran in this loss of quorum.
    self_fenced: bool,
    /// When holding on must end, while it may still go on.
    hold_on_until: Option<Timestamp>,
    hold_on: Duration,
    keepalive: Duration,
    /// Maintenance: the cores are not fed, nothing is started or stopped.
    maintenance: bool,
    /// Where the wishes are saved, if anywhere (intents.rs).
    intents_file: Option<PathBuf>,
    fencer: Fencer,
}

impl Groups {
    pub fn new(
        config: &Config,
        local: NodeId,
        host: Host,
        done: mpsc::UnboundedSender<Done>,
    ) -> Groups {
        let keepalive = config.timings.keepalive;
        let intents_file = intents::location();
        let saved = intents_file
            .as_deref()
            .map(intents::load)
            .unwrap_or_default();
        let groups = config
            .groups
            .iter()
            .map(|g| {
                let intent = saved
                    .iter()
                    .find(|(name, _)| *name == g.name)
                    .map_or_else(Intent::default, |(_, i)| *i);
                let names = config.nodes.iter().map(|n| n.name.clone()).collect();
                let mut core = GroupCore::new(Settings::new(g, local, keepalive, names));
                core.set_intent(intent.stopped, intent.moved_to);
                Running {
                    group: g.clone(),
                    core,
                    last: Transition::default(),
                    since: None,
                    intent,
                }
            })
            .collect();
        let node_names: Vec<String> = config.nodes.iter().map(|n| n.name.clone()).collect();
        // Where a cut-off node loses quorum, it stops its groups on its own;
        // the others give it that time (twice the deadtime, as the
        // witness's hold) when no fence command does better.
        let two_node = config.nodes.len() == 2 && config.witness().is_none();
        let delay = (!two_node).then_some(config.timings.deadtime * 2);
        let fencer = Fencer::new(
            config.fencing.clone(),
            delay,
            node_names.clone(),
            done.clone(),
        );
        Groups {
            local,
            node_names,
            groups,
            host,
            done,
            fencer,
            standby: false,
            two_node,
            ping_tie_breaker: !config.ping.nodes.is_empty(),
            quorum_lost_at: None,
            all_seen: !config.cluster.wait_for_all,
            self_fence: config.self_fence.clone(),
            self_fenced: false,
            hold_on_until: None,
            hold_on: config.timings.deadtime,
            keepalive,
            maintenance: false,
            intents_file,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// What this node announces now.
    pub fn announcement(&self) -> NodeState {
        NodeState {
            seq: 0,
            standby: self.standby,
            groups: self
                .groups
                .iter()
                .map(|r| GroupState {
                    name: r.group.name.clone(),
                    phase: r.core.state().phase(),
                    eligible: r.core.eligible(),
                    running: *r.core.state() == State::Running,
                })
                .collect(),
            intents: self
                .groups
                .iter()
                .filter(|r| r.intent.version > 0)
                .map(|r| GroupIntent {
                    name: r.group.name.clone(),
                    intent: r.intent,
                })
                .collect(),
        }
    }

    pub fn next_wakeup(&self) -> Option<Timestamp> {
        // In maintenance nothing below is looked at, so nothing is due.
        if self.maintenance {
            return None;
        }
        self.groups
            .iter()
            .filter_map(|r| r.core.next_wakeup())
            .chain(self.fencer.next_wakeup())
            .chain(self.hold_on_until)
            .chain(self.self_fence_due())
            .min()
    }

    /// Looks at the cluster again: each group decides whether to start,
    /// stop or wait.
    pub fn evaluate(&mut self, m: &Membership, now: Timestamp) {
        // Wishes spread even in maintenance: they take effect after it.
        self.hear_wishes(m);
        if self.maintenance {
            return;
        }
        // Until every peer is heard or declared dead (initdead), a node
        // knows too little to take anything over.
        let settled = (0..self.node_names.len())
            .map(|i| NodeId(i as u16))
            .filter(|id| *id != self.local)
            .all(|id| m.view(id).is_none_or(|v| v.state != PeerState::Init));
        if !settled {
            return;
        }
        let network = !self.ping_tie_breaker || m.ping_reachable() > 0;
        let quorate = (m.quorate() || self.two_node && network) && self.all_seen(m);
        let holding_on = self.holding_on(m, quorate, now);
        self.self_fence_if_stuck(quorate || holding_on, now);
        let up = (0..self.node_names.len())
            .map(|n| m.view(NodeId(n as u16)).is_some_and(|v| v.state.is_alive()))
            .collect();
        self.host.peers.set_up(up);
        for n in 0..self.node_names.len() {
            let id = NodeId(n as u16);
            if m.view(id).is_some_and(|v| v.state.is_alive()) {
                self.fencer.alive(id);
            }
        }
        self.fencer.tick(now);
        for i in 0..self.groups.len() {
            let view = self.view(m, i);
            // Holding on keeps what runs here; it never starts anything.
            let here = self.groups[i].core.state().phase() == Phase::Active;
            let quorate = quorate || holding_on && here;
            let actions = self.groups[i].core.on_view(&view, quorate, now);
            let actions = [actions, self.groups[i].core.on_tick(now)].concat();
            self.carry_out(i, actions, now);
        }
    }

    /// Whether this node, just without quorum, keeps what it runs a moment
    /// longer. With a witness, when only the link between the data nodes
    /// breaks, the node the vote stays with sees its peer dead a moment
    /// before the witness's vote narrows to it; stopping and starting
    /// everything for those milliseconds would be an outage of its own.
    /// It holds on while the witness is heard fresh and its latest vote
    /// names this node, for at most a deadtime. A node cut off from the
    /// witness too hears nothing fresh from it and stops at once; a vote
    /// that moved elsewhere ends it as soon as it is heard.
    fn holding_on(&mut self, m: &Membership, quorate: bool, now: Timestamp) -> bool {
        if quorate {
            self.quorum_lost_at = None;
            self.hold_on_until = None;
            return false;
        }
        let since = *self.quorum_lost_at.get_or_insert(now);
        let until = Timestamp(since.0 + self.hold_on);
        self.hold_on_until = (now < until).then_some(until);
        let Some(w) = m.witness() else {
            return false;
        };
        let fresh = m
            .view(w)
            .and_then(|v| v.last_seen)
            .is_some_and(|t| now.since(t) <= self.keepalive * 2);
        let named = m
            .witness_vote()
            .is_some_and(|v| v.granted.contains(&self.local));
        fresh && named && now < until
    }

    /// When the self-fence falls due, while it may.
    fn self_fence_due(&self) -> Option<Timestamp> {
        let sf = self.self_fence.as_ref()?;
        let since = self.quorum_lost_at?;
        (!self.self_fenced && self.any_active()).then(|| Timestamp(since.0 + sf.after))
    }

    /// Without quorum for `after` and still holding resources (a stop that
    /// hangs): runs the self-fence command once, so that the others, who
    /// take over after twice the deadtime, find this node stopped.
    fn self_fence_if_stuck(&mut self, quorate: bool, now: Timestamp) {
        if quorate {
            self.self_fenced = false;
            return;
        }
        let (Some(due), Some(sf)) = (self.self_fence_due(), self.self_fence.clone()) else {
            return;
        };
        if now < due {
            return;
        }
        self.self_fenced = true;
        let held: Vec<&str> = self
            .groups
            .iter()
            .filter(|r| r.core.state().phase().holds())
            .map(|r| r.group.name.as_str())
            .collect();
        tracing::error!(
            "self-fencing: without quorum for {:.1} s and still holding {}: running {}",
            sf.after.as_secs_f64(),
            held.join(", "),
            sf.command.display()
        );
        tokio::spawn(async move {
            let out = tokio::process::Command::new(&sf.command)
                .args(&sf.args)
                .stdin(std::process::Stdio::null())
                .output()
                .await;
            match out {
                Ok(o) if o.status.success() => {}
                Ok(o) => tracing::error!(
                    "self-fence command {} failed ({}): {}",
                    sf.command.display(),
                    o.status,
                    crate::daemon::agents::script::said(&o.stderr, &o.stdout)
                ),
                Err(e) => tracing::error!(
                    "cannot run the self-fence command {}: {e}",
                    sf.command.display()
                ),
            }
        });
    }

    /// wait-for-all: whether every node has been seen up at once since
    /// this daemon started. Until then nothing runs: after a cold start of
    /// a two-node cluster with a broken link, neither node takes the
    /// groups on its own.
    fn all_seen(&mut self, m: &Membership) -> bool {
        if !self.all_seen {
            let everyone = (0..self.node_names.len())
                .map(|n| NodeId(n as u16))
                .all(|id| id == self.local || m.view(id).is_some_and(|v| v.state.is_alive()));
            if everyone {
                tracing::info!("every node seen up (wait-for-all): groups may run");
                self.all_seen = true;
            }
        }
        self.all_seen
    }

    /// Adopts the newer wishes the other nodes announce.
    fn hear_wishes(&mut self, m: &Membership) {
        let mut changed = false;
        for n in 0..self.node_names.len() {
            let id = NodeId(n as u16);
            let Some(state) = m.view(id).and_then(|v| v.node_state) else {
                continue;
            };
            for heard in &state.intents {
                let Some(r) = self.groups.iter_mut().find(|r| r.group.name == heard.name) else {
                    continue;
                };
                if r.intent.adopt(&heard.intent) {
                    let from = self.node_names.get(usize::from(heard.intent.origin.0));
                    let what = wish_words(&r.intent, &self.node_names);
                    tracing::info!(group = %r.group.name, "group {}: {what} (asked on {})", r.group.name, from.map_or("?", |s| s.as_str()));
                    changed = true;
                }
            }
        }
        if changed {
            self.wishes_changed();
        }
    }

    /// After a wish changed: the cores follow it, and it is saved.
    fn wishes_changed(&mut self) {
        for r in &mut self.groups {
            r.core.set_intent(r.intent.stopped, r.intent.moved_to);
        }
        let Some(path) = &self.intents_file else {
            return;
        };
        let list: Vec<(String, Intent)> = self
            .groups
            .iter()
            .filter(|r| r.intent.version > 0)
            .map(|r| (r.group.name.clone(), r.intent))
            .collect();
        if let Err(e) = intents::save(path, &list) {
            tracing::warn!(path = %path.display(), "cannot save the group wishes: {e}");
        }
    }

    /// `duetctl start|stop|move`: a new wish, announced to every node.
    pub fn wish(&mut self, name: &str, wish: Wish, m: &Membership) -> Result<(), String> {
        let i = self.index(name)?;
        let current = self.groups[i].intent;
        let next = match &wish {
            Wish::Start => current.next(self.local, false, current.moved_to),
            Wish::Stop => current.next(self.local, true, current.moved_to),
            Wish::Move(node) => {
                let to = self.can_move_to(i, node, m)?;
                current.next(self.local, current.stopped, Some(to))
            }
        };
        let r = &mut self.groups[i];
        r.intent = next;
        let what = wish_words(&next, &self.node_names);
        tracing::info!(group = %r.group.name, "group {name}: {what} (asked here)");
        self.wishes_changed();
        Ok(())
    }

    /// The node a group may be moved to, or why not.
    fn can_move_to(&self, i: usize, node: &str, m: &Membership) -> Result<NodeId, String> {
        let group = &self.groups[i].group;
        let Some(n) = self.node_names.iter().position(|x| x == node) else {
            return Err(format!("no node named {node}"));
        };
        let id = NodeId(n as u16);
        if !group.nodes.contains(&id) {
            let names: Vec<&str> = group
                .nodes
                .iter()
                .filter_map(|n| self.node_names.get(usize::from(n.0)).map(|s| s.as_str()))
                .collect();
            return Err(format!(
                "{node} does not run group {} (its nodes: {})",
                group.name,
                names.join(", ")
            ));
        }
        let v = self.view(m, i).into_iter().find(|v| v.id == id);
        match v {
            Some(v) if !v.alive => Err(format!("{node} is not up")),
            Some(v) if v.standby => Err(format!(
                "{node} is in standby (`duetctl online {node}` there first)"
            )),
            Some(v) if !v.eligible => Err(format!(
                "group {} failed on {node} (`duetctl cleanup {}` there first)",
                group.name, group.name
            )),
            _ => Ok(id),
        }
    }

    pub fn done(&mut self, d: Done, now: Timestamp) {
        match d {
            Done::Op { group, op, result } => {
                let Some(r) = self.groups.get_mut(group) else {
                    return;
                };
                let actions = r.core.on_done(op, result, now);
                self.carry_out(group, actions, now);
            }
            Done::Fence { node, id, result } => self.fencer.finished(node, id, result, now),
        }
    }

    /// One node's view of group `i`: every configured node.
    fn view(&self, m: &Membership, i: usize) -> Vec<NodeView> {
        let name = &self.groups[i].group.name;
        (0..self.node_names.len())
            .map(|n| {
                let id = NodeId(n as u16);
                let v = m.view(id);
                let alive = id == self.local || v.as_ref().is_some_and(|v| v.state.is_alive());
                let state = v.as_ref().and_then(|v| v.node_state.as_ref());
                let g = state.and_then(|s| s.groups.iter().find(|g| &g.name == name));
                NodeView {
                    id,
                    alive,
                    standby: if id == self.local {
                        self.standby
                    } else {
                        state.is_some_and(|s| s.standby)
                    },
                    ping_reach: v.as_ref().map_or(0, |v| u32::from(v.ping_reachable)),
                    phase: if id == self.local {
                        self.groups[i].core.state().phase()
                    } else {
                        g.map_or(Phase::Idle, |g| g.phase)
                    },
                    eligible: if id == self.local {
                        self.groups[i].core.eligible()
                    } else {
                        g.is_none_or(|g| g.eligible)
                    },
                    // Known to hold nothing of it: heard, and idle (or
                    // without the group) when last heard.
                    clean: alive
                        || !self.groups[i].group.nodes.contains(&id)
                        || !self.fencer.enabled()
                        || self.fencer.fenced(id)
                        || state.is_some() && g.is_none_or(|g| g.phase == Phase::Idle),
                }
            })
            .collect()
    }

    fn carry_out(&mut self, i: usize, actions: Vec<Action>, now: Timestamp) {
        for a in actions {
            match a {
                Action::Start { op, index } => self.spawn(i, op, index, Op::Start),
                Action::Stop { op, index } => self.spawn(i, op, index, Op::Stop),
                Action::Monitor { op, index } => self.spawn(i, op, index, Op::Monitor),
                // The daemon reads `announcement` after each step.
                Action::Announce { .. } => {}
                Action::Fence { node } => {
                    let why = format!("taking over group {}", self.groups[i].group.name);
                    self.fencer.request(node, &why, now);
                }
                Action::Transition { from, to, reason } => {
                    self.transition(i, from, to, reason, now)
                }
            }
        }
    }

    fn spawn(&self, i: usize, op: OpId, index: usize, what: Op) {
        let r = &self.groups[i];
        let Some(resource) = r.group.resources.get(index).cloned() else {
            return;
        };
        let limit = agents::op_timeout(&resource, what);
        let (host, done) = (self.host.clone(), self.done.clone());
        let (group, label) = (r.group.name.clone(), resource.label());
        if what != Op::Monitor {
            tracing::info!(group = %group, resource = %label, "{}: {label}", what.name());
        }
        tokio::spawn(async move {
            // Past its timeout the operation is dropped (a script with it).
            let result =
                match tokio::time::timeout(limit, agents::run(&host, &resource, what)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {:.1} s", limit.as_secs_f64())),
                };
            if let Err(e) = &result {
                tracing::warn!(group = %group, resource = %label, "{} of {label} failed: {e}", what.name());
            }
            let _ = done.send(Done::Op {
                group: i,
                op,
                result,
            });
        });
    }

    fn transition(
        &mut self,
        i: usize,
        from: &str,
        to: &'static str,
        reason: String,
        now: Timestamp,
    ) {
        let r = &mut self.groups[i];
        let node = &self.node_names[self.local.0 as usize];
        let name = &r.group.name;
        let settled = matches!(to, "running" | "stopped" | "failed");
        if !settled && r.since.is_none() {
            r.since = Some((now, reason.clone()));
        }
        let began = settled.then(|| r.since.take()).flatten();
        let took = began.as_ref().map(|(t, _)| now.since(*t));
        match began {
            // In one line what an administrator wants after a takeover:
            // why, what is up now, how long it took.
            Some((t, why)) if to == "running" => {
                let up: Vec<String> = r.group.resources.iter().map(|x| x.label()).collect();
                tracing::info!(
                    group = %name, node = %node, from, to,
                    "group {name}: running on {node} ({why}): {}; {:.2} s",
                    up.join(", "),
                    now.since(t).as_secs_f64()
                )
            }
            Some((t, _)) => tracing::info!(
                group = %name, node = %node, from, to,
                "group {name}: {to} on {node} ({reason}), {:.2} s", now.since(t).as_secs_f64()
            ),
            None => {
                tracing::info!(group = %name, node = %node, from, to, "group {name}: {to} ({reason})")
            }
        }
        if to == "failed" {
            tracing::error!(group = %name, node = %node, "group {name} failed on {node}: {reason}");
        }
        r.last = Transition {
            to: to.to_string(),
            reason,
            took,
        };
        // A move holds while its node can run the group; once the group
        // runs elsewhere (that node died or failed it) the move is spent,
        // or the group would go back there the moment the node returns.
        let spent = r.intent.moved_to.is_some_and(|n| n != self.local);
        if to == "running" && spent {
            r.intent = r.intent.spent(self.local);
            self.wishes_changed();
        }
    }

    pub fn set_standby(&mut self, on: bool) {
        self.standby = on;
    }

    pub fn set_maintenance(&mut self, on: bool) {
        self.maintenance = on;
    }

    pub fn cleanup(&mut self, name: &str, now: Timestamp) -> Result<(), String> {
        let i = self.index(name)?;
        let actions = self.groups[i].core.cleanup(now);
        self.carry_out(i, actions, now);
        Ok(())
    }

    fn index(&self, name: &str) -> Result<usize, String> {
        self.groups
            .iter()
            .position(|r| r.group.name == name)
            .ok_or_else(|| format!("no group named {name}"))
    }

    /// Whether any group's resources may be up here.
    pub fn any_active(&self) -> bool {
        self.groups.iter().any(|r| r.core.state().phase().holds())
    }

    /// The longest stopping everything here can take.
    pub fn stop_bound(&self) -> Duration {
        self.groups
            .iter()
            .map(|r| {
                r.group
                    .resources
                    .iter()
                    .map(|x| x.stop_timeout)
                    .sum::<Duration>()
            })
            .max()
            .unwrap_or_default()
            + Duration::from_secs(1)
    }

    pub fn standby(&self) -> bool {
        self.standby
    }

    pub fn maintenance(&self) -> bool {
        self.maintenance
    }

    /// Whether every resource of group `i` is up on `node`.
    fn running_on(&self, m: &Membership, i: usize, node: &str) -> bool {
        let Some(n) = self.node_names.iter().position(|x| x == node) else {
            return false;
        };
        let id = NodeId(n as u16);
        let r = &self.groups[i];
        if id == self.local {
            return *r.core.state() == State::Running;
        }
        m.view(id)
            .and_then(|v| v.node_state)
            .is_some_and(|s| s.groups.iter().any(|g| g.name == r.group.name && g.running))
    }

    pub fn status(&self, m: &Membership) -> Vec<GroupStatus> {
        (0..self.groups.len())
            .map(|i| {
                let r = &self.groups[i];
                let node = self
                    .view(m, i)
                    .iter()
                    .filter(|v| v.alive && v.phase.holds())
                    .min_by_key(|v| v.phase != Phase::Active)
                    .map(|v| self.node_names[v.id.0 as usize].clone())
                    .unwrap_or_default();
                let resources = r
                    .group
                    .resources
                    .iter()
                    .zip(r.core.up())
                    .zip(r.core.failures())
                    .map(|((res, up), failures)| ResourceStatus {
                        name: res.label(),
                        state: if *up { "started" } else { "stopped" }.to_string(),
                        failures: *failures,
                    })
                    .collect();
                GroupStatus {
                    name: r.group.name.clone(),
                    running: self.running_on(m, i, &node),
                    node,
                    state: r.core.state().name().to_string(),
                    wanted: if r.intent.stopped {
                        "stopped"
                    } else {
                        "started"
                    }
                    .to_string(),
                    moved_to: r
                        .intent
                        .moved_to
                        .and_then(|n| self.node_names.get(usize::from(n.0)).cloned())
                        .unwrap_or_default(),
                    resources,
                    last_transition: r.last.to.clone(),
                    last_reason: r.last.reason.clone(),
                    last_duration: r.last.took.map(|d| d.as_secs_f64()),
                }
            })
            .collect()
    }
}

/// A wish in words, for the journal.
fn wish_words(i: &Intent, names: &[String]) -> String {
    let name = |n: NodeId| {
        names
            .get(usize::from(n.0))
            .map_or("?", |s| s.as_str())
            .to_string()
    };
    match (i.stopped, i.moved_to) {
        (true, _) => "stopped by an administrator".to_string(),
        (false, Some(n)) => format!("moved to {} by an administrator", name(n)),
        (false, None) => "started, where its preferences say".to_string(),
    }
}
