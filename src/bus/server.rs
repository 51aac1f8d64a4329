//! The D-Bus objects: `/org/duet/Duet1` (Cluster, ObjectManager), one
//! `/org/duet/Duet1/node/<name>` per node, one `.../replica/<name>` per
//! replica and one `.../group/<name>` per group (src/bus/group.rs). Getters read the shared status;
//! `Bus::publish` swaps in a new status and signals what changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedObjectPath;

use crate::bus::BusKind;
use crate::bus::authorize::{Action, Gate, authorize};
use crate::bus::group::{GroupCommand, GroupControl, GroupObject};
use crate::bus::status::{
    ClusterStatus, GroupStatus, NodeStatus, ReplicaStatus, group_path, node_path, replica_path,
};

pub const BUS_NAME: &str = "org.duet.Duet1";
pub const ROOT_PATH: &str = "/org/duet/Duet1";

pub(crate) type Shared = Arc<Mutex<ClusterStatus>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, ClusterStatus> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct ClusterObject {
    shared: Shared,
    groups: GroupControl,
    gate: Gate,
}

#[zbus::interface(name = "org.duet.Duet1.Cluster")]
impl ClusterObject {
    /// The cluster's name from the config.
    #[zbus(property)]
    fn name(&self) -> String {
        lock(&self.shared).cluster.clone()
    }

    /// The name of the node this daemon runs on.
    #[zbus(property)]
    fn local_node(&self) -> String {
        lock(&self.shared).local_node.clone()
    }

    /// Whether this node's partition holds a majority of the votes.
    #[zbus(property)]
    fn quorate(&self) -> bool {
        lock(&self.shared).quorate
    }

    /// The node objects, in config order.
    #[zbus(property)]
    fn nodes(&self) -> Vec<OwnedObjectPath> {
        lock(&self.shared)
            .nodes
            .iter()
            .filter_map(|n| OwnedObjectPath::try_from(node_path(&n.name)).ok())
            .collect()
    }

    /// The ping nodes as this node sees them: (address, reachable).
    #[zbus(property)]
    fn ping_nodes(&self) -> Vec<(String, bool)> {
        lock(&self.shared)
            .ping_nodes
            .iter()
            .map(|p| (p.address.clone(), p.reachable))
            .collect()
    }

