//! The link sockets: opened at start (and again when an interface that was
//! missing appears), one receive task each, and the interface state polled
//! so a cut cable is reported at once.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::daemon::Received;
use crate::host::{iface, udp};
use crate::types::{LinkId, NodeId};

/// Bigger than any valid heartbeat, so oversized ones are seen as such.
const RECV_BUFFER: usize = 2048;

struct LinkSocket {
    socket: Option<Arc<UdpSocket>>,
    destinations: Vec<SocketAddr>,
    /// Last interface state reported to the core.
    up: bool,
}

pub(crate) struct Links {
    links: Vec<LinkSocket>,
    tx: mpsc::Sender<Received>,
}

impl Links {
    pub fn open(config: &Config, local: NodeId, tx: mpsc::Sender<Received>) -> Links {
        let links = config
            .link_ids()
            .map(|id| LinkSocket {
                socket: None,
                destinations: udp::destinations(config, id, local),
                up: true,
            })
            .collect();
        let mut links = Links { links, tx };
        for id in config.link_ids() {
            links.try_open(config, id);
        }
        links
    }

    fn try_open(&mut self, config: &Config, id: LinkId) {
        let l = config.link(id);
        match udp::open(config, id) {
            Ok(socket) => {
                let socket = Arc::new(socket);
                tokio::spawn(receive(id, socket.clone(), self.tx.clone()));
                self.links[id.0 as usize].socket = Some(socket);
                tracing::info!(link = %l.name, interface = %l.interface, port = l.port, "link open");
            }
            Err(e) => tracing::error!(
                link = %l.name,
                interface = %l.interface,
                port = l.port,
                error = %e,
                "cannot open link socket; will retry when the interface is up"
            ),
        }
    }

    pub fn send(&self, link: LinkId, bytes: &[u8]) {
        let Some(l) = self.links.get(link.0 as usize) else {
            return;
        };
        let Some(socket) = &l.socket else {
            return;
        };
        for dest in &l.destinations {
            // Never wait on a full socket buffer: the next heartbeat is
            // only a keepalive away, and the loop must stay responsive.
            if let Err(e) = socket.try_send_to(bytes, *dest) {
                tracing::debug!(%link, to = %dest, error = %e, "heartbeat not sent");
            }
        }
    }

    /// Interface changes since the last poll, as (link, up). A link without
    /// a socket counts as down, and its socket is opened once it is up.
    pub fn poll(&mut self, config: &Config) -> Vec<(LinkId, bool)> {
        let mut changes = Vec::new();
        for id in config.link_ids() {
            let interface_up = iface::is_up(&config.link(id).interface) == Some(true);
            if interface_up && self.links[id.0 as usize].socket.is_none() {
                self.try_open(config, id);
            }
            let l = &mut self.links[id.0 as usize];
            let up = interface_up && l.socket.is_some();
            if up != l.up {
                l.up = up;
                changes.push((id, up));
            }
        }
        changes
    }
}

async fn receive(link: LinkId, socket: Arc<UdpSocket>, tx: mpsc::Sender<Received>) {
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let r = Received {
                    link,
                    from,
                    bytes: buf[..n].to_vec(),
                };
                if tx.send(r).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::debug!(%link, error = %e, "receive error"),
        }
    }
}
