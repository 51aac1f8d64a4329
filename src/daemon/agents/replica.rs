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
            peer_of: Arc::new(peer_of),
        }
    }

    /// Who is up now, by node id (from the membership).
    pub fn set_up(&self, up: Vec<bool>) {
        *self.up.lock().unwrap_or_else(PoisonError::into_inner) = up;
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

/// Returns once the replica is connected to its peer or the peer is not
/// up (a failover: the survivor promotes its copy); refuses if a live
/// peer stays unconnected past `limit`.
fn wait_for_link(r: &Replicas, peers: &Peers, name: &str, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let connected = r
            .status()
            .iter()
            .any(|s| s.name == name && s.connection == "connected");
        let Some(peer) = peers.live_peer(name) else {
            return Ok(());
        };
        if connected {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "replica {name} is not connected to {peer}, which is up: promoting it now could fork the data \
                 (check the replication link, or `duetctl connect {name}`)"
            ));
        }
        std::thread::sleep(POLL);
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
