//! One schedule of the whole-cluster simulation: two data nodes (node1,
//! node2) with the replicated disk r0 and group web (r0, a mount, an
//! address, a unit), and in most scenarios a third node (a witness, or a
//! voting node that runs nothing). Every node runs the real membership
//! core and the real group policy (src/resources/policy.rs) with the
//! scenario's config; the data nodes' replicas are the real replica cores
//! of the replication simulation's world. Around them, the simulation
//! plays the shell: it delivers heartbeats over two links that faults cut
//! (one way or both), lose and delay; runs the resource operations (the
//! replica's as src/daemon/agents/replica.rs does: wait for the link to a
//! live peer, then promote); a PDU for the fence command; systemd, which
//! restarts a killed duetd; machines that lose power and boot; clocks that
//! step; an administrator who puts nodes in standby. Time moves in steps
//! of one millisecond.
//!
//! Checked after every step: at most one Primary; the mount, the address
//! and the unit up on at most one machine; every promotion holds every
//! acknowledged write (oracle.rs); a node cut off from a majority holds
//! nothing within a bound; nothing starts without quorum. At the end,
//! with every fault healed: the group runs, the disks are in sync and
//! byte-identical.

use std::path::Path;

use duet::config::Config;
use duet::daemon::agents::replica::{StartLook, StartStep, start_step};
use duet::membership::auth::{Auth, AuthAlgorithm};
use duet::membership::wire::Codec;
use duet::membership::{Action, Input, Membership, Setup};
use duet::replication::core::{Event, Protocol};
use duet::replication::states::{Connection, DiskState, Role};
use duet::resources::group::{OpId, State};
use duet::resources::intent::Intent;
use duet::resources::policy::{Decision, NodePolicy, OpKind, Rules};
use duet::testkit::SplitMix64 as Rng;
use duet::types::{Incarnation, LinkId, NodeId, Timestamp};

use crate::net::{LINKS, Net};
use crate::oracle::Oracle;
use crate::world::{self, ReplicaState, SECTOR, SIZE, World};

/// Faults come until then (ms).
const CHAOS_MS: u64 = 30_000;
/// After the faults end, the cluster must heal within this (ms).
const HEAL_MS: u64 = 40_000;
/// A node cut off from a majority holds nothing after this (ms): a
/// deadtime to notice, one to hold on while a witness's vote narrows, and
/// the stops.
const MINORITY_BOUND_MS: u64 = 5_000;
/// The wall clock at the simulation's start (µs since the epoch).
const EPOCH_US: i64 = 1_764_000_000_000_000;
/// Resources of group web, in start order.
const REPLICA: usize = 0;
const MOUNT: usize = 1;
const RESOURCES: usize = 4;
const NAMES: [&str; RESOURCES] = ["replica", "mount", "address", "unit"];

/// What the third node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Third {
    None,
    /// `witness = true`: votes, holds no data, runs nothing.
    Witness,
    /// A plain node with a vote, outside the group.
    Voter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    pub name: &'static str,
    pub third: Third,
    pub fencing: bool,
    pub self_fence: bool,
    /// `[cluster] unfenced-takeover`: Heartbeat's behaviour, which the
    /// checker must catch making two primaries.
    pub unfenced: bool,
}

/// The configurations duet calls safe, cycled through by seed.
pub const SAFE: [Scenario; 5] = [
    Scenario {
        name: "two nodes + witness + fencing",
        third: Third::Witness,
        fencing: true,
        self_fence: false,
        unfenced: false,
    },
    Scenario {
        name: "two nodes + witness, self-fence, no fence command",
        third: Third::Witness,
        fencing: false,
        self_fence: true,
        unfenced: false,
    },
    Scenario {
        name: "two nodes + fencing",
        third: Third::None,
        fencing: true,
        self_fence: false,
        unfenced: false,
    },
    Scenario {
        name: "three voting nodes, self-fence, no fence command",
        third: Third::Voter,
        fencing: false,
        self_fence: true,
        unfenced: false,
    },
    Scenario {
        name: "two nodes, nothing to fence with (no takeover without confirm-off)",
        third: Third::None,
        fencing: false,
        self_fence: false,
        unfenced: false,
    },
];

/// The deliberately broken policy: take over from a silent peer.
pub const UNFENCED: Scenario = Scenario {
    name: "two nodes, unfenced takeover (broken on purpose)",
    third: Third::None,
    fencing: false,
    self_fence: false,
    unfenced: true,
};

