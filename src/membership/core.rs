//! The membership state machine. No I/O and no clock: the shell passes in
//! datagrams, link changes, ping replies and the current time, and carries
//! out the actions returned (send bytes, send a ping, report an event). It
//! asks `next_wakeup` when to call again with `Input::Tick`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::config::Config;
use crate::membership::echo_records::Echo;
use crate::membership::fence_records::{FenceNote, FenceRecord};
use crate::membership::node_state::NodeState;
use crate::membership::protocol::{Announcement, ProtocolRange};
use crate::membership::quorum::{self, HeardVote, PeerReport};
use crate::membership::quorum_records::{QuorumRecords, Seen, Vote};
use crate::membership::replay::ReplayWindow;
use crate::membership::state::{Event, LinkState, PeerState, PingTarget};
use crate::membership::wire::{Codec, DropReason, Heartbeat, MAX_PACKET};
use crate::membership::witness::{self, Report, VoteChange, WitnessCore};
use crate::types::{Incarnation, LinkId, NodeId, Seq, Timestamp};

/// The timings the core works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub keepalive: Duration,
    pub warntime: Duration,
    pub deadtime: Duration,
    pub initdead: Duration,
    pub ping_interval: Duration,
    pub ping_deadtime: Duration,
}

impl Params {
    pub fn from_config(config: &Config) -> Self {
        let t = config.timings;
        Params {
            keepalive: t.keepalive,
            warntime: t.warntime,
            deadtime: t.deadtime,
            initdead: t.initdead,
            ping_interval: config.ping.interval,
            ping_deadtime: config.ping.deadtime,
        }
    }
}

/// A node of the cluster as the core knows it from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub votes: u32,
}

/// Everything the core needs to start, but the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub params: Params,
    pub members: Vec<Member>,
    pub local: NodeId,
    pub incarnation: Incarnation,
    /// Number of configured links.
    pub links: usize,
    /// Number of configured ping nodes.
    pub ping_targets: usize,
    /// The witness node, if the cluster has one (docs/quorum.md).
    pub witness: Option<NodeId>,
    /// The digest of this node's config, announced in every heartbeat
    /// (the daemon sets it; `None` announces none).
    pub config_digest: Option<u64>,
    /// What this node announces it speaks. A node of version 1 alone
    /// sends exactly what builds of version 1 sent: no record 7 or 8.
    pub protocol: Announcement,
}

impl Setup {
    pub fn from_config(config: &Config, local: NodeId, incarnation: Incarnation) -> Self {
        Setup {
            params: Params::from_config(config),
            members: config
                .nodes
                .iter()
                .map(|n| Member {
                    name: n.name.clone(),
                    votes: n.votes,
                })
                .collect(),
            local,
            incarnation,
            links: config.links.len(),
            ping_targets: config.ping.nodes.len(),
            witness: config.witness(),
            config_digest: None,
            protocol: Announcement::of_build(),
        }
    }
}

