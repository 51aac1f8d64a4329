//! The replicas this node holds a disk for: each runs its replication
//! engine (src/daemon/replica) and an NBD export whose backend is that
//! engine. The export is enabled and attached as a block device only while
//! the replica is Primary, and served on TCP (when configured) only then.
//! Beside them, the fencing relay (`fence_relay`): what the engines ask of
//! their peers through the membership, and what comes back.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::bus::{ReplicaCommand, ReplicaControl, ReplicaStatus};
use crate::config::Config;
use crate::daemon::replica::engine::Admin;
use crate::daemon::replica::tls::LinkTls;
use crate::daemon::replica::{self, Handle};
use crate::export::attach::{Attachment, attach};
use crate::export::server::{self, Export};
use crate::export::tcp::{self, Limits, TcpExport};
use crate::export::tls;
use crate::membership::Membership;
use crate::membership::fence_records::FenceNote;
use crate::membership::protocol::ProtocolRange;
use crate::replication::fence;
use crate::types::NodeId;

/// A replica's TLS files could not be used: duetd does not start.
#[derive(Debug, thiserror::Error)]
#[error("replica {replica}: {table}: {detail}")]
pub struct TlsSetupError {
    pub replica: String,
    /// "nbd-tls" or "tls", the config table the files are named in.
    pub table: &'static str,
    pub detail: String,
}

/// Where this node serves a replica over TCP while Primary, and its TLS.
struct TcpSetup {
    addr: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
}

struct LocalReplica {
    name: String,
    disk: PathBuf,
    device: PathBuf,
    socket: PathBuf,
    handle: Option<Handle>,
    export: Option<Export>,
    attachment: Option<Attachment>,
    tcp_setup: Option<TcpSetup>,
    /// The TCP listener, running while Primary.
    tcp: Option<TcpExport>,
    peer_name: String,
    /// The membership sees the peer alive (set by the fencing relay).
    peer_alive: Arc<AtomicBool>,
}

impl LocalReplica {
    fn status(&self) -> ReplicaStatus {
        let snap = self
            .handle
            .as_ref()
            .map(Handle::snapshot)
            .unwrap_or_default();
        let c = snap.counters;
        let counters = BTreeMap::from([
            ("sent".to_string(), c.sent_bytes),
            ("received".to_string(), c.received_bytes),
            ("written".to_string(), c.written_bytes),
            ("read".to_string(), c.read_bytes),
            ("resynced".to_string(), c.resynced_bytes),
            ("al-writes".to_string(), c.al_writes),
            ("bitmap-writes".to_string(), c.bitmap_writes),
            ("pending".to_string(), c.pending),
            ("unacked".to_string(), c.unacked),
            (
                "refused-connections".to_string(),
                self.handle.as_ref().map_or(0, Handle::refused_connections),
            ),
        ]);
        ReplicaStatus {
            name: self.name.clone(),
            role: or_unknown(snap.role.clone()),
            peer_role: or_unknown(snap.peer_role.clone()),
            connection: or_unknown(snap.connection.clone()),
            replication: or_unknown(snap.replication.clone()),
            disk: if self.handle.is_some() {
                snap.disk.clone()
            } else {
                "diskless".into()
            },
            peer_disk: or_unknown(snap.peer_disk.clone()),
            fencing: snap.fencing.clone(),
            out_of_sync_bytes: snap.out_of_sync_bytes,
            sync_progress: snap.sync_progress,
            sync_speed: snap.sync_speed,
            sync_eta: snap.eta_secs(),
            protocol: snap.protocol.clone(),
            generation: snap.generation.clone(),
            counters,
            backing_disk: self.disk.display().to_string(),
            device: self.device.display().to_string(),
            attached: self.attachment.is_some(),
            clients: self
                .export
                .as_ref()
                .map_or(0, |e| e.clients.load(Ordering::SeqCst) as u32),
            nbd_socket: self.socket.display().to_string(),
            link_version: self.handle.as_ref().map_or(0, |h| h.versions.in_use()),
            export_latency: self
                .export
                .as_ref()
                .map(|e| e.latency.snapshot())
                .unwrap_or_default(),
        }
    }

    fn handle(&self) -> Result<&Handle, String> {
        self.handle
            .as_ref()
            .ok_or_else(|| format!("{}: the replica did not start (see the log)", self.name))
    }

