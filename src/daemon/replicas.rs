//! The replicas this node holds a disk for, and their export. A replica
//! is Secondary until an administrator makes it Primary: then its NBD
//! export is enabled and attached as a block device at its stable path.
//! Secondary detaches (refused while the device is in use) and disables
//! the export. Replication adds the peer's say in this later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{ReplicaControl, ReplicaStatus};
use crate::config::Config;
use crate::export::attach::{Attachment, attach};
use crate::export::backend::FileBackend;
use crate::export::server::{self, Export};
use crate::types::NodeId;

/// Where nbdfuse mounts live (the daemon's runtime directory).
const ATTACH_DIR: &str = "/run/duet/attach";

struct LocalReplica {
    name: String,
    disk: PathBuf,
    device: PathBuf,
    socket: PathBuf,
    export: Option<Export>,
    attachment: Option<Attachment>,
}

impl LocalReplica {
    fn primary(&self) -> bool {
        self.export.as_ref().is_some_and(|e| e.enabled())
    }

    fn status(&self) -> ReplicaStatus {
        ReplicaStatus {
            name: self.name.clone(),
            role: if self.primary() {
                "primary"
            } else {
                "secondary"
            }
            .into(),
            disk: self.disk.display().to_string(),
            device: self.device.display().to_string(),
            attached: self.attachment.is_some(),
            clients: self
                .export
                .as_ref()
                .map_or(0, |e| e.clients.load(Ordering::SeqCst) as u32),
            nbd_socket: self.socket.display().to_string(),
        }
    }

    fn make_primary(&mut self) -> Result<(), String> {
        if self.primary() {
            return Ok(());
        }
        let export = self
            .export
            .as_ref()
            .ok_or_else(|| format!("{}: the export could not be opened at start", self.name))?;
        export.set_enabled(true);
        match attach(
            &self.socket,
            &self.name,
            &self.device,
            Path::new(ATTACH_DIR),
        ) {
            Ok(a) => {
                self.attachment = Some(a);
                Ok(())
            }
            Err(e) => {
                export.set_enabled(false);
                Err(format!(
                    "{}: cannot attach {}: {e}",
                    self.name,
                    self.device.display()
                ))
            }
        }
    }

    fn make_secondary(&mut self) -> Result<(), String> {
        if let Some(a) = self.attachment.as_mut() {
            a.detach()
                .map_err(|e| format!("{}: still Primary: {e}", self.name))?;
        }
        self.attachment = None;
        if let Some(e) = &self.export {
            e.set_enabled(false);
        }
        Ok(())
    }
}

/// The node's replicas, shared by the daemon (status) and the bus (methods).
#[derive(Clone)]
pub struct Replicas {
    inner: Arc<Mutex<Vec<LocalReplica>>>,
}

impl Replicas {
    /// Opens the disk and the NBD socket of every replica with a disk on
    /// this node. A replica whose disk cannot be opened is listed with no
    /// export (and says why in the log), so the others still work.
    pub fn open(config: &Config, local: NodeId) -> Replicas {
        let mut list = Vec::new();
        for r in &config.replicas {
            let Some(disk) = r.disk(local) else { continue };
            let export = open_export(&r.name, disk, &r.nbd_socket);
            list.push(LocalReplica {
                name: r.name.clone(),
                disk: disk.to_path_buf(),
                device: r.device.clone(),
                socket: r.nbd_socket.clone(),
                export,
                attachment: None,
            });
        }
        Replicas {
            inner: Arc::new(Mutex::new(list)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<LocalReplica>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.lock().iter().map(LocalReplica::status).collect()
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
        }
    }
}

impl ReplicaControl for Replicas {
    fn primary(&self, name: &str) -> Result<(), String> {
        let result = self.with(name, LocalReplica::make_primary);
        match &result {
            Ok(()) => tracing::info!(replica = name, "Primary: export attached"),
            Err(e) => tracing::warn!(replica = name, "cannot become Primary: {e}"),
        }
        result
    }

    fn secondary(&self, name: &str) -> Result<(), String> {
        let result = self.with(name, LocalReplica::make_secondary);
        match &result {
            Ok(()) => tracing::info!(replica = name, "Secondary: export detached"),
            Err(e) => tracing::warn!(replica = name, "cannot become Secondary: {e}"),
        }
        result
    }
}

fn open_export(name: &str, disk: &Path, socket: &Path) -> Option<Export> {
    let backend = match FileBackend::open(disk, false) {
        Ok(b) => Arc::new(b),
        Err(e) => {
            tracing::error!(replica = name, disk = %disk.display(), error = %e, "cannot open the replica's disk");
            return None;
        }
    };
    let export = Export::new(name, backend);
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
