//! Where a group should run, from one node's view of the cluster. Every
//! node computes this from what it knows; the group core (group.rs) makes
//! a differing view harmless: a node starts a group only when no other
//! live node has it, and claims it first when another node could race.

use crate::types::NodeId;

/// What a node says about one group (carried in its heartbeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Nothing of the group runs there.
    #[default]
    Idle,
    /// About to start it, waiting for the other nodes to hear so.
    Claiming,
    /// Some of its resources may be up there: starting, running, or a
    /// stop that failed (then only an administrator clears it).
    Active,
    /// Stopping there: resources may still be up, but it is leaving, so
    /// it is not where the group stays.
    Stopping,
}

impl Phase {
    /// Whether any of the group's resources may be up there.
    pub fn holds(self) -> bool {
        matches!(self, Phase::Active | Phase::Stopping)
    }
}

/// One node as this node sees it, for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeView {
    pub id: NodeId,
    /// Alive in the membership (this node always is to itself).
    pub alive: bool,
    /// Put in standby by an administrator: runs nothing.
    pub standby: bool,
    /// Ping nodes it reaches (heartbeat's ipfail: the node that sees more
    /// of the network is the better place).
    pub ping_reach: u32,
    pub phase: Phase,
    /// False once the group failed there beyond its threshold, until an
    /// administrator clears it (`duetctl cleanup`).
    pub eligible: bool,
    /// A replica of the group is not UpToDate there (Inconsistent while
    /// it syncs, Outdated, diskless): its start would wait or fail, so a
    /// new place is a node whose copies are, while there is one. A holder
    /// keeps the group (a diskless Primary serves through its peer).
    pub behind: bool,
    /// For a dead node: known to hold nothing of the group, or fenced
    /// since it died. A dead node that may still run the group (it died
    /// claiming or holding it, or was never heard) must be fenced before
    /// another node starts it. Always true for live nodes, and when no
    /// fencing is configured (then deadtime alone is trusted).
    pub clean: bool,
}

/// The group's placement settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    /// Most preferred first; only these nodes run the group.
    pub nodes: Vec<NodeId>,
    pub auto_failback: bool,
    /// With auto-failback: move back only to a node more than this many
    /// places ahead of the holder in `nodes`.
    pub stickiness: u32,
    /// An administrator's `move`: this node while it can run the group.
    pub moved_to: Option<NodeId>,
    /// An administrator's `stop`: nowhere until `start`.
    pub stopped: bool,
}

/// Where the group should run: `None` when no node can (no quorum, all
/// in standby, failed everywhere) or it is stopped.
pub fn target(prefs: &Preferences, view: &[NodeView], quorate: bool) -> Option<NodeId> {
    if !quorate || prefs.stopped {
        return None;
    }
    let usable = |v: &&NodeView| v.alive && !v.standby && v.eligible && prefs.nodes.contains(&v.id);
    let candidates: Vec<&NodeView> = view.iter().filter(usable).collect();
    let best_reach = candidates.iter().map(|v| v.ping_reach).max()?;
    // A node that reaches fewer ping nodes than another is out while the
    // other can run the group.
    let connected = |v: &&&NodeView| v.ping_reach == best_reach;
    if let Some(to) = prefs.moved_to
        && candidates.iter().filter(connected).any(|v| v.id == to)
    {
        return Some(to);
    }
    let any_ready = candidates.iter().filter(connected).any(|v| !v.behind);
    let fit = |v: &&&NodeView| connected(v) && (!v.behind || !any_ready);
    let best = prefs
        .nodes
        .iter()
        .copied()
        .find(|id| candidates.iter().filter(fit).any(|v| v.id == *id));
    let holder = candidates
        .iter()
        .filter(connected)
        .find(|v| v.phase == Phase::Active)
        .map(|v| v.id);
    match (holder, best) {
        (Some(h), _) if !prefs.auto_failback => Some(h),
        (Some(h), Some(b)) if places_ahead(prefs, b, h) <= prefs.stickiness as usize => Some(h),
        _ => best,
    }
}

/// How many places `better` comes before `than` in the preferences.
fn places_ahead(prefs: &Preferences, better: NodeId, than: NodeId) -> usize {
    let pos = |id| prefs.nodes.iter().position(|n| *n == id);
    match (pos(better), pos(than)) {
        (Some(b), Some(t)) => t.saturating_sub(b),
        _ => usize::MAX,
    }
}
