//! The replica's state as the bus shows it, read from the core on demand.

use crate::replication::core::{Counters, Replica};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub role: String,
    pub peer_role: String,
    pub connection: String,
    pub replication: String,
    pub disk: String,
    pub peer_disk: String,
    /// This node's fencing of its peer ("" when there is none).
    pub fencing: String,
    pub out_of_sync_bytes: u64,
    pub sync_progress: Option<f64>,
    pub sync_speed: Option<u64>,
    pub protocol: String,
    pub generation: String,
    pub counters: Counters,
    /// The device size clients see.
    pub size: u64,
}

impl Snapshot {
    pub fn of(r: &Replica) -> Snapshot {
        Snapshot {
            role: r.role().as_str().into(),
            peer_role: r.peer_role().map_or("unknown", |p| p.as_str()).into(),
            connection: r.connection().as_str().into(),
            replication: r.replication().as_str().into(),
            disk: r.disk().as_str().into(),
            peer_disk: r.peer_disk().as_str().into(),
            fencing: r.fence_status().as_str().into(),
            out_of_sync_bytes: r.out_of_sync_bytes(),
            sync_progress: r.sync_progress(),
            sync_speed: r.sync_speed(),
            protocol: r.settings().protocol.to_string(),
            generation: r.generations().current.to_string(),
            counters: r.counters(),
            size: r.settings().size,
        }
    }

    /// Seconds left at the current speed, while syncing.
    pub fn eta_secs(&self) -> Option<u64> {
        let speed = self.sync_speed.filter(|s| *s > 0)?;
        self.sync_progress?;
        Some(self.out_of_sync_bytes / speed)
    }
}
