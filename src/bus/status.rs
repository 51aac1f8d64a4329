//! The cluster's state as the daemon publishes it: one truth behind the
//! D-Bus properties, `duetctl status` and its JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterStatus {
    pub cluster: String,
    pub quorate: bool,
    pub local_node: String,
    pub nodes: Vec<NodeStatus>,
    /// The ping nodes as this node sees them.
    pub ping_nodes: Vec<PingStatus>,
    /// Heartbeats dropped so far, by reason (e.g. "bad-signature").
    pub dropped: BTreeMap<String, u64>,
    /// The replicas this node holds a disk for.
    pub replicas: Vec<ReplicaStatus>,
    /// The resource groups, as this node sees them.
    #[serde(default)]
    pub groups: Vec<GroupStatus>,
    /// This node is in standby (runs no group).
    #[serde(default)]
    pub standby: bool,
    /// duet watches but does not start or stop anything.
    #[serde(default)]
    pub maintenance: bool,
    /// The witness node's name (docs/quorum.md); "" without a witness.
    #[serde(default)]
    pub witness: String,
    /// On a data node: it counts the witness's vote toward quorum now.
    #[serde(default)]
    pub witness_vote: bool,
    /// The nodes the witness's vote goes to: on the witness its own vote,
    /// on a data node the latest vote heard (kept while the witness is not
    /// heard; `witness_vote` says whether it counts). Empty while the vote
    /// is withdrawn or none was heard.
    #[serde(default)]
    pub witness_votes_for: Vec<String>,
    /// With a witness, on a data node: this node's partition, itself and
    /// the data nodes that it and they see alive both ways. Empty on the
    /// witness and without one (quorum then counts every node seen alive).
    #[serde(default)]
    pub partition: Vec<String>,
    /// The nodes that announce another config than this node's (by its
    /// digest): the files differ.
    #[serde(default)]
    pub config_differs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GroupStatus {
    pub name: String,
    /// Where it runs (starts or stops), as this node sees it; "" nowhere.
    pub node: String,
    /// This node's state for it: "stopped", "starting", "running",
    /// "stopping", "moving" or "failed".
    pub state: String,
    /// Every resource is up on `node`.
    #[serde(default)]
    pub running: bool,
    /// What the administrators want: "started" (the default) or "stopped".
    #[serde(default)]
    pub wanted: String,
    /// The node it was moved to by hand, while that holds; "" otherwise.
    #[serde(default)]
    pub moved_to: String,
    pub resources: Vec<ResourceStatus>,
    /// The last transition on this node: to which state, why, and how
    /// long the start or stop took (seconds, when it settled).
    pub last_transition: String,
    pub last_reason: String,
    pub last_duration: Option<f64>,
    /// Why it waits to start here for a dead node that may still run it
    /// (a fence under way, or nothing that can fence it); "" otherwise.
    #[serde(default)]
    pub waiting: String,
    /// Takeovers of it here from a dead node since the daemon started,
    /// and the seconds their starts took in all.
    #[serde(default)]
    pub failovers: u64,
    #[serde(default)]
    pub failover_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResourceStatus {
    /// E.g. "mount /mnt/shared".
    pub name: String,
    /// "started" or "stopped" on this node.
    pub state: String,
    /// Failures counted toward the group's threshold.
    pub failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ReplicaStatus {
    pub name: String,
    /// "primary" or "secondary".
    pub role: String,
    /// The peer's role, "unknown" while not connected.
    pub peer_role: String,
    /// "standalone", "connecting", "handshake" or "connected".
    pub connection: String,
    /// "off", "established", "syncsource", "synctarget", "verifysource",
    /// "verifytarget".
    pub replication: String,
    /// This node's disk state: "uptodate", "consistent", "inconsistent",
    /// "outdated", "diskless", ...
    pub disk: String,
    /// The peer's disk as it reported it ("dunknown" while not connected;
    /// "outdated" once it confirmed so through the membership).
    pub peer_disk: String,
    /// This node's fencing of its peer (docs/replication.md, "Fencing the
    /// peer"): "" (none), "fencing" (writes are held until the peer is
    /// outdated or declared dead), "peer-outdated", "peer-unreachable" or
    /// "peer-refused" (writes went on without the peer's confirmation).
    #[serde(default)]
    pub fencing: String,
    /// Bytes marked out of sync (to be resynced).
    pub out_of_sync_bytes: u64,
    /// Fraction done while a sync or verify runs.
    pub sync_progress: Option<f64>,
    /// Bytes a second, while syncing.
    pub sync_speed: Option<u64>,
    /// Seconds left at that speed.
    pub sync_eta: Option<u64>,
    /// "A", "B" or "C".
    pub protocol: String,
    /// The current data generation (hex).
    pub generation: String,
    /// Bytes and writes so far: sent, received, written, read, resynced,
    /// al-writes, bitmap-writes, pending, unacked.
    pub counters: BTreeMap<String, u64>,
    /// The backing disk on this node.
    pub backing_disk: String,
    /// The stable path of the block device while Primary.
    pub device: String,
    pub attached: bool,
    /// NBD clients connected to the export now.
    pub clients: u32,
    pub nbd_socket: String,
    /// The replication protocol version the link up now settled on; 0
    /// while none is up.
    #[serde(default)]
    pub link_version: u16,
    /// How long the export's requests took, by kind (for metrics; not on
    /// D-Bus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_latency: Vec<crate::export::latency::Histogram>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PingStatus {
    pub address: String,
    pub reachable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeStatus {
    pub name: String,
    /// "init", "up", "late" or "dead".
    pub state: String,
    /// The node's current run, 0 when never heard.
    pub incarnation: u64,
    /// Wall-clock time of the last heartbeat, microseconds since the epoch;
    /// 0 when never heard.
    pub last_seen: u64,
    pub links: Vec<LinkStatus>,
    /// How many ping nodes the node reaches.
    pub ping_reachable: u16,
    pub local: bool,
    pub votes: u32,
    /// The digest of the node's config as it announced it (16 hex
    /// digits); "" until heard, or from a node that announces none.
    #[serde(default)]
    pub config_digest: String,
    /// The protocol versions it speaks ("1-3"; "" until heard), and its
    /// software version ("" from a build before announcements).
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub software: String,
    /// No protocol version in common with this node.
    #[serde(default)]
    pub incompatible: bool,
    /// Heartbeats of it that never arrived, and how often it went late,
    /// since this daemon started.
    #[serde(default)]
    pub lost_heartbeats: u64,
    #[serde(default)]
    pub late_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LinkStatus {
    pub name: String,
    /// "init", "up" or "down".
    pub state: String,
    /// The last heartbeat round trip over it, in microseconds, where the
    /// node echoes this one's (protocol 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_us: Option<u64>,
}

impl ClusterStatus {
    /// The one-line summary for systemd's STATUS= and logs.
    pub fn summary(&self) -> String {
        let up = self
            .nodes
            .iter()
            .filter(|n| n.state == "up" || n.state == "late")
            .count();
        let quorum = if self.quorate {
            "quorate"
        } else {
            "NOT quorate"
        };
        format!("{up}/{} nodes up, {quorum}", self.nodes.len())
    }
}

/// The object path of a replica (names are [A-Za-z0-9_-]; '-' escaped).
pub fn replica_path(name: &str) -> String {
    let mut path = String::from("/org/duet/Duet1/replica/");
    escape_into(&mut path, name);
    path
}

fn escape_into(path: &mut String, name: &str) {
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            path.push(c);
        } else {
            path.push_str(&format!("_{:02x}", c as u32 & 0xff));
        }
    }
}

/// The object path of a group (names are [A-Za-z0-9_-]; '-' escaped).
pub fn group_path(name: &str) -> String {
    let mut path = String::from("/org/duet/Duet1/group/");
    escape_into(&mut path, name);
    path
}

/// The object path of a node. Node names are hostnames (letters, digits,
/// '-' and '.'), so '-' and '.' are escaped as D-Bus paths allow neither.
pub fn node_path(name: &str) -> String {
    let mut path = String::from("/org/duet/Duet1/node/");
    escape_into(&mut path, name);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_paths_are_valid_object_paths() {
        assert_eq!(node_path("node1"), "/org/duet/Duet1/node/node1");
        assert_eq!(
            node_path("web-1.example.org"),
            "/org/duet/Duet1/node/web_2d1_2eexample_2eorg"
        );
        for name in ["node1", "a-b", "x.y.z", "N_1"] {
            assert!(zbus::zvariant::ObjectPath::try_from(node_path(name)).is_ok());
        }
    }

    #[test]
    fn summary_counts_live_nodes() {
        let node = |state: &str| NodeStatus {
            state: state.into(),
            ..Default::default()
        };
        let s = ClusterStatus {
            quorate: true,
            nodes: vec![node("up"), node("late"), node("dead")],
            ..Default::default()
        };
        assert_eq!(s.summary(), "2/3 nodes up, quorate");
    }
}
