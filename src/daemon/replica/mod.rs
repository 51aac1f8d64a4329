//! One replica on this node, running: its engine thread (the core), its
//! disk threads, its replication link to the peer and its NBD export,
//! whose backend goes through the engine.

mod backend;
mod disk;
mod distrust;
pub mod engine;
mod link;
mod payloads;
pub mod status;
pub mod tls;
mod unsent;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::config::{Config, OnIoError, Replica as ReplicaConfig};
use crate::daemon::ratelimit::Refusals;
use crate::membership::auth::load_key_file;
use crate::membership::protocol::ProtocolRange;
use crate::replication::activity_log::CAPACITY;
use crate::replication::bitmap::DirtyBitmap;
use crate::replication::core::{Attached, Replica, Settings};
use crate::replication::md_io::{Backing, MdDisk};
use crate::replication::metadata::DEFAULT_GRANULARITY;
use crate::types::NodeId;

pub use backend::ReplicaBackend;
use engine::{Admin, Engine};
pub use status::Snapshot;

#[derive(Clone)]
pub struct Handle {
    pub name: String,
    engine: Arc<Engine>,
    stop_link: Arc<AtomicBool>,
    refusals: Arc<Refusals>,
    pub versions: Arc<link::LinkVersions>,
}

/// At most one log line per this long and kind about refused replication
/// connections (the rest are counted).
const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

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
        self.engine.snapshot()
    }

    /// Connections to the replication port refused so far (strangers,
    /// failed handshakes).
    pub fn refused_connections(&self) -> u64 {
        self.refusals.count()
    }

    pub fn backend(&self) -> ReplicaBackend {
        ReplicaBackend {
            engine: self.engine.clone(),
            size: self.snapshot().size,
        }
    }

    pub fn admin(&self, a: Admin) -> Result<(), String> {
        self.engine.admin(a)
    }

    pub fn fence_view(&self) -> crate::replication::core::FenceView {
        self.engine.fence_view()
    }

    pub fn fence(&self, f: crate::replication::core::FenceInput) {
        self.engine.fence(f);
    }

    pub fn stop(&self) {
        self.engine.stop();
        self.stop_link
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Opens the disk's metadata and starts everything; connects to the peer
/// at once (`up`). A disk without metadata runs Diskless and says why.
/// `kick` wakes the daemon's fencing relay (`Engine::fence`).
pub fn start(
    config: &Config,
    r: &ReplicaConfig,
    local: NodeId,
    kick: Arc<tokio::sync::Notify>,
    tls: Option<Arc<tls::LinkTls>>,
    speaks: ProtocolRange,
) -> Result<Handle, StartError> {
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
    let mut core = Replica::new(settings, attached, seed);
    let record = distrust::Record::open(&r.name);
    if record.saved() {
        tracing::warn!(replica = %r.name, "this disk failed here in an earlier run: it is synced whole from the peer before it counts as UpToDate");
        core.distrust_disk();
    }
    let origin = engine::Origin {
        config: config.path.clone(),
        local,
        backing,
        verify: r.verify_alg,
    };
    let verify = r.verify_alg;
    let mut failed = None;
    let engine = Arc::new_cyclic(|me| {
        let disk_io =
            md.and_then(
                |md| match disk::DiskIo::start(&r.name, md, me.clone(), verify) {
                    Ok(io) => Some(io),
                    Err(e) => {
                        failed = Some(e);
                        None
                    }
                },
            );
        Engine::new(
            core,
            r.name.clone(),
            disk_io,
            origin,
            me.clone(),
            kick,
            record,
        )
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let stop_link = Arc::new(AtomicBool::new(false));
    let refusals = Arc::new(Refusals::new(REFUSAL_LOG_INTERVAL));
    let versions = Arc::new(link::LinkVersions::new(speaks, &r.name));
    let shared = link::Shared {
        engine: Arc::downgrade(&engine),
        wants: engine.wants_link.clone(),
        stop: stop_link.clone(),
        refusals: refusals.clone(),
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
            tls,
            versions: versions.clone(),
        },
        shared,
    )?;
    {
        let engine = Arc::downgrade(&engine);
        std::thread::Builder::new()
            .name(format!("duet-timer-{}", r.name))
            .spawn(move || {
                while let Some(e) = engine.upgrade() {
                    if e.stopped.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    e.run_timer_once();
                }
            })?;
    }
    let handle = Handle {
        name: r.name.clone(),
        engine,
        stop_link,
        refusals,
        versions,
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
        fencing: r.fencing,
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