    fn make_primary(&mut self, force: bool) -> Result<(), String> {
        let handle = self.handle()?.clone();
        self.may_promote(&handle, force)?;
        handle.admin(Admin::Primary { force })?;
        if self.attachment.is_some() {
            return Ok(());
        }
        let export = self
            .export
            .as_ref()
            .ok_or_else(|| format!("{}: the export could not be opened at start", self.name))?
            .clone();
        export.set_enabled(true);
        let undo = |why: String| {
            export.set_enabled(false);
            let _ = handle.admin(Admin::Secondary);
            Err(why)
        };
        // Bound first: a node that cannot serve its remote clients finds
        // out before it attaches anything.
        let listener = match &self.tcp_setup {
            Some(setup) => match tcp::bind(setup.addr) {
                Ok(l) => Some(l),
                Err(e) => {
                    return undo(format!(
                        "{}: cannot listen on {} for NBD clients: {e}",
                        self.name, setup.addr
                    ));
                }
            },
            None => None,
        };
        // nbdfuse's mount sits beside the socket (/run/duet/nbd/r0.attach):
        // one place per replica and daemon, even with several on a host.
        let work = self.socket.with_extension("attach");
        match attach(&self.socket, &self.name, &self.device, &work) {
            Ok(a) => self.attachment = Some(a),
            Err(e) => {
                return undo(format!(
                    "{}: cannot attach {}: {e}",
                    self.name,
                    self.device.display()
                ));
            }
        }
        if let (Some(listener), Some(setup)) = (listener, &self.tcp_setup) {
            let exports = Arc::new(HashMap::from([(self.name.clone(), export.clone())]));
            match TcpExport::serve(listener, exports, setup.tls.clone(), Limits::default()) {
                Ok(t) => self.tcp = Some(t),
                // Primary with its device attached all the same: local
                // users need not lose it for the remote ones.
                Err(e) => tracing::error!(
                    replica = %self.name, addr = %setup.addr, error = %e,
                    "cannot serve NBD clients over TCP"
                ),
            }
        }
        Ok(())
    }

    /// A Secondary apart from a peer the membership sees alive is not
    /// promoted without --force: the peer may be Primary, or become it, and
    /// its copy goes on without this one (the groups' replica agent waits
    /// for the link for the same reason).
    fn may_promote(&self, handle: &Handle, force: bool) -> Result<(), String> {
        let snap = handle.snapshot();
        if force
            || snap.role == "primary"
            || snap.connection == "connected"
            || !self.peer_alive.load(Ordering::SeqCst)
        {
            return Ok(());
        }
        let (name, peer) = (&self.name, &self.peer_name);
        let outdated = if snap.disk == "outdated" {
            format!(
                ", and its disk is Outdated: {peer} had it outdated when it wrote without this node, \
                 and may have written since; it syncs from {peer} once they connect"
            )
        } else {
            String::new()
        };
        Err(format!(
            "{name} is not connected to {peer}, which is up{outdated}; promoting it now could fork the data \
             (check the replication link, or `duetctl primary {name} --force` to promote this copy anyway)"
        ))
    }

    fn make_secondary(&mut self) -> Result<(), String> {
        if let Some(a) = self.attachment.as_mut() {
            a.detach()
                .map_err(|e| format!("{}: still Primary: {e}", self.name))?;
        }
        self.attachment = None;
        // Remote clients are cut off (they reconnect to the next Primary);
        // what they had in flight is answered or dropped first.
        if let Some(t) = self.tcp.take() {
            t.stop();
        }
        if let Some(e) = &self.export {
            e.set_enabled(false);
        }
        match &self.handle {
            Some(h) => h.admin(Admin::Secondary),
            None => Ok(()),
        }
    }