    /// Heartbeats dropped since start, by reason ("bad-signature",
    /// "wrong-cluster", "replay", ...). Read, not signalled: a flood of
    /// garbage must not become a flood of signals.
    #[zbus(property(emits_changed_signal = "false"))]
    fn dropped_packets(&self) -> HashMap<String, u64> {
        lock(&self.shared)
            .dropped
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The replica objects of this node, in config order.
    #[zbus(property)]
    fn replicas(&self) -> Vec<OwnedObjectPath> {
        lock(&self.shared)
            .replicas
            .iter()
            .filter_map(|r| OwnedObjectPath::try_from(replica_path(&r.name)).ok())
            .collect()
    }

    /// The resource groups, one object each.
    #[zbus(property)]
    fn groups(&self) -> Vec<OwnedObjectPath> {
        lock(&self.shared)
            .groups
            .iter()
            .filter_map(|g| OwnedObjectPath::try_from(group_path(&g.name)).ok())
            .collect()
    }

    /// This node is in standby: it runs no group.
    #[zbus(property)]
    fn standby(&self) -> bool {
        lock(&self.shared).standby
    }

    /// duet watches but starts and stops nothing on this node.
    #[zbus(property)]
    fn maintenance(&self) -> bool {
        lock(&self.shared).maintenance
    }

    /// The witness node (docs/quorum.md); "" without a witness. Set by
    /// the config, so it never changes while the daemon runs.
    #[zbus(property(emits_changed_signal = "const"))]
    fn witness(&self) -> String {
        lock(&self.shared).witness.clone()
    }

    /// On a data node: it counts the witness's vote toward quorum now.
    #[zbus(property)]
    fn witness_vote(&self) -> bool {
        lock(&self.shared).witness_vote
    }

    /// The nodes the witness's vote goes to (on the witness: its own vote;
    /// on a data node: the latest heard); empty while it is withdrawn or
    /// none was heard.
    #[zbus(property)]
    fn witness_votes_for(&self) -> Vec<String> {
        lock(&self.shared).witness_votes_for.clone()
    }

    /// With a witness, on a data node: the nodes of this node's partition
    /// (itself and the data nodes that it and they see alive both ways);
    /// empty otherwise.
    #[zbus(property)]
    fn partition(&self) -> Vec<String> {
        lock(&self.shared).partition.clone()
    }

    /// The nodes that announce another config than this node's: their
    /// files differ from this one's. Empty when all agree.
    #[zbus(property)]
    fn config_differs(&self) -> Vec<String> {
        lock(&self.shared).config_differs.clone()
    }

    /// Moves every group off this node (true), or lets it run groups
    /// again (`duetctl standby` / `duetctl online`).
    async fn set_standby(
        &self,
        on: bool,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        self.groups.ask(GroupCommand::Standby(on)).await
    }

    /// Stops acting (true): nothing is started or stopped on this node,
    /// resources stay as they are; false acts again.
    async fn set_maintenance(
        &self,
        on: bool,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        self.groups.ask(GroupCommand::Maintenance(on)).await
    }

    /// Tells this node that `node`, which it sees dead, is off (powered
    /// down by hand, checked at its console): groups it may still have run
    /// can be taken over without a fence (`duetctl confirm-off`). Refused
    /// for a node that is up. Saying so of a node that still runs its
    /// groups makes two nodes run them.
    async fn confirm_off(
        &self,
        node: String,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        self.groups.ask(GroupCommand::ConfirmOff { node }).await
    }

    /// Reads the config file again (`duetctl reload`): applies the changes
    /// that can be applied live and answers, one line each, what was
    /// applied and what needs a restart of duetd. A file with errors
    /// changes nothing; the error lists them.
    async fn reload(
        &self,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<String> {
        authorize(self.gate, conn, &header, Action::Manage).await?;
        self.groups.ask_text(GroupCommand::Reload).await
    }

    /// One line, e.g. "2/2 nodes up, quorate".
    #[zbus(property)]
    fn status(&self) -> String {
        lock(&self.shared).summary()
    }
}

/// What the replica objects' methods act on (the daemon's replicas).
/// What an administrator asks of a replica (drbdadm's verbs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaCommand {
    /// Attach the disk and connect.
    Up,
    /// Disconnect and detach (Secondary only).
    Down,
    /// Take the backing disk (read its metadata).
    Attach,
    /// Apply the config file's changed settings live.
    Adjust,
    /// Stop sending the sync (on its source) until resumed.
    PauseSync,
    ResumeSync,
    /// `force`: make this disk's data the truth even if not UpToDate.
    Primary {
        force: bool,
    },
    Secondary,
    /// `discard_my_data`: after a split brain, this node's changes lose.
    Connect {
        discard_my_data: bool,
    },
    Disconnect,
    Verify,
    /// This disk's data is bad: full sync from the peer.
    Invalidate,
    /// The peer's disk's data is bad: full sync to the peer.
    InvalidateRemote,
    Detach,
}

pub trait ReplicaControl: Send + Sync {
    fn command(&self, name: &str, cmd: ReplicaCommand) -> Result<(), String>;
    /// The replica's status right after a command.
    fn status(&self, name: &str) -> Option<ReplicaStatus>;
}

pub struct ReplicaObject {
    shared: Shared,
    index: usize,
    control: Arc<dyn ReplicaControl>,
    gate: Gate,
}

impl ReplicaObject {
    fn with<T>(&self, f: impl FnOnce(&ReplicaStatus) -> T, default: T) -> T {
        lock(&self.shared)
            .replicas
            .get(self.index)
            .map(f)
            .unwrap_or(default)
    }

    fn name_now(&self) -> String {
        self.with(|r| r.name.clone(), String::new())
    }

