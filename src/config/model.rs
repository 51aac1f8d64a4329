//! The validated config, as the rest of duet sees it. Everything here has
//! passed `validate`: names are unique, every unicast link has an address
//! for every node, timings are sane.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::membership::auth::AuthAlgorithm;
use crate::types::{LinkId, NodeId};

pub const DEFAULT_PORT: u16 = 694;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    pub cluster: Cluster,
    pub timings: Timings,
    /// In file order; a node's index is its `NodeId`.
    pub nodes: Vec<Node>,
    /// In file order; a link's index is its `LinkId`.
    pub links: Vec<Link>,
    pub ping: Ping,
    /// The replicated disks; empty without `[[replica]]` sections.
    pub replicas: Vec<Replica>,
}

/// A replicated disk. For now only what the NBD export needs; the
/// replication settings (protocol, split-brain policies, resync) join it
/// with the replication release.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// Unique; also the NBD export name.
    pub name: String,
    /// The stable path of the block device on the primary (a link duetd
    /// makes and removes), unique among replicas.
    pub device: PathBuf,
    /// Backing disk or file per node, indexed like `Config::nodes`; `None`
    /// on nodes that hold no copy (a tie-breaker, say).
    pub disks: Vec<Option<PathBuf>>,
    /// The export's unix socket, unique among replicas.
    pub nbd_socket: PathBuf,
}

impl Replica {
    /// The node's backing disk; `None` if it holds no copy of this replica.
    pub fn disk(&self, node: NodeId) -> Option<&Path> {
        self.disks.get(node.0 as usize)?.as_deref()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    /// Resolved against the config file's folder when relative.
    pub key_file: PathBuf,
    pub auth: AuthAlgorithm,
    /// Cluster-wide default; groups (a later section) may override it.
    pub auto_failback: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    pub keepalive: Duration,
    pub warntime: Duration,
    pub deadtime: Duration,
    pub initdead: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            keepalive: Duration::from_millis(200),
            warntime: Duration::from_millis(600),
            deadtime: Duration::from_secs(1),
            initdead: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub votes: u32,
    /// Address per link, indexed like `Config::links`; `None` where the node
    /// has no address on that link (allowed for bcast and mcast links only).
    pub addresses: Vec<Option<IpAddr>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub name: String,
    pub interface: String,
    pub mode: LinkMode,
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// To each peer's address on this link.
    Unicast,
    /// To the interface's IPv4 broadcast address (255.255.255.255 bound to
    /// the interface).
    Broadcast,
    /// To a multicast group joined on the interface.
    Multicast { group: IpAddr, ttl: u8 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// Hosts answered by ICMP echo (gateways, typically).
    pub nodes: Vec<IpAddr>,
    /// How often each is pinged.
    pub interval: Duration,
    /// How long without a reply before a ping node counts as unreachable.
    pub deadtime: Duration,
}

impl Config {
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| NodeId(i as u16))
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    pub fn link(&self, id: LinkId) -> &Link {
        &self.links[id.0 as usize]
    }

    /// The replica named `name` (also its NBD export name).
    pub fn replica(&self, name: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.name == name)
    }

    pub fn link_ids(&self) -> impl Iterator<Item = LinkId> + '_ {
        (0..self.links.len()).map(|i| LinkId(i as u8))
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(|i| NodeId(i as u16))
    }
}
