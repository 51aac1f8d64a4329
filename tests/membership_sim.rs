//! Deterministic simulation of the membership core: N nodes over a simulated
//! network with loss, delay, duplication, reordering, partitions, crashes
//! and restarts, many seeds per run. Every run checks the invariants at every
//! step; a failing seed is printed so it can be replayed alone with
//! `DUET_SIM_SEED=N cargo test --test membership_sim`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use duet::membership::auth::{Auth, AuthAlgorithm};
use duet::membership::wire::Codec;
use duet::membership::{Action, Event, Input, Member, Membership, Params, PeerState, Setup};
use duet::testkit::SplitMix64 as Rng;
use duet::types::{Incarnation, LinkId, NodeId, Timestamp};

const KEEPALIVE: u64 = 200;
const DEADTIME: u64 = 1000;
const INITDEAD: u64 = 3000;
/// Network delay is at most this, below one keepalive, so that the bound
/// "dead within deadtime plus one keepalive" holds by construction.
const MAX_DELAY: u64 = 150;
const RUN_MS: u64 = 30_000;
/// Faults stop this long before the end so liveness can be checked.
const QUIET_MS: u64 = 2 * INITDEAD;

fn params() -> Params {
    Params {
        keepalive: Duration::from_millis(KEEPALIVE),
        warntime: Duration::from_millis(600),
        deadtime: Duration::from_millis(DEADTIME),
        initdead: Duration::from_millis(INITDEAD),
        ping_interval: Duration::from_millis(1000),
        ping_deadtime: Duration::from_millis(3000),
    }
}

fn new_node(n: usize, id: usize, links: usize, incarnation: u64, now: u64) -> Membership {
    let members = (0..n)
        .map(|i| Member {
            name: format!("n{i}"),
            votes: 1,
        })
        .collect();
    let setup = Setup {
        params: params(),
        members,
        local: NodeId(id as u16),
        incarnation: Incarnation(incarnation),
        links,
        ping_targets: 0,
        witness: None,
        config_digest: None,
        protocol: duet::membership::protocol::Announcement::of_build(),
    };
    let auth = Auth::new(AuthAlgorithm::HmacSha256, b"sim key".to_vec()).expect("key");
    Membership::new(setup, Codec::new("sim".into(), auth), ms(now))
}