    /// Runs a command off the bus thread (attaching can take seconds),
    /// then shows its result at once: a client that reads the properties
    /// right after the call returns sees the new state.
    async fn run(&self, cmd: ReplicaCommand, emitter: &SignalEmitter<'_>) -> zbus::fdo::Result<()> {
        let (control, name) = (self.control.clone(), self.name_now());
        let job = tokio::task::spawn_blocking(move || {
            control.command(&name, cmd)?;
            Ok::<_, String>(control.status(&name))
        });
        let new = match job.await {
            Ok(Ok(new)) => new,
            Ok(Err(e)) => return Err(zbus::fdo::Error::Failed(e)),
            Err(e) => return Err(zbus::fdo::Error::Failed(e.to_string())),
        };
        let Some(new) = new else { return Ok(()) };
        let old = {
            let mut shared = lock(&self.shared);
            let Some(slot) = shared.replicas.get_mut(self.index) else {
                return Ok(());
            };
            std::mem::replace(slot, new.clone())
        };
        self.changed(&old, &new, emitter).await?;
        Ok(())
    }

    async fn changed(
        &self,
        old: &ReplicaStatus,
        new: &ReplicaStatus,
        e: &SignalEmitter<'_>,
    ) -> zbus::Result<()> {
        macro_rules! each {
            ($($field:ident => $signal:ident),+ $(,)?) => {
                $(if old.$field != new.$field {
                    self.$signal(e).await?;
                })+
            };
        }
        each!(
            role => role_changed,
            peer_role => peer_role_changed,
            connection => connection_changed,
            replication => replication_changed,
            disk => disk_changed,
            peer_disk => peer_disk_changed,
            fencing => fencing_changed,
            out_of_sync_bytes => out_of_sync_changed,
            sync_progress => sync_progress_changed,
            sync_speed => sync_speed_changed,
            sync_eta => sync_eta_changed,
            generation => generation_changed,
            counters => counters_changed,
            attached => attached_changed,
            clients => clients_changed,
            link_version => link_version_changed,
        );
        Ok(())
    }
}

#[zbus::interface(name = "org.duet.Duet1.Replica")]
impl ReplicaObject {
    /// Becomes Primary: enables the NBD export and attaches it as a block
    /// device at Device. Refused unless the disk is UpToDate (`force`
    /// makes this copy the good one, e.g. the first time) or the peer is
    /// Primary.
    async fn primary(
        &self,
        force: bool,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Primary { force }, &emitter).await
    }

