//! The validated config, as the rest of duet sees it. Everything here has
//! passed `validate`: names are unique, every unicast link has an address
//! for every node, timings are sane.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::membership::auth::AuthAlgorithm;
use crate::replication::split_brain::Policies;
use crate::types::{LinkId, NodeId};

pub const DEFAULT_PORT: u16 = 694;
/// The first replica's replication port (TCP); the next ones count up from
/// it in file order, as DRBD's examples do.
pub const DEFAULT_REPLICA_PORT: u16 = 7788;
/// NBD's port (IANA), for an `nbd-listen` address written without one.
pub const DEFAULT_NBD_PORT: u16 = 10809;

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
    /// The resource groups; empty without `[[group]]` sections.
    pub groups: Vec<Group>,
    /// How to fence a node; without it a takeover trusts deadtime alone.
    pub fencing: Option<Fencing>,
    /// What this node does to itself when it lost quorum and cannot stop
    /// its groups in time.
    pub self_fence: Option<SelfFence>,
    /// Where the Prometheus endpoint listens (`[metrics] listen`), a
    /// loopback address; `None`, the default, for no endpoint.
    pub metrics: Option<SocketAddr>,
}

/// The metrics endpoint's port when `[metrics] listen` gives none.
pub const DEFAULT_METRICS_PORT: u16 = 9649;

/// `[self-fence]`: run when this node has been without quorum for `after`
/// and its groups are still not stopped (a hung stop): the command makes
/// the node stop (a forced reboot), so the others can trust their wait.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfFence {
    pub command: PathBuf,
    pub args: Vec<String>,
    pub after: Duration,
}

/// `[fencing]`: run before a node takes over groups from a peer that died
/// while it may have held them.
#[derive(Debug, Clone, PartialEq)]
pub struct Fencing {
    /// Run with `args`, then the node's name; exit 0 means the node is off.
    pub command: PathBuf,
    pub args: Vec<String>,
    /// An attempt that takes longer is killed and counts as failed.
    pub timeout: Duration,
    /// The wait between failed attempts (they go on until one succeeds).
    pub retry_delay: Duration,
}

/// A resource group: what runs together on exactly one node, started in
/// order and stopped in reverse (heartbeat's haresources line).
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Unique among groups.
    pub name: String,
    /// The nodes that may run it, most preferred first (the first is the
    /// "preferred node"); never empty.
    pub nodes: Vec<NodeId>,
    /// Move back to a more preferred node when it returns; the cluster's
    /// setting unless the group says otherwise. Off: the group stays where
    /// it runs (infinite stickiness).
    pub auto_failback: bool,
    /// With auto-failback: the group moves back only to a node more than
    /// this many places ahead of its current one in `nodes` (0: to any
    /// more preferred node).
    pub stickiness: u32,
    /// How often each running resource is checked.
    pub monitor_interval: Duration,
    /// Failures of a resource restarted in place before the group moves
    /// to another node (Pacemaker's migration-threshold).
    pub failure_threshold: u32,
    /// In start order.
    pub resources: Vec<Resource>,
}

/// One step of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: ResourceKind,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResourceKind {
    /// Primary on start, Secondary on stop.
    Replica { replica: String },
    /// A systemd mount unit duet creates (transient).
    Mount {
        /// A path, or the device of the replica named (its stable link).
        device: PathBuf,
        mountpoint: PathBuf,
        fstype: String,
        /// As in fstab, comma-separated; empty for the defaults.
        options: String,
        fsck: Fsck,
    },
    /// An address on an interface, set through netlink and announced.
    Ip {
        address: IpAddr,
        prefix: u8,
        interface: String,
    },
    /// Any systemd unit, started and stopped through systemd.
    Unit { unit: String },
    /// A heartbeat resource.d / LSB script: `path ARGS... start|stop|status`.
    Script { path: PathBuf, args: Vec<String> },
    /// An OCF resource agent (Pacemaker's `ocf:` class):
    /// `ROOT/resource.d/PROVIDER/TYPE start|stop|monitor`, its parameters
    /// in the environment.
    Ocf(OcfAgent),
}

/// An OCF resource agent and what it is called with.
#[derive(Debug, Clone, PartialEq)]
pub struct OcfAgent {
    pub agent: crate::host::ocf::AgentName,
    /// OCF_RESOURCE_INSTANCE: unique in the cluster, the same on every
    /// node and from one run to the next (agents name state files after
    /// it).
    pub instance: String,
    /// Name -> value, passed as OCF_RESKEY_<name>.
    pub params: BTreeMap<String, String>,
    /// The OCF root the agent was found under when the config was read
    /// (`OCF_ROOT`, else /usr/lib/ocf).
    pub root: PathBuf,
    /// The group's, told to the agent on each monitor
    /// (OCF_RESKEY_CRM_meta_interval) so it does not take it for a probe.
    pub monitor_interval: Duration,
}

impl OcfAgent {
    /// Where the agent is: `ROOT/resource.d/PROVIDER/TYPE`.
    pub fn path(&self) -> PathBuf {
        self.agent.path(&self.root)
    }
}

