//! The replication link: one TCP connection to the peer, authenticated by
//! the wire handshake. The node with the lower id dials, the other listens
//! (so the two never race into two connections). A reader thread feeds
//! frames to the engine (holding back what they answer until the last
//! frame already read, so a batch's answers leave in one send). Frames to
//! send are queued under the engine's lock (so they leave in the core's
//! order), then sealed and written by whichever thread queued them,
//! without waiting; only when the socket is full does a writer thread take
//! over and wait.
//!
//! With `[replica.tls]`, the TCP connection carries TLS (`tls.rs`) and
//! the threads here use the plaintext end of its pump instead.

use std::io::{BufRead, BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Duration;

use socket2::Socket;

use crate::daemon::ratelimit::Refusals;
use crate::daemon::replica::engine::Engine;
use crate::daemon::replica::tls::{self, LinkTls};
use crate::daemon::replica::unsent::Unsent;
use crate::export::conn::{hold_replies, send_held};
use crate::host::message_ids as ids;
use crate::membership::protocol::ProtocolRange;
use crate::replication::core::Msg;
use crate::replication::wire::{self, HEADER_LEN, HandshakeError, MAC_LEN, Offer, Opener, Sealer};

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
    pub tls: Option<Arc<LinkTls>>,
    pub versions: Arc<LinkVersions>,
}

/// The link's protocol versions: what this node speaks, the newest the
/// peer announced in its heartbeats (0 until heard), a version to offer
/// on the next attempt only (an older peer's, which hung up on a newer
/// greeting before its heartbeats were heard), and what the connection
/// up now settled on (0: none up).
#[derive(Debug)]
pub struct LinkVersions {
    speaks: ProtocolRange,
    replica: String,
    announced: AtomicU16,
    fallback: AtomicU16,
    in_use: AtomicU16,
    /// The connection up now, dropped when the peer announces a newer
    /// version both speak, so that the next one settles on it.
    current: Mutex<Option<Socket>>,
}

impl LinkVersions {
    pub fn new(speaks: ProtocolRange, replica: &str) -> LinkVersions {
        LinkVersions {
            speaks,
            replica: replica.to_string(),
            announced: AtomicU16::new(0),
            fallback: AtomicU16::new(0),
            in_use: AtomicU16::new(0),
            current: Mutex::new(None),
        }
    }