    /// Becomes Secondary: detaches the block device (refused while it is in
    /// use, e.g. mounted) and disables the export.
    async fn secondary(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Secondary, &emitter).await
    }

    /// Starts connecting to the peer; `discard_my_data` makes this node
    /// the loser of a split brain.
    async fn connect(
        &self,
        discard_my_data: bool,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Connect { discard_my_data }, &emitter)
            .await
    }

    /// Drops the connection and stops trying (StandAlone).
    async fn disconnect(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Disconnect, &emitter).await
    }

    /// Starts an online verify from this node; differing blocks are marked
    /// out of sync (OutOfSync) and resync on the next connect.
    async fn verify(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Verify, &emitter).await
    }

    /// Declares this node's data bad: a full sync from the peer follows.
    async fn invalidate(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Invalidate, &emitter).await
    }

    /// Declares the peer's data bad: a full sync from this node follows
    /// (this node SyncSource, the peer SyncTarget and Inconsistent).
    /// Refused unless connected, with this disk UpToDate and the peer not
    /// Primary, and no sync or verify running.
    async fn invalidate_remote(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::InvalidateRemote, &emitter).await
    }

    /// Attaches the disk and connects (what duetd does at start).
    async fn up(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Up, &emitter).await
    }

    /// Disconnects and detaches.
    async fn down(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Down, &emitter).await
    }

    /// Takes the backing disk again (reads its metadata).
    async fn attach(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Attach, &emitter).await
    }

    /// Reads the config file again and applies the replica's changed
    /// settings (protocol, split-brain policies, resync rates, timeout).
    async fn adjust(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Adjust, &emitter).await
    }

    /// Pauses the sync (or verify) this node sends (Replication shows
    /// "pausedsync") until ResumeSync.
    async fn pause_sync(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::PauseSync, &emitter).await
    }

    async fn resume_sync(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::ResumeSync, &emitter).await
    }

    /// Lets go of the backing disk (Diskless).
    async fn detach(
        &self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> zbus::fdo::Result<()> {
        authorize(self.gate, conn, &header, Action::ManageReplicas).await?;
        self.run(ReplicaCommand::Detach, &emitter).await
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.name_now()
    }

    /// "primary" or "secondary".
    #[zbus(property)]
    fn role(&self) -> String {
        self.with(|r| r.role.clone(), String::new())
    }

    /// The peer's role; "unknown" while not connected.
    #[zbus(property)]
    fn peer_role(&self) -> String {
        self.with(|r| r.peer_role.clone(), String::new())
    }

    /// "standalone", "connecting", "handshake" or "connected".
    #[zbus(property)]
    fn connection(&self) -> String {
        self.with(|r| r.connection.clone(), String::new())
    }

    /// "off", "established", "syncsource", "synctarget", "verifysource" or
    /// "verifytarget".
    #[zbus(property)]
    fn replication(&self) -> String {
        self.with(|r| r.replication.clone(), String::new())
    }

    /// This node's disk: "uptodate", "consistent" (attached at start, not
    /// yet compared with the peer), "inconsistent", "outdated",
    /// "diskless", "failed".
    #[zbus(property)]
    fn disk(&self) -> String {
        self.with(|r| r.disk.clone(), String::new())
    }

    /// The peer's disk as it last said; "dunknown" while not connected,
    /// "outdated" once it confirmed so through the membership.
    #[zbus(property)]
    fn peer_disk(&self) -> String {
        self.with(|r| r.peer_disk.clone(), String::new())
    }

    /// Fencing of the peer while apart: "" (none), "fencing" (writes are
    /// held until the peer is outdated or declared dead), "peer-outdated",
    /// "peer-unreachable" or "peer-refused" (writes went on without it).
    #[zbus(property)]
    fn fencing(&self) -> String {
        self.with(|r| r.fencing.clone(), String::new())
    }

    /// Bytes to resync.
    #[zbus(property)]
    fn out_of_sync(&self) -> u64 {
        self.with(|r| r.out_of_sync_bytes, 0)
    }

    /// Fraction done while a sync or verify runs; -1 otherwise.
    #[zbus(property)]
    fn sync_progress(&self) -> f64 {
        self.with(|r| r.sync_progress.unwrap_or(-1.0), -1.0)
    }

    /// Bytes a second while syncing; 0 otherwise.
    #[zbus(property)]
    fn sync_speed(&self) -> u64 {
        self.with(|r| r.sync_speed.unwrap_or(0), 0)
    }

    /// Seconds left while syncing; 0 otherwise.
    #[zbus(property)]
    fn sync_eta(&self) -> u64 {
        self.with(|r| r.sync_eta.unwrap_or(0), 0)
    }

    /// "A", "B" or "C".
    #[zbus(property)]
    fn protocol(&self) -> String {
        self.with(|r| r.protocol.clone(), String::new())
    }

    /// The current data generation (hex).
    #[zbus(property)]
    fn generation(&self) -> String {
        self.with(|r| r.generation.clone(), String::new())
    }

    /// sent, received, written, read, resynced (bytes); al-writes,
    /// bitmap-writes (metadata writes); pending (requests sent to the peer
    /// and not answered), unacked (the peer's, not answered yet).
    #[zbus(property)]
    fn counters(&self) -> std::collections::HashMap<String, u64> {
        self.with(
            |r| r.counters.clone().into_iter().collect(),
            std::collections::HashMap::new(),
        )
    }

    /// The backing disk on this node.
    #[zbus(property)]
    fn backing_disk(&self) -> String {
        self.with(|r| r.backing_disk.clone(), String::new())
    }

    /// The stable path of the block device (a link while attached).
    #[zbus(property)]
    fn device(&self) -> String {
        self.with(|r| r.device.clone(), String::new())
    }

    #[zbus(property)]
    fn attached(&self) -> bool {
        self.with(|r| r.attached, false)
    }

    /// NBD clients connected to the export now.
    #[zbus(property)]
    fn clients(&self) -> u32 {
        self.with(|r| r.clients, 0)
    }

    /// The export's unix socket (export name = the replica's name).
    #[zbus(property)]
    fn nbd_socket(&self) -> String {
        self.with(|r| r.nbd_socket.clone(), String::new())
    }

    /// The replication protocol version the link settled on with the
    /// peer; 0 while no link is up.
    #[zbus(property)]
    fn link_version(&self) -> u16 {
        self.with(|r| r.link_version, 0)
    }
}

