//! The export's TCP listener for remote clients: off unless configured,
//! and then TLS with a client certificate or nothing. It is the NBD spec's
//! FORCEDTLS mode: before `NBD_OPT_STARTTLS` every option but ABORT is
//! answered `NBD_REP_ERR_TLS_REQD` (and `NBD_OPT_EXPORT_NAME`, which cannot
//! be refused by a reply, closes the connection); after it, the TLS
//! handshake, which needs a client certificate from the configured CA.
//!
//! The rest of the session is the unix socket's server (`server.rs`),
//! unchanged: each TLS session's plaintext is bridged to a socket pair
//! whose other end a server thread serves, from the option haggling on.
//! The network side (accept, handshakes, TLS records) runs on a small
//! tokio runtime of its own, one thread per listener, so a flood of TLS
//! handshakes never queues behind or in front of the daemon's heartbeats.
//!
//! A flood must not hurt: at most `Limits::max_connections` connections
//! at once (more are closed as soon as they are accepted), each must reach
//! transmission within `Limits::handshake_timeout` (a client that connects
//! and says nothing is dropped then), and refusals are logged at a bounded
//! rate.

use std::fmt::Display;
use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::daemon::ratelimit::Refusals;
use crate::export::proto::{self, BeforeTls};
use crate::export::server::{self, Exports};

/// Bounds on what clients may hold, per listener (one export each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// TCP connections at once, in any phase; more are closed at once.
    pub max_connections: usize,
    /// From accept to transmission: options, the TLS handshake, options
    /// inside TLS. A client slower than this is dropped.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Options a client may send before STARTTLS; plenty for any client that
/// asks once, learns TLS is required and starts it.
const MAX_OPTIONS_BEFORE_TLS: usize = 16;
/// One log line per kind of refusal per this long, with a count of those
/// held back.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// How long `stop` waits for clients' requests in flight.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// Bytes each direction of a bridge reads at once.
const BRIDGE_BUFFER: usize = 256 << 10;
/// Sent with `NBD_REP_ERR_TLS_REQD`: clients show it to their user.
const TLS_REQUIRED: &[u8] =
    b"duet: this export is served over TLS only, to clients with a certificate";

/// Binds the listening socket. Apart from `TcpExport::serve` so a node
/// that cannot listen finds out before it attaches anything.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
}

