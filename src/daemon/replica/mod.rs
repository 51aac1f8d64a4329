//! One replica on this node, running: its engine thread (the core), its
//! disk threads, its replication link to the peer and its NBD export,
//! whose backend goes through the engine.

mod backend;
mod disk;
pub mod engine;
mod link;
pub mod status;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, OnIoError, Replica as ReplicaConfig};
use crate::membership::auth::load_key_file;
use crate::replication::activity_log::CAPACITY;
use crate::replication::bitmap::DirtyBitmap;
use crate::replication::core::{Attached, Replica, Settings};
use crate::replication::md_io::{Backing, MdDisk};
use crate::replication::metadata::DEFAULT_GRANULARITY;
use crate::types::NodeId;

pub use backend::ReplicaBackend;
use engine::{Admin, Cmd, Engine};
pub use status::Snapshot;

/// How long an administrative command may take to be accepted.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Handle {
    pub name: String,
    tx: Sender<Cmd>,
    snapshot: Arc<Mutex<Snapshot>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("replication key: {0}")]
    Key(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Handle {
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn backend(&self) -> ReplicaBackend {
        ReplicaBackend {
            engine: self.tx.clone(),
            size: self.snapshot().size,
        }
    }

    pub fn admin(&self, a: Admin) -> Result<(), String> {
        let (tx, rx) = channel();
        self.tx
            .send(Cmd::Admin(a, tx))
            .map_err(|_| "the replica's engine stopped".to_string())?;
        rx.recv_timeout(ADMIN_TIMEOUT)
            .map_err(|_| "the replica's engine did not answer".to_string())?
    }

    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Shutdown);
    }
}

/// Opens the disk's metadata and starts everything; connects to the peer
/// at once (`up`). A disk without metadata runs Diskless and says why.
pub fn start(config: &Config, r: &ReplicaConfig, local: NodeId) -> Result<Handle, StartError> {
    let disk = r
        .disk(local)
        .ok_or_else(|| StartError::Config(format!("{}: no disk on this node", r.name)))?;
    let backing = Backing {
        data: disk.to_path_buf(),
        meta: r.meta_disk(local).map(Path::to_path_buf),
    };
    let peer = r
        .peer(local)
        .ok_or_else(|| StartError::Config(format!("{}: no peer node has a disk", r.name)))?;
    let (listen, peer_addr) = match (r.address(local), r.address(peer)) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(StartError::Config(format!(
                "{}: replication addresses missing",
                r.name
            )));
        }
    };
    let key = load_key_file(&r.key_file).map_err(|e| StartError::Key(e.to_string()))?;
    let (md, attached, size) = open_disk(&r.name, &backing);
    let settings = settings(config, r, local, peer, size);
    let seed = rand::random::<u64>();
    let core = Replica::new(settings, attached, seed);
    let (tx, rx) = channel();
    let disk_io = md
        .map(|md| disk::DiskIo::start(md, tx.clone(), r.verify_alg))
        .transpose()?;
    let snapshot = Arc::new(Mutex::new(Snapshot::of(&core)));
    let origin = engine::Origin {
        config: config.path.clone(),
        local,
        backing,
        verify: r.verify_alg,
    };
    let mut engine = Engine::new(core, r.name.clone(), disk_io, snapshot.clone(), origin);
    engine.engine_tx = Some(tx.clone());
    let shared = link::Shared {
        engine: tx.clone(),
        wants: engine.wants_link.clone(),
        closer: engine.closer.clone(),
        stop: Arc::new(AtomicBool::new(false)),
    };
    link::spawn(
        link::LinkConfig {
            replica: r.name.clone(),
            local: local.0,
            peer: peer.0,
            listen,
            peer_addr,
            key,
            retry: r.connect_retry,
        },
        shared,
    )?;
    std::thread::Builder::new()
        .name(format!("duet-replica-{}", r.name))
        .spawn(move || engine.run(&rx))?;
    let handle = Handle {
        name: r.name.clone(),
        tx,
        snapshot,
    };
    handle
        .admin(Admin::Connect {
            discard_my_data: false,
        })
        .map_err(StartError::Config)?;
    Ok(handle)
}

/// The core's settings from the config.
pub fn settings(
    config: &Config,
    r: &ReplicaConfig,
    local: NodeId,
    peer: NodeId,
    size: u64,
) -> Settings {
    Settings {
        local,
        peer,
        local_name: config.node(local).name.clone(),
        peer_name: config.node(peer).name.clone(),
        protocol: r.protocol,
        policies: r.policies.clone(),
        detach_on_error: r.on_io_error == OnIoError::Detach,
        size,
        granularity: DEFAULT_GRANULARITY,
        timeout: r.timeout,
        rate_min: r.resync.min,
        rate_max: r.resync.max,
        fill_target: r.resync.fill_target,
        al_capacity: CAPACITY,
    }
}

/// What attaching reads of a disk's metadata.
pub fn attached(loaded: crate::replication::md_io::Loaded) -> Attached {
    let sb = loaded.superblock;
    Attached {
        generations: sb.generations,
        flags: sb.flags,
        bitmap: DirtyBitmap::from_bytes(sb.size, sb.granularity, &loaded.bitmap),
        al_extents: loaded
            .al
            .as_ref()
            .map(|t| t.extents.clone())
            .unwrap_or_default(),
        al_seq: loaded.al.map_or(0, |t| t.seq),
    }
}

/// The metadata and what attaching reads of it; none (Diskless) if the
/// disk has no valid metadata, which the log explains.
fn open_disk(name: &str, backing: &Backing) -> (Option<MdDisk>, Option<Attached>, u64) {
    match MdDisk::open(backing) {
        Ok((md, loaded)) => {
            let attached = attached(loaded);
            let size = md.layout.usable;
            (Some(md), Some(attached), size)
        }
        Err(e) => {
            let meta = backing.meta_path().display();
            tracing::error!(replica = name, disk = %backing.data.display(), %meta, "cannot attach: {e} (run `duetctl create-md {name}`); running Diskless");
            // The size the disk would have: a diskless node still says it.
            let size = crate::replication::md_io::usable_size(backing).unwrap_or(0);
            (None, None, size)
        }
    }
}