fn config_text(sc: &Scenario) -> String {
    let mut c = String::from("[cluster]\nname = \"sim\"\nkey-file = \"sim.key\"\n");
    if sc.unfenced {
        c.push_str("unfenced-takeover = true\n");
    }
    c.push_str(
        "\n[timings]\nkeepalive = \"200ms\"\nwarntime = \"600ms\"\ndeadtime = \"1s\"\ninitdead = \"3s\"\n\n\
         [[link]]\nname = \"crossover\"\ninterface = \"eth1\"\nmode = \"ucast\"\n\n\
         [[link]]\nname = \"public\"\ninterface = \"eth0\"\nmode = \"ucast\"\n",
    );
    let third = match sc.third {
        Third::None => 2,
        _ => 3,
    };
    for i in 1..=third {
        c.push_str(&format!(
            "\n[[node]]\nname = \"node{i}\"\n{}address = {{ crossover = \"203.0.113.{i}\", public = \"198.51.100.{i}\" }}\n",
            if i == 3 && sc.third == Third::Witness {
                "witness = true\n"
            } else {
                ""
            }
        ));
    }
    c.push_str(
        "\n[[replica]]\nname = \"r0\"\ndisk = { node1 = \"/dev/sdb\", node2 = \"/dev/sdb\" }\n\
         address = { node1 = \"203.0.113.1\", node2 = \"203.0.113.2\" }\n\n\
         [[group]]\nname = \"web\"\nnodes = [\"node1\", \"node2\"]\nauto-failback = false\nmonitor-interval = \"1s\"\n\n\
         [[group.resource]]\nreplica = \"r0\"\nstart-timeout = \"6s\"\nstop-timeout = \"6s\"\n\n\
         [[group.resource]]\nmount = \"/mnt/shared\"\ndevice = \"r0\"\nfstype = \"ext4\"\nstart-timeout = \"3s\"\nstop-timeout = \"3s\"\n\n\
         [[group.resource]]\nip = \"198.51.100.10/24\"\ninterface = \"eth0\"\nstart-timeout = \"2s\"\nstop-timeout = \"2s\"\n\n\
         [[group.resource]]\nunit = \"apache2.service\"\nstart-timeout = \"3s\"\nstop-timeout = \"3s\"\n",
    );
    if sc.fencing {
        c.push_str("\n[fencing]\ncommand = \"/usr/sbin/pdu-off\"\ntimeout = \"2s\"\nretry-delay = \"500ms\"\n");
    }
    if sc.self_fence {
        c.push_str("\n[self-fence]\ncommand = \"/usr/sbin/reboot-now\"\n");
    }
    c
}

pub fn config(sc: &Scenario) -> Config {
    let text = config_text(sc);
    match duet::config::parse(&text, Path::new("/etc/duet/duet.toml")) {
        Ok(l) => l.config,
        Err(e) => panic!("the simulation's config does not validate: {e}\n{text}"),
    }
}

/// A resource operation in flight in a daemon.
struct OpRun {
    group: usize,
    op: OpId,
    index: usize,
    kind: OpKind,
    /// When it is looked at next (ms).
    at: u64,
    /// A replica operation gives up then (ms).
    deadline: u64,
    /// Never answers: the core's timeout ends it.
    hang: bool,
}

struct Daemon {
    m: Membership,
    /// None on the witness, which runs membership only.
    p: Option<NodePolicy>,
    /// When it started (ms): its clock is the time since.
    started: u64,
    ops: Vec<OpRun>,
}

struct Node {
    daemon: Option<Daemon>,
    /// Powered on.
    machine: bool,
    boot_at: Option<u64>,
    daemon_at: Option<u64>,
    /// Per resource of web: up on this machine (the replica's is its role).
    held: [bool; RESOURCES],
    /// Wall clock minus simulated time (µs): clock steps move it.
    wall_offset: i64,
    /// What a daemon saved in its state directory.
    saved: Vec<(String, Intent)>,
    incarnation: Option<Incarnation>,
    /// Since when it has been cut off from a majority, structurally.
    minority_since: Option<u64>,
    /// Per resource of web: its last stop here hung or failed. Without
    /// `[self-fence]` nothing bounds how long the node then holds it
    /// (docs/quorum.md); its peer fences it instead.
    stop_stuck: [bool; RESOURCES],
}

/// A fence command in the PDU: result due then.
struct Fencing {
    at: u64,
    /// The daemon that asked (node, its start time).
    by: (usize, u64),
    target: usize,
    id: u64,
    ok: bool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub faults: u64,
    pub failovers: u64,
    pub promotions: u64,
    pub fences: u64,
    pub self_fences: u64,
    pub split_brains: u64,
    pub writes: u64,
    pub steps: u64,
}

pub struct Sim {
    pub seed: u64,
    sc: Scenario,
    config: Config,
    rng: Rng,
    /// ms
    pub now: u64,
    net: Net,
    w: World,
    oracle: Oracle,
    nodes: Vec<Node>,
    pdu: Vec<Fencing>,
    /// The schedule: faults and what they did, printed with a failure.
    pub log: Vec<String>,
    pub violations: Vec<String>,
    pub stats: Stats,
    /// Where web ran last (for counting failovers).
    last_runner: Option<usize>,
    /// Faults whose end is due: (at, what).
    ends: Vec<(u64, End)>,
    next_fault: u64,
    /// Nodes whose self-fence ran: they go down at the next step.
    reboots: Vec<usize>,
    /// The administrator put these in standby (a diskless Primary).
    standing_by: [bool; 2],
    split_brains_resolved: usize,
    /// The replicas' events already in the schedule.
    events_noted: usize,
    /// Each replica's state as last noted (with DUET_SIM_TRACE).
    states_noted: [Option<ReplicaState>; 2],
    /// The users stopped writing (at the end, to compare the disks).
    quiet: bool,
}

#[derive(Debug, Clone, Copy)]
enum End {
    Cut { a: usize, b: usize, link: usize },
    Partition(usize),
    Loss(usize),
    Delay(usize),
    DiskErrors,
    Standby(usize),
}