impl Resource {
    /// How the journal and `duetctl` name it, e.g. "mount /mnt/shared".
    pub fn label(&self) -> String {
        match &self.kind {
            ResourceKind::Replica { replica } => format!("replica {replica}"),
            ResourceKind::Mount { mountpoint, .. } => format!("mount {}", mountpoint.display()),
            ResourceKind::Ip {
                address,
                prefix,
                interface,
            } => format!("ip {address}/{prefix} on {interface}"),
            ResourceKind::Unit { unit } => format!("unit {unit}"),
            ResourceKind::Script { path, .. } => format!("script {}", path.display()),
            ResourceKind::Ocf(a) => format!("{} {}", a.agent, a.instance),
        }
    }
}

/// Whether the filesystem is checked before mounting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fsck {
    /// systemd-fsck, as for an fstab line with pass 2 (the default: a
    /// filesystem taken over from a crashed node is checked).
    #[default]
    Auto,
    Never,
}

impl Fsck {
    pub const ALL: [Fsck; 2] = [Fsck::Auto, Fsck::Never];

    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Fsck::Auto => "auto",
            Fsck::Never => "never",
        }
    }
}

impl fmt::Display for Fsck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A replicated disk: what the NBD export needs and how the two copies are
/// kept in step (modelled on DRBD's resource settings).
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// Unique; also the NBD export name.
    pub name: String,
    /// The stable path of the block device on the primary (a link duetd
    /// makes and removes), unique among replicas.
    pub device: PathBuf,
    /// Backing disk or file per node, indexed like `Config::nodes`; `None`
    /// on nodes that hold no copy (a tie-breaker, say). Exactly two nodes
    /// have one, or one node (a warning: nothing to replicate to).
    pub disks: Vec<Option<PathBuf>>,
    /// The export's unix socket, unique among replicas.
    pub nbd_socket: PathBuf,
    /// The export's TCP listener for remote clients; `None` (the default)
    /// when no node has one.
    pub nbd_tcp: Option<NbdTcp>,
    /// Replication address and port per node, indexed like `Config::nodes`;
    /// `Some` exactly where `disks` is.
    pub addresses: Vec<Option<SocketAddr>>,
    pub protocol: Protocol,
    pub meta_disk: MetaDisk,
    pub on_io_error: OnIoError,
    /// What a Primary that loses its peer does before it answers new
    /// writes (docs/replication.md, "Fencing the peer").
    pub fencing: ReplicaFencing,
    /// TLS on the replication link (`[replica.tls]`); `None`, the
    /// default, for the shared-key link alone.
    pub tls: Option<TlsFiles>,
    /// The replication link's shared key; the cluster's unless set.
    /// Resolved against the config file's folder when relative.
    pub key_file: PathBuf,
    /// How online verify compares blocks.
    pub verify_alg: VerifyAlg,
    pub policies: Policies,
    /// A replication peer silent this long is dropped.
    pub timeout: Duration,
    /// The wait between attempts to connect to the peer.
    pub connect_retry: Duration,
    pub resync: ResyncRates,
}

impl Replica {
    /// The node's backing disk; `None` if it holds no copy of this replica.
    pub fn disk(&self, node: NodeId) -> Option<&Path> {
        self.disks.get(node.0 as usize)?.as_deref()
    }

    /// The node's external metadata device; `None` when the metadata is
    /// internal (or the node holds no copy).
    pub fn meta_disk(&self, node: NodeId) -> Option<&Path> {
        match &self.meta_disk {
            MetaDisk::Internal => None,
            MetaDisk::External(paths) => paths.get(node.0 as usize)?.as_deref(),
        }
    }

    /// Where the node serves the export over TCP while it is Primary, and
    /// with which TLS files; `None` if it does not.
    pub fn nbd_listen(&self, node: NodeId) -> Option<(SocketAddr, &TlsFiles)> {
        let tcp = self.nbd_tcp.as_ref()?;
        let addr = tcp.listen.get(node.0 as usize).copied().flatten()?;
        Some((addr, &tcp.tls))
    }

    /// The node's replication address; `None` if it holds no copy.
    pub fn address(&self, node: NodeId) -> Option<SocketAddr> {
        self.addresses.get(node.0 as usize).copied().flatten()
    }

    /// The node `local` replicates with: the one other node with a disk.
    /// `None` when `local` holds no copy (it has no peer) or is the only
    /// one that does.
    pub fn peer(&self, local: NodeId) -> Option<NodeId> {
        self.disk(local)?;
        let mut others = self
            .disks
            .iter()
            .enumerate()
            .filter(|(i, disk)| disk.is_some() && *i != local.0 as usize)
            .map(|(i, _)| i);
        match (others.next(), others.next()) {
            (Some(i), None) => u16::try_from(i).ok().map(NodeId),
            // Validation allows two disks at most; never guess between more.
            _ => None,
        }
    }
}

