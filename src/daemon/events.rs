//! Turns membership events into log lines with structured fields (NODE,
//! PEER, LINK in the journal). Drops are rate-limited per reason and link.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::Config;
use crate::daemon::ratelimit::RateLimit;
use crate::host::message_ids as ids;
use crate::membership::protocol::{Announcement, ProtocolRange};
use crate::membership::wire::DropReason;
use crate::membership::{Event, LinkState, PeerState};
use crate::types::{LinkId, NodeId, Timestamp};

const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

pub(crate) struct EventLog {
    node: String,
    nodes: Vec<String>,
    links: Vec<String>,
    pings: Vec<String>,
    timings: crate::config::Timings,
    drops: RateLimit<(DropReason, LinkId)>,
    protocol: ProtocolRange,
}

impl EventLog {
    pub fn new(config: &Config, local: NodeId, protocol: ProtocolRange) -> Self {
        EventLog {
            node: config.node(local).name.clone(),
            nodes: config.nodes.iter().map(|n| n.name.clone()).collect(),
            links: config.links.iter().map(|l| l.name.clone()).collect(),
            pings: config.ping.nodes.iter().map(|a| a.to_string()).collect(),
            timings: config.timings,
            drops: RateLimit::new(DROP_LOG_INTERVAL),
            protocol,
        }
    }

    fn peer(&self, id: NodeId) -> &str {
        self.nodes.get(id.0 as usize).map_or("?", String::as_str)
    }

    fn link(&self, id: LinkId) -> &str {
        self.links.get(id.0 as usize).map_or("?", String::as_str)
    }

    pub fn event(&mut self, e: &Event, from: Option<SocketAddr>, now: Timestamp) {
        let node = self.node.as_str();
        match e {
            Event::Peer {
                node: id,
                from: f,
                to,
            } => self.peer_state(*id, *f, *to),
            Event::PeerLink {
                node: id, link, to, ..
            } => {
                let (peer, link) = (self.peer(*id), self.link(*link));
                match to {
                    LinkState::Up => {
                        tracing::info!(node, peer, link, "link to {peer} over {link} is up")
                    }
                    LinkState::Down => {
                        tracing::warn!(
                            message_id = ids::LINK_DOWN,
                            node,
                            peer,
                            link,
                            "link to {peer} over {link} is down"
                        )
                    }
                    LinkState::Init => {}
                }
            }
            Event::Incarnation {
                node: id,
                previous,
                current,
            } => {
                let peer = self.peer(*id);
                match previous {
                    None => tracing::info!(
                        node,
                        peer,
                        incarnation = current.0,
                        "first heartbeat from {peer}"
                    ),
                    Some(_) => tracing::warn!(
                        node,
                        peer,
                        incarnation = current.0,
                        "{peer} restarted (new incarnation)"
                    ),
                }
            }
            Event::PeerPing {
                node: id,
                reachable,
            } => {
                let peer = self.peer(*id);
                tracing::info!(
                    node,
                    peer,
                    ping_reachable = reachable,
                    "{peer} reaches {reachable} ping node(s)"
                );
            }
            Event::PeerState { node: id } => {
                let peer = self.peer(*id);
                tracing::debug!(node, peer, "{peer} announced a new state");
            }
            Event::Protocol {
                node: id,
                announced,
                common,
            } => self.protocol(*id, announced, *common),
            Event::WitnessVote {
                epoch,
                granted,
                withdrawn,
            } => self.witness_vote(epoch.0, granted, *withdrawn),
            Event::Quorum { quorate: true } => {
                tracing::info!(message_id = ids::QUORUM_GAINED, node, "quorum gained")
            }
            Event::Quorum { quorate: false } => {
                tracing::warn!(message_id = ids::QUORUM_LOST, node, "quorum lost")
            }
            Event::Ping { target, reachable } => {
                let ping_node = self.pings.get(target.0).map_or("?", String::as_str);
                if *reachable {
                    tracing::info!(node, ping_node, "ping node {ping_node} reachable");
                } else {
                    tracing::warn!(node, ping_node, "ping node {ping_node} unreachable");
                }
            }
            Event::Dropped { link, reason } => self.dropped(*link, *reason, from, now),
            Event::NameConflict { link, incarnation } => {
                let link = self.link(*link);
                tracing::error!(node, link, from = ?from, incarnation = incarnation.0,
                    "another node sends heartbeats as {node}: two nodes have the same name");
            }
        }
    }

    fn witness_vote(&self, epoch: u64, granted: &[NodeId], withdrawn: bool) {
        let node = self.node.as_str();
        let names: Vec<&str> = granted.iter().map(|id| self.peer(*id)).collect();
        let names = names.join(",");
        match (withdrawn, names.is_empty()) {
            (true, false) => tracing::warn!(
                node,
                epoch,
                "witness vote withdrawn, to go to {names} once the old side must have stopped counting it"
            ),
            (true, true) => tracing::warn!(node, epoch, "witness vote withdrawn"),
            (false, _) => tracing::info!(node, epoch, "witness vote goes to {names}"),
        }
    }

    fn protocol(&self, id: NodeId, announced: &Announcement, common: Option<u16>) {
        let (node, peer) = (self.node.as_str(), self.peer(id));
        let speaks = announced.range.to_string();
        let software = match announced.software.as_str() {
            "" => "a build before version announcements".to_string(),
            v => format!("duet {v}"),
        };
        let ours = self.protocol;
        match common {
            Some(v) => tracing::info!(
                message_id = ids::PEER_PROTOCOL,
                node,
                peer,
                speaks,
                common = v,
                "{peer} speaks protocol {speaks} ({software}); this node {ours}: they use version {v}"
            ),
            None => tracing::error!(
                message_id = ids::PROTOCOL_INCOMPATIBLE,
                node,
                peer,
                speaks,
                "{peer} speaks protocol {speaks} ({software}), none of the versions {ours} this node speaks: \
                 it stays a member, but no replica connects to it; upgrade the older of the two"
            ),
        }
    }

    fn peer_state(&self, id: NodeId, from: PeerState, to: PeerState) {
        let (node, peer) = (self.node.as_str(), self.peer(id));
        let t = self.timings;
        match to {
            PeerState::Up => {
                tracing::info!(message_id = ids::NODE_UP, node, peer, from = %from, "{peer} is up")
            }
            PeerState::Late => tracing::warn!(
                message_id = ids::NODE_LATE,
                node,
                peer,
                "late heartbeat from {peer}: nothing for {:?} (warntime)",
                t.warntime
            ),
            PeerState::Dead if from == PeerState::Init => {
                tracing::warn!(
                    message_id = ids::NODE_DEAD,
                    node,
                    peer,
                    "{peer} is dead: never heard within initdead ({:?})",
                    t.initdead
                )
            }
            PeerState::Dead => tracing::warn!(
                message_id = ids::NODE_DEAD,
                node,
                peer,
                "{peer} is dead: nothing for {:?} (deadtime)",
                t.deadtime
            ),
            PeerState::Init => {}
        }
    }

    fn dropped(
        &mut self,
        link: LinkId,
        reason: DropReason,
        from: Option<SocketAddr>,
        now: Timestamp,
    ) {
        let Some(held) = self.drops.allow((reason, link), now) else {
            return;
        };
        let (node, link) = (self.node.as_str(), self.link(link));
        let from = from.map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!(
            node,
            link,
            from,
            suppressed = held,
            "dropped heartbeat on link {link} from {from}: {reason} ({held} more since the last such line)"
        );
    }
}
