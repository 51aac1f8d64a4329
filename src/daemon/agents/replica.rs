//! A replica in a group: Primary on start (with its device attached),
//! Secondary on stop. Promotion is refused by the replica itself when its
//! disk is not UpToDate or the peer is Primary; the refusal is the
//! failure's reason. Before that, a start waits for the replication link
//! while the peer is up: promoting a disconnected copy while the other
//! node lives would start a new history the other may never see (when
//! both daemons restart at once, or the replication link is cut).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::Op;
use crate::bus::{ReplicaCommand, ReplicaControl};
use crate::config::Config;
use crate::daemon::replicas::Replicas;
use crate::types::NodeId;

/// How long a start waits for the link to a live peer, at most (and at
/// most half its start timeout, so the refusal is the start's reason).
const LINK_WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Each replica's peer node and whether the membership sees it up.
#[derive(Clone, Default)]
pub struct Peers {
    up: Arc<Mutex<Vec<bool>>>,
    /// Whether this node may run groups (the policy's last look).
    may_run: Arc<Mutex<bool>>,
    /// Replica name -> (peer id, peer name).
    peer_of: Arc<HashMap<String, (NodeId, String)>>,
}

impl Peers {
    pub fn new(config: &Config, local: NodeId) -> Peers {
        let peer_of = config
            .replicas
            .iter()
            .filter_map(|r| {
                let i = (0..r.disks.len())
                    .find(|&i| i != usize::from(local.0) && r.disks[i].is_some())?;
                let name = config
                    .nodes
                    .get(i)
                    .map(|n| n.name.clone())
                    .unwrap_or_default();
                Some((r.name.clone(), (NodeId(i as u16), name)))
            })
            .collect();
        Peers {
            up: Arc::default(),
            may_run: Arc::default(),
            peer_of: Arc::new(peer_of),
        }
    }

    /// Who is up now, by node id (from the membership), and whether this
    /// node may run groups.
    pub fn set_up(&self, up: Vec<bool>, may_run: bool) {
        *self.up.lock().unwrap_or_else(PoisonError::into_inner) = up;
        *self.may_run.lock().unwrap_or_else(PoisonError::into_inner) = may_run;
    }

    fn may_run(&self) -> bool {
        *self.may_run.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The replica's peer, if the membership sees it up.
    fn live_peer(&self, replica: &str) -> Option<String> {
        let (id, name) = self.peer_of.get(replica)?;
        let up = self.up.lock().unwrap_or_else(PoisonError::into_inner);
        up.get(usize::from(id.0))
            .copied()
            .unwrap_or(false)
            .then(|| name.clone())
    }
}

pub async fn run(
    replicas: &Replicas,
    peers: &Peers,
    name: &str,
    op: Op,
    start_timeout: Duration,
) -> Result<(), String> {
    let wait = LINK_WAIT.min(start_timeout / 2);
    let r = replicas.clone();
    let peers = peers.clone();
    let name = name.to_string();
    // The replica's commands block (the engine, attaching the device).
    tokio::task::spawn_blocking(move || match op {
        Op::Start => {
            wait_for_link(&r, &peers, &name, wait)?;
            r.command(&name, ReplicaCommand::Primary { force: false })
        }
        Op::Stop => r.command(&name, ReplicaCommand::Secondary),
        Op::Monitor => monitor(&r, &name),
    })
    .await
    .map_err(|e| format!("replica {e}"))?
}

/// What a replica's start does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartStep {
    Promote,
    Wait,
    Refuse(String),
}

/// Whether a replica's start may promote now: connected to its peer (the
/// replicas settle who is Primary between them), or the peer is not up (a
/// failover: the survivor promotes its copy) while this node may still
/// run groups. A start that waited for the link may find quorum lost
/// meanwhile: promoting then would race the side that has it. Pure, so
/// the whole-cluster simulation takes the same steps.
pub fn start_step(
    name: &str,
    connected: bool,
    live_peer: Option<&str>,
    may_run: bool,
    timed_out: bool,
) -> StartStep {
    match live_peer {
        _ if connected => StartStep::Promote,
        None if may_run => StartStep::Promote,
        None => StartStep::Refuse(format!(
            "replica {name}: quorum lost while the start waited; not promoting"
        )),
        Some(peer) if timed_out => StartStep::Refuse(format!(
            "replica {name} is not connected to {peer}, which is up: promoting it now could fork the data \
             (check the replication link, or `duetctl connect {name}`)"
        )),
        Some(_) => StartStep::Wait,
    }
}

/// Returns once the replica may be promoted (`start_step`), or refuses.
fn wait_for_link(r: &Replicas, peers: &Peers, name: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let connected = r
            .status()
            .iter()
            .any(|s| s.name == name && s.connection == "connected");
        let peer = peers.live_peer(name);
        let timed_out = Instant::now() >= deadline;
        match start_step(name, connected, peer.as_deref(), peers.may_run(), timed_out) {
            StartStep::Promote => return Ok(()),
            StartStep::Refuse(why) => return Err(why),
            StartStep::Wait => std::thread::sleep(POLL),
        }
    }
}

/// Primary, with its device attached, and a disk to serve from (its own
/// or, after a disk failure, the peer's).
fn monitor(replicas: &Replicas, name: &str) -> Result<(), String> {
    let status = replicas.status();
    let r = status
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("no replica {name} on this node"))?;
    if r.role != "primary" {
        return Err(format!("replica {name} is {}, not primary", r.role));
    }
    if !r.attached {
        return Err(format!("replica {name}: {} is not attached", r.device));
    }
    let own = r.disk == "uptodate";
    let peer = r.connection == "connected" && r.peer_disk == "uptodate";
    if !own && !peer {
        return Err(format!(
            "replica {name} has no good disk: own {}, peer {}",
            r.disk, r.peer_disk
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{StartStep, start_step};

    #[test]
    fn a_start_promotes_connected_or_over_a_dead_peer_with_quorum_only() {
        assert_eq!(
            start_step("r0", true, Some("node2"), false, false),
            StartStep::Promote
        );
        assert_eq!(
            start_step("r0", false, None, true, false),
            StartStep::Promote
        );
        assert_eq!(
            start_step("r0", false, Some("node2"), true, false),
            StartStep::Wait
        );
        let StartStep::Refuse(why) = start_step("r0", false, None, false, false) else {
            panic!("promoted without quorum");
        };
        assert!(why.contains("quorum lost"), "{why}");
        let StartStep::Refuse(why) = start_step("r0", false, Some("node2"), true, true) else {
            panic!("promoted while disconnected from a live peer");
        };
        assert!(why.contains("node2, which is up"), "{why}");
    }
}