/// The export over TCP: never without TLS, and TLS always with client
/// certificates (mutual TLS is how a client is authenticated).
#[derive(Debug, Clone, PartialEq)]
pub struct NbdTcp {
    /// Listen address per node, indexed like `Config::nodes`; `None` where
    /// the node does not listen. Only nodes with a disk have one.
    pub listen: Vec<Option<SocketAddr>>,
    pub tls: TlsFiles,
}

/// `[replica.nbd-tls]` or `[replica.tls]`: PEM files, at these paths on
/// every node that uses them (each node's own certificate and key),
/// resolved against the config file's folder when relative.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// This node's certificate chain, its own certificate first.
    pub cert: PathBuf,
    /// This node's private key: mode 0600 or stricter, owned by root.
    pub key: PathBuf,
    /// The CA certificates the other side's certificate must chain to.
    pub ca: PathBuf,
}

/// When a write counts as done (DRBD's protocols).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// Written locally and handed to the local TCP send buffer.
    A,
    /// Written locally and received by the peer (in its memory).
    B,
    /// Written locally and on the peer's disk.
    #[default]
    C,
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::A, Protocol::B, Protocol::C];

    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::A => "A",
            Protocol::B => "B",
            Protocol::C => "C",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the replica's metadata (generations, bitmap, activity log) lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MetaDisk {
    /// At the end of the backing disk.
    #[default]
    Internal,
    /// On a device or file of its own, per node, indexed like
    /// `Config::nodes`; `Some` exactly where the replica has a disk.
    External(Vec<Option<PathBuf>>),
}

/// What a node does when its backing disk reports an I/O error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnIoError {
    /// Drop the disk and go on diskless, serving from the peer.
    #[default]
    Detach,
    /// Report the error to the layer above and keep the disk.
    PassOn,
}

impl OnIoError {
    pub const ALL: [OnIoError; 2] = [OnIoError::Detach, OnIoError::PassOn];

    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            OnIoError::Detach => "detach",
            OnIoError::PassOn => "pass-on",
        }
    }
}

impl fmt::Display for OnIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Replication-level fencing, DRBD's `fencing` disk option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplicaFencing {
    /// A Primary that loses its peer has it marked Outdated through the
    /// membership before it answers new writes (or learns that the peer
    /// is dead).
    #[default]
    ResourceOnly,
    /// Nothing: writes go on at once, and the peer's copy stays
    /// promotable though it lacks them.
    None,
}

impl ReplicaFencing {
    pub const ALL: [ReplicaFencing; 2] = [ReplicaFencing::ResourceOnly, ReplicaFencing::None];

    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            ReplicaFencing::ResourceOnly => "resource-only",
            ReplicaFencing::None => "none",
        }
    }
}

impl fmt::Display for ReplicaFencing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The checksum online verify compares blocks by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerifyAlg {
    #[default]
    Crc32c,
    Sha256,
}

impl VerifyAlg {
    pub const ALL: [VerifyAlg; 2] = [VerifyAlg::Crc32c, VerifyAlg::Sha256];

    /// As written in the config.
    pub fn name(self) -> &'static str {
        match self {
            VerifyAlg::Crc32c => "crc32c",
            VerifyAlg::Sha256 => "sha256",
        }
    }
}

impl fmt::Display for VerifyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The resync controller's bounds and aim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncRates {
    /// Bytes per second the resync keeps to even under application load.
    pub min: u64,
    /// Bytes per second the resync never exceeds.
    pub max: u64,
    /// Bytes in flight the dynamic controller aims for.
    pub fill_target: u64,
}

impl Default for ResyncRates {
    fn default() -> Self {
        ResyncRates {
            min: 1 << 20,
            max: 1 << 30,
            fill_target: 4 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    /// Resolved against the config file's folder when relative.
    pub key_file: PathBuf,
    pub auth: AuthAlgorithm,
    /// Cluster-wide default; each group may override it.
    pub auto_failback: bool,
    /// No group runs anywhere until every node has been seen up at once
    /// since this daemon started (corosync's wait_for_all).
    pub wait_for_all: bool,
    /// Heartbeat's behaviour in a two-node cluster without a witness or
    /// fencing: take over from a peer silent for deadtime. A cut link then
    /// makes both nodes run the groups.
    pub unfenced_takeover: bool,
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
    /// A witness (docs/quorum.md): it holds no data, runs no resources and
    /// only lends its vote to one side of a split. At most one per cluster.
    pub witness: bool,
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

    /// The witness node, if the cluster has one.
    pub fn witness(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| n.witness)
            .map(|i| NodeId(i as u16))
    }

    pub fn link(&self, id: LinkId) -> &Link {
        &self.links[id.0 as usize]
    }

    /// The replica named `name` (also its NBD export name).
    pub fn replica(&self, name: &str) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.name == name)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn link_ids(&self) -> impl Iterator<Item = LinkId> + '_ {
        (0..self.links.len()).map(|i| LinkId(i as u8))
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.nodes.len()).map(|i| NodeId(i as u16))
    }
}