pub struct NodeObject {
    shared: Shared,
    index: usize,
}

impl NodeObject {
    fn with<T>(&self, f: impl FnOnce(&NodeStatus) -> T, default: T) -> T {
        lock(&self.shared)
            .nodes
            .get(self.index)
            .map(f)
            .unwrap_or(default)
    }
}

#[zbus::interface(name = "org.duet.Duet1.Node")]
impl NodeObject {
    #[zbus(property)]
    fn name(&self) -> String {
        self.with(|n| n.name.clone(), String::new())
    }

    /// "init", "up", "late" or "dead".
    #[zbus(property)]
    fn state(&self) -> String {
        self.with(|n| n.state.clone(), String::new())
    }

    /// The node's current run (its start time in microseconds); 0 if never
    /// heard. A new value means the node restarted.
    #[zbus(property)]
    fn incarnation(&self) -> u64 {
        self.with(|n| n.incarnation, 0)
    }

    /// Wall-clock time of the last heartbeat in microseconds since the
    /// epoch. It changes with every heartbeat, so it is read, not signalled.
    #[zbus(property(emits_changed_signal = "false"))]
    fn last_seen(&self) -> u64 {
        self.with(|n| n.last_seen, 0)
    }

    /// Per link: (link name, "init" | "up" | "down").
    #[zbus(property)]
    fn links(&self) -> Vec<(String, String)> {
        self.with(
            |n| {
                n.links
                    .iter()
                    .map(|l| (l.name.clone(), l.state.clone()))
                    .collect()
            },
            Vec::new(),
        )
    }

    /// How many of the configured ping nodes this node reaches.
    #[zbus(property)]
    fn ping_reachable(&self) -> u16 {
        self.with(|n| n.ping_reachable, 0)
    }

    /// Whether this is the node the daemon runs on.
    #[zbus(property)]
    fn local(&self) -> bool {
        self.with(|n| n.local, false)
    }

    #[zbus(property)]
    fn votes(&self) -> u32 {
        self.with(|n| n.votes, 0)
    }

    /// The digest of the node's config as it announced it (16 hex
    /// digits); "" until heard.
    #[zbus(property)]
    fn config_digest(&self) -> String {
        self.with(|n| n.config_digest.clone(), String::new())
    }

    /// The protocol versions the node speaks ("1-3"; "1" for a build
    /// before announcements); "" until heard.
    #[zbus(property)]
    fn protocol(&self) -> String {
        self.with(|n| n.protocol.clone(), String::new())
    }

    /// Its software version as it announced it; "" until heard or from a
    /// build before announcements.
    #[zbus(property)]
    fn software(&self) -> String {
        self.with(|n| n.software.clone(), String::new())
    }

    /// No protocol version in common with this node: its replicas do not
    /// connect (docs/wire.md, Rolling upgrade).
    #[zbus(property)]
    fn incompatible(&self) -> bool {
        self.with(|n| n.incompatible, false)
    }

    /// Its heartbeats that never arrived (gaps in its sequence numbers),
    /// since this daemon started. Read, not signalled.
    #[zbus(property(emits_changed_signal = "false"))]
    fn lost_heartbeats(&self) -> u64 {
        self.with(|n| n.lost_heartbeats, 0)
    }

    /// How often it went late (warntime) since this daemon started.
    #[zbus(property(emits_changed_signal = "false"))]
    fn late_count(&self) -> u64 {
        self.with(|n| n.late_count, 0)
    }