fn ms(t: u64) -> Timestamp {
    Timestamp::from_millis(t)
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Delivery {
    at: u64,
    order: u64,
    to: usize,
    from: usize,
    link: u8,
    /// Copies made by duplication share it.
    packet: u64,
    /// The sender's life (incarnation) when it sent this.
    life: u64,
    bytes: Vec<u8>,
}

struct Faults {
    loss: u64,
    duplicate: u64,
    /// (from, to, link) pairs cut until the given time.
    cuts: Vec<(usize, usize, u8, u64)>,
}

struct Sim {
    rng: Rng,
    n: usize,
    links: usize,
    now: u64,
    nodes: Vec<Option<Membership>>,
    crashed_at: Vec<Option<u64>>,
    life: Vec<u64>,
    queue: BinaryHeap<Reverse<Delivery>>,
    order: u64,
    faults: Faults,
    /// last_fresh[obs][peer]: when obs last received a first copy of a
    /// packet of peer's current life.
    last_fresh: Vec<Vec<Option<u64>>>,
    delivered: HashSet<(usize, u64)>,
    trace: DefaultHasher,
    next_incarnation: u64,
    dead_events: u64,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let n = 2 + rng.below(4) as usize;
        let links = 1 + rng.below(2) as usize;
        let nodes = (0..n)
            .map(|i| Some(new_node(n, i, links, 1000 + i as u64, 0)))
            .collect();
        let faults = Faults {
            loss: rng.below(30),
            duplicate: rng.below(10),
            cuts: Vec::new(),
        };
        Sim {
            rng,
            n,
            links,
            now: 0,
            nodes,
            crashed_at: vec![None; n],
            life: (0..n).map(|i| 1000 + i as u64).collect(),
            queue: BinaryHeap::new(),
            order: 0,
            faults,
            last_fresh: vec![vec![None; n]; n],
            delivered: HashSet::new(),
            trace: DefaultHasher::new(),
            next_incarnation: 10_000,
            dead_events: 0,
        }
    }

    fn faulty(&self) -> bool {
        self.now + QUIET_MS < RUN_MS
    }

    fn cut(&self, from: usize, to: usize, link: u8) -> bool {
        self.faults
            .cuts
            .iter()
            .any(|&(f, t, l, until)| f == from && t == to && l == link && self.now < until)
    }

    fn send(&mut self, from: usize, link: LinkId, bytes: Vec<u8>) {
        self.order += 1;
        let packet = self.order;
        for to in (0..self.n).filter(|&to| to != from) {
            let faulty = self.faulty();
            if faulty && (self.cut(from, to, link.0) || self.rng.chance(self.faults.loss)) {
                continue;
            }
            let copies = if faulty && self.rng.chance(self.faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                self.order += 1;
                let delay = self.rng.below(MAX_DELAY + 1);
                self.queue.push(Reverse(Delivery {
                    at: self.now + delay,
                    order: self.order,
                    to,
                    from,
                    link: link.0,
                    packet,
                    life: self.life[from],
                    bytes: bytes.clone(),
                }));
            }
        }
    }

    fn run_actions(&mut self, id: usize, actions: Vec<Action>) {
        for action in actions {
            action_trace(&action).hash(&mut self.trace);
            match action {
                Action::Send { link, bytes } => self.send(id, link, bytes),
                Action::Event(e) => self.check_event(id, &e),
                Action::Ping { .. } => {}
            }
        }
    }

    /// No peer is declared dead while its packets arrive within deadtime.
    fn check_event(&mut self, obs: usize, e: &Event) {
        if let Event::Peer {
            node,
            to: PeerState::Dead,
            ..
        } = e
        {
            self.dead_events += 1;
            let peer = node.0 as usize;
            if let Some(t) = self.last_fresh[obs][peer] {
                assert!(
                    self.now - t >= DEADTIME,
                    "n{obs} declared n{peer} dead at {} ms, but a fresh packet arrived at {t} ms",
                    self.now
                );
            }
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let Some(node) = self.nodes[d.to].as_mut() else {
            return;
        };
        // Packets of an earlier life of a restarted node are rightly
        // refused, so they prove nothing.
        if d.life == self.life[d.from] && self.delivered.insert((d.to, d.packet)) {
            self.last_fresh[d.to][d.from] = Some(self.now);
        }
        let input = Input::Datagram {
            link: LinkId(d.link),
            bytes: &d.bytes,
        };
        let actions = node.handle(input, ms(self.now));
        self.run_actions(d.to, actions);
    }

    fn tick(&mut self, id: usize) {
        if let Some(node) = self.nodes[id].as_mut() {
            let actions = node.handle(Input::Tick, ms(self.now));
            self.run_actions(id, actions);
        }
    }

    /// Random faults: a partition of a random link between two nodes, a
    /// crash, or a restart of a crashed node.
    fn maybe_fault(&mut self) {
        if !self.faulty() || !self.rng.chance(2) {
            return;
        }
        let a = self.rng.below(self.n as u64) as usize;
        let b = self.rng.below(self.n as u64) as usize;
        match self.rng.below(10) {
            0 => self.crash(a),
            1 => self.restart(a),
            _ if a != b => {
                let link = self.rng.below(self.links as u64) as u8;
                let until = self.now + self.rng.below(3 * DEADTIME);
                self.faults.cuts.push((a, b, link, until));
                if self.rng.chance(70) {
                    self.faults.cuts.push((b, a, link, until));
                }
            }
            _ => {}
        }
    }

    fn crash(&mut self, id: usize) {
        if self.nodes[id].take().is_some() {
            self.crashed_at[id] = Some(self.now);
        }
    }

    fn restart(&mut self, id: usize) {
        if self.nodes[id].is_none() {
            self.next_incarnation += 1;
            let inc = self.next_incarnation;
            self.nodes[id] = Some(new_node(self.n, id, self.links, inc, self.now));
            self.crashed_at[id] = None;
            self.life[id] = inc;
            for obs in 0..self.n {
                self.last_fresh[obs][id] = None;
            }
        }
    }

    /// Every node alive sees every crashed node dead by crash + deadtime +
    /// one keepalive.
    fn check_crashed_are_dead(&self) {
        for (peer, crashed) in self.crashed_at.iter().enumerate() {
            let Some(c) = crashed else { continue };
            if self.now < c + DEADTIME + KEEPALIVE {
                continue;
            }
            for (obs, node) in self.nodes.iter().enumerate() {
                let Some(node) = node else { continue };
                let view = node.view(NodeId(peer as u16)).expect("view");
                // A node that started after the crash never saw the peer:
                // it is Init until initdead, which is allowed.
                if view.incarnation.is_none() && view.state == PeerState::Init {
                    continue;
                }
                assert_eq!(
                    view.state,
                    PeerState::Dead,
                    "n{obs} still sees n{peer} as {:?} at {} ms, crashed at {c} ms",
                    view.state,
                    self.now
                );
            }
        }
    }

    fn next_time(&self) -> u64 {
        let wake = self
            .nodes
            .iter()
            .flatten()
            .map(|m| m.next_wakeup().0.as_millis() as u64);
        let delivery = self.queue.peek().map(|Reverse(d)| d.at);
        wake.chain(delivery).min().unwrap_or(self.now + 1)
    }

    fn run(&mut self) {
        for id in 0..self.n {
            self.tick(id);
        }
        let mut steps = 0u64;
        while self.now < RUN_MS {
            steps += 1;
            assert!(steps < 10_000_000, "simulation does not progress");
            self.now = self.next_time().max(self.now);
            while let Some(Reverse(d)) = self.queue.peek() {
                if d.at > self.now {
                    break;
                }
                let Some(Reverse(d)) = self.queue.pop() else {
                    break;
                };
                self.deliver(d);
            }
            for id in 0..self.n {
                self.tick(id);
            }
            self.check_crashed_are_dead();
            self.maybe_fault();
            // Keep the clock moving even when nothing is due.
            if self.next_time() <= self.now {
                self.now += 1;
            }
        }
        self.check_converged();
    }

    /// After the quiet period, every running node sees every running node
    /// up and every crashed node dead, and quorum matches the count.
    fn check_converged(&self) {
        let running: Vec<usize> = (0..self.n).filter(|&i| self.nodes[i].is_some()).collect();
        for &obs in &running {
            let node = self.nodes[obs].as_ref().expect("running");
            for peer in 0..self.n {
                let want = if running.contains(&peer) {
                    PeerState::Up
                } else {
                    PeerState::Dead
                };
                let got = node.view(NodeId(peer as u16)).expect("view").state;
                assert_eq!(got, want, "n{obs} sees n{peer} as {got:?} at the end");
            }
            assert_eq!(
                node.quorate(),
                2 * running.len() > self.n,
                "quorum of n{obs}"
            );
        }
    }
}

fn action_trace(a: &Action) -> String {
    match a {
        Action::Send { link, bytes } => format!("send {link} {}", bytes.len()),
        other => format!("{other:?}"),
    }
}

fn run_seed(seed: u64) -> (u64, u64) {
    let mut sim = Sim::new(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run()));
    if let Err(e) = outcome {
        eprintln!("membership simulation failed with seed {seed}");
        std::panic::resume_unwind(e);
    }
    (sim.trace.finish(), sim.dead_events)
}

#[test]
fn membership_holds_its_invariants_under_faults() {
    let seeds: Vec<u64> = match std::env::var("DUET_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("DUET_SIM_SEED is a number")],
        Err(_) => (1..=200).collect(),
    };
    let mut deaths = 0;
    for seed in &seeds {
        deaths += run_seed(*seed).1;
    }
    // The faults must actually have bitten, or the test proves nothing.
    assert!(deaths > seeds.len() as u64 / 2, "only {deaths} deaths seen");
    println!("{} seeds, {deaths} peer deaths checked", seeds.len());
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for seed in [7, 42, 1234] {
        assert_eq!(run_seed(seed), run_seed(seed), "seed {seed}");
    }
}
