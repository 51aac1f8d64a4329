//! The replication link: one TCP connection to the peer, authenticated by
//! the wire handshake. The node with the lower id dials, the other listens
//! (so the two never race into two connections). A reader thread turns
//! frames into engine commands; a writer thread seals what the engine
//! sends, batching while more is queued.

use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::daemon::replica::engine::Cmd;
use crate::replication::core::Msg;
use crate::replication::wire::{self, HEADER_LEN, Session};

/// What the engine hands the writer.
pub struct Outgoing {
    pub msg: Msg,
    pub payload: Option<Arc<Vec<u8>>>,
}

#[derive(Clone)]
pub struct LinkConfig {
    pub replica: String,
    pub local: u16,
    pub peer: u16,
    /// This node's replication address (bound for listening and dialling).
    pub listen: SocketAddr,
    pub peer_addr: SocketAddr,
    pub key: Vec<u8>,
    pub retry: Duration,
}

pub struct Shared {
    pub engine: Sender<Cmd>,
    pub wants: Arc<AtomicBool>,
    pub closer: Arc<Mutex<Option<(u64, TcpStream)>>>,
    pub stop: Arc<AtomicBool>,
}

static CONN: AtomicU64 = AtomicU64::new(0);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn spawn(cfg: LinkConfig, shared: Shared) -> std::io::Result<()> {
    let listener = if cfg.local > cfg.peer {
        Some(TcpListener::bind(cfg.listen)?)
    } else {
        None
    };
    std::thread::Builder::new()
        .name(format!("duet-link-{}", cfg.replica))
        .spawn(move || match listener {
            Some(l) => accept_loop(&cfg, &shared, &l),
            None => dial_loop(&cfg, &shared),
        })?;
    Ok(())
}

/// Waits after a failed dial: connect-retry, doubling up to this many
/// times it, back to connect-retry once a connection was made.
const MAX_BACKOFF: u32 = 4;

fn dial_loop(cfg: &LinkConfig, shared: &Shared) {
    let mut backoff = 1;
    while !shared.stop.load(Ordering::SeqCst) {
        if !shared.wants.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        match dial(cfg) {
            Ok(s) => {
                serve(cfg, shared, s, true);
                backoff = 1;
            }
            Err(e) => {
                tracing::debug!(replica = %cfg.replica, peer = %cfg.peer_addr, "cannot reach the peer: {e}");
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        std::thread::sleep(cfg.retry * backoff);
    }
}

fn dial(cfg: &LinkConfig) -> std::io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(cfg.peer_addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    // From the replication address, so the peer sees who it expects.
    s.bind(&SocketAddr::new(cfg.listen.ip(), 0).into())?;
    s.connect_timeout(&cfg.peer_addr.into(), HANDSHAKE_TIMEOUT)?;
    Ok(s.into())
}

fn accept_loop(cfg: &LinkConfig, shared: &Shared, l: &TcpListener) {
    for s in l.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(s) = s else { continue };
        let from = s.peer_addr().ok();
        if from.map(|a| a.ip()) != Some(cfg.peer_addr.ip()) {
            tracing::warn!(replica = %cfg.replica, from = ?from, "replication connection from a stranger refused");
            continue;
        }
        if !shared.wants.load(Ordering::SeqCst) {
            continue;
        }
        serve(cfg, shared, s, false);
    }
}

/// Runs one connection until it breaks.
fn serve(cfg: &LinkConfig, shared: &Shared, mut s: TcpStream, initiator: bool) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = s.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
    let session = match wire::handshake(
        &mut s,
        &cfg.key,
        &cfg.replica,
        cfg.local,
        cfg.peer,
        initiator,
    ) {
        Ok(session) => session,
        Err(e) => {
            tracing::warn!(replica = %cfg.replica, peer = %cfg.peer_addr, "replication handshake failed: {e}");
            return;
        }
    };
    let _ = s.set_read_timeout(None);
    let conn = CONN.fetch_add(1, Ordering::SeqCst) + 1;
    let (Ok(w), Ok(c)) = (s.try_clone(), s.try_clone()) else {
        return;
    };
    *shared.closer.lock().unwrap_or_else(|e| e.into_inner()) = Some((conn, c));
    let session = Arc::new(Mutex::new(session));
    let (tx, rx) = channel();
    let writer = {
        let session = session.clone();
        std::thread::spawn(move || write_loop(w, &session, &rx))
    };
    tracing::info!(replica = %cfg.replica, peer = %cfg.peer_addr, conn, "replication link up");
    if shared.engine.send(Cmd::LinkUp { conn, out: tx }).is_err() {
        return;
    }
    let why = read_loop(&mut s, &session, conn, &shared.engine);
    tracing::info!(replica = %cfg.replica, peer = %cfg.peer_addr, conn, "replication link down: {why}");
    let _ = s.shutdown(Shutdown::Both);
    let _ = shared.engine.send(Cmd::LinkDown { conn });
    let _ = writer.join();
}

fn read_loop(
    s: &mut TcpStream,
    session: &Mutex<Session>,
    conn: u64,
    engine: &Sender<Cmd>,
) -> String {
    let mut header = [0u8; HEADER_LEN];
    loop {
        if let Err(e) = s.read_exact(&mut header) {
            return e.to_string();
        }
        let rest_len = match lock(session).body_len(&header) {
            Ok(n) => n,
            Err(e) => return format!("bad frame: {e}"),
        };
        let mut rest = vec![0u8; rest_len];
        if let Err(e) = s.read_exact(&mut rest) {
            return e.to_string();
        }
        let frame = match lock(session).open(&header, &rest) {
            Ok(f) => f,
            Err(e) => return format!("bad frame: {e}"),
        };
        if engine.send(Cmd::Received { conn, frame }).is_err() {
            return "engine stopped".into();
        }
    }
}

/// Seals and sends until the engine drops the channel, then sends what is
/// left and half-closes.
fn write_loop(s: TcpStream, session: &Mutex<Session>, rx: &Receiver<Outgoing>) {
    let mut w = BufWriter::with_capacity(1 << 20, s);
    write_frames(&mut w, session, rx);
    let _ = w.flush();
    let _ = w.get_ref().shutdown(Shutdown::Write);
}

fn write_frames(w: &mut BufWriter<TcpStream>, session: &Mutex<Session>, rx: &Receiver<Outgoing>) {
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(o) = next {
            let frame = lock(session).seal(&o.msg, o.payload.as_ref().map(|p| p.as_slice()));
            if w.write_all(&frame).is_err() {
                let _ = w.get_ref().shutdown(Shutdown::Both);
                return;
            }
            next = rx.try_recv().ok();
        }
        if w.flush().is_err() {
            let _ = w.get_ref().shutdown(Shutdown::Both);
            return;
        }
    }
}

fn lock(m: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