    /// Per link: (link name, last heartbeat round trip in microseconds;
    /// 0 while unknown). Read, not signalled.
    #[zbus(property(emits_changed_signal = "false"))]
    fn link_round_trips(&self) -> Vec<(String, u64)> {
        self.with(
            |n| {
                n.links
                    .iter()
                    .map(|l| (l.name.clone(), l.rtt_us.unwrap_or(0)))
                    .collect()
            },
            Vec::new(),
        )
    }
}

/// The daemon's handle on its D-Bus objects.
pub struct Bus {
    connection: zbus::Connection,
    shared: Shared,
}

impl Bus {
    /// Connects to the system bus (or DBUS_SYSTEM_BUS_ADDRESS), serves the
    /// objects for `initial` and takes the well-known name.
    pub async fn start(
        kind: BusKind,
        initial: ClusterStatus,
        control: Arc<dyn ReplicaControl>,
        groups: GroupControl,
    ) -> zbus::Result<Bus> {
        let shared = Arc::new(Mutex::new(initial.clone()));
        let (builder, gate) = match kind {
            BusKind::System => (zbus::connection::Builder::system()?, Gate::Polkit),
            BusKind::Session => (zbus::connection::Builder::session()?, Gate::Open),
        };
        let mut builder = builder
            .serve_at(ROOT_PATH, zbus::fdo::ObjectManager)?
            .serve_at(
                ROOT_PATH,
                ClusterObject {
                    shared: shared.clone(),
                    groups: groups.clone(),
                    gate,
                },
            )?;
        for (index, node) in initial.nodes.iter().enumerate() {
            let object = NodeObject {
                shared: shared.clone(),
                index,
            };
            builder = builder.serve_at(node_path(&node.name), object)?;
        }
        for (index, replica) in initial.replicas.iter().enumerate() {
            let object = ReplicaObject {
                shared: shared.clone(),
                index,
                control: control.clone(),
                gate,
            };
            builder = builder.serve_at(replica_path(&replica.name), object)?;
        }
        for (index, group) in initial.groups.iter().enumerate() {
            let object = GroupObject {
                shared: shared.clone(),
                index,
                control: groups.clone(),
                gate,
            };
            builder = builder.serve_at(group_path(&group.name), object)?;
        }
        let connection = builder.name(BUS_NAME)?.build().await?;
        Ok(Bus { connection, shared })
    }

