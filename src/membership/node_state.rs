//! What a node tells the others about itself beyond being alive: standby,
//! and what it does with each resource group. Carried in the heartbeat's
//! extension bytes as a record (docs/wire.md, "Extension records"), so a
//! version 1 receiver that does not know it skips it.

use crate::membership::wire::{DropReason, Reader};
use crate::resources::intent::Intent;
use crate::resources::placement::Phase;
use crate::types::NodeId;

/// Record type of the node state in the extension bytes.
const RECORD_NODE_STATE: u8 = 1;
/// Record type of the administrators' wishes for groups.
const RECORD_INTENTS: u8 = 2;
const FLAG_STANDBY: u8 = 1;
const FLAG_ELIGIBLE: u8 = 1;
/// Every resource of the group is up on the sender (a version 1 receiver
/// ignores the bit).
const FLAG_RUNNING: u8 = 2;
/// A replica of the group is not UpToDate on the sender: it cannot be
/// promoted there yet (a version 1 receiver ignores the bit).
const FLAG_BEHIND: u8 = 4;
const INTENT_STOPPED: u8 = 1;
const INTENT_MOVED: u8 = 2;

/// A node's state as it announces it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// Raised by the sender at each change, within its incarnation: a
    /// receiver keeps the highest (heartbeats on several links may arrive
    /// out of order).
    pub seq: u64,
    pub standby: bool,
    pub groups: Vec<GroupState>,
    /// The newest wish the sender knows for each group an administrator
    /// changed (record type 2; groups without one are left out).
    pub intents: Vec<GroupIntent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupIntent {
    pub name: String,
    pub intent: Intent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub name: String,
    pub phase: Phase,
    /// False once the group failed on the sender beyond its threshold.
    pub eligible: bool,
    /// Every resource is up there (active and no longer starting).
    pub running: bool,
    /// A replica of the group is not UpToDate there (Inconsistent,
    /// Outdated, diskless): placement prefers a node whose copies are.
    pub behind: bool,
}

impl Phase {
    fn wire(self) -> u8 {
        match self {
            Phase::Idle => 0,
            Phase::Claiming => 1,
            Phase::Active => 2,
            Phase::Stopping => 3,
        }
    }

    fn from_wire(b: u8) -> Result<Phase, DropReason> {
        match b {
            0 => Ok(Phase::Idle),
            1 => Ok(Phase::Claiming),
            2 => Ok(Phase::Active),
            3 => Ok(Phase::Stopping),
            _ => Err(DropReason::Malformed),
        }
    }
}

/// The extension bytes for `state`. Group names are at most 64 bytes
/// (config validation); the packet limit bounds how many groups fit.
pub fn encode(state: &NodeState) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&state.seq.to_be_bytes());
    v.push(if state.standby { FLAG_STANDBY } else { 0 });
    v.push(state.groups.len().min(255) as u8);
    for g in state.groups.iter().take(255) {
        let name = &g.name.as_bytes()[..g.name.len().min(64)];
        v.push(name.len() as u8);
        v.extend_from_slice(name);
        v.push(g.phase.wire());
        let running = if g.running { FLAG_RUNNING } else { 0 };
        let behind = if g.behind { FLAG_BEHIND } else { 0 };
        v.push(if g.eligible { FLAG_ELIGIBLE } else { 0 } | running | behind);
    }
    let mut out = Vec::with_capacity(v.len() + 3);
    record(&mut out, RECORD_NODE_STATE, &v);
    if !state.intents.is_empty() {
        record(&mut out, RECORD_INTENTS, &intents(&state.intents));
    }
    out
}

fn record(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
}

fn intents(list: &[GroupIntent]) -> Vec<u8> {
    let mut v = Vec::new();
    v.push(list.len().min(255) as u8);
    for g in list.iter().take(255) {
        let name = &g.name.as_bytes()[..g.name.len().min(64)];
        v.push(name.len() as u8);
        v.extend_from_slice(name);
        let i = &g.intent;
        v.extend_from_slice(&i.version.to_be_bytes());
        v.extend_from_slice(&i.origin.0.to_be_bytes());
        let stopped = if i.stopped { INTENT_STOPPED } else { 0 };
        let moved = if i.moved_to.is_some() {
            INTENT_MOVED
        } else {
            0
        };
        v.push(stopped | moved);
        v.extend_from_slice(&i.moved_to.map_or(0, |n| n.0).to_be_bytes());
    }
    v
}

/// The most extension bytes a node can send for groups of these names:
/// each with its state and a wish.
pub fn worst_case_len(groups: &[&str]) -> usize {
    let state: usize = groups.iter().map(|n| 1 + n.len() + 2).sum();
    let wishes: usize = groups.iter().map(|n| 1 + n.len() + 13).sum();
    (3 + 8 + 1 + 1 + state) + (3 + 1 + wishes)
}

/// The node state in extension bytes, if they hold one; records of other
/// types are skipped (a newer sender's additions).
pub fn decode(ext: &[u8]) -> Result<Option<NodeState>, DropReason> {
    let mut r = Reader::new(ext);
    let mut found = None;
    let mut wishes = None;
    while r.remaining() > 0 {
        let kind = r.u8()?;
        let len = usize::from(r.u16()?);
        let body = r.take(len)?;
        let slot_taken = match kind {
            RECORD_NODE_STATE => found.replace(node_state(body)?).is_some(),
            RECORD_INTENTS => wishes.replace(group_intents(body)?).is_some(),
            _ => false,
        };
        if slot_taken {
            return Err(DropReason::Malformed);
        }
    }
    // Wishes ride with a node state; alone they are ignored.
    Ok(found.map(|mut s: NodeState| {
        s.intents = wishes.unwrap_or_default();
        s
    }))
}

fn group_intents(body: &[u8]) -> Result<Vec<GroupIntent>, DropReason> {
    let mut r = Reader::new(body);
    let count = r.u8()?;
    let mut list = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = std::str::from_utf8(r.name()?).map_err(|_| DropReason::Malformed)?;
        let version = r.u64()?;
        let origin = NodeId(r.u16()?);
        let flags = r.u8()?;
        let moved_to = NodeId(r.u16()?);
        if flags & !(INTENT_STOPPED | INTENT_MOVED) != 0 {
            return Err(DropReason::Malformed);
        }
        let intent = Intent {
            version,
            origin,
            stopped: flags & INTENT_STOPPED != 0,
            moved_to: (flags & INTENT_MOVED != 0).then_some(moved_to),
        };
        list.push(GroupIntent {
            name: name.to_string(),
            intent,
        });
    }
    if r.remaining() != 0 {
        return Err(DropReason::Malformed);
    }
    Ok(list)
}

fn node_state(body: &[u8]) -> Result<NodeState, DropReason> {
    let mut r = Reader::new(body);
    let seq = r.u64()?;
    let flags = r.u8()?;
    let count = r.u8()?;
    let mut groups = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = std::str::from_utf8(r.name()?).map_err(|_| DropReason::Malformed)?;
        let phase = Phase::from_wire(r.u8()?)?;
        let gflags = r.u8()?;
        groups.push(GroupState {
            name: name.to_string(),
            phase,
            eligible: gflags & FLAG_ELIGIBLE != 0,
            running: gflags & FLAG_RUNNING != 0,
            behind: gflags & FLAG_BEHIND != 0,
        });
    }
    if r.remaining() != 0 {
        return Err(DropReason::Malformed);
    }
    Ok(NodeState {
        seq,
        standby: flags & FLAG_STANDBY != 0,
        groups,
        intents: Vec::new(),
    })
}
