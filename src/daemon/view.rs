//! The published status, derived from the membership core and the config.

use crate::bus::{ClusterStatus, LinkStatus, NodeStatus, PingStatus, ReplicaStatus};
use crate::config::Config;
use crate::daemon::groups::Groups;
use crate::membership::{Membership, PingTarget};
use crate::types::{NodeId, Timestamp};

/// `epoch_us` is the wall-clock time (microseconds since the epoch) that
/// `Timestamp::ZERO` stands for.
pub fn cluster_status(
    config: &Config,
    core: &Membership,
    epoch_us: u64,
    replicas: Vec<ReplicaStatus>,
    groups: &Groups,
) -> ClusterStatus {
    let nodes: Vec<NodeStatus> = config
        .node_ids()
        .map(|id| {
            let node = config.node(id);
            let view = core.view(id);
            let links = config
                .links
                .iter()
                .enumerate()
                .map(|(i, l)| LinkStatus {
                    name: l.name.clone(),
                    state: view
                        .as_ref()
                        .and_then(|v| v.links.get(i))
                        .map_or("init", |s| s.as_str())
                        .to_string(),
                    rtt_us: view
                        .as_ref()
                        .and_then(|v| v.rtt.get(i).copied().flatten())
                        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                })
                .collect();
            let announced = view.as_ref().and_then(|v| v.protocol.as_ref());
            NodeStatus {
                name: node.name.clone(),
                state: view
                    .as_ref()
                    .map_or("init", |v| v.state.as_str())
                    .to_string(),
                incarnation: view.as_ref().and_then(|v| v.incarnation).map_or(0, |i| i.0),
                last_seen: view
                    .as_ref()
                    .and_then(|v| v.last_seen)
                    .map_or(0, |t| wall_clock(epoch_us, t)),
                links,
                ping_reachable: view.as_ref().map_or(0, |v| v.ping_reachable),
                local: id == core.local(),
                votes: node.votes,
                config_digest: view
                    .as_ref()
                    .and_then(|v| v.config_digest)
                    .map(|d| format!("{d:016x}"))
                    .unwrap_or_default(),
                protocol: announced.map(|a| a.range.to_string()).unwrap_or_default(),
                software: announced.map(|a| a.software.clone()).unwrap_or_default(),
                incompatible: announced.is_some_and(|a| core.speaks().common(a.range).is_none()),
                lost_heartbeats: view.as_ref().map_or(0, |v| v.lost),
                late_count: view.as_ref().map_or(0, |v| v.late),
            }
        })
        .collect();
    let config_differs = differing(&nodes, &config.node(core.local()).name);
    let ping_nodes = config
        .ping
        .nodes
        .iter()
        .enumerate()
        .map(|(i, address)| PingStatus {
            address: address.to_string(),
            reachable: core.ping_target_reachable(PingTarget(i)) == Some(true),
        })
        .collect();
    let dropped = core
        .drops()
        .iter()
        .map(|(reason, n)| (reason.name().to_string(), *n))
        .collect();
    let name = |id: NodeId| config.node(id).name.clone();
    let witness = core.witness();
    let on_data_node = witness.is_some_and(|w| w != core.local());
    ClusterStatus {
        cluster: config.cluster.name.clone(),
        quorate: core.quorate(),
        local_node: config.node(core.local()).name.clone(),
        nodes,
        ping_nodes,
        dropped,
        config_differs,
        replicas,
        groups: groups.status(core),
        standby: groups.standby(),
        maintenance: groups.maintenance(),
        witness: witness.map(name).unwrap_or_default(),
        witness_vote: on_data_node && core.witness_vote_counted(),
        witness_votes_for: core
            .witness_vote()
            .map(|v| v.granted.into_iter().map(name).collect())
            .unwrap_or_default(),
        // The core keeps [local] as the partition where it computes none
        // (no witness, or on the witness itself): not worth showing.
        partition: if on_data_node {
            core.partition().iter().copied().map(name).collect()
        } else {
            Vec::new()
        },
    }
}

/// The nodes whose announced config digest is not the local node's (a node
/// not heard, or announcing none, is not counted).
fn differing(nodes: &[NodeStatus], local: &str) -> Vec<String> {
    let Some(mine) = nodes.iter().find(|n| n.name == local) else {
        return Vec::new();
    };
    nodes
        .iter()
        .filter(|n| n.name != local && !n.config_digest.is_empty())
        .filter(|n| n.config_digest != mine.config_digest)
        .map(|n| n.name.clone())
        .collect()
}

fn wall_clock(epoch_us: u64, t: Timestamp) -> u64 {
    epoch_us.saturating_add(u64::try_from(t.0.as_micros()).unwrap_or(u64::MAX))
}
