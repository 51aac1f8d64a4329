//! The states users see, and the events the membership core reports.

use std::fmt;

use crate::membership::protocol::Announcement;
use crate::membership::quorum_records::VoteEpoch;
use crate::membership::wire::DropReason;
use crate::types::{Incarnation, LinkId, NodeId};

/// A node as its peers see it. Named as Heartbeat users know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    /// Nothing heard yet, still within initdead.
    Init,
    /// Heard within warntime.
    Up,
    /// Nothing heard for warntime: still counted alive, logged once.
    Late,
    /// Nothing heard for deadtime (or initdead, if never heard).
    Dead,
}

impl PeerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerState::Init => "init",
            PeerState::Up => "up",
            PeerState::Late => "late",
            PeerState::Dead => "dead",
        }
    }

    /// Whether the node counts towards quorum.
    pub fn is_alive(self) -> bool {
        matches!(self, PeerState::Up | PeerState::Late)
    }
}

/// One link of one peer: are its heartbeats arriving on that link?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    Init,
    Up,
    Down,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Init => "init",
            LinkState::Up => "up",
            LinkState::Down => "down",
        }
    }
}

impl fmt::Display for PeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Index of a ping node in the config's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PingTarget(pub usize);

/// What changed, for logs and the D-Bus view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Peer {
        node: NodeId,
        from: PeerState,
        to: PeerState,
    },
    PeerLink {
        node: NodeId,
        link: LinkId,
        from: LinkState,
        to: LinkState,
    },
    /// A peer restarted (or was seen for the first time).
    Incarnation {
        node: NodeId,
        previous: Option<Incarnation>,
        current: Incarnation,
    },
    /// How many ping nodes a peer reports reaching changed.
    PeerPing {
        node: NodeId,
        reachable: u16,
    },
    /// A peer announced a new state (standby, groups).
    PeerState {
        node: NodeId,
    },
    /// What a peer says it speaks changed (or was first heard): its
    /// protocol versions (version 1 alone when it announces none) and
    /// software version; `common` is the highest version both speak.
    Protocol {
        node: NodeId,
        announced: Announcement,
        common: Option<u16>,
    },
    Quorum {
        quorate: bool,
    },
    /// On the witness: it moved its vote (granted to these nodes) or
    /// withdrew it to move it there once safe. On a data node: it heard a
    /// new decision of the witness (withdrawn: granted is empty).
    WitnessVote {
        epoch: VoteEpoch,
        granted: Vec<NodeId>,
        withdrawn: bool,
    },
    Ping {
        target: PingTarget,
        reachable: bool,
    },
    Dropped {
        link: LinkId,
        reason: DropReason,
    },
    /// A packet signed with our key carries our own name but another
    /// incarnation: two nodes are configured with the same name.
    NameConflict {
        link: LinkId,
        incarnation: Incarnation,
    },
}