    fn command(&mut self, cmd: ReplicaCommand) -> Result<(), String> {
        let admin = match cmd {
            ReplicaCommand::Primary { force } => return self.make_primary(force),
            ReplicaCommand::Secondary => return self.make_secondary(),
            ReplicaCommand::Connect { discard_my_data } => Admin::Connect { discard_my_data },
            ReplicaCommand::Disconnect => Admin::Disconnect,
            ReplicaCommand::Verify => Admin::Verify,
            ReplicaCommand::Invalidate => Admin::Invalidate,
            ReplicaCommand::InvalidateRemote => Admin::InvalidateRemote,
            ReplicaCommand::Detach => Admin::Detach,
            ReplicaCommand::Attach => Admin::Attach,
            ReplicaCommand::Up => Admin::Up,
            ReplicaCommand::Down => {
                if self.attachment.is_some() {
                    return Err(format!(
                        "{}: Primary with its device attached: `duetctl secondary {}` first",
                        self.name, self.name
                    ));
                }
                Admin::Down
            }
            ReplicaCommand::Adjust => Admin::Adjust,
            ReplicaCommand::PauseSync => Admin::PauseSync,
            ReplicaCommand::ResumeSync => Admin::ResumeSync,
        };
        self.handle()?.admin(admin)
    }
}

fn or_unknown(s: String) -> String {
    if s.is_empty() { "unknown".into() } else { s }
}

/// The node's replicas, shared by the daemon (status) and the bus (methods).
#[derive(Clone)]
pub struct Replicas {
    inner: Arc<Mutex<Vec<LocalReplica>>>,
    /// What the fencing relay needs, apart from `inner`: a command that
    /// holds that lock (a demotion whose device flushes writes that wait
    /// for the peer to be outdated, say) must never stop the relay.
    relay: Arc<Vec<RelaySlot>>,
    /// Rung by an engine when what the relay acts on changed.
    kick: Arc<Notify>,
    /// The status last read, for the daemon while a command holds `inner`.
    last_status: Arc<Mutex<Vec<ReplicaStatus>>>,
}

struct RelaySlot {
    name: String,
    peer: Option<NodeId>,
    handle: Option<Handle>,
    peer_alive: Arc<AtomicBool>,
}

