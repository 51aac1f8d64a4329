//! Reading the daemon's state over D-Bus, for `duetctl`.

use std::collections::HashMap;
use std::time::Duration;

use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

use crate::bus::BusKind;
use crate::bus::server::{BUS_NAME, ROOT_PATH};
use crate::bus::status::{
    ClusterStatus, GroupStatus, LinkStatus, NodeStatus, PingStatus, ReplicaStatus, ResourceStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the D-Bus bus: {0}")]
    Bus(zbus::Error),
    #[error("duetd is not running on this node (nobody owns {BUS_NAME} on the bus)")]
    NotRunning,
    #[error("no answer from duetd within {CALL_TIMEOUT:?} (is it hung? see journalctl -u duetd)")]
    Timeout,
    #[error("duetd answered with an error: {0}")]
    Call(zbus::Error),
    #[error("duetd's reply is missing property {0}")]
    Missing(&'static str),
}

type Props = HashMap<String, OwnedValue>;

/// A call that gets no answer in this time fails instead of hanging the
/// terminal (a bus whose policy swallows the reply, a daemon stuck).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the system bus (or DBUS_SYSTEM_BUS_ADDRESS).
pub fn connect(kind: BusKind) -> Result<Connection, ClientError> {
    let builder = match kind {
        BusKind::System => zbus::blocking::connection::Builder::system(),
        BusKind::Session => zbus::blocking::connection::Builder::session(),
    };
    builder
        .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
        .map_err(ClientError::Bus)
}

/// Reads the cluster object and every node object, as one consistent
/// picture: the properties come in several calls, and the daemon may
/// publish a change between them (a node shown dead while the cluster
/// still says quorate). So read twice, until two reads agree on everything
/// but the ever-moving LastSeen and counters (bounded; the last read wins).
pub fn read_status(conn: &Connection) -> Result<ClusterStatus, ClientError> {
    let mut last = read_once(conn)?;
    for _ in 0..5 {
        let next = read_once(conn)?;
        if same_state(&last, &next) {
            return Ok(next);
        }
        last = next;
    }
    Ok(last)
}

fn same_state(a: &ClusterStatus, b: &ClusterStatus) -> bool {
    let strip = |s: &ClusterStatus| {
        let mut s = s.clone();
        s.dropped.clear();
        for n in &mut s.nodes {
            n.last_seen = 0;
        }
        s
    };
    strip(a) == strip(b)
}

fn read_once(conn: &Connection) -> Result<ClusterStatus, ClientError> {
    let cluster = get_all(conn, ROOT_PATH, "org.duet.Duet1.Cluster")?;
    let managed = managed_objects(conn)?;
    let paths: Vec<OwnedObjectPath> = prop(&cluster, "Nodes")?;
    let mut nodes = Vec::new();
    for path in paths {
        let Some(props) = managed
            .get(&path)
            .and_then(|i| i.get("org.duet.Duet1.Node"))
        else {
            continue;
        };
        nodes.push(node_status(props)?);
    }
    let replica_paths: Vec<OwnedObjectPath> = prop(&cluster, "Replicas")?;
    let mut replicas = Vec::new();
    for path in replica_paths {
        let Some(props) = managed
            .get(&path)
            .and_then(|i| i.get("org.duet.Duet1.Replica"))
        else {
            continue;
        };
        replicas.push(replica_status(props)?);
    }
    let group_paths: Vec<OwnedObjectPath> = prop(&cluster, "Groups")?;
    let mut groups = Vec::new();
    for path in group_paths {
        let Some(props) = managed
            .get(&path)
            .and_then(|i| i.get("org.duet.Duet1.Group"))
        else {
            continue;
        };
        groups.push(group_status(props)?);
    }
    let ping_nodes: Vec<(String, bool)> = prop(&cluster, "PingNodes")?;
    let dropped: HashMap<String, u64> = prop(&cluster, "DroppedPackets")?;
    Ok(ClusterStatus {
        cluster: prop(&cluster, "Name")?,
        quorate: prop(&cluster, "Quorate")?,
        local_node: prop(&cluster, "LocalNode")?,
        nodes,
        ping_nodes: ping_nodes
            .into_iter()
            .map(|(address, reachable)| PingStatus { address, reachable })
            .collect(),
        dropped: dropped.into_iter().collect(),
        replicas,
        groups,
        standby: prop(&cluster, "Standby")?,
        maintenance: prop(&cluster, "Maintenance")?,
        witness: prop(&cluster, "Witness")?,
        witness_vote: prop(&cluster, "WitnessVote")?,
        witness_votes_for: prop(&cluster, "WitnessVotesFor")?,
        partition: prop(&cluster, "Partition")?,
        config_differs: prop(&cluster, "ConfigDiffers")?,
    })
}

fn group_status(props: &Props) -> Result<GroupStatus, ClientError> {
    let resources: Vec<(String, String, u32)> = prop(props, "Resources")?;
    let (to, reason, took): (String, String, f64) = prop(props, "LastTransition")?;
    // An older daemon has none.
    let failovers: (u64, f64) = prop(props, "Failovers").unwrap_or_default();
    Ok(GroupStatus {
        name: prop(props, "Name")?,
        node: prop(props, "Node")?,
        state: prop(props, "State")?,
        running: prop(props, "Running")?,
        wanted: prop(props, "Wanted")?,
        moved_to: prop(props, "MovedTo")?,
        resources: resources
            .into_iter()
            .map(|(name, state, failures)| ResourceStatus {
                name,
                state,
                failures,
            })
            .collect(),
        last_transition: to,
        last_reason: reason,
        last_duration: (took >= 0.0).then_some(took),
        waiting: prop(props, "Waiting")?,
        failovers: failovers.0,
        failover_seconds: failovers.1,
    })
}

fn replica_status(props: &Props) -> Result<ReplicaStatus, ClientError> {
    let progress: f64 = prop(props, "SyncProgress")?;
    let speed: u64 = prop(props, "SyncSpeed")?;
    let eta: u64 = prop(props, "SyncEta")?;
    let counters: HashMap<String, u64> = prop(props, "Counters")?;
    let syncing = progress >= 0.0;
    Ok(ReplicaStatus {
        name: prop(props, "Name")?,
        role: prop(props, "Role")?,
        peer_role: prop(props, "PeerRole")?,
        connection: prop(props, "Connection")?,
        replication: prop(props, "Replication")?,
        disk: prop(props, "Disk")?,
        peer_disk: prop(props, "PeerDisk")?,
        // An older daemon has none: no fencing to show.
        fencing: prop(props, "Fencing").unwrap_or_default(),
        out_of_sync_bytes: prop(props, "OutOfSync")?,
        sync_progress: syncing.then_some(progress),
        sync_speed: (speed > 0).then_some(speed),
        sync_eta: (syncing && speed > 0).then_some(eta),
        protocol: prop(props, "Protocol")?,
        generation: prop(props, "Generation")?,
        counters: counters.into_iter().collect(),
        backing_disk: prop(props, "BackingDisk")?,
        device: prop(props, "Device")?,
        attached: prop(props, "Attached")?,
        clients: prop(props, "Clients")?,
        nbd_socket: prop(props, "NbdSocket")?,
        // Older daemons have none of these.
        link_version: prop(props, "LinkVersion").unwrap_or_default(),
        export_latency: Vec::new(),
    })
}

/// Runs one of a replica's commands (the bus method of the same name).
pub fn replica_command(
    conn: &Connection,
    replica: &str,
    cmd: crate::bus::ReplicaCommand,
) -> Result<(), ClientError> {
    use crate::bus::ReplicaCommand as C;
    let path = crate::bus::replica_path(replica);
    let iface = Some("org.duet.Duet1.Replica");
    let dest = Some(BUS_NAME);
    let reply = match cmd {
        C::Primary { force } => conn.call_method(dest, path.as_str(), iface, "Primary", &(force,)),
        C::Connect { discard_my_data } => {
            conn.call_method(dest, path.as_str(), iface, "Connect", &(discard_my_data,))
        }
        C::Secondary => conn.call_method(dest, path.as_str(), iface, "Secondary", &()),
        C::Disconnect => conn.call_method(dest, path.as_str(), iface, "Disconnect", &()),
        C::Verify => conn.call_method(dest, path.as_str(), iface, "Verify", &()),
        C::Invalidate => conn.call_method(dest, path.as_str(), iface, "Invalidate", &()),
        C::InvalidateRemote => {
            conn.call_method(dest, path.as_str(), iface, "InvalidateRemote", &())
        }
        C::Detach => conn.call_method(dest, path.as_str(), iface, "Detach", &()),
        C::Up => conn.call_method(dest, path.as_str(), iface, "Up", &()),
        C::Down => conn.call_method(dest, path.as_str(), iface, "Down", &()),
        C::Attach => conn.call_method(dest, path.as_str(), iface, "Attach", &()),
        C::Adjust => conn.call_method(dest, path.as_str(), iface, "Adjust", &()),
        C::PauseSync => conn.call_method(dest, path.as_str(), iface, "PauseSync", &()),
        C::ResumeSync => conn.call_method(dest, path.as_str(), iface, "ResumeSync", &()),
    };
    reply.map(|_| ()).map_err(call_error)
}

/// Runs an administrator's command on the groups of the node the daemon
/// runs on (the Cluster and Group methods).
pub fn group_command(conn: &Connection, cmd: &crate::bus::GroupCommand) -> Result<(), ClientError> {
    use crate::bus::GroupCommand as C;
    let dest = Some(BUS_NAME);
    let cluster = Some("org.duet.Duet1.Cluster");
    let group = Some("org.duet.Duet1.Group");
    let reply = match cmd {
        C::Standby(on) => conn.call_method(dest, ROOT_PATH, cluster, "SetStandby", &(*on,)),
        C::Maintenance(on) => conn.call_method(dest, ROOT_PATH, cluster, "SetMaintenance", &(*on,)),
        C::ConfirmOff { node } => {
            conn.call_method(dest, ROOT_PATH, cluster, "ConfirmOff", &(node,))
        }
        C::Reload => return reload(conn).map(|_| ()),
        C::Cleanup { group: g } => {
            let path = crate::bus::group_path(g);
            conn.call_method(dest, path.as_str(), group, "Cleanup", &())
        }
        C::Start { group: g } => {
            let path = crate::bus::group_path(g);
            conn.call_method(dest, path.as_str(), group, "Start", &())
        }
        C::Stop { group: g } => {
            let path = crate::bus::group_path(g);
            conn.call_method(dest, path.as_str(), group, "Stop", &())
        }
        C::Move { group: g, node } => {
            let path = crate::bus::group_path(g);
            conn.call_method(dest, path.as_str(), group, "Move", &(node,))
        }
    };
    reply.map(|_| ()).map_err(call_error)
}

/// `duetctl reload`: the daemon's account of what it applied and what
/// needs a restart.
pub fn reload(conn: &Connection) -> Result<String, ClientError> {
    let reply = conn
        .call_method(
            Some(BUS_NAME),
            ROOT_PATH,
            Some("org.duet.Duet1.Cluster"),
            "Reload",
            &(),
        )
        .map_err(call_error)?;
    reply.body().deserialize().map_err(ClientError::Call)
}

fn node_status(props: &Props) -> Result<NodeStatus, ClientError> {
    let links: Vec<(String, String)> = prop(props, "Links")?;
    let rtts: HashMap<String, u64> = prop::<Vec<(String, u64)>>(props, "LinkRoundTrips")
        .unwrap_or_default()
        .into_iter()
        .collect();

    Ok(NodeStatus {
        name: prop(props, "Name")?,
        state: prop(props, "State")?,
        incarnation: prop(props, "Incarnation")?,
        last_seen: prop(props, "LastSeen")?,
        links: links
            .into_iter()
            .map(|(name, state)| LinkStatus {
                rtt_us: rtts.get(&name).copied().filter(|us| *us > 0),
                name,
                state,
            })
            .collect(),
        ping_reachable: prop(props, "PingReachable")?,
        local: prop(props, "Local")?,
        votes: prop(props, "Votes")?,
        config_digest: prop(props, "ConfigDigest")?,
        protocol: prop(props, "Protocol").unwrap_or_default(),
        software: prop(props, "Software").unwrap_or_default(),
        incompatible: prop(props, "Incompatible").unwrap_or_default(),
        lost_heartbeats: prop(props, "LostHeartbeats").unwrap_or_default(),
        late_count: prop(props, "LateCount").unwrap_or_default(),
    })
}

fn prop<T>(props: &Props, name: &'static str) -> Result<T, ClientError>
where
    T: TryFrom<OwnedValue>,
{
    let value = props.get(name).ok_or(ClientError::Missing(name))?;
    let value = value.try_clone().map_err(|e| ClientError::Call(e.into()))?;
    T::try_from(value).map_err(|_| ClientError::Missing(name))
}

fn call_error(e: zbus::Error) -> ClientError {
    match &e {
        zbus::Error::MethodError(name, _, _)
            if name.as_str() == "org.freedesktop.DBus.Error.ServiceUnknown"
                || name.as_str() == "org.freedesktop.DBus.Error.NameHasNoOwner" =>
        {
            ClientError::NotRunning
        }
        zbus::Error::InputOutput(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            ClientError::Timeout
        }
        _ => ClientError::Call(e),
    }
}

pub(crate) fn get_all(conn: &Connection, path: &str, iface: &str) -> Result<Props, ClientError> {
    let reply = conn
        .call_method(
            Some(BUS_NAME),
            path,
            Some("org.freedesktop.DBus.Properties"),
            "GetAll",
            &(iface,),
        )
        .map_err(call_error)?;
    reply.body().deserialize().map_err(ClientError::Call)
}

pub(crate) type Managed = HashMap<OwnedObjectPath, HashMap<String, Props>>;

pub(crate) fn managed_objects(conn: &Connection) -> Result<Managed, ClientError> {
    let reply = conn
        .call_method(
            Some(BUS_NAME),
            ROOT_PATH,
            Some("org.freedesktop.DBus.ObjectManager"),
            "GetManagedObjects",
            &(),
        )
        .map_err(call_error)?;
    reply.body().deserialize().map_err(ClientError::Call)
}