fn ts(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

impl Sim {
    pub fn new(seed: u64, sc: Scenario) -> Sim {
        let config = config(&sc);
        let n = config.nodes.len();
        let mut sim = Sim {
            seed,
            sc,
            rng: Rng(seed ^ 0x5eed),
            now: 0,
            net: Net::new(n),
            w: World::tuned(seed, Protocol::C, |_| {}),
            oracle: Oracle::new(),
            nodes: (0..n)
                .map(|_| Node {
                    daemon: None,
                    machine: true,
                    boot_at: None,
                    daemon_at: None,
                    held: [false; RESOURCES],
                    wall_offset: 0,
                    saved: Vec::new(),
                    incarnation: None,
                    minority_since: None,
                    stop_stuck: [false; RESOURCES],
                })
                .collect(),
            config,
            pdu: Vec::new(),
            log: Vec::new(),
            violations: Vec::new(),
            stats: Stats::default(),
            last_runner: None,
            ends: Vec::new(),
            next_fault: 0,
            reboots: Vec::new(),
            standing_by: [false; 2],
            split_brains_resolved: 0,
            events_noted: 0,
            states_noted: [None; 2],
            quiet: false,
        };
        sim.w.trace_states = std::env::var_os("DUET_SIM_TRACE").is_some();
        sim.initial_sync();
        for i in 0..n {
            sim.start_daemon(i);
        }
        sim.next_fault = 6_000 + sim.rng.below(2_000);
        sim
    }

    fn note(&mut self, what: String) {
        self.log.push(format!("{:>6} ms  {what}", self.now));
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 5 {
            self.note(format!("VIOLATION: {what}"));
            self.violations.push(format!("at {} ms: {what}", self.now));
        }
    }

    /// The administrator's first day (create-md, `primary --force` on
    /// node1, the full sync, back to Secondary), before duet runs them.
    fn initial_sync(&mut self) {
        for n in 0..2 {
            self.connect(n, false);
        }
        self.w.run_until(5_000);
        let t = self.w.t();
        let actions = self.w.nodes[0]
            .r
            .as_mut()
            .and_then(|r| r.primary(true, EPOCH_US as u64, t).ok());
        let Some(a) = actions else {
            return self.violation("the first primary --force was refused".into());
        };
        self.w.apply(0, a);
        let deadline = self.w.now + 60_000_000;
        while !Oracle::synced(&self.w) && self.w.now < deadline {
            let t = self.w.now + 1_000;
            self.w.run_until(t);
            self.oracle.track(&mut self.w);
        }
        self.oracle.track(&mut self.w);
        let t = self.w.t();
        if let Some(a) = self.w.nodes[0].r.as_mut().and_then(|r| r.secondary(t).ok()) {
            self.w.apply(0, a);
        }
        let t = self.w.now + 10_000;
        self.w.run_until(t);
        self.now = self.w.now / 1000 + 1;
    }

    fn connect(&mut self, n: usize, discard: bool) {
        if let Some(a) = self.w.nodes[n]
            .r
            .as_mut()
            .and_then(|r| r.connect(discard).ok())
        {
            self.w.apply(n, a);
        }
    }

    fn wall_us(&self, n: usize) -> u64 {
        (EPOCH_US + self.now as i64 * 1000 + self.nodes[n].wall_offset).max(1) as u64
    }

    fn start_daemon(&mut self, n: usize) {
        let id = NodeId(n as u16);
        // As duetd does: above the last run's, kept in its state directory.
        let incarnation = Incarnation::after(self.wall_us(n), self.nodes[n].incarnation);
        self.nodes[n].incarnation = Some(incarnation);
        let setup = Setup::from_config(&self.config, id, incarnation);
        let auth = Auth::new(AuthAlgorithm::HmacSha256, b"sim key".to_vec()).expect("key");
        let m = Membership::new(setup, Codec::new("sim".into(), auth), Timestamp::ZERO);
        let witness = self.config.witness() == Some(id);
        let p = (!witness).then(|| {
            let rules = Rules::from_config(&self.config, id);
            NodePolicy::new(rules, &self.config.groups, &self.nodes[n].saved)
        });
        if n < 2 && self.w.replica(n).is_none() {
            let seed = self.rng.next_u64();
            self.w.restart(n, seed);
            self.connect(n, false);
        }
        self.nodes[n].daemon = Some(Daemon {
            m,
            p,
            started: self.now,
            ops: Vec::new(),
        });
        self.step_daemon(n, None);
    }

    /// The daemon's main step: feed the membership, let the policy look,
    /// announce what changed (src/daemon/mod.rs `step`).
    fn step_daemon(&mut self, n: usize, datagram: Option<(usize, Vec<u8>)>) {
        let Some(mut d) = self.nodes[n].daemon.take() else {
            return;
        };
        let t = ts(self.now - d.started);
        let actions = match &datagram {
            Some((link, bytes)) => d.m.handle(
                Input::Datagram {
                    link: LinkId(*link as u8),
                    bytes,
                },
                t,
            ),
            None => d.m.handle(Input::Tick, t),
        };
        self.send(n, actions);
        if let Some(mut p) = d.p.take() {
            let could = p.may_run();
            // As the daemon's shell does (src/daemon/groups.rs).
            let uptodate =
                n < 2 && self.w.replica(n).map(|r| r.disk()) == Some(DiskState::UpToDate);
            p.set_behind(0, !uptodate);
            let decisions = p.evaluate(&d.m, t);
            if p.may_run() != could {
                let q = if p.may_run() {
                    "may run groups"
                } else {
                    "may not run groups"
                };
                self.note(format!("node{} {q}", n + 1));
            }
            self.decide(n, &mut d, &p, decisions);
            let actions = d.m.handle(Input::LocalState(p.announcement()), t);
            self.send(n, actions);
            d.p = Some(p);
        }
        self.nodes[n].daemon = Some(d);
    }

    fn send(&mut self, n: usize, actions: Vec<Action>) {
        for a in actions {
            if let Action::Send { link, bytes } = a {
                self.net
                    .send(&mut self.rng, n, usize::from(link.0), &bytes, self.now);
            }
        }
    }

    fn decide(&mut self, n: usize, d: &mut Daemon, p: &NodePolicy, decisions: Vec<Decision>) {
        for decision in decisions {
            match decision {
                Decision::Op {
                    group,
                    op,
                    index,
                    kind,
                } => {
                    if kind == OpKind::Start && !p.may_run() {
                        self.violation(format!(
                            "node{} starts the {} without quorum",
                            n + 1,
                            NAMES[index]
                        ));
                    }
                    if kind != OpKind::Monitor {
                        self.note(format!("node{}: {kind:?} {}", n + 1, NAMES[index]));
                    }
                    let took = 5 + self.rng.below(if index == MOUNT { 200 } else { 60 });
                    let hang = kind != OpKind::Monitor && self.rng.chance(1);
                    if hang && kind == OpKind::Stop {
                        self.nodes[n].stop_stuck[index] = true;
                    }
                    d.ops.push(OpRun {
                        group,
                        op,
                        index,
                        kind,
                        at: self.now + took,
                        deadline: self.now + 2_500,
                        hang,
                    });
                }
                Decision::Fence(run) => {
                    let target = usize::from(run.node.0);
                    let ok = self.sc.fencing && !self.rng.chance(15);
                    self.stats.fences += 1;
                    self.pdu.push(Fencing {
                        at: self.now + 50 + self.rng.below(400),
                        by: (n, d.started),
                        target,
                        id: run.id,
                        ok,
                    });
                }
                Decision::SelfFence { held } => {
                    self.stats.self_fences += 1;
                    self.note(format!("node{} fences itself (holding {held:?})", n + 1));
                    // The reboot happens once this step is done.
                    self.reboots.push(n);
                }
                Decision::SaveWishes(list) => self.nodes[n].saved = list,
            }
        }
    }

    /// One millisecond.
    pub fn tick(&mut self) {
        self.now += 1;
        self.stats.steps += 1;
        self.machines();
        self.faults();
        self.w.link_ok = self.net.crossover_ok(self.now);
        if !self.w.link_ok && self.w.conn.is_some() {
            self.w.cut();
        }
        self.w.run_until(self.now * 1000);
        while let Some(dg) = self.net.due(self.now) {
            if self.nodes[dg.to].daemon.is_some() {
                self.step_daemon(dg.to, Some((dg.link, dg.bytes)));
            }
        }
        for n in 0..self.nodes.len() {
            self.timers(n);
            self.ops(n);
        }
        self.fences();
        self.client();
        self.check();
    }

    fn timers(&mut self, n: usize) {
        let Some(d) = &self.nodes[n].daemon else {
            return;
        };
        let t = ts(self.now - d.started);
        let due = d.m.next_wakeup() <= t
            || d.p
                .as_ref()
                .and_then(|p| p.next_wakeup())
                .is_some_and(|w| w <= t);
        if due {
            self.step_daemon(n, None);
        }
    }

    /// Boots and daemon (re)starts that are due.
    fn machines(&mut self) {
        for n in 0..self.nodes.len() {
            if self.nodes[n].boot_at.is_some_and(|t| t <= self.now) {
                self.nodes[n].boot_at = None;
                self.nodes[n].machine = true;
                self.note(format!("node{} boots", n + 1));
                self.nodes[n].daemon_at = Some(self.now + 300 + self.rng.below(700));
            }
            if self.nodes[n].daemon_at.is_some_and(|t| t <= self.now) && self.nodes[n].machine {
                self.nodes[n].daemon_at = None;
                if self.nodes[n].daemon.is_none() {
                    self.start_daemon(n);
                }
            }
        }
        // Self-fences asked in the last step: the machine goes down.
        for n in std::mem::take(&mut self.reboots) {
            self.power_off(n, "self-fence");
        }
    }

    fn power_off(&mut self, n: usize, why: &str) {
        if !self.nodes[n].machine {
            return;
        }
        self.note(format!("node{} loses power ({why})", n + 1));
        let node = &mut self.nodes[n];
        node.machine = false;
        node.daemon = None;
        node.daemon_at = None;
        node.held = [false; RESOURCES];
        node.stop_stuck = [false; RESOURCES];
        node.boot_at = Some(self.now + 1_500 + self.rng.below(5_000));
        if n < 2 {
            self.w.power_cut(n);
        }
    }

    fn kill_daemon(&mut self, n: usize) {
        if self.nodes[n].daemon.take().is_none() {
            return;
        }
        self.note(format!("node{}: duetd killed", n + 1));
        if n < 2 {
            self.w.crash(n);
        }
        // systemd's Restart=on-failure, RestartSec=1s.
        self.nodes[n].daemon_at = Some(self.now + 1_000 + self.rng.below(200));
    }

    fn ops(&mut self, n: usize) {
        let Some(mut d) = self.nodes[n].daemon.take() else {
            return;
        };
        let mut finished = Vec::new();
        let mut i = 0;
        while i < d.ops.len() {
            if d.ops[i].hang || d.ops[i].at > self.now {
                i += 1;
                continue;
            }
            match self.run_op(n, &d, i) {
                Some(result) => finished.push((d.ops.remove(i), result)),
                None => {
                    d.ops[i].at = self.now + 100;
                    i += 1;
                }
            }
        }
        let t = ts(self.now - d.started);
        let mut p = d.p.take();
        for (op, result) in finished {
            if let Some(p) = p.as_mut() {
                let decisions = p.done(op.group, op.op, result, t);
                self.decide(n, &mut d, p, decisions);
            }
        }
        d.p = p;
        self.nodes[n].daemon = Some(d);
        // The daemon looks again after a result (`step(Input::Tick)`).
        self.step_daemon(n, None);
    }

    /// Carries out operation `i` of node `n`'s daemon: its result, or None
    /// to look again later (a replica waiting for its link or its
    /// clients).
    fn run_op(&mut self, n: usize, d: &Daemon, i: usize) -> Option<Result<(), String>> {
        let op = &d.ops[i];
        let (index, kind, deadline) = (op.index, op.kind, op.deadline);
        if index == REPLICA {
            return self.replica_op(n, d, kind, deadline);
        }
        let ok = match kind {
            OpKind::Start if index == MOUNT => self.role(n) == Some(Role::Primary),
            OpKind::Start => !self.rng.chance(3),
            OpKind::Stop => !self.rng.chance(1),
            OpKind::Monitor => self.nodes[n].held[index] && !self.rng.chance(1),
        };
        match (kind, ok) {
            (OpKind::Start, _) => self.nodes[n].held[index] = true,
            (OpKind::Stop, true) => {
                self.nodes[n].held[index] = false;
                self.nodes[n].stop_stuck[index] = false;
            }
            (OpKind::Stop, false) => self.nodes[n].stop_stuck[index] = true,
            _ => {}
        }
        Some(if ok {
            Ok(())
        } else {
            Err(format!("{} {kind:?} failed", NAMES[index]))
        })
    }

    fn role(&self, n: usize) -> Option<Role> {
        (n < 2)
            .then(|| self.w.replica(n).map(|r| r.role()))
            .flatten()
    }

    /// Node `n`'s disk is Inconsistent or Outdated, and its peer said
    /// its own is UpToDate.
    fn behind_an_uptodate_peer(&self, n: usize) -> bool {
        self.w.replica(n).is_some_and(|r| {
            matches!(r.disk(), DiskState::Inconsistent | DiskState::Outdated)
                && r.peer_disk() == DiskState::UpToDate
        })
    }

    /// The replica agent (src/daemon/agents/replica.rs).
    fn replica_op(
        &mut self,
        n: usize,
        d: &Daemon,
        kind: OpKind,
        deadline: u64,
    ) -> Option<Result<(), String>> {
        if n >= 2 {
            return Some(Err("no replica r0 on this node".into()));
        }
        let t = self.w.t();
        let peer_up =
            d.m.view(NodeId(1 - n as u16))
                .is_some_and(|v| v.state.is_alive());
        let connected = self
            .w
            .state(n)
            .is_some_and(|s| s.1 == Connection::Connected);
        match kind {
            OpKind::Start => {
                let may_run = d.p.as_ref().is_some_and(|p| p.may_run());
                let peer = peer_up.then_some("node2");
                let look = StartLook {
                    connected,
                    live_peer: peer,
                    may_run,
                    peer_primary: connected
                        && self.w.replica(n).and_then(|r| r.peer_role()) == Some(Role::Primary),
                    syncing_in: connected && self.behind_an_uptodate_peer(n),
                    timed_out: self.now >= deadline,
                };
                match start_step("r0", look) {
                    StartStep::Wait => return None,
                    StartStep::Refuse(why) => return Some(Err(why)),
                    StartStep::Promote => {}
                }
                let wall = self.wall_us(n);
                let r = self.w.nodes[n].r.as_mut()?;
                let was = r.role();
                match r.primary(false, wall, t) {
                    Ok(a) => {
                        self.w.apply(n, a);
                        if was != Role::Primary {
                            self.stats.promotions += 1;
                            self.note(format!("node{} promotes r0", n + 1));
                            if let Err(e) = self.oracle.promoted(&mut self.w, n, "by the group") {
                                self.violation(e);
                            }
                        }
                        Some(Ok(()))
                    }
                    Err(e) => Some(Err(e)),
                }
            }
            OpKind::Stop => {
                let busy = self.w.client_load(n) > 0
                    || self.w.replica(n).is_some_and(|r| r.awaits_peer_flush());
                if busy {
                    return (self.now >= deadline).then(|| Err("requests still in flight".into()));
                }
                let Some(r) = self.w.nodes[n].r.as_mut() else {
                    return Some(Ok(()));
                };
                match r.secondary(t) {
                    Ok(a) => {
                        self.w.apply(n, a);
                        Some(Ok(()))
                    }
                    Err(e) => Some(Err(e)),
                }
            }
            OpKind::Monitor => {
                let good = self.w.state(n).is_some_and(|(role, c, _, disk, peer)| {
                    role == Role::Primary
                        && (disk == DiskState::UpToDate
                            || c == Connection::Connected && peer == DiskState::UpToDate)
                });
                Some(if good {
                    Ok(())
                } else {
                    Err("replica not primary with a good disk".into())
                })
            }
        }
    }

    /// The PDU answers: the target is off before the answer says so.
    fn fences(&mut self) {
        let due: Vec<Fencing> = {
            let (due, later) = std::mem::take(&mut self.pdu)
                .into_iter()
                .partition(|f| f.at <= self.now);
            self.pdu = later;
            due
        };
        for f in due {
            if f.ok {
                self.power_off(f.target, "fenced");
            }
            let (n, started) = f.by;
            let Some(mut d) = self.nodes[n].daemon.take() else {
                continue;
            };
            if d.started == started
                && let Some(p) = d.p.as_mut()
            {
                let result = if f.ok {
                    Ok(())
                } else {
                    Err("the PDU does not answer".to_string())
                };
                p.fence_done(
                    NodeId(f.target as u16),
                    f.id,
                    result,
                    ts(self.now - d.started),
                );
            }
            self.nodes[n].daemon = Some(d);
            self.step_daemon(n, None);
        }
    }

    /// The filesystem's users write while the group's mount is up on a
    /// Primary whose daemon runs (the device is its NBD export).
    fn client(&mut self) {
        for n in 0..2 {
            let serving = !self.quiet
                && self.nodes[n].daemon.is_some()
                && self.nodes[n].held[MOUNT]
                && self.role(n) == Some(Role::Primary);
            if serving && self.w.client_load(n) < 4 && self.rng.chance(30) {
                self.w.client(n);
                self.stats.writes += 1;
            }
        }
    }

    fn check(&mut self) {
        if self.role(0) == Some(Role::Primary) && self.role(1) == Some(Role::Primary) {
            self.violation("two Primaries of r0".into());
        }
        for (i, name) in NAMES.iter().enumerate().skip(1) {
            let holders: Vec<usize> = (0..2)
                .filter(|n| self.nodes[*n].machine && self.nodes[*n].held[i])
                .collect();
            if holders.len() > 1 {
                self.violation(format!("the {name} is up on node1 and node2"));
            }
        }
        while self.events_noted < self.w.events_seen.len() {
            let (n, e) = self.w.events_seen[self.events_noted].clone();
            self.events_noted += 1;
            match e {
                Event::SyncStarted { .. } | Event::SyncFinished { .. } => {}
                Event::StateChanged => {
                    let state = self.w.state(n);
                    if self.states_noted[n] != state {
                        self.states_noted[n] = state;
                        self.note(format!("node{} r0: {state:?}", n + 1));
                    }
                }
                e => self.note(format!("node{} r0: {e:?}", n + 1)),
            }
        }
        if let Some(v) = self.oracle.track(&mut self.w) {
            self.violation(v);
        }
        if let Some(v) = self.w.violations.pop() {
            self.violation(format!("replica: {v}"));
        }
        self.minority();
        let runner = (0..2).find(|n| self.runs_web(*n));
        if let Some(r) = runner {
            if self.last_runner.is_some_and(|l| l != r) {
                self.stats.failovers += 1;
                self.note(format!("web runs on node{} now", r + 1));
            }
            self.last_runner = Some(r);
        }
    }

    fn runs_web(&self, n: usize) -> bool {
        self.nodes[n]
            .daemon
            .as_ref()
            .and_then(|d| d.p.as_ref())
            .and_then(|p| p.state(0))
            == Some(&State::Running)
    }

    /// A data node that the network cuts off from a majority of the votes
    /// (counting only nodes whose daemon runs) must hold nothing within a
    /// bound, which a stop that hangs or fails (of a resource it still
    /// holds) breaks unless the node has
    /// `[self-fence]` (then the peer's fencing keeps the data safe, and
    /// the other invariants check it). Without a third node, two-node
    /// rules apply instead.
    fn minority(&mut self) {
        if self.sc.third == Third::None {
            return;
        }
        let total = self.nodes.len();
        for n in 0..2 {
            let reach = 1
                + (0..total)
                    .filter(|m| {
                        *m != n && self.nodes[*m].daemon.is_some() && self.net.talk(n, *m, self.now)
                    })
                    .count();
            let minority = self.nodes[n].machine && reach * 2 <= total;
            if !minority {
                self.nodes[n].minority_since = None;
                continue;
            }
            let since = *self.nodes[n].minority_since.get_or_insert(self.now);
            let holds =
                self.nodes[n].held.iter().any(|h| *h) || self.role(n) == Some(Role::Primary);
            let node = &self.nodes[n];
            let stuck = (0..RESOURCES).any(|i| node.held[i] && node.stop_stuck[i]);
            let unbounded = !self.sc.self_fence && stuck;
            if holds && self.now - since > MINORITY_BOUND_MS && !unbounded {
                self.violation(format!(
                    "node{} cut off from a majority for {} ms still holds {:?} (r0 {:?})",
                    n + 1,
                    self.now - since,
                    self.nodes[n].held,
                    self.role(n)
                ));
                self.nodes[n].minority_since = None;
            }
        }
    }

    // ---- faults ----

    fn faults(&mut self) {
        let due: Vec<End> = {
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ends)
                .into_iter()
                .partition(|(at, _)| *at <= now);
            self.ends = later;
            due.into_iter().map(|(_, e)| e).collect()
        };
        for e in due {
            self.end(e);
        }
        let failing = self.w.error_rate > 0
            || (0..2).any(|n| self.w.state(n).is_some_and(|s| s.3 == DiskState::Diskless));
        if failing && self.now.is_multiple_of(100) {
            self.repair_disks();
        }
        // A failed disk leaves one copy: no other fault until it is
        // replaced and resynced (two at once would lose data whatever duet
        // did).
        let degraded = failing || self.standing_by.iter().any(|s| *s);
        if self.now >= self.next_fault && self.now < CHAOS_MS && !degraded {
            self.stats.faults += 1;
            self.fault();
            self.next_fault = self.now + 800 + self.rng.below(3_000);
        }
    }

    fn end(&mut self, e: End) {
        match e {
            End::Cut { a, b, link } => {
                self.note(format!("link {link} node{}->node{} restored", a + 1, b + 1));
                self.net.cut(a, b, link, 0);
            }
            End::Partition(n) => {
                self.note(format!("node{} rejoins the network", n + 1));
                for m in 0..self.nodes.len() {
                    for l in 0..LINKS {
                        self.net.cut(n, m, l, 0);
                        self.net.cut(m, n, l, 0);
                    }
                }
            }
            End::Loss(l) => self.net.lose(l, 0, 0),
            End::Delay(l) => self.net.set_delay(l, 5),
            End::DiskErrors => {
                self.note("disk errors end; the administrator replaces the disk".into());
                self.w.error_rate = 0;
            }
            End::Standby(n) => self.standby(n, false),
        }
    }

    fn standby(&mut self, n: usize, on: bool) {
        if let Some(p) = self.nodes[n].daemon.as_mut().and_then(|d| d.p.as_mut()) {
            p.set_standby(on);
            self.note(format!(
                "node{} {}",
                n + 1,
                if on { "standby" } else { "online" }
            ));
            self.step_daemon(n, None);
        }
    }

    fn fault(&mut self) {
        let nodes = self.nodes.len();
        let n = self.rng.below(nodes as u64) as usize;
        let data = self.rng.below(2) as usize;
        let lasting = 500 + self.rng.below(5_000);
        let until = self.now + lasting;
        match self.rng.below(100) {
            0..=11 => self.power_off(n, "power cut"),
            12..=21 => self.kill_daemon(n),
            22..=41 => {
                let mut b = self.rng.below(nodes as u64 - 1) as usize;
                if b >= n {
                    b += 1;
                }
                let link = self.rng.below(LINKS as u64) as usize;
                let both = self.rng.chance(60);
                self.note(format!(
                    "link {link} node{}->node{} cut{} for {lasting} ms",
                    n + 1,
                    b + 1,
                    if both { " both ways" } else { "" }
                ));
                self.net.cut(n, b, link, until);
                self.ends.push((until, End::Cut { a: n, b, link }));
                if both {
                    self.net.cut(b, n, link, until);
                    self.ends.push((until, End::Cut { a: b, b: n, link }));
                }
            }
            42..=53 => {
                self.note(format!("node{} partitioned for {lasting} ms", n + 1));
                for m in (0..nodes).filter(|m| *m != n) {
                    for l in 0..LINKS {
                        self.net.cut(n, m, l, until);
                        self.net.cut(m, n, l, until);
                    }
                }
                self.ends.push((until, End::Partition(n)));
            }
            54..=63 => {
                let link = self.rng.below(LINKS as u64) as usize;
                let percent = 10 + self.rng.below(60);
                self.note(format!("link {link} loses {percent}% for {lasting} ms"));
                self.net.lose(link, percent, until);
                self.ends.push((until, End::Loss(link)));
            }
            64..=71 => {
                let link = self.rng.below(LINKS as u64) as usize;
                let delay = 20 + self.rng.below(150);
                self.note(format!(
                    "link {link} delays up to {delay} ms for {lasting} ms"
                ));
                self.net.set_delay(link, delay);
                self.ends.push((until, End::Delay(link)));
            }
            72..=79 => {
                let step = (1 + self.rng.below(120)) as i64 * 1_000_000;
                let step = if self.rng.chance(50) { -step } else { step };
                self.note(format!(
                    "node{}'s clock steps by {} s",
                    n + 1,
                    step / 1_000_000
                ));
                self.nodes[n].wall_offset += step;
            }
            // One disk at a time, and only while the other holds every
            // write: otherwise its failure loses data whatever duet does.
            80..=87 if Oracle::synced(&self.w) => {
                self.note(format!("node{} disk errors for {lasting} ms", data + 1));
                self.w.failing_node = data;
                self.w.error_rate = 5;
                self.ends.push((until, End::DiskErrors));
            }
            88..=95 => {
                self.standby(data, true);
                self.ends.push((until, End::Standby(data)));
            }
            _ => {
                // A node boots again early (an administrator pressed the
                // button), or nothing.
                if !self.nodes[n].machine {
                    self.nodes[n].boot_at = Some(self.now);
                }
            }
        }
    }

    // ---- the end: heal, and what must hold then ----

    /// Runs the chaos, then heals: every link back, every machine booted,
    /// every daemon running, an administrator resolving what duet leaves
    /// to one. Returns the violations.
    pub fn run(&mut self) {
        while self.now < CHAOS_MS && self.violations.is_empty() {
            self.tick();
        }
        self.note("the faults end: everything healed".into());
        self.net.heal();
        self.w.error_rate = 0;
        self.ends.clear();
        for n in 0..self.nodes.len() {
            self.standby(n, false);
            if !self.nodes[n].machine && self.nodes[n].boot_at.is_none() {
                self.nodes[n].boot_at = Some(self.now + 100);
            }
        }
        let deadline = self.now + HEAL_MS;
        let mut settled_since = None;
        while self.now < deadline && self.violations.is_empty() {
            self.tick();
            if self.now.is_multiple_of(100) {
                self.administrator();
            }
            if self.settled() {
                let since = *settled_since.get_or_insert(self.now);
                // The users stop writing: the disks are compared at rest.
                if self.now - since > 1_000 {
                    self.quiet = true;
                }
                if self.quiet && self.w.outstanding.is_empty() && self.now - since > 2_000 {
                    return self.finish();
                }
            } else {
                settled_since = None;
            }
        }
        if self.violations.is_empty() {
            let states: Vec<_> = (0..2).map(|n| self.w.state(n)).collect();
            let groups: Vec<_> = (0..2)
                .map(|n| {
                    self.nodes[n]
                        .daemon
                        .as_ref()
                        .and_then(|d| d.p.as_ref())
                        .and_then(|p| p.state(0).cloned())
                })
                .collect();
            self.violation(format!(
                "did not heal in {} s: replicas {states:?}, web {groups:?}",
                HEAL_MS / 1000
            ));
        }
    }

    fn settled(&self) -> bool {
        let runners = (0..2).filter(|n| self.runs_web(*n)).count();
        runners == 1 && Oracle::synced(&self.w) && self.pdu.is_empty()
    }

    fn finish(&mut self) {
        let (a, b) = (&self.w.nodes[0].disk, &self.w.nodes[1].disk);
        if a != b {
            let first = (0..SIZE / SECTOR)
                .find(|s| world::sector_id(a, *s) != world::sector_id(b, *s))
                .unwrap_or(0);
            self.violation(format!(
                "the disks differ after healing, first at sector {first}"
            ));
        }
        self.stats.split_brains = self.oracle.split_brains;
    }

    /// What an administrator does when duet leaves it to one: cleanup of
    /// a failed group, discard-my-data after a split brain, attaching a
    /// disk that was detached, confirm-off of a node that is off.
    fn administrator(&mut self) {
        for n in 0..2 {
            let failed = self.nodes[n]
                .daemon
                .as_ref()
                .and_then(|d| d.p.as_ref())
                .and_then(|p| p.state(0))
                .is_some_and(|s| matches!(s, State::Failed { .. } | State::Blocked { .. }));
            if failed {
                self.note(format!(
                    "administrator: duetctl cleanup web on node{}",
                    n + 1
                ));
                let t = self.now - self.nodes[n].daemon.as_ref().map_or(0, |d| d.started);
                if let Some(mut d) = self.nodes[n].daemon.take() {
                    if let Some(mut p) = d.p.take() {
                        let decisions = p.cleanup("web", ts(t)).unwrap_or_default();
                        self.decide(n, &mut d, &p, decisions);
                        d.p = Some(p);
                    }
                    self.nodes[n].daemon = Some(d);
                }
            }
        }
        self.repair_disks();
        self.resolve_split_brain();
    }

    /// A disk that failed is replaced: its Primary is moved off (standby)
    /// and, once Secondary, the disk attached again; it resyncs.
    fn repair_disks(&mut self) {
        for n in 0..2 {
            let detached = self.w.state(n).is_some_and(|s| s.3 == DiskState::Diskless);
            // A Primary serving through its peer: moved off first.
            if detached && self.role(n) == Some(Role::Primary) && !self.standing_by[n] {
                self.note(format!("administrator: node{} has no disk: standby", n + 1));
                self.standing_by[n] = true;
                self.standby(n, true);
            }
            if !detached && self.standing_by[n] && self.role(n) == Some(Role::Secondary) {
                self.standing_by[n] = false;
                self.standby(n, false);
            }
            // The new disk goes in once the old one stopped failing.
            if detached && self.role(n) == Some(Role::Secondary) && self.w.error_rate == 0 {
                self.note(format!("administrator: duetctl attach r0 on node{}", n + 1));
                let a = world::attached(&self.w.nodes[n].meta);
                if let Some(actions) = self.w.nodes[n].r.as_mut().and_then(|r| r.attach(a).ok()) {
                    self.w.apply(n, actions);
                }
            }
        }
    }

    fn resolve_split_brain(&mut self) {
        let standalone = (0..2).any(|n| {
            self.w
                .state(n)
                .is_some_and(|s| s.1 == Connection::StandAlone)
        });
        let split = self
            .w
            .events_seen
            .iter()
            .filter(|(_, e)| matches!(e, Event::SplitBrain { .. }))
            .count();
        if !standalone || split <= self.split_brains_resolved {
            return;
        }
        self.split_brains_resolved = split;
        let loser = if self.role(1) == Some(Role::Primary) {
            0
        } else {
            1
        };
        if self.role(loser) == Some(Role::Primary) {
            return;
        }
        self.note(format!(
            "administrator: split brain, node{} discards its data",
            loser + 1
        ));
        for n in 0..2 {
            if let Some(a) = self.w.nodes[n].r.as_mut().map(|r| r.disconnect()) {
                self.w.apply(n, a);
            }
        }
        self.oracle.discarded(&mut self.w, loser);
        self.connect(1 - loser, false);
        self.connect(loser, true);
    }

    pub fn report(&self) -> String {
        format!(
            "seed {} ({}): {}\nschedule:\n{}",
            self.seed,
            self.sc.name,
            self.violations.join("; "),
            self.log.join("\n")
        )
    }
}