impl Replicas {
    /// Starts every replica with a disk on this node. One that cannot
    /// start is listed without an engine (and says why in the log), so the
    /// others still work. TLS files that cannot be used (a key others may
    /// read, say) are an error: better no daemon than a listener that is
    /// not what the config asks for.
    pub fn open(
        config: &Config,
        local: NodeId,
        speaks: ProtocolRange,
    ) -> Result<Replicas, TlsSetupError> {
        // Every TLS file is read before any engine starts.
        let mut setups = HashMap::new();
        let mut link_tls = HashMap::new();
        for r in &config.replicas {
            if r.disk(local).is_none() {
                continue;
            }
            let refused = |table, detail: String| TlsSetupError {
                replica: r.name.clone(),
                table,
                detail,
            };
            if let Some((addr, files)) = r.nbd_listen(local) {
                let tls =
                    tls::server_config(files).map_err(|e| refused("nbd-tls", e.to_string()))?;
                setups.insert(r.name.clone(), TcpSetup { addr, tls });
            }
            if let (Some(files), Some(peer)) = (&r.tls, r.peer(local)) {
                let peer_name = &config.node(peer).name;
                // The lower node id dials (link.rs): the TLS client.
                let link = LinkTls::new(files, local < peer, peer_name)
                    .map_err(|e| refused("tls", e.to_string()))?;
                link_tls.insert(r.name.clone(), Arc::new(link));
            }
        }
        let mut list = Vec::new();
        let mut relay = Vec::new();
        let kick = Arc::new(Notify::new());
        for r in &config.replicas {
            let Some(disk) = r.disk(local) else { continue };
            let handle = match replica::start(
                config,
                r,
                local,
                kick.clone(),
                link_tls.get(&r.name).cloned(),
                speaks,
            ) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!(replica = %r.name, "cannot start: {e}");
                    None
                }
            };
            let export = handle
                .as_ref()
                .and_then(|h| open_export(&r.name, h, &r.nbd_socket));
            let peer = r.peer(local);
            let peer_alive = Arc::new(AtomicBool::new(false));
            relay.push(RelaySlot {
                name: r.name.clone(),
                peer,
                handle: handle.clone(),
                peer_alive: peer_alive.clone(),
            });
            list.push(LocalReplica {
                name: r.name.clone(),
                disk: disk.to_path_buf(),
                device: r.device.clone(),
                socket: r.nbd_socket.clone(),
                handle,
                export,
                attachment: None,
                tcp_setup: setups.remove(&r.name),
                tcp: None,
                peer_name: peer
                    .map(|p| config.node(p).name.clone())
                    .unwrap_or_default(),
                peer_alive,
            });
        }
        Ok(Replicas {
            inner: Arc::new(Mutex::new(list)),
            relay: Arc::new(relay),
            kick,
            last_status: Arc::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<LocalReplica>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Vec<ReplicaStatus> {
        let status: Vec<ReplicaStatus> = self.lock().iter().map(LocalReplica::status).collect();
        *self.last_status.lock().unwrap_or_else(|e| e.into_inner()) = status.clone();
        status
    }

    /// The status for the daemon's runtime, which must not wait: while a
    /// command holds the replicas (a demotion detaching its device), the
    /// status last read.
    pub fn status_now(&self) -> Vec<ReplicaStatus> {
        match self.inner.try_lock() {
            Ok(list) => {
                let status: Vec<ReplicaStatus> = list.iter().map(LocalReplica::status).collect();
                drop(list);
                *self.last_status.lock().unwrap_or_else(|e| e.into_inner()) = status.clone();
                status
            }
            Err(_) => self
                .last_status
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// `node` speaks protocol versions up to `max`: its replicas' links
    /// offer it no newer one.
    pub fn peer_speaks(&self, node: NodeId, max: u16) {
        for slot in self.relay.iter().filter(|s| s.peer == Some(node)) {
            if let Some(h) = &slot.handle {
                h.versions.peer_speaks(max);
            }
        }
    }

    /// This node holds a replica: it takes part in fencing.
    pub fn any(&self) -> bool {
        !self.relay.is_empty()
    }

    /// Resolves when an engine changed what the fencing relay acts on.
    pub async fn kicked(&self) {
        self.kick.notified().await;
    }

    /// The fencing relay, after each step of the membership: feeds each
    /// engine what its peer's heartbeats brought (and whether the peer is
    /// alive), and returns what this node is to announce. The rules are
    /// `replication::fence`'s.
    pub fn fence_relay(&self, m: &Membership) -> Vec<FenceNote> {
        let mut notes = Vec::new();
        for slot in self.relay.iter() {
            let (Some(h), Some(peer)) = (&slot.handle, slot.peer) else {
                continue;
            };
            let alive = m.view(peer).is_some_and(|v| v.state.is_alive());
            slot.peer_alive.store(alive, Ordering::SeqCst);
            let heard = fence::about(m.fences(peer), &slot.name);
            for input in fence::inputs(&h.fence_view(), &heard, alive) {
                h.fence(input);
            }
            notes.extend(fence::notes(&slot.name, &h.fence_view(), &heard));
        }
        notes
    }

    fn with<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut LocalReplica) -> Result<T, String>,
    ) -> Result<T, String> {
        let mut list = self.lock();
        let r = list
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("no replica {name} on this node"))?;
        f(r)
    }

    /// Detaches everything at shutdown (what is busy stays, and says so).
    pub fn shutdown(&self) {
        for r in self.lock().iter_mut() {
            if let Err(e) = r.make_secondary() {
                tracing::warn!(replica = %r.name, "{e}");
            }
            if let Some(h) = &r.handle {
                h.stop();
            }
        }
    }
}

impl ReplicaControl for Replicas {
    fn command(&self, name: &str, cmd: ReplicaCommand) -> Result<(), String> {
        let result = self.with(name, |r| r.command(cmd));
        match &result {
            Ok(()) => tracing::info!(replica = name, "{cmd:?}: done"),
            Err(e) => tracing::warn!(replica = name, "{cmd:?} refused: {e}"),
        }
        result
    }

    fn status(&self, name: &str) -> Option<ReplicaStatus> {
        self.lock()
            .iter()
            .find(|r| r.name == name)
            .map(LocalReplica::status)
    }
}

fn open_export(name: &str, handle: &Handle, socket: &Path) -> Option<Export> {
    let export = Export::new(name, Arc::new(handle.backend()));
    export.set_enabled(false);
    let listener = match server::bind(socket) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(replica = name, socket = %socket.display(), error = %e, "cannot open the NBD socket");
            return None;
        }
    };
    let exports = HashMap::from([(name.to_string(), export.clone())]);
    server::spawn(listener, Arc::new(exports));
    Some(export)
}
