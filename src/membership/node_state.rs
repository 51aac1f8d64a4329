//! What a node tells the others about itself beyond being alive: standby,
//! and what it does with each resource group. Carried in the heartbeat's
//! extension bytes as a record (docs/wire.md, "Extension records"), so a
//! version 1 receiver that does not know it skips it.

use crate::membership::wire::{DropReason, Reader};
use crate::resources::placement::Phase;

/// Record type of the node state in the extension bytes.
const RECORD_NODE_STATE: u8 = 1;
const FLAG_STANDBY: u8 = 1;
const FLAG_ELIGIBLE: u8 = 1;

/// A node's state as it announces it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeState {
    /// Raised by the sender at each change, within its incarnation: a
    /// receiver keeps the highest (heartbeats on several links may arrive
    /// out of order).
    pub seq: u64,
    pub standby: bool,
    pub groups: Vec<GroupState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    pub name: String,
    pub phase: Phase,
    /// False once the group failed on the sender beyond its threshold.
    pub eligible: bool,
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
        v.push(if g.eligible { FLAG_ELIGIBLE } else { 0 });
    }
    let mut out = Vec::with_capacity(v.len() + 3);
    out.push(RECORD_NODE_STATE);
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(&v);
    out
}

/// The node state in extension bytes, if they hold one; records of other
/// types are skipped (a newer sender's additions).
pub fn decode(ext: &[u8]) -> Result<Option<NodeState>, DropReason> {
    let mut r = Reader::new(ext);
    let mut found = None;
    while r.remaining() > 0 {
        let kind = r.u8()?;
        let len = usize::from(r.u16()?);
        let body = r.take(len)?;
        if kind == RECORD_NODE_STATE {
            if found.is_some() {
                return Err(DropReason::Malformed);
            }
            found = Some(node_state(body)?);
        }
    }
    Ok(found)
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
        });
    }
    if r.remaining() != 0 {
        return Err(DropReason::Malformed);
    }
    Ok(NodeState {
        seq,
        standby: flags & FLAG_STANDBY != 0,
        groups,
    })
}