    /// From the peer's heartbeats: the newest version it speaks. A link
    /// up on an older version both no longer need is dropped (it comes
    /// back at once, on the newer one).
    pub fn peer_speaks(&self, max: u16) {
        self.announced.store(max, Ordering::SeqCst);
        let common = max.min(self.speaks.max);
        let in_use = self.in_use();
        if in_use != 0 && in_use < common {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = current.as_ref() {
                tracing::info!(replica = %self.replica, in_use, common, "replication link reconnects to use protocol version {common}");
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn in_use(&self) -> u16 {
        self.in_use.load(Ordering::SeqCst)
    }

    /// What the peer's heartbeats announced, with no settling below it;
    /// before they were heard, this node's newest (or the one-time
    /// fallback).
    fn offer(&self) -> Offer {
        let fallback = self.fallback.swap(0, Ordering::SeqCst);
        match self.announced.load(Ordering::SeqCst) {
            0 if fallback != 0 => Offer::towards(self.speaks, fallback),
            0 => Offer::towards(self.speaks, self.speaks.max),
            announced => Offer::announced(self.speaks, announced),
        }
    }

    fn up(&self, version: u16, s: Option<Socket>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = s;
        self.in_use.store(version, Ordering::SeqCst);
    }
}

pub struct Shared {
    pub engine: Weak<Engine>,
    pub wants: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
    /// Connections refused: from strangers, or failing the handshake.
    pub refusals: Arc<Refusals>,
}

/// Frames queued in the core's order, not yet sealed.
struct Queue {
    frames: Vec<(Msg, Option<Arc<Vec<u8>>>)>,
    /// Set when a non-waiting send found the socket full: the writer
    /// thread's turn.
    stuck: bool,
    closed: bool,
}

/// What only the thread sending holds: sealing happens here, outside the
/// engine's lock (a MAC over a large write takes a while).
struct Sending {
    /// The TCP connection, or the plaintext end of its TLS pump.
    sock: Socket,
    sealer: Sealer,
    /// Sealed frames the socket did not take yet.
    unsent: Unsent,
}

enum Sent {
    All,
    /// The socket is full; `unsent` keeps the rest.
    Full,
    Broken,
}

/// One connection's sending side.
pub struct Out {
    pub conn: u64,
    queue: Mutex<Queue>,
    wake: Condvar,
    sending: Mutex<Sending>,
    /// For shutting down or timing out the reader without waiting for a
    /// sender.
    ctl: Socket,
}

impl Out {
    fn new(conn: u64, sealer: Sealer, sock: Socket, ctl: Socket) -> Out {
        Out {
            ctl,
            conn,
            queue: Mutex::new(Queue {
                frames: Vec::new(),
                stuck: false,
                closed: false,
            }),
            wake: Condvar::new(),
            sending: Mutex::new(Sending {
                sock,
                sealer,
                unsent: Unsent::default(),
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame (called under the engine's lock, so frames keep the
    /// core's order).
    pub fn push(&self, msg: Msg, payload: Option<Arc<Vec<u8>>>) {
        let mut q = self.queue();
        if !q.closed {
            q.frames.push((msg, payload));
        }
    }

    /// Seals and sends what is queued as far as the socket takes it now;
    /// the writer thread sends the rest. Never waits for the peer.
    pub fn kick(&self) {
        loop {
            {
                let Ok(mut tx) = self.sending.try_lock() else {
                    // Someone is sending: it looks at the queue again
                    // after letting go.
                    return;
                };
                if self.queue().stuck {
                    return;
                }
                if let Sent::Full = self.send(&mut tx, false) {
                    self.queue().stuck = true;
                    self.wake.notify_all();
                    return;
                }
            }
            if self.queue().frames.is_empty() {
                return;
            }
        }
    }

    /// Sends the unsent frames, then seals and sends the queue, until it
    /// is empty; `wait`: block on a full socket, else stop there.
    fn send(&self, tx: &mut Sending, wait: bool) -> Sent {
        loop {
            if tx.unsent.is_empty() {
                let frames = std::mem::take(&mut self.queue().frames);
                if frames.is_empty() {
                    return Sent::All;
                }
                let Sending { sealer, unsent, .. } = tx;
                for (msg, payload) in frames {
                    unsent.seal(sealer, &msg, payload.as_ref());
                }
            }
            match tx.unsent.send(&tx.sock, wait) {
                Ok(true) => {}
                Ok(false) => return Sent::Full,
                // A broken socket: the reader sees it too and reports the
                // link down; what is queued is lost with it.
                Err(_) => {
                    tx.unsent.clear();
                    return Sent::Broken;
                }
            }
        }
    }

    /// No more frames: the writer sends what is queued and half-closes;
    /// the reader waits at most `grace` for the peer to close its side.
    pub fn close(&self, grace: Duration) {
        let mut q = self.queue();
        q.closed = true;
        self.wake.notify_all();
        drop(q);
        if grace.is_zero() {
            let _ = self.ctl.shutdown(Shutdown::Both);
        } else {
            let _ = self.ctl.set_read_timeout(Some(grace));
        }
    }

    /// The writer thread: waits for a full socket (or the close), then
    /// sends with waiting.
    fn write_loop(&self, write_timeout: Duration) {
        loop {
            let closed = {
                let mut q = self.queue();
                while !q.stuck && !q.closed {
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                q.closed
            };
            {
                let mut tx = self.sending.lock().unwrap_or_else(|e| e.into_inner());
                let _ = tx.sock.set_write_timeout(Some(write_timeout));
                if let Sent::Broken = self.send(&mut tx, true) {
                    let _ = tx.sock.shutdown(Shutdown::Both);
                    return;
                }
                if closed {
                    let _ = tx.sock.shutdown(Shutdown::Write);
                    return;
                }
                self.queue().stuck = false;
            }
            // What was queued while this thread held the socket.
            self.kick();
        }
    }
}

static CONN: AtomicU64 = AtomicU64::new(0);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn spawn(cfg: LinkConfig, shared: Shared) -> std::io::Result<()> {
    let name = format!("duet-link-{}", cfg.replica);
    if cfg.local < cfg.peer {
        std::thread::Builder::new()
            .name(name)
            .spawn(move || dial_loop(&cfg, &shared))?;
        return Ok(());
    }
    let listener = TcpListener::bind(cfg.listen)?;
    let next = Arc::new(Next::default());
    let (cfg, shared) = (Arc::new(cfg), Arc::new(shared));
    {
        let (cfg, shared, next) = (cfg.clone(), shared.clone(), next.clone());
        std::thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(&cfg, &shared, &listener, &next))?;
    }
    std::thread::Builder::new()
        .name(name)
        .spawn(move || serve_loop(&cfg, &shared, &next))?;
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

/// The connection from the peer's address the serving thread takes next:
/// the newest one (the peer gave up on any older).
#[derive(Default)]
struct Next {
    conn: Mutex<Option<TcpStream>>,
    ready: Condvar,
}

/// Accepts all the time, so that a flood is refused (and counted) as it
/// comes rather than piling up behind a served connection; a connection
/// from the peer's address waits for the serving thread.
fn accept_loop(cfg: &LinkConfig, shared: &Shared, l: &TcpListener, next: &Next) {
    for s in l.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(s) = s else {
            // Out of file descriptors, say: wait rather than spin.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let from = s.peer_addr().ok();
        if from.map(|a| a.ip()) != Some(cfg.peer_addr.ip()) {
            if let Some(held_back) = shared.refusals.refuse("stranger") {
                tracing::warn!(replica = %cfg.replica, from = ?from, held_back, "replication connection from a stranger refused");
            }
            continue;
        }
        if !shared.wants.load(Ordering::SeqCst) {
            continue;
        }
        *next.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
        next.ready.notify_one();
    }
}

/// Serves the peer's connections one at a time, as they come.
fn serve_loop(cfg: &LinkConfig, shared: &Shared, next: &Next) {
    while !shared.stop.load(Ordering::SeqCst) {
        let conn = {
            let mut slot = next.conn.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                // Bounded, so a stop is seen without a connection.
                slot = next
                    .ready
                    .wait_timeout(slot, Duration::from_millis(200))
                    .map_or_else(|e| e.into_inner().0, |(g, _)| g);
            }
            slot.take()
        };
        if let Some(s) = conn
            && shared.wants.load(Ordering::SeqCst)
        {
            serve(cfg, shared, s, false);
        }
    }
}

/// How long the writer thread may wait on a full socket before the
/// connection is given up.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one connection until it breaks.
fn serve(cfg: &LinkConfig, shared: &Shared, tcp: TcpStream, initiator: bool) {
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
    let Some(mut s) = secure(cfg, shared, tcp) else {
        return;
    };
    let _ = s.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = s.set_write_timeout(Some(HANDSHAKE_TIMEOUT));
    let session = match wire::handshake_offering(
        &mut s,
        &cfg.key,
        &cfg.replica,
        cfg.local,
        cfg.peer,
        initiator,
        cfg.versions.offer(),
    ) {
        Ok(session) => session,
        Err(e) => return refused_handshake(cfg, shared, &e),
    };
    let version = session.version;
    let _ = s.set_read_timeout(None);
    let conn = CONN.fetch_add(1, Ordering::SeqCst) + 1;
    let (Ok(w), Ok(ctl)) = (s.try_clone(), s.try_clone()) else {
        return;
    };
    let (sealer, mut opener) = session.split();
    let out = Arc::new(Out::new(conn, sealer, w, ctl));
    let writer = {
        let out = out.clone();
        std::thread::spawn(move || out.write_loop(WRITE_TIMEOUT))
    };
    cfg.versions.up(version, s.try_clone().ok());
    tracing::info!(replica = %cfg.replica, peer = %cfg.peer_addr, conn, tls = cfg.tls.is_some(), version, "replication link up (protocol version {version})");
    let why = match shared.engine.upgrade() {
        Some(engine) => {
            engine.link_up(out.clone());
            drop(engine);
            read_loop(&mut s, &mut opener, conn, &shared.engine)
        }
        None => "engine stopped".into(),
    };
    cfg.versions.up(0, None);
    tracing::info!(replica = %cfg.replica, peer = %cfg.peer_addr, conn, "replication link down: {why}");
    let _ = s.shutdown(Shutdown::Both);
    if let Some(engine) = shared.engine.upgrade() {
        engine.link_down(conn);
    }
    out.close(Duration::ZERO);
    let _ = writer.join();
}

/// Counts and logs a failed handshake. An older peer that hung up on a
/// newer greeting is offered its own version next time; versions with
/// nothing in common are an error an administrator must see.
fn refused_handshake(cfg: &LinkConfig, shared: &Shared, e: &HandshakeError) {
    if let HandshakeError::HungUp {
        theirs, offered, ..
    } = e
        && theirs < offered
    {
        cfg.versions.fallback.store(*theirs, Ordering::SeqCst);
    }
    let Some(held_back) = shared.refusals.refuse("handshake") else {
        return;
    };
    match e {
        HandshakeError::Incompatible { .. } | HandshakeError::Downgraded { .. } => tracing::error!(
            message_id = ids::PROTOCOL_INCOMPATIBLE,
            replica = %cfg.replica,
            peer = %cfg.peer_addr,
            held_back,
            "replication handshake refused: {e}"
        ),
        _ => {
            tracing::warn!(replica = %cfg.replica, peer = %cfg.peer_addr, held_back, "replication handshake failed: {e}")
        }
    }
}

/// The connection as the link's threads use it: the TCP socket itself,
/// or with TLS, the plaintext end of its pump once the TLS handshake
/// passed. `None` when it did not (refused, counted).
fn secure(cfg: &LinkConfig, shared: &Shared, mut tcp: TcpStream) -> Option<Socket> {
    let Some(link_tls) = &cfg.tls else {
        return Some(Socket::from(tcp));
    };
    let pumped = link_tls.handshake(&mut tcp).and_then(|conn| {
        let name = format!("duet-tls-{}", cfg.replica);
        tls::tunnel(tcp, conn, name).map_err(|e| e.to_string())
    });
    match pumped {
        Ok(plain) => Some(Socket::from(plain)),
        Err(e) => {
            if let Some(held_back) = shared.refusals.refuse("tls") {
                tracing::warn!(replica = %cfg.replica, peer = %cfg.peer_addr, held_back, "replication TLS handshake failed: {e}");
            }
            None
        }
    }
}

/// The reader's buffer: one read takes in what has arrived, several small
/// frames (acks, at depth) at once, instead of one read per part of each;
/// larger payloads are read straight into their own buffers.
const READ_BUFFER: usize = 64 << 10;

fn read_loop(s: &mut Socket, opener: &mut Opener, conn: u64, engine: &Weak<Engine>) -> String {
    let _held = SendHeld;
    let mut r = BufReader::with_capacity(READ_BUFFER, &*s);
    let mut header = [0u8; HEADER_LEN];
    let mut body = Vec::new();
    let mut tag = [0u8; MAC_LEN];
    loop {
        if let Err(e) = r.read_exact(&mut header) {
            return e.to_string();
        }
        let (body_len, payload_len) = match wire::frame_lengths(&header) {
            Ok(n) => n,
            Err(e) => return format!("bad frame: {e}"),
        };
        body.resize(body_len, 0);
        let read = r
            .read_exact(&mut body)
            .and_then(|_| read_payload(&mut r, payload_len))
            .and_then(|payload| r.read_exact(&mut tag).map(|_| payload));
        let payload = match read {
            Ok(p) => p,
            Err(e) => return e.to_string(),
        };
        let parts = wire::Parts {
            header: &header,
            body: &body,
            payload,
            tag: &tag,
        };
        let frame = match opener.open_parts(parts) {
            Ok(f) => f,
            Err(e) => return format!("bad frame: {e}"),
        };
        let Some(engine) = engine.upgrade() else {
            return "engine stopped".into();
        };
        let more = whole_frame(r.buffer());
        if more {
            hold_replies();
        }
        engine.received(conn, frame, more);
        if !more {
            send_held();
        }
    }
}

/// Sends the clients' replies held back in a batch when the reader stops
/// halfway through it.
struct SendHeld;

impl Drop for SendHeld {
    fn drop(&mut self) {
        send_held();
    }
}

/// Whether `buffered` starts with a whole frame: the next one can be
/// taken without waiting for the peer.
fn whole_frame(buffered: &[u8]) -> bool {
    buffered.len() >= HEADER_LEN
        && wire::frame_lengths(&buffered[..HEADER_LEN])
            .is_ok_and(|(body, payload)| HEADER_LEN + body + payload + MAC_LEN <= buffered.len())
}

/// A payload into a buffer of its own: what the reader holds of it
/// already, then the rest straight from the socket.
fn read_payload(r: &mut BufReader<&Socket>, len: usize) -> std::io::Result<Vec<u8>> {
    let mut payload = super::payloads::take(len);
    let held = r.buffer().len().min(len);
    payload.extend_from_slice(&r.buffer()[..held]);
    r.consume(held);
    crate::host::recv::recv_exact_into(*r.get_ref(), &mut payload, len - held)?;
    Ok(payload)
}
