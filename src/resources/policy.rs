//! One node's decisions about all its groups, pure: told the membership
//! (who is alive, what each node announced, quorum) and the time, it says
//! which resource operations to run, which node to fence, when to fence
//! itself and which wishes to save. The daemon's shell
//! (src/daemon/groups.rs) carries these out; the whole-cluster simulation
//! (tests/cluster_sim.rs) runs the same code on every simulated node.
//!
//! What it adds to the group cores (group.rs): whether this node may run
//! groups at all (quorum, the two-node rules, ping nodes, wait-for-all,
//! holding on while a witness's vote narrows), whether a dead node is
//! clean (fence.rs), the administrators' wishes agreed through heartbeats
//! (intent.rs), and self-fencing.

use crate::host::message_ids as ids;
use std::time::Duration;

use crate::bus::{GroupStatus, ResourceStatus};
use crate::config::{Config, Group};
use crate::membership::node_state::{GroupIntent, GroupState, NodeState};
use crate::membership::{Membership, PeerState};
use crate::resources::fence::{FenceCore, Means, Run};
use crate::resources::group::{Action, GroupCore, OpId, Settings, State};
use crate::resources::intent::Intent;
use crate::resources::placement::{NodeView, Phase};
use crate::types::{NodeId, Timestamp};

/// What the shell does for the policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run an operation of resource `index` of group `group`; answer with
    /// `done(group, op, ..)`.
    Op {
        group: usize,
        op: OpId,
        index: usize,
        kind: OpKind,
    },
    /// Run the fence command; answer with `fence_done`.
    Fence(Run),
    /// Run the self-fence command (once per loss of quorum).
    SelfFence { held: Vec<String> },
    /// Save the wishes (group name, wish) where a restart finds them.
    SaveWishes(Vec<(String, Intent)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Start,
    Stop,
    Monitor,
}

/// An administrator's wish for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wish {
    Start,
    Stop,
    /// Run it on this node (by name) while the node can.
    Move(String),
}

/// The last transition of a group, for status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transition {
    pub to: String,
    pub reason: String,
    /// From leaving Stopped (or Running) to settling, when it settled.
    pub took: Option<Duration>,
}

/// The cluster-wide rules, from the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub local: NodeId,
    pub node_names: Vec<String>,
    /// Exactly two nodes and no witness: a survivor alone has no majority,
    /// yet keeps what it runs (corosync's two_node); it takes nothing over
    /// from a silent peer without a fence (fence.rs).
    pub two_node: bool,
    /// Two nodes and ping nodes: a survivor that reaches none of them has
    /// lost the network, not its peer, and runs nothing.
    pub ping_tie_breaker: bool,
    pub wait_for_all: bool,
    /// `[self-fence] after`, if configured.
    pub self_fence_after: Option<Duration>,
    /// With a witness: how long a node just without quorum may hold on.
    pub hold_on: Duration,
    pub keepalive: Duration,
    pub means: Means,
}

impl Rules {
    pub fn from_config(config: &Config, local: NodeId) -> Rules {
        let two_node = config.nodes.len() == 2 && config.witness().is_none();
        let means = match &config.fencing {
            Some(f) => Means::Command {
                retry_delay: f.retry_delay,
            },
            None if config.cluster.unfenced_takeover => Means::TrustDeadtime,
            // Where a cut-off node loses quorum, it stops its groups on
            // its own; the others give it that time (twice the deadtime,
            // as the witness's hold).
            None if !two_node => Means::Wait(config.timings.deadtime * 2),
            None => Means::Nothing,
        };
        Rules {
            local,
            node_names: config.nodes.iter().map(|n| n.name.clone()).collect(),
            two_node,
            ping_tie_breaker: !config.ping.nodes.is_empty(),
            wait_for_all: config.cluster.wait_for_all,
            self_fence_after: config.self_fence.as_ref().map(|s| s.after),
            hold_on: config.timings.deadtime,
            keepalive: config.timings.keepalive,
            means,
        }
    }
}

