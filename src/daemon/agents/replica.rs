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
use crate::bus::{ReplicaCommand, ReplicaControl, ReplicaStatus};
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

/// What a replica's start looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartLook<'a> {
    /// Connected to its peer over the replication link.
    pub connected: bool,
    /// The replica's peer, if the membership sees it up.
    pub live_peer: Option<&'a str>,
    /// This node may run groups (the policy's last look).
    pub may_run: bool,
    /// The peer is still Primary: the group is leaving it (its stop
    /// demotes it), and its word of that may come after the membership's.
    pub peer_primary: bool,
    /// This disk is behind its connected UpToDate peer: it becomes
    /// UpToDate when the sync from the peer ends.
    pub syncing_in: bool,
    /// The start waited as long as it may.
    pub timed_out: bool,
}

/// Whether a replica's start may promote now: connected to its peer (the
/// replicas settle who is Primary between them) once the peer is no
/// longer Primary and this disk no longer receives a sync, or the peer is
/// not up (a failover: the survivor promotes its copy) while this node
/// may still run groups. A start that waited for the link may find quorum
/// lost meanwhile: promoting then would race the side that has it. The
/// passing states are waited out, not failed on: a failure counts against
/// the node. Pure, so the whole-cluster simulation takes the same steps.
pub fn start_step(name: &str, l: StartLook<'_>) -> StartStep {
    let peer = l.live_peer.unwrap_or("the peer");
    match l.live_peer {
        _ if l.connected && !l.peer_primary && !l.syncing_in => StartStep::Promote,
        _ if l.connected && !l.timed_out => StartStep::Wait,
        _ if l.connected && l.peer_primary => StartStep::Refuse(format!(
            "replica {name}: {peer} is still Primary: never two primaries (its stop demotes it)"
        )),
        _ if l.connected => StartStep::Refuse(format!(
            "replica {name}: the disk is still receiving a sync from {peer}; it can be Primary once UpToDate"
        )),
        None if l.may_run => StartStep::Promote,
        None => StartStep::Refuse(format!(
            "replica {name}: quorum lost while the start waited; not promoting"
        )),
        Some(peer) if l.timed_out => StartStep::Refuse(format!(
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
        let status = r.status();
        let s = status.iter().find(|s| s.name == name);
        let connected = s.is_some_and(|s| s.connection == "connected");
        let peer = peers.live_peer(name);
        let look = StartLook {
            connected,
            live_peer: peer.as_deref(),
            may_run: peers.may_run(),
            peer_primary: connected && s.is_some_and(|s| s.peer_role == "primary"),
            syncing_in: connected && s.is_some_and(behind_an_uptodate_peer),
            timed_out: Instant::now() >= deadline,
        };
        match start_step(name, look) {
            StartStep::Promote => return Ok(()),
            StartStep::Refuse(why) => return Err(why),
            StartStep::Wait => std::thread::sleep(POLL),
        }
    }
}

/// This disk is Inconsistent or Outdated and its peer UpToDate: a sync
/// from the peer is under way or about to start.
fn behind_an_uptodate_peer(s: &ReplicaStatus) -> bool {
    matches!(s.disk.as_str(), "inconsistent" | "outdated") && s.peer_disk == "uptodate"
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
    use super::{StartLook, StartStep, start_step};

    fn look(connected: bool, live_peer: Option<&str>, may_run: bool) -> StartLook<'_> {
        StartLook {
            connected,
            live_peer,
            may_run,
            ..StartLook::default()
        }
    }

    fn refused(l: StartLook<'_>) -> String {
        match start_step("r0", l) {
            StartStep::Refuse(why) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_start_promotes_connected_or_over_a_dead_peer_with_quorum_only() {
        let step = |l| start_step("r0", l);
        assert_eq!(step(look(true, Some("node2"), false)), StartStep::Promote);
        assert_eq!(step(look(false, None, true)), StartStep::Promote);
        assert_eq!(step(look(false, Some("node2"), true)), StartStep::Wait);
        assert!(refused(look(false, None, false)).contains("quorum lost"));
        let timed_out = StartLook {
            timed_out: true,
            ..look(false, Some("node2"), true)
        };
        assert!(refused(timed_out).contains("node2, which is up"));
    }

    #[test]
    fn a_start_waits_out_a_peer_still_primary_and_a_sync_in_then_says_which() {
        for (peer_primary, syncing_in, why) in [
            (true, false, "node2 is still Primary"),
            (false, true, "still receiving a sync from node2"),
            (true, true, "node2 is still Primary"),
        ] {
            let l = StartLook {
                peer_primary,
                syncing_in,
                ..look(true, Some("node2"), true)
            };
            assert_eq!(start_step("r0", l), StartStep::Wait);
            let said = refused(StartLook {
                timed_out: true,
                ..l
            });
            assert!(said.contains(why), "{said}");
        }
    }
}