/// A running listener. Stopping it (or dropping it) closes the listener
/// and every connection it accepted.
pub struct TcpExport {
    addr: SocketAddr,
    slots: Arc<Semaphore>,
    limits: Limits,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpExport {
    /// Serves `exports` on `listener` in a thread of its own; returns at
    /// once.
    pub fn serve(
        listener: std::net::TcpListener,
        exports: Exports,
        tls: Arc<ServerConfig>,
        limits: Limits,
    ) -> io::Result<TcpExport> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let shared = Arc::new(Shared {
            exports,
            acceptor: TlsAcceptor::from(tls),
            limits,
            slots: slots.clone(),
            log: Log::new(),
            stop: stopped,
        });
        let thread = std::thread::Builder::new()
            .name("nbd-tcp".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => accept_loop(l, addr, shared).await,
                        Err(e) => tracing::error!(%addr, error = %e, "NBD TCP listener failed"),
                    }
                });
            })?;
        tracing::info!(%addr, "NBD TCP listener (TLS with client certificates) started");
        Ok(TcpExport {
            addr,
            slots,
            limits,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now, in any phase (each holds one of the
    /// `max_connections` slots until its server thread is done).
    pub fn connections(&self) -> usize {
        self.limits
            .max_connections
            .saturating_sub(self.slots.available_permits())
    }

    /// Closes the listener and every client's connection, and returns
    /// when the server threads are done with the requests in flight (at
    /// most `STOP_WAIT`).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for TcpExport {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        tracing::info!(addr = %self.addr, "NBD TCP listener stopped");
    }
}

struct Shared {
    exports: Exports,
    acceptor: TlsAcceptor,
    limits: Limits,
    slots: Arc<Semaphore>,
    log: Log,
    stop: watch::Receiver<bool>,
}

/// Refusals, counted and logged at a bounded rate per kind.
struct Log(Refusals);

impl Log {
    fn new() -> Log {
        Log(Refusals::new(LOG_INTERVAL))
    }

    fn note(&self, kind: &'static str, peer: SocketAddr, what: impl Display) {
        if let Some(held_back) = self.0.refuse(kind) {
            tracing::warn!(%peer, held_back, "NBD TCP: {what}");
        }
    }
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    let mut stop = shared.stop.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
                        drop(tcp);
                        shared.log.note("full", peer, format_args!(
                            "refused a connection to {addr}: {} connections already",
                            shared.limits.max_connections
                        ));
                        continue;
                    };
                    let shared = shared.clone();
                    tasks.spawn(async move {
                        connection(tcp, peer, &shared).await;
                        drop(slot);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(%addr, error = %e, "NBD TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    drop(listener);
    // Every connection sees `stop` too and closes; their server threads
    // then finish the requests they are running.
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_WAIT, all_done).await.is_err() {
        tracing::warn!(%addr, "NBD TCP clients still busy after {STOP_WAIT:?}; left behind");
    }
}

/// Why a connection ended before TLS was up.
enum Refused {
    /// The client gave up (ABORT, or it closed).
    Left,
    /// It went on without TLS (and was refused).
    Plaintext,
    Io(io::Error),
    Tls(io::Error),
}

/// One client, from accept to close.
async fn connection(tcp: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = tcp.set_nodelay(true);
    // A client that vanishes (power off) is noticed within about a minute
    // rather than holding a slot for good.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(30))
        .with_interval(Duration::from_secs(10))
        .with_retries(3);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    let deadline = Instant::now() + shared.limits.handshake_timeout;
    let mut stop = shared.stop.clone();
    let timeout = shared.limits.handshake_timeout;
    let started = tokio::select! {
        r = tokio::time::timeout_at(deadline, start_tls(tcp, &shared.acceptor)) => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    let (tls, client_flags) = match started {
        Ok(Ok(up)) => up,
        Err(_) => {
            let what = format_args!("dropped a client that did not start TLS within {timeout:?}");
            return shared.log.note("timeout", peer, what);
        }
        Ok(Err(Refused::Plaintext)) => {
            return shared
                .log
                .note("plaintext", peer, "refused a client without TLS");
        }
        Ok(Err(Refused::Tls(e))) => {
            return shared
                .log
                .note("tls", peer, format_args!("TLS handshake failed: {e}"));
        }
        Ok(Err(Refused::Io(e))) => {
            return tracing::debug!(%peer, error = %e, "NBD TCP: client gone before TLS");
        }
        Ok(Err(Refused::Left)) => return,
    };
    let (inner, outer) = match socket_pair() {
        Ok(pair) => pair,
        Err(e) => return tracing::warn!(%peer, error = %e, "NBD TCP: no socket pair"),
    };
    let (ready_tx, ready_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let exports = shared.exports.clone();
    let spawned = std::thread::Builder::new()
        .name("nbd-tls-client".into())
        .spawn(move || {
            server::serve_tls_client(inner, &exports, client_flags, move || {
                let _ = ready_tx.send(());
            });
            let _ = done_tx.send(());
        });
    if let Err(e) = spawned {
        return tracing::warn!(%peer, error = %e, "NBD TCP: no thread for the client");
    }
    {
        // Owned here, so leaving this block drops both ends of the bridge:
        // the server thread sees end of file, finishes what it runs, and
        // is done.
        let mut bridge = Box::pin(bridge(tls, outer));
        let mut ready = Box::pin(async { ready_rx.await.is_ok() });
        let (mut ready_seen, mut transmitting) = (false, false);
        loop {
            tokio::select! {
                _ = &mut bridge => break,
                ok = &mut ready, if !ready_seen => {
                    ready_seen = true;
                    transmitting = ok;
                }
                _ = tokio::time::sleep_until(deadline), if !transmitting => {
                    let what = format_args!(
                        "dropped a client that did not pick an export within {timeout:?}"
                    );
                    shared.log.note("timeout", peer, what);
                    break;
                }
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    }
    let _ = done_rx.await;
}

/// Greeting, client flags and options up to STARTTLS, then the TLS
/// handshake. On success the TLS session and the client's flags.
async fn start_tls(
    mut tcp: TcpStream,
    acceptor: &TlsAcceptor,
) -> Result<(TlsStream<TcpStream>, u32), Refused> {
    let client_flags = before_tls(&mut tcp).await.map_err(Refused::Io)??;
    let tls = acceptor.accept(tcp).await.map_err(Refused::Tls)?;
    Ok((tls, client_flags))
}

/// The plaintext part of the handshake: Ok(Ok(flags)) once STARTTLS was
/// acknowledged, Ok(Err(_)) when the session ends without TLS.
async fn before_tls(s: &mut TcpStream) -> io::Result<Result<u32, Refused>> {
    s.write_all(&proto::greeting()).await?;
    let mut flags = [0u8; 4];
    s.read_exact(&mut flags).await?;
    let client_flags = proto::parse_client_flags(flags).map_err(invalid)?;
    let mut refused = false;
    for _ in 0..MAX_OPTIONS_BEFORE_TLS {
        let mut header = [0u8; proto::OPTION_HEADER_LEN];
        s.read_exact(&mut header).await?;
        let (option, len) = proto::parse_option_header(&header).map_err(invalid)?;
        // Taken off the wire and ignored (at most MAX_OPTION_LEN).
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).await?;
        match proto::before_tls(option, len) {
            BeforeTls::StartTls => {
                s.write_all(&proto::option_reply(option, proto::REP_ACK, &[]))
                    .await?;
                return Ok(Ok(client_flags));
            }
            BeforeTls::Abort => {
                let _ = s
                    .write_all(&proto::option_reply(option, proto::REP_ACK, &[]))
                    .await;
                return Ok(Err(if refused {
                    Refused::Plaintext
                } else {
                    Refused::Left
                }));
            }
            BeforeTls::Close => return Ok(Err(Refused::Plaintext)),
            BeforeTls::Refuse(reply) => {
                refused |= reply == proto::REP_ERR_TLS_REQD;
                let message = if reply == proto::REP_ERR_TLS_REQD {
                    TLS_REQUIRED
                } else {
                    &[]
                };
                s.write_all(&proto::option_reply(option, reply, message))
                    .await?;
            }
        }
    }
    Ok(Err(Refused::Plaintext))
}

fn invalid(e: proto::ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A connected pair: the server thread's end (blocking) and the bridge's.
fn socket_pair() -> io::Result<(StdUnixStream, UnixStream)> {
    let (inner, outer) = StdUnixStream::pair()?;
    outer.set_nonblocking(true)?;
    Ok((inner, UnixStream::from_std(outer)?))
}

/// Copies plaintext both ways between the TLS session and the server
/// thread until the server closes its end: it always does once the client
/// has gone (end of file), after answering what it had, so its closing is
/// the end of the connection.
async fn bridge(tls: TlsStream<TcpStream>, server: UnixStream) {
    let (from_client, mut to_client) = tokio::io::split(tls);
    let (from_server, mut to_server) = server.into_split();
    let requests = async move {
        let mut r = BufReader::with_capacity(BRIDGE_BUFFER, from_client);
        let _ = tokio::io::copy_buf(&mut r, &mut to_server).await;
        let _ = to_server.shutdown().await;
        std::future::pending::<()>().await
    };
    let replies = async move {
        let mut r = BufReader::with_capacity(BRIDGE_BUFFER, from_server);
        let _ = tokio::io::copy_buf(&mut r, &mut to_client).await;
        // TLS close_notify, then the TCP connection's end.
        let _ = to_client.shutdown().await;
    };
    tokio::select! {
        _ = requests => {}
        _ = replies => {}
    }
}