    /// Whether the bus still answers (a restarted dbus-daemon cut every
    /// connection it had).
    pub async fn alive(&self) -> bool {
        let ask = async {
            let dbus = zbus::fdo::DBusProxy::new(&self.connection).await?;
            dbus.get_id().await
        };
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), ask).await,
            Ok(Ok(_))
        )
    }

    /// Replaces the status and emits PropertiesChanged for what differs.
    pub async fn publish(&self, new: ClusterStatus) -> zbus::Result<()> {
        let old = std::mem::replace(&mut *lock(&self.shared), new.clone());
        if old == new {
            return Ok(());
        }
        self.signal_cluster(&old, &new).await?;
        for (index, (o, n)) in old.nodes.iter().zip(&new.nodes).enumerate() {
            if o != n {
                self.signal_node(index, o, n).await?;
            }
        }
        for (o, n) in old.replicas.iter().zip(&new.replicas) {
            if o != n {
                self.signal_replica(o, n).await?;
            }
        }
        for (o, n) in old.groups.iter().zip(&new.groups) {
            if o != n {
                self.signal_group(o, n).await?;
            }
        }
        Ok(())
    }

    async fn signal_group(&self, old: &GroupStatus, new: &GroupStatus) -> zbus::Result<()> {
        let iface = self
            .connection
            .object_server()
            .interface::<_, GroupObject>(group_path(&new.name))
            .await?;
        let object = iface.get().await;
        object.changed(old, new, iface.signal_emitter()).await
    }

    async fn signal_replica(&self, old: &ReplicaStatus, new: &ReplicaStatus) -> zbus::Result<()> {
        let iface = self
            .connection
            .object_server()
            .interface::<_, ReplicaObject>(replica_path(&new.name))
            .await?;
        let object = iface.get().await;
        object.changed(old, new, iface.signal_emitter()).await
    }

    async fn signal_cluster(&self, old: &ClusterStatus, new: &ClusterStatus) -> zbus::Result<()> {
        let iface = self
            .connection
            .object_server()
            .interface::<_, ClusterObject>(ROOT_PATH)
            .await?;
        let emitter = iface.signal_emitter();
        let object = iface.get().await;
        if old.quorate != new.quorate {
            object.quorate_changed(emitter).await?;
        }
        if old.ping_nodes != new.ping_nodes {
            object.ping_nodes_changed(emitter).await?;
        }
        if old.summary() != new.summary() {
            object.status_changed(emitter).await?;
        }
        if old.standby != new.standby {
            object.standby_changed(emitter).await?;
        }
        if old.maintenance != new.maintenance {
            object.maintenance_changed(emitter).await?;
        }
        if old.witness_vote != new.witness_vote {
            object.witness_vote_changed(emitter).await?;
        }
        if old.witness_votes_for != new.witness_votes_for {
            object.witness_votes_for_changed(emitter).await?;
        }
        if old.partition != new.partition {
            object.partition_changed(emitter).await?;
        }
        if old.config_differs != new.config_differs {
            object.config_differs_changed(emitter).await?;
        }
        Ok(())
    }

    async fn signal_node(
        &self,
        index: usize,
        old: &NodeStatus,
        new: &NodeStatus,
    ) -> zbus::Result<()> {
        let iface = self
            .connection
            .object_server()
            .interface::<_, NodeObject>(node_path(&new.name))
            .await?;
        let e: &SignalEmitter<'_> = iface.signal_emitter();
        let object = iface.get().await;
        debug_assert_eq!(object.index, index);
        if old.state != new.state {
            object.state_changed(e).await?;
        }
        if old.incarnation != new.incarnation {
            object.incarnation_changed(e).await?;
        }
        // Round trips change with every heartbeat: read, not signalled.
        let states = |n: &NodeStatus| {
            n.links
                .iter()
                .map(|l| (l.name.clone(), l.state.clone()))
                .collect::<Vec<_>>()
        };
        if states(old) != states(new) {
            object.links_changed(e).await?;
        }
        if (&old.protocol, &old.software, old.incompatible)
            != (&new.protocol, &new.software, new.incompatible)
        {
            object.protocol_changed(e).await?;
            object.software_changed(e).await?;
            object.incompatible_changed(e).await?;
        }
        if old.ping_reachable != new.ping_reachable {
            object.ping_reachable_changed(e).await?;
        }
        if old.config_digest != new.config_digest {
            object.config_digest_changed(e).await?;
        }
        Ok(())
    }
}

/// The introspection XML of each interface, as served (for the files in
/// dbus/ and the test that keeps them in step).
pub fn introspection() -> Vec<(&'static str, String)> {
    use zbus::object_server::Interface;
    let shared = Shared::default();
    let (groups, _rx) = GroupControl::channel();
    let mut cluster = String::new();
    ClusterObject {
        shared: shared.clone(),
        groups: groups.clone(),
        gate: Gate::Polkit,
    }
    .introspect_to_writer(&mut cluster, 2);
    let mut group = String::new();
    GroupObject {
        shared: shared.clone(),
        index: 0,
        control: groups,
        gate: Gate::Polkit,
    }
    .introspect_to_writer(&mut group, 2);
    let mut node = String::new();
    NodeObject {
        shared: shared.clone(),
        index: 0,
    }
    .introspect_to_writer(&mut node, 2);
    struct NoControl;
    impl ReplicaControl for NoControl {
        fn command(&self, _: &str, _: ReplicaCommand) -> Result<(), String> {
            Err("introspection only".into())
        }
        fn status(&self, _: &str) -> Option<ReplicaStatus> {
            None
        }
    }
    let mut replica = String::new();
    ReplicaObject {
        shared,
        index: 0,
        control: Arc::new(NoControl),
        gate: Gate::Polkit,
    }
    .introspect_to_writer(&mut replica, 2);
    vec![
        ("org.duet.Duet1.Cluster", cluster),
        ("org.duet.Duet1.Node", node),
        ("org.duet.Duet1.Replica", replica),
        ("org.duet.Duet1.Group", group),
    ]
}