struct Slot {
    group: Group,
    core: GroupCore,
    last: Transition,
    /// When the current start or stop sequence began, and why.
    since: Option<(Timestamp, String)>,
    /// The administrators' newest wish for it, agreed through heartbeats.
    intent: Intent,
    /// A replica of the group is not UpToDate here (set by the shell).
    behind: bool,
    /// Takeovers from a dead node here since the daemon started, and the
    /// seconds their starts took in all.
    failovers: u64,
    failover_seconds: f64,
}

pub struct NodePolicy {
    r: Rules,
    groups: Vec<Slot>,
    standby: bool,
    /// Since when this node has been without quorum.
    quorum_lost_at: Option<Timestamp>,
    /// wait-for-all: false until every node was seen up at once.
    all_seen: bool,
    /// The self-fence ran in this loss of quorum.
    self_fenced: bool,
    /// When holding on must end, while it may still go on.
    hold_on_until: Option<Timestamp>,
    /// Maintenance: the cores are not fed, nothing is started or stopped.
    maintenance: bool,
    fencer: FenceCore,
    /// Whether this node allowed itself to run groups at the last look.
    may_run: bool,
}

impl NodePolicy {
    /// `saved`: the wishes a restart found (group name, wish).
    pub fn new(rules: Rules, groups: &[Group], saved: &[(String, Intent)]) -> NodePolicy {
        let groups = groups
            .iter()
            .map(|g| {
                let intent = saved
                    .iter()
                    .find(|(name, _)| *name == g.name)
                    .map_or_else(Intent::default, |(_, i)| *i);
                let settings =
                    Settings::new(g, rules.local, rules.keepalive, rules.node_names.clone());
                let mut core = GroupCore::new(settings);
                core.set_intent(intent.stopped, intent.moved_to);
                Slot {
                    group: g.clone(),
                    core,
                    last: Transition::default(),
                    since: None,
                    intent,
                    behind: false,
                    failovers: 0,
                    failover_seconds: 0.0,
                }
            })
            .collect();
        NodePolicy {
            fencer: FenceCore::new(rules.means, rules.node_names.clone()),
            all_seen: !rules.wait_for_all,
            r: rules,
            groups,
            standby: false,
            quorum_lost_at: None,
            self_fenced: false,
            hold_on_until: None,
            maintenance: false,
            may_run: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn group(&self, i: usize) -> Option<&Group> {
        self.groups.get(i).map(|s| &s.group)
    }

    pub fn state(&self, i: usize) -> Option<&State> {
        self.groups.get(i).map(|s| s.core.state())
    }

    /// Whether this node let itself run groups at the last look (quorate,
    /// or holding on to what it runs).
    pub fn may_run(&self) -> bool {
        self.may_run
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
                    behind: r.behind,
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
    pub fn evaluate(&mut self, m: &Membership, now: Timestamp) -> Vec<Decision> {
        // Wishes spread even in maintenance: they take effect after it.
        let mut out = self.hear_wishes(m);
        if self.maintenance {
            return out;
        }
        // Until every peer is heard or declared dead (initdead), a node
        // knows too little to take anything over: it runs as one without
        // quorum. It still checks what runs here and stops what it finds
        // up from before (a daemon restarted mid-stop), and the self-fence
        // clock runs: the others may take over trusting it.
        let settled = self
            .node_ids()
            .filter(|id| *id != self.r.local)
            .all(|id| m.view(id).is_none_or(|v| v.state != PeerState::Init));
        let network = !self.r.ping_tie_breaker || m.ping_reachable() > 0;
        let quorate = settled && (m.quorate() || self.r.two_node && network) && self.all_seen(m);
        let holding_on = self.holding_on(m, quorate, now) && settled;
        self.may_run = quorate || holding_on;
        out.extend(self.self_fence_if_stuck(quorate || holding_on, now));
        if settled {
            for id in self.node_ids() {
                if alive(m, id) {
                    self.fencer.alive(id);
                }
            }
            out.extend(self.fencer.tick(now).into_iter().map(Decision::Fence));
        }
        for i in 0..self.groups.len() {
            let view = self.view(m, i);
            // Holding on keeps what runs here; it never starts anything.
            let here = self.groups[i].core.state().phase() == Phase::Active;
            let quorate = quorate || holding_on && here;
            let actions = self.groups[i].core.on_view(&view, quorate, now);
            let actions = [actions, self.groups[i].core.on_tick(now)].concat();
            out.extend(self.carry_out(i, actions, now));
        }
        out
    }

    fn node_ids(&self) -> impl Iterator<Item = NodeId> + use<> {
        (0..self.r.node_names.len()).map(|n| NodeId(n as u16))
    }

    /// Whether this node, just without quorum, keeps what it runs a moment
    /// longer (never more than a deadtime; it starts nothing). With a witness, when only the link between the data nodes
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
        let until = Timestamp(since.0 + self.r.hold_on);
        self.hold_on_until = (now < until).then_some(until);
        // Without a witness, three nodes or more: the nodes alive here are
        // a majority but do not agree yet on who is alive (a crash seen a
        // heartbeat apart on each): held while they settle.
        let Some(w) = m.witness() else {
            return self.r.node_names.len() >= 3 && m.majority_alive() && now < until;
        };
        let fresh = m
            .view(w)
            .and_then(|v| v.last_seen)
            .is_some_and(|t| now.since(t) <= self.r.keepalive * 2);
        let named = m
            .witness_vote()
            .is_some_and(|v| v.granted.contains(&self.r.local));
        fresh && named && now < until
    }

    /// When the self-fence falls due, while it may.
    fn self_fence_due(&self) -> Option<Timestamp> {
        let after = self.r.self_fence_after?;
        let since = self.quorum_lost_at?;
        (!self.self_fenced && self.any_active()).then(|| Timestamp(since.0 + after))
    }

    /// Without quorum for `after` and still holding resources (a stop that
    /// hangs): the self-fence, once, so that the others, who take over
    /// after twice the deadtime, find this node stopped.
    fn self_fence_if_stuck(&mut self, quorate: bool, now: Timestamp) -> Option<Decision> {
        if quorate {
            self.self_fenced = false;
            return None;
        }
        if now < self.self_fence_due()? {
            return None;
        }
        self.self_fenced = true;
        let held = self
            .groups
            .iter()
            .filter(|r| r.core.state().phase().holds())
            .map(|r| r.group.name.clone())
            .collect();
        Some(Decision::SelfFence { held })
    }

    /// wait-for-all: whether every node has been seen up at once since
    /// this daemon started. Until then nothing runs: after a cold start of
    /// a two-node cluster with a broken link, neither node takes the
    /// groups on its own.
    fn all_seen(&mut self, m: &Membership) -> bool {
        if !self.all_seen {
            let everyone = self.node_ids().all(|id| id == self.r.local || alive(m, id));
            if everyone {
                tracing::info!("every node seen up (wait-for-all): groups may run");
                self.all_seen = true;
            }
        }
        self.all_seen
    }

    /// Adopts the newer wishes the other nodes announce.
    fn hear_wishes(&mut self, m: &Membership) -> Vec<Decision> {
        let mut changed = false;
        for id in self.node_ids() {
            let Some(state) = m.view(id).and_then(|v| v.node_state) else {
                continue;
            };
            for heard in &state.intents {
                let Some(r) = self.groups.iter_mut().find(|r| r.group.name == heard.name) else {
                    continue;
                };
                if r.intent.adopt(&heard.intent) {
                    let from = self.r.node_names.get(usize::from(heard.intent.origin.0));
                    let what = wish_words(&r.intent, &self.r.node_names);
                    tracing::info!(group = %r.group.name, "group {}: {what} (asked on {})", r.group.name, from.map_or("?", |s| s.as_str()));
                    changed = true;
                }
            }
        }
        if changed {
            return self.wishes_changed();
        }
        Vec::new()
    }

    /// After a wish changed: the cores follow it, and it is saved.
    fn wishes_changed(&mut self) -> Vec<Decision> {
        for r in &mut self.groups {
            r.core.set_intent(r.intent.stopped, r.intent.moved_to);
        }
        let list = self
            .groups
            .iter()
            .filter(|r| r.intent.version > 0)
            .map(|r| (r.group.name.clone(), r.intent))
            .collect();
        vec![Decision::SaveWishes(list)]
    }

    /// `duetctl start|stop|move`: a new wish, announced to every node.
    pub fn wish(
        &mut self,
        name: &str,
        wish: Wish,
        m: &Membership,
    ) -> Result<Vec<Decision>, String> {
        let i = self.index(name)?;
        let current = self.groups[i].intent;
        let next = match &wish {
            Wish::Start => current.next(self.r.local, false, current.moved_to),
            Wish::Stop => current.next(self.r.local, true, current.moved_to),
            Wish::Move(node) => {
                let to = self.can_move_to(i, node, m)?;
                current.next(self.r.local, current.stopped, Some(to))
            }
        };
        let r = &mut self.groups[i];
        r.intent = next;
        let what = wish_words(&next, &self.r.node_names);
        tracing::info!(group = %r.group.name, "group {name}: {what} (asked here)");
        Ok(self.wishes_changed())
    }

    /// The node a group may be moved to, or why not.
    fn can_move_to(&self, i: usize, node: &str, m: &Membership) -> Result<NodeId, String> {
        let group = &self.groups[i].group;
        let id = self.node_id(node)?;
        if !group.nodes.contains(&id) {
            let names: Vec<&str> = group
                .nodes
                .iter()
                .filter_map(|n| self.r.node_names.get(usize::from(n.0)).map(|s| s.as_str()))
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

    fn node_id(&self, node: &str) -> Result<NodeId, String> {
        self.r
            .node_names
            .iter()
            .position(|x| x == node)
            .map(|n| NodeId(n as u16))
            .ok_or_else(|| format!("no node named {node}"))
    }

    /// `duetctl confirm-off NODE`: an administrator made sure the node is
    /// off, so what it ran may be taken over. Refused for a node that is
    /// up or is this one.
    pub fn confirm_off(&mut self, node: &str, m: &Membership) -> Result<(), String> {
        let id = self.node_id(node)?;
        if id == self.r.local {
            return Err(format!("{node} is this node"));
        }
        if alive(m, id) {
            return Err(format!(
                "{node} is up: confirm-off is for a node you made sure is off"
            ));
        }
        self.fencer.confirm_off(id);
        Ok(())
    }

    /// A resource operation's result.
    pub fn done(
        &mut self,
        group: usize,
        op: OpId,
        result: Result<(), String>,
        now: Timestamp,
    ) -> Vec<Decision> {
        let Some(r) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let actions = r.core.on_done(op, result, now);
        self.carry_out(group, actions, now)
    }

    /// A fence command's result.
    pub fn fence_done(
        &mut self,
        node: NodeId,
        id: u64,
        result: Result<(), String>,
        now: Timestamp,
    ) {
        self.fencer.finished(node, id, result, now);
    }

    /// One node's view of group `i`: every configured node.
    fn view(&self, m: &Membership, i: usize) -> Vec<NodeView> {
        let slot = &self.groups[i];
        let name = &slot.group.name;
        self.node_ids()
            .map(|id| {
                let v = m.view(id);
                let local = id == self.r.local;
                let alive = local || v.as_ref().is_some_and(|v| v.state.is_alive());
                let state = v.as_ref().and_then(|v| v.node_state.as_ref());
                let g = state.and_then(|s| s.groups.iter().find(|g| &g.name == name));
                NodeView {
                    id,
                    alive,
                    standby: if local {
                        self.standby
                    } else {
                        state.is_some_and(|s| s.standby)
                    },
                    ping_reach: v.as_ref().map_or(0, |v| u32::from(v.ping_reachable)),
                    phase: if local {
                        slot.core.state().phase()
                    } else {
                        g.map_or(Phase::Idle, |g| g.phase)
                    },
                    eligible: if local {
                        slot.core.eligible()
                    } else {
                        g.is_none_or(|g| g.eligible)
                    },
                    behind: if local {
                        slot.behind
                    } else {
                        g.is_some_and(|g| g.behind)
                    },
                    // Known to hold nothing of it: heard, and idle (or
                    // without the group) when last heard; or fenced.
                    clean: alive
                        || !slot.group.nodes.contains(&id)
                        || self.fencer.clean(id)
                        || state.is_some() && g.is_none_or(|g| g.phase == Phase::Idle),
                }
            })
            .collect()
    }

    fn carry_out(&mut self, i: usize, actions: Vec<Action>, now: Timestamp) -> Vec<Decision> {
        let mut out = Vec::new();
        for a in actions {
            let op = |op, index, kind| Decision::Op {
                group: i,
                op,
                index,
                kind,
            };
            match a {
                Action::Start { op: o, index } => out.push(op(o, index, OpKind::Start)),
                Action::Stop { op: o, index } => out.push(op(o, index, OpKind::Stop)),
                Action::Monitor { op: o, index } => out.push(op(o, index, OpKind::Monitor)),
                // The shell reads `announcement` after each step.
                Action::Announce { .. } => {}
                Action::Fence { node } => {
                    let why = format!("taking over group {}", self.groups[i].group.name);
                    out.extend(self.fencer.request(node, &why, now).map(Decision::Fence));
                }
                Action::Transition { from, to, reason } => {
                    out.extend(self.transition(i, from, to, reason, now))
                }
            }
        }
        out
    }

    fn transition(
        &mut self,
        i: usize,
        from: &str,
        to: &'static str,
        reason: String,
        now: Timestamp,
    ) -> Vec<Decision> {
        let r = &mut self.groups[i];
        let node = &self.r.node_names[usize::from(self.r.local.0)];
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
                if why.starts_with("taking over from") {
                    r.failovers += 1;
                    r.failover_seconds += now.since(t).as_secs_f64();
                }
                let up: Vec<String> = r.group.resources.iter().map(|x| x.label()).collect();
                tracing::info!(
                    message_id = ids::GROUP_RUNNING,
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
            tracing::error!(message_id = ids::GROUP_FAILED, group = %name, node = %node, "group {name} failed on {node}: {reason}");
        }
        r.last = Transition {
            to: to.to_string(),
            reason,
            took,
        };
        // A move holds while its node can run the group; once the group
        // runs elsewhere (that node died or failed it) the move is spent,
        // or the group would go back there the moment the node returns.
        let spent = r.intent.moved_to.is_some_and(|n| n != self.r.local);
        if to == "running" && spent {
            r.intent = r.intent.spent(self.r.local);
            return self.wishes_changed();
        }
        Vec::new()
    }

    /// Whether a replica of group `i` is not UpToDate here: announced,
    /// and placement prefers a node whose copies are.
    pub fn set_behind(&mut self, i: usize, behind: bool) {
        if let Some(slot) = self.groups.get_mut(i) {
            slot.behind = behind;
        }
    }

    pub fn set_standby(&mut self, on: bool) {
        self.standby = on;
    }

    pub fn set_maintenance(&mut self, on: bool) {
        self.maintenance = on;
    }

    pub fn cleanup(&mut self, name: &str, now: Timestamp) -> Result<Vec<Decision>, String> {
        let i = self.index(name)?;
        let actions = self.groups[i].core.cleanup(now);
        Ok(self.carry_out(i, actions, now))
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
        let Ok(id) = self.node_id(node) else {
            return false;
        };
        let r = &self.groups[i];
        if id == self.r.local {
            return *r.core.state() == State::Running;
        }
        m.view(id)
            .and_then(|v| v.node_state)
            .is_some_and(|s| s.groups.iter().any(|g| g.name == r.group.name && g.running))
    }

    /// Why group `i` waits to start here, if it waits for a dead node to
    /// be made clean.
    fn waiting(&self, m: &Membership, i: usize) -> String {
        let view = self.view(m, i);
        let is_target = *self.groups[i].core.state() == State::Stopped;
        view.iter()
            .filter(|v| is_target && !v.alive && !v.clean)
            .find_map(|v| self.fencer.waiting(v.id))
            .unwrap_or_default()
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
                    .map(|v| self.r.node_names[usize::from(v.id.0)].clone())
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
                        .and_then(|n| self.r.node_names.get(usize::from(n.0)).cloned())
                        .unwrap_or_default(),
                    resources,
                    last_transition: r.last.to.clone(),
                    last_reason: r.last.reason.clone(),
                    last_duration: r.last.took.map(|d| d.as_secs_f64()),
                    waiting: self.waiting(m, i),
                    failovers: r.failovers,
                    failover_seconds: r.failover_seconds,
                }
            })
            .collect()
    }
}

fn alive(m: &Membership, id: NodeId) -> bool {
    m.view(id).is_some_and(|v| v.state.is_alive())
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