pub enum Input<'a> {
    /// A datagram arrived on one of our links.
    Datagram { link: LinkId, bytes: &'a [u8] },
    /// Time passed; nothing else happened.
    Tick,
    /// Our own interface for a link went down or came back.
    LocalLink { link: LinkId, up: bool },
    /// A ping node answered an echo request.
    PingReply { target: PingTarget },
    /// What this node now announces (its `seq` is ignored: the core
    /// numbers the changes).
    LocalState(NodeState),
    /// The replication fencing notes this node now announces (record 5),
    /// numbered by the core like the state; sent in every heartbeat from
    /// the first on, even empty (an empty list withdraws the last one).
    LocalFences(Vec<FenceNote>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to every peer on this link (as the link's mode says).
    Send {
        link: LinkId,
        bytes: Vec<u8>,
    },
    /// Send an ICMP echo request to this ping node.
    Ping {
        target: PingTarget,
    },
    Event(Event),
}

/// What the core knows of one node, for status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub state: PeerState,
    pub incarnation: Option<Incarnation>,
    pub last_seen: Option<Timestamp>,
    pub links: Vec<LinkState>,
    pub ping_reachable: u16,
    /// What it announced last (standby, groups).
    pub node_state: Option<NodeState>,
    /// The digest of its config, as it announced it (this node's own for
    /// the local node).
    pub config_digest: Option<u64>,
    /// What it speaks, once heard (version 1 alone if it announces none).
    pub protocol: Option<Announcement>,
    /// Per link: the last heartbeat round trip, where it echoes ours.
    pub rtt: Vec<Option<Duration>>,
    /// Heartbeats it sent that never arrived (gaps in its sequence
    /// numbers, on every link), since this daemon started.
    pub lost: u64,
    /// How often it went late (warntime) since this daemon started.
    pub late: u64,
}

#[derive(Debug, Clone)]
struct PeerLink {
    state: LinkState,
    last_seen: Option<Timestamp>,
    /// Keyed by the link the sender says it used (its sequence counter).
    replay: ReplayWindow,
    /// The newest sequence number taken on it, for the lost count.
    highest: Option<Seq>,
    /// By our link index: the newest heartbeat taken from the peer on it
    /// (its link index, its seq, when), echoed in our next heartbeat.
    taken: Option<(LinkId, Seq, Timestamp)>,
    /// By our link index: the last round trip the peer's echo gave.
    rtt: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Peer {
    state: PeerState,
    incarnation: Option<Incarnation>,
    last_seen: Option<Timestamp>,
    links: Vec<PeerLink>,
    ping_reachable: u16,
    /// The newest state it announced in this incarnation.
    node_state: Option<NodeState>,
    /// The newest "nodes I see" it announced in this incarnation.
    seen: Option<Seen>,
    /// Its newest fencing notes in this incarnation.
    fences: Option<FenceRecord>,
    /// Its config's digest, as last heard in this incarnation.
    config: Option<u64>,
    /// What it speaks, as last heard.
    protocol: Option<Announcement>,
    lost: u64,
    late: u64,
}

#[derive(Debug, Clone)]
struct LocalLink {
    up: bool,
    next_seq: u64,
    /// The newest heartbeats sent on it and when, to time their echoes.
    sent: VecDeque<(Seq, Timestamp)>,
}

/// How many sent heartbeats per link wait for an echo: a peer echoes the
/// newest it took within one of its own keepalives.
const SENT_KEPT: usize = 16;

#[derive(Debug, Clone)]
struct Pinged {
    last_reply: Option<Timestamp>,
    reachable: bool,
    next_send: Timestamp,
}

pub struct Membership {
    params: Params,
    codec: Codec,
    members: Vec<Member>,
    local: NodeId,
    incarnation: Incarnation,
    started: Timestamp,
    now: Timestamp,
    peers: Vec<Peer>,
    links: Vec<LocalLink>,
    pings: Vec<Pinged>,
    next_send: Timestamp,
    quorate: bool,
    drops: HashMap<DropReason, u64>,
    /// What this node announces (standby, groups), if anything yet.
    local_state: Option<NodeState>,
    /// This node's fencing notes, once it has any to send.
    local_fences: Option<FenceRecord>,
    config_digest: Option<u64>,
    protocol: Announcement,
    quorum: QuorumState,
}

/// Quorum with a witness; unused without one.
struct QuorumState {
    witness: Option<NodeId>,
    /// On a data node: the witness's vote as heard.
    heard: HeardVote,
    /// On the witness: where its vote goes.
    core: Option<WitnessCore>,
    /// Numbers this node's "nodes I see" records.
    seen_seq: u64,
    /// On a data node: its partition and whether it counts the vote, as of
    /// the last step.
    partition: Vec<NodeId>,
    vote_counted: bool,
}

impl Membership {
    /// The first heartbeats go out at the first input.
    pub fn new(setup: Setup, codec: Codec, now: Timestamp) -> Self {
        let Setup {
            params,
            members,
            local,
            incarnation,
            links,
            ping_targets,
            witness,
            config_digest,
            protocol,
        } = setup;
        let witness_core = (witness == Some(local)).then(|| {
            let votes = members.iter().map(|m| m.votes).collect();
            WitnessCore::new(local, votes, witness::hold(params.deadtime), now)
        });
        let peer = Peer {
            state: PeerState::Init,
            incarnation: None,
            last_seen: None,
            links: vec![
                PeerLink {
                    state: LinkState::Init,
                    last_seen: None,
                    replay: ReplayWindow::default(),
                    highest: None,
                    taken: None,
                    rtt: None,
                };
                links
            ],
            ping_reachable: 0,
            node_state: None,
            seen: None,
            fences: None,
            config: None,
            protocol: None,
            lost: 0,
            late: 0,
        };
        let pinged = Pinged {
            last_reply: None,
            reachable: false,
            next_send: now,
        };
        let mut m = Membership {
            params,
            codec,
            peers: vec![peer; members.len()],
            members,
            local,
            incarnation,
            started: now,
            now,
            links: vec![
                LocalLink {
                    up: true,
                    next_seq: 1,
                    sent: VecDeque::new(),
                };
                links
            ],
            pings: vec![pinged; ping_targets],
            next_send: now,
            quorate: false,
            drops: HashMap::new(),
            local_state: None,
            local_fences: None,
            config_digest,
            protocol,
            quorum: QuorumState {
                witness,
                heard: HeardVote::default(),
                core: witness_core,
                seen_seq: 0,
                partition: vec![local],
                vote_counted: false,
            },
        };
        m.quorate = m.compute_quorate();
        m
    }

    /// Feeds one input at time `now` (which must not go backwards) and
    /// returns what to do.
    pub fn handle(&mut self, input: Input<'_>, now: Timestamp) -> Vec<Action> {
        self.now = self.now.max(now);
        let mut out = Vec::new();
        match input {
            Input::Datagram { link, bytes } => self.on_datagram(link, bytes, &mut out),
            Input::Tick => {}
            Input::LocalLink { link, up } => self.on_local_link(link, up, &mut out),
            Input::PingReply { target } => self.on_ping_reply(target, &mut out),
            Input::LocalState(state) => self.on_local_state(state),
            Input::LocalFences(notes) => self.on_local_fences(notes),
        }
        self.advance(&mut out);
        out
    }

    /// A change of what this node announces goes out at once (a hand-over
    /// waits for it), numbered so receivers keep the newest.
    fn on_local_state(&mut self, mut state: NodeState) {
        let known = self.local_state.as_ref();
        // Everything but the sequence number counts as a change.
        if known.is_some_and(|k| {
            NodeState {
                seq: k.seq,
                ..state.clone()
            } == *k
        }) {
            return;
        }
        state.seq = known.map_or(1, |k| k.seq + 1);
        self.local_state = Some(state);
        self.next_send = self.now;
    }

    /// A change goes out at once: a Primary holds its writes until its
    /// peer answers, and the peer until it hears.
    fn on_local_fences(&mut self, notes: Vec<FenceNote>) {
        if self.local_fences.as_ref().is_some_and(|k| k.notes == notes) {
            return;
        }
        let seq = self.local_fences.as_ref().map_or(1, |k| k.seq + 1);
        self.local_fences = Some(FenceRecord { seq, notes });
        self.next_send = self.now;
    }

    /// The fencing notes `node` announced last (in its incarnation now);
    /// none from this node itself or one never heard.
    pub fn fences(&self, node: NodeId) -> &[FenceNote] {
        if node == self.local {
            return &[];
        }
        self.peers
            .get(usize::from(node.0))
            .and_then(|p| p.fences.as_ref())
            .map_or(&[], |f| f.notes.as_slice())
    }

    /// When the core next needs a `Tick`, at the latest.
    pub fn next_wakeup(&self) -> Timestamp {
        let p = &self.params;
        let mut times = vec![self.next_send];
        for (id, peer) in self.peers.iter().enumerate() {
            if id == self.local.0 as usize {
                continue;
            }
            match peer.last_seen {
                None => times.push(self.started + p.initdead),
                Some(t) => times.extend([t + p.warntime, t + p.deadtime]),
            }
            for link in &peer.links {
                match link.last_seen {
                    None => times.push(self.started + p.initdead),
                    Some(t) => times.push(t + p.deadtime),
                }
            }
        }
        for ping in &self.pings {
            times.push(ping.next_send);
            let since = ping.last_reply.unwrap_or(self.started);
            times.push(since + p.ping_deadtime);
        }
        if let Some(core) = &self.quorum.core {
            times.extend(core.next_wakeup(self.now));
        }
        times.extend(self.quorum.heard.expiry(p.deadtime));
        let future = times.into_iter().filter(|t| *t > self.now).min();
        future.unwrap_or(self.now + p.keepalive)
    }

    pub fn quorate(&self) -> bool {
        self.quorate
    }

    /// The witness node, if the cluster has one.
    pub fn witness(&self) -> Option<NodeId> {
        self.quorum.witness
    }

    /// With a witness, on a data node: this node's partition (itself and
    /// the data peers that it and they see alive both ways), as of the
    /// last input. Without a witness, just this node.
    pub fn partition(&self) -> &[NodeId] {
        &self.quorum.partition
    }

    /// On a data node: whether it counts the witness's vote now.
    pub fn witness_vote_counted(&self) -> bool {
        self.quorum.vote_counted
    }

    /// On the witness: its vote as it goes out. On a data node: the latest
    /// vote heard from the witness.
    pub fn witness_vote(&self) -> Option<Vote> {
        if let Some(core) = &self.quorum.core {
            return Some(core.vote());
        }
        self.quorum.heard.latest().map(|(epoch, granted)| Vote {
            epoch,
            granted: granted.to_vec(),
        })
    }

    /// The digest announced from the next heartbeat on (after a reload
    /// made the file the running config).
    pub fn set_config_digest(&mut self, digest: Option<u64>) {
        self.config_digest = digest;
    }

    /// The protocol versions this node speaks.
    pub fn speaks(&self) -> ProtocolRange {
        self.protocol.range
    }

    pub fn local(&self) -> NodeId {
        self.local
    }

    pub fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// How many ping nodes this node reaches.
    pub fn ping_reachable(&self) -> u16 {
        let n = self.pings.iter().filter(|p| p.reachable).count();
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    pub fn ping_target_reachable(&self, target: PingTarget) -> Option<bool> {
        self.pings.get(target.0).map(|p| p.reachable)
    }

    /// Dropped datagrams so far, by reason.
    pub fn drops(&self) -> &HashMap<DropReason, u64> {
        &self.drops
    }

    pub fn view(&self, node: NodeId) -> Option<NodeView> {
        if node == self.local {
            return Some(NodeView {
                state: PeerState::Up,
                incarnation: Some(self.incarnation),
                last_seen: Some(self.now),
                links: self
                    .links
                    .iter()
                    .map(|l| if l.up { LinkState::Up } else { LinkState::Down })
                    .collect(),
                ping_reachable: self.ping_reachable(),
                node_state: self.local_state.clone(),
                config_digest: self.config_digest,
                protocol: Some(self.protocol.clone()),
                rtt: vec![None; self.links.len()],
                lost: 0,
                late: 0,
            });
        }
        let peer = self.peers.get(node.0 as usize)?;
        Some(NodeView {
            state: peer.state,
            incarnation: peer.incarnation,
            last_seen: peer.last_seen,
            links: peer.links.iter().map(|l| l.state).collect(),
            ping_reachable: peer.ping_reachable,
            node_state: peer.node_state.clone(),
            config_digest: peer.config,
            protocol: peer.protocol.clone(),
            rtt: peer.links.iter().map(|l| l.rtt).collect(),
            lost: peer.lost,
            late: peer.late,
        })
    }

    fn drop_packet(&mut self, link: LinkId, reason: DropReason, out: &mut Vec<Action>) {
        *self.drops.entry(reason).or_default() += 1;
        out.push(Action::Event(Event::Dropped { link, reason }));
    }

    fn on_datagram(&mut self, link: LinkId, bytes: &[u8], out: &mut Vec<Action>) {
        if link.0 as usize >= self.links.len() {
            return;
        }
        let hb = match self.codec.decode(bytes) {
            Ok(hb) => hb,
            Err(reason) => return self.drop_packet(link, reason, out),
        };
        let Some(node) = self.members.iter().position(|m| m.name == hb.node) else {
            return self.drop_packet(link, DropReason::UnknownNode, out);
        };
        if hb.link.0 as usize >= self.links.len() {
            return self.drop_packet(link, DropReason::Malformed, out);
        }
        if node == self.local.0 as usize {
            // Our own broadcast or multicast, looped back: not news.
            if hb.incarnation != self.incarnation {
                out.push(Action::Event(Event::NameConflict {
                    link,
                    incarnation: hb.incarnation,
                }));
            }
            return;
        }
        let node = NodeId(node as u16);
        if !self.accept_sequence(node, &hb, out) {
            return self.drop_packet(link, DropReason::Replay, out);
        }
        self.record_alive(node, link, &hb, out);
    }

    /// Replay check: a newer incarnation starts afresh; an older one, or a
    /// sequence number already seen, is refused.
    fn accept_sequence(&mut self, node: NodeId, hb: &Heartbeat, out: &mut Vec<Action>) -> bool {
        let peer = &mut self.peers[node.0 as usize];
        match peer.incarnation {
            Some(known) if hb.incarnation < known => return false,
            Some(known) if hb.incarnation == known => {}
            previous => {
                for l in &mut peer.links {
                    l.replay = ReplayWindow::default();
                    l.highest = None;
                    // Its sequence numbers start again: an old one echoed
                    // or timed would match the wrong heartbeat.
                    l.taken = None;
                    l.rtt = None;
                }
                peer.incarnation = Some(hb.incarnation);
                peer.node_state = None;
                peer.seen = None;
                peer.fences = None;
                peer.config = None;
                out.push(Action::Event(Event::Incarnation {
                    node,
                    previous,
                    current: hb.incarnation,
                }));
            }
        }
        let pl = &mut peer.links[hb.link.0 as usize];
        if !pl.replay.accept(hb.seq) {
            return false;
        }
        // A gap counts as lost when a newer number arrives; one of it
        // arriving late (the window takes each number once) is found again.
        match pl.highest {
            Some(h) if hb.seq > h => {
                let gap = hb.seq.0.saturating_sub(h.0).saturating_sub(1);
                peer.lost = peer.lost.saturating_add(gap);
            }
            Some(_) => peer.lost = peer.lost.saturating_sub(1),
            None => {}
        }
        pl.highest = Some(pl.highest.map_or(hb.seq, |h| h.max(hb.seq)));
        true
    }

    fn record_alive(&mut self, node: NodeId, link: LinkId, hb: &Heartbeat, out: &mut Vec<Action>) {
        let now = self.now;
        self.time_echoes(node, &hb.echoes);
        self.note_protocol(node, hb.protocol.as_ref(), out);
        let peer = &mut self.peers[node.0 as usize];
        peer.last_seen = Some(now);
        peer.links[link.0 as usize].taken = Some((hb.link, hb.seq, now));
        if hb.config.is_some() {
            peer.config = hb.config;
        }
        if peer.ping_reachable != hb.ping_reachable {
            peer.ping_reachable = hb.ping_reachable;
            out.push(Action::Event(Event::PeerPing {
                node,
                reachable: hb.ping_reachable,
            }));
        }
        if let Some(st) = &hb.state
            && peer
                .node_state
                .as_ref()
                .is_none_or(|known| st.seq > known.seq)
        {
            peer.node_state = Some(st.clone());
            out.push(Action::Event(Event::PeerState { node }));
        }
        if let Some(seen) = &hb.quorum.seen
            && peer.seen.as_ref().is_none_or(|known| seen.seq > known.seq)
        {
            peer.seen = Some(seen.clone());
        }
        if let Some(f) = &hb.fences
            && peer.fences.as_ref().is_none_or(|known| f.seq > known.seq)
        {
            peer.fences = Some(f.clone());
        }
        if let Some(vote) = &hb.quorum.vote
            && self.quorum.witness == Some(node)
            && self.quorum.heard.hear(hb.incarnation, vote, now)
        {
            out.push(Action::Event(Event::WitnessVote {
                epoch: vote.epoch,
                granted: vote.granted.clone(),
                withdrawn: vote.granted.is_empty(),
            }));
        }
        if !self.links[link.0 as usize].up {
            // Our side of the link is down; whatever arrived came some
            // other way and says nothing about this link.
            return;
        }
        let pl = &mut peer.links[link.0 as usize];
        pl.last_seen = Some(now);
        set_link_state(node, link, pl, LinkState::Up, out);
    }

    /// The round trip of each of our heartbeats the peer echoes, by the
    /// link we sent it on.
    fn time_echoes(&mut self, node: NodeId, echoes: &[Echo]) {
        let now = self.now;
        for e in echoes.iter().filter(|e| e.node == self.local) {
            let Some(sent) = self.links.get(e.link.0 as usize).and_then(|l| {
                l.sent
                    .iter()
                    .find(|(seq, _)| *seq == e.seq)
                    .map(|(_, at)| *at)
            }) else {
                continue;
            };
            let rtt = now.since(sent).saturating_sub(e.held);
            self.peers[node.0 as usize].links[e.link.0 as usize].rtt = Some(rtt);
        }
    }

    /// A peer that announces nothing is a build of version 1.
    fn note_protocol(
        &mut self,
        node: NodeId,
        announced: Option<&Announcement>,
        out: &mut Vec<Action>,
    ) {
        let announced = announced.cloned().unwrap_or(Announcement {
            range: ProtocolRange::FIRST,
            software: String::new(),
        });
        let peer = &mut self.peers[node.0 as usize];
        if peer.protocol.as_ref() == Some(&announced) {
            return;
        }
        let common = self.protocol.range.common(announced.range);
        peer.protocol = Some(announced.clone());
        out.push(Action::Event(Event::Protocol {
            node,
            announced,
            common,
        }));
    }

    fn on_local_link(&mut self, link: LinkId, up: bool, out: &mut Vec<Action>) {
        let Some(local) = self.links.get_mut(link.0 as usize) else {
            return;
        };
        local.up = up;
        if up {
            return;
        }
        for (id, peer) in self.peers.iter_mut().enumerate() {
            if id == self.local.0 as usize {
                continue;
            }
            let pl = &mut peer.links[link.0 as usize];
            pl.last_seen = None;
            set_link_state(NodeId(id as u16), link, pl, LinkState::Down, out);
        }
    }

    fn on_ping_reply(&mut self, target: PingTarget, out: &mut Vec<Action>) {
        let now = self.now;
        let Some(p) = self.pings.get_mut(target.0) else {
            return;
        };
        p.last_reply = Some(now);
        if !p.reachable {
            p.reachable = true;
            out.push(Action::Event(Event::Ping {
                target,
                reachable: true,
            }));
        }
    }

    /// Everything that depends on time: peer and link timeouts, quorum,
    /// ping timeouts, and heartbeats due.
    fn advance(&mut self, out: &mut Vec<Action>) {
        self.expire_peers(out);
        self.expire_pings(out);
        self.decide_vote(out);
        let quorate = self.compute_quorate();
        if quorate != self.quorate {
            self.quorate = quorate;
            out.push(Action::Event(Event::Quorum { quorate }));
        }
        self.send_due(out);
    }

    fn expire_peers(&mut self, out: &mut Vec<Action>) {
        let (now, p, started) = (self.now, self.params, self.started);
        let initdead_over = now.since(started) >= p.initdead;
        for (id, peer) in self.peers.iter_mut().enumerate() {
            if id == self.local.0 as usize {
                continue;
            }
            let node = NodeId(id as u16);
            for (l, pl) in peer.links.iter_mut().enumerate() {
                let expired = match pl.last_seen {
                    Some(t) => now.since(t) >= p.deadtime,
                    None => initdead_over,
                };
                if expired {
                    set_link_state(node, LinkId(l as u8), pl, LinkState::Down, out);
                }
            }
            let to = match peer.last_seen {
                None if initdead_over => PeerState::Dead,
                None => PeerState::Init,
                Some(t) if now.since(t) >= p.deadtime => PeerState::Dead,
                Some(t) if now.since(t) >= p.warntime => PeerState::Late,
                Some(_) => PeerState::Up,
            };
            if to != peer.state {
                peer.late += u64::from(to == PeerState::Late);
                out.push(Action::Event(Event::Peer {
                    node,
                    from: peer.state,
                    to,
                }));
                peer.state = to;
            }
        }
    }

    fn expire_pings(&mut self, out: &mut Vec<Action>) {
        let (now, p, started) = (self.now, self.params, self.started);
        for (i, ping) in self.pings.iter_mut().enumerate() {
            let since = ping.last_reply.unwrap_or(started);
            if ping.reachable && now.since(since) >= p.ping_deadtime {
                ping.reachable = false;
                out.push(Action::Event(Event::Ping {
                    target: PingTarget(i),
                    reachable: false,
                }));
            }
            if now >= ping.next_send {
                ping.next_send = now + p.ping_interval;
                out.push(Action::Ping {
                    target: PingTarget(i),
                });
            }
        }
    }

    fn send_due(&mut self, out: &mut Vec<Action>) {
        if self.now < self.next_send {
            return;
        }
        self.next_send = self.now + self.params.keepalive;
        let ping_reachable = self.ping_reachable();
        let name = self.members[self.local.0 as usize].name.clone();
        let quorum = self.quorum_records();
        // Heartbeats go out on every link, even one whose interface looks
        // down: the flag can lag the carrier (a veth just brought up), and
        // a heartbeat sent in vain costs nothing while one not sent can
        // make a live node look dead.
        let speaks_2 = self.protocol.range.max >= 2;
        let protocol = speaks_2.then(|| self.protocol.clone());
        for i in 0..self.links.len() {
            let echoes = if speaks_2 {
                self.echoes(LinkId(i as u8))
            } else {
                Vec::new()
            };
            let (now, link) = (self.now, &mut self.links[i]);
            let hb = Heartbeat {
                node: name.clone(),
                incarnation: self.incarnation,
                link: LinkId(i as u8),
                seq: Seq(link.next_seq),
                ping_reachable,
                state: self.local_state.clone(),
                quorum: quorum.clone(),
                fences: self.local_fences.clone(),
                config: self.config_digest,
                protocol: protocol.clone(),
                echoes,
            };
            if link.sent.len() == SENT_KEPT {
                link.sent.pop_front();
            }
            link.sent.push_back((Seq(link.next_seq), now));
            link.next_seq += 1;
            out.push(Action::Send {
                link: LinkId(i as u8),
                bytes: encode_within_limit(&self.codec, hb),
            });
        }
    }

    /// The newest heartbeat taken from each peer on our `link`, for the
    /// echo record.
    fn echoes(&self, link: LinkId) -> Vec<Echo> {
        let now = self.now;
        self.peers
            .iter()
            .enumerate()
            .filter_map(|(id, p)| {
                let (their_link, seq, at) = p.links.get(link.0 as usize)?.taken?;
                Some(Echo {
                    node: NodeId(id as u16),
                    link: their_link,
                    seq,
                    held: now.since(at),
                })
            })
            .collect()
    }

    /// On the witness: looks again where its vote goes. A change goes out
    /// at once, so a withdrawal reaches the old side as early as it can.
    fn decide_vote(&mut self, out: &mut Vec<Action>) {
        let Some(core) = self.quorum.core.as_mut() else {
            return;
        };
        let reports: Vec<Report<'_>> = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| Report {
                node: NodeId(i as u16),
                alive: p.state.is_alive(),
                seen: p.seen.as_ref(),
            })
            .collect();
        let Some(change) = core.decide(&reports, self.now) else {
            return;
        };
        let (epoch, granted, withdrawn) = match change {
            VoteChange::Granted(v) => (v.epoch, v.granted, false),
            VoteChange::Withdrawn { epoch, to } => (epoch, to, true),
        };
        out.push(Action::Event(Event::WitnessVote {
            epoch,
            granted,
            withdrawn,
        }));
        self.next_send = self.now;
    }

    /// What this node adds to its heartbeats for quorum: a data node the
    /// peers it sees alive (with a witness, or with three nodes or more,
    /// where quorum needs the others to agree), the witness its vote.
    fn quorum_records(&mut self) -> QuorumRecords {
        let witness = match self.quorum.witness {
            Some(w) => w,
            None if self.members.len() >= 3 => NodeId(u16::MAX),
            None => return QuorumRecords::default(),
        };
        if let Some(core) = &self.quorum.core {
            return QuorumRecords {
                seen: None,
                vote: Some(core.vote()),
            };
        }
        self.quorum.seen_seq += 1;
        let alive = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| *i != self.local.0 as usize && p.state.is_alive())
            .map(|(i, _)| NodeId(i as u16))
            .filter(|id| *id != witness)
            .collect();
        QuorumRecords {
            seen: Some(Seen {
                seq: self.quorum.seen_seq,
                alive,
            }),
            vote: None,
        }
    }

    /// With a witness, on a data node: the votes of its partition plus the
    /// witness's while counted (src/membership/quorum.rs). On the witness:
    /// whether its vote is granted. Without a witness: a strict majority of
    /// all configured votes among the nodes alive here, and with three
    /// nodes or more only if each of them sees exactly those nodes alive
    /// too (`quorum::agreed`).
    fn compute_quorate(&mut self) -> bool {
        if let Some(witness) = self.quorum.witness {
            if let Some(core) = &self.quorum.core {
                return !core.vote().granted.is_empty();
            }
            let reports: Vec<PeerReport<'_>> = self
                .peers
                .iter()
                .enumerate()
                .map(|(i, p)| PeerReport {
                    node: NodeId(i as u16),
                    alive: p.state.is_alive(),
                    seen: p.seen.as_ref(),
                })
                .collect();
            let partition = quorum::partition(self.local, witness, &reports);
            let witness_alive = self
                .peers
                .get(usize::from(witness.0))
                .is_some_and(|p| p.state.is_alive());
            let counted = self.quorum.heard.counts(
                self.local,
                &partition,
                witness_alive,
                self.now,
                self.params.deadtime,
            );
            let votes: Vec<u32> = self.members.iter().map(|m| m.votes).collect();
            let quorate = quorum::quorate(&votes, witness, &partition, counted);
            self.quorum.partition = partition;
            self.quorum.vote_counted = counted;
            return quorate;
        }
        if !self.majority_alive() {
            return false;
        }
        if self.members.len() < 3 {
            return true;
        }
        let reports: Vec<PeerReport<'_>> = self
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| PeerReport {
                node: NodeId(i as u16),
                alive: i == usize::from(self.local.0) || p.state.is_alive(),
                seen: p.seen.as_ref(),
            })
            .collect();
        quorum::agreed(self.local, &reports)
    }

    /// A strict majority of all configured votes is alive here (this node
    /// and every peer Up or Late), whether or not the others agree.
    pub fn majority_alive(&self) -> bool {
        let total: u64 = self.members.iter().map(|m| u64::from(m.votes)).sum();
        let alive: u64 = self
            .members
            .iter()
            .zip(&self.peers)
            .enumerate()
            .filter(|(id, (_, peer))| *id == self.local.0 as usize || peer.state.is_alive())
            .map(|(_, (m, _))| u64::from(m.votes))
            .sum();
        2 * alive > total
    }
}

/// Config validation keeps what must be said within `MAX_PACKET`; the
/// echoes and then the protocol announcement, which only add to it, are
/// left out of a heartbeat they would make too long (a receiver would drop
/// it whole and take a live node for dead).
pub(crate) fn encode_within_limit(codec: &Codec, mut hb: Heartbeat) -> Vec<u8> {
    let bytes = codec.encode(&hb);
    if bytes.len() <= MAX_PACKET {
        return bytes;
    }
    hb.echoes.clear();
    let bytes = codec.encode(&hb);
    if bytes.len() <= MAX_PACKET {
        return bytes;
    }
    hb.protocol = None;
    codec.encode(&hb)
}

fn set_link_state(
    node: NodeId,
    link: LinkId,
    pl: &mut PeerLink,
    to: LinkState,
    out: &mut Vec<Action>,
) {
    if pl.state != to {
        out.push(Action::Event(Event::PeerLink {
            node,
            link,
            from: pl.state,
            to,
        }));
        pl.state = to;
    }
    if to == LinkState::Down {
        // A round trip of a link that is down would be a lie on a graph.
        pl.rtt = None;
        pl.taken = None;
    }
}
