//! A replica in a group: Primary on start (with its device attached),
//! Secondary on stop. Promotion is refused by the replica itself when its
//! disk is not UpToDate or the peer is Primary; the refusal is the
//! failure's reason.

use super::Op;
use crate::bus::{ReplicaCommand, ReplicaControl};
use crate::daemon::replicas::Replicas;

pub async fn run(replicas: &Replicas, name: &str, op: Op) -> Result<(), String> {
    let r = replicas.clone();
    let name = name.to_string();
    // The replica's commands block (the engine, attaching the device).
    tokio::task::spawn_blocking(move || match op {
        Op::Start => r.command(&name, ReplicaCommand::Primary { force: false }),
        Op::Stop => r.command(&name, ReplicaCommand::Secondary),
        Op::Monitor => monitor(&r, &name),
    })
    .await
    .map_err(|e| format!("replica {e}"))?
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
