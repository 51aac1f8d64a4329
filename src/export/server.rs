//! The NBD server: a unix socket (mode 0600), and behind the optional TCP
//! listener (src/export/tcp.rs) the same code on the plaintext side of
//! each TLS session. Per connection, a few workers take turns reading a
//! request and run what they read, so a client keeps several requests in
//! flight (a replicated write waits for the peer; others need not wait
//! behind it) and replies go out in completion order, as NBD allows.
//! Block I/O is blocking by nature: plain threads, no executor hops. A
//! worker runs reads and flushes itself, and only starts a write: the
//! thread that completes it answers it (src/export/conn.rs), so writes in
//! flight are bounded by bytes, not by workers. A write's payload buffer
//! is lent to the backend and comes back to a per-connection spare list;
//! the hot path allocates only when a backend keeps a payload past the
//! answer (a replica under protocol A, still sending it).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::export::backend::{Backend, WriteDone};
use crate::export::conn::Conn;
use crate::export::latency::{Kind, Latency};
use crate::export::proto::{self, Command, Request};

/// One export: a name (the replica's) and what it reads and writes.
#[derive(Clone)]
pub struct Export {
    pub name: String,
    pub backend: Arc<dyn Backend>,
    /// Connected clients right now (for D-Bus and status).
    pub clients: Arc<AtomicUsize>,
    /// How long its requests take, by kind (for metrics).
    pub latency: Arc<Latency>,
    /// Only an enabled export is offered: the daemon enables it on the
    /// Primary only.
    enabled: Arc<AtomicBool>,
}

impl Export {
    pub fn new(name: &str, backend: Arc<dyn Backend>) -> Export {
        Export {
            name: name.to_string(),
            backend,
            clients: Arc::new(AtomicUsize::new(0)),
            latency: Arc::default(),
            enabled: Arc::new(AtomicBool::new(true)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::SeqCst);
    }

    fn flags(&self) -> u16 {
        // FLUSH is a sync of the whole backing store, so a flush on one
        // connection covers writes completed on all: multi-conn is safe.
        let mut f = proto::TFLAG_HAS_FLAGS
            | proto::TFLAG_SEND_FLUSH
            | proto::TFLAG_SEND_FUA
            | proto::TFLAG_SEND_TRIM
            | proto::TFLAG_SEND_WRITE_ZEROES
            | proto::TFLAG_CAN_MULTI_CONN;
        if self.backend.read_only() {
            f |= proto::TFLAG_READ_ONLY;
        }
        f
    }
}

pub type Exports = Arc<HashMap<String, Export>>;

/// Binds the socket: a stale one is replaced, and only root may connect.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts clients on `listener` in a thread of its own, each served by a
/// thread. Returns at once.
pub fn spawn(listener: UnixListener, exports: Exports) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            match stream {
                Ok(s) => {
                    let exports = exports.clone();
                    std::thread::spawn(move || serve_client(s, &exports));
                }
                Err(e) => tracing::warn!(error = %e, "NBD accept failed"),
            }
        }
    })
}

/// Serves one client on a connected stream until it leaves or breaks the
/// protocol (the fuzz target drives it directly).
pub fn serve_client(mut s: UnixStream, exports: &Exports) {
    match handshake(&mut s, exports) {
        Ok(Some(export)) => serve_export(&mut s, &export),
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "NBD handshake ended"),
    }
}

/// Serves a client whose greeting, flags and STARTTLS were handled on the
/// TCP side (src/export/tcp.rs): `s` carries the plaintext of the TLS
/// session, `client_flags` are the flags it sent before TLS. `ready` is
/// called when the client enters transmission (the TCP side stops its
/// handshake clock then).
pub fn serve_tls_client(
    mut s: UnixStream,
    exports: &Exports,
    client_flags: u32,
    ready: impl FnOnce(),
) {
    match options(&mut s, exports, client_flags, Tls::Up) {
        Ok(Some(export)) => {
            ready();
            serve_export(&mut s, &export);
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "NBD handshake (TLS) ended"),
    }
}

/// Transmission, with the client counted while it lasts.
fn serve_export(s: &mut UnixStream, export: &Export) {
    export.clients.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = transmission(s, export) {
        tracing::debug!(export = %export.name, error = %e, "NBD client gone");
    }
    export.clients.fetch_sub(1, Ordering::SeqCst);
}

/// Whether the session runs inside TLS: the unix socket never does (the
/// spec's NOTLS mode); a TCP session always does by the time options
/// reach this file (FORCEDTLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    None,
    Up,
}

fn protocol(e: proto::ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

fn find<'a>(exports: &'a Exports, name: &str) -> Option<&'a Export> {
    // The empty name is the default export: the only one, if only one.
    let export = if name.is_empty() && exports.len() == 1 {
        exports.values().next()
    } else {
        exports.get(name)
    };
    export.filter(|e| e.enabled())
}

/// Negotiates until the client picks an export (Some) or leaves (None).
fn handshake(s: &mut UnixStream, exports: &Exports) -> io::Result<Option<Export>> {
    s.write_all(&proto::greeting())?;
    let mut flags = [0u8; 4];
    s.read_exact(&mut flags)?;
    let client_flags = proto::parse_client_flags(flags).map_err(protocol)?;
    options(s, exports, client_flags, Tls::None)
}

/// Option haggling, after the client's flags.
fn options(
    s: &mut UnixStream,
    exports: &Exports,
    client_flags: u32,
    tls: Tls,
) -> io::Result<Option<Export>> {
    let no_zeroes = client_flags & proto::FLAG_C_NO_ZEROES != 0;
    loop {
        let mut header = [0u8; proto::OPTION_HEADER_LEN];
        s.read_exact(&mut header)?;
        let (option, len) = proto::parse_option_header(&header).map_err(protocol)?;
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data)?;
        match option {
            proto::OPT_EXPORT_NAME => {
                let name = String::from_utf8_lossy(&data);
                // This option has no way to report an error but closing.
                let Some(export) = find(exports, &name) else {
                    return Ok(None);
                };
                let size = export.backend.size();
                s.write_all(&proto::export_name_reply(size, export.flags(), no_zeroes))?;
                return Ok(Some(export.clone()));
            }
            proto::OPT_ABORT => {
                let _ = s.write_all(&proto::option_reply(option, proto::REP_ACK, &[]));
                return Ok(None);
            }
            proto::OPT_LIST => list(s, exports, &data)?,
            proto::OPT_INFO | proto::OPT_GO => {
                if let Some(export) = info(s, exports, option, &data)?
                    && option == proto::OPT_GO
                {
                    return Ok(Some(export));
                }
            }
            // TLS is already up: a second STARTTLS is invalid (the spec).
            // Without TLS (the unix socket) it is unsupported, below.
            proto::OPT_STARTTLS if tls == Tls::Up => {
                s.write_all(&proto::option_reply(option, proto::REP_ERR_INVALID, &[]))?
            }
            _ => s.write_all(&proto::option_reply(option, proto::REP_ERR_UNSUP, &[]))?,
        }
    }
}

fn list(s: &mut UnixStream, exports: &Exports, data: &[u8]) -> io::Result<()> {
    if !data.is_empty() {
        return s.write_all(&proto::option_reply(
            proto::OPT_LIST,
            proto::REP_ERR_INVALID,
            &[],
        ));
    }
    let mut names: Vec<&String> = exports
        .iter()
        .filter(|(_, e)| e.enabled())
        .map(|(n, _)| n)
        .collect();
    names.sort();
    for name in names {
        let entry = proto::server_entry(name);
        s.write_all(&proto::option_reply(
            proto::OPT_LIST,
            proto::REP_SERVER,
            &entry,
        ))?;
    }
    s.write_all(&proto::option_reply(proto::OPT_LIST, proto::REP_ACK, &[]))
}

/// Answers INFO or GO; returns the export when it was found.
fn info(
    s: &mut UnixStream,
    exports: &Exports,
    option: u32,
    data: &[u8],
) -> io::Result<Option<Export>> {
    let Some((name, requests)) = proto::parse_info_request(data) else {
        s.write_all(&proto::option_reply(option, proto::REP_ERR_INVALID, &[]))?;
        return Ok(None);
    };
    let Some(export) = find(exports, &name) else {
        s.write_all(&proto::option_reply(option, proto::REP_ERR_UNKNOWN, &[]))?;
        return Ok(None);
    };
    let size = export.backend.size();
    let mut replies = vec![
        proto::info_export(size, export.flags()),
        proto::info_block_size(),
    ];
    if requests.contains(&proto::INFO_NAME) {
        replies.push(proto::info_name(&export.name));
    }
    for r in replies {
        s.write_all(&proto::option_reply(option, proto::REP_INFO, &r))?;
    }
    s.write_all(&proto::option_reply(option, proto::REP_ACK, &[]))?;
    Ok(Some(export.clone()))
}

/// Requests of one connection running at once.
const WORKERS: usize = 8;

/// A worker's buffers: `reply` holds the reply header at 0..16, then a
/// read's data; `payload` a write's data, given to the backend and
/// taken back (or a new one) when the write is done.
struct Buffers {
    reply: Vec<u8>,
    payload: Vec<u8>,
}

impl Buffers {
    fn new() -> Buffers {
        let mut reply = vec![0u8; 16 + (128 << 10)];
        lock_in_memory(&mut reply);
        Buffers {
            reply,
            payload: Vec::new(),
        }
    }
}

/// A request read off the wire and whether it already failed (a write
/// too large, say: it is only answered).
struct Job {
    req: Request,
    error: Option<u32>,
}

/// Serves requests until the client disconnects or breaks the protocol.
/// The workers take turns reading: whoever holds the reader reads the
/// next request (and a write's payload) into its own buffer, lets go and
/// runs it, so a request is run by the thread that read it. Handing it
/// to another thread would cost a wakeup, tens of µs on a busy machine,
/// on every request. A write is only started there (see conn.rs).
fn transmission(s: &mut UnixStream, export: &Export) -> io::Result<()> {
    let conn = Arc::new(Conn::new(s)?);
    std::thread::scope(|scope| {
        scope.spawn(|| conn.send_outbox());
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| scope.spawn(|| worker(export, &conn)))
            .collect();
        // Each worker ends once the connection has; the writes they
        // started are answered (or fail) before the replies' last send.
        for w in workers {
            let _ = w.join();
        }
        conn.await_no_writes();
        conn.close_outbox();
    });
    conn.outcome()?;
    // Disconnect: everything answered is flushed before the client goes.
    export.backend.flush()
}

/// Reads the next request (and a write's payload into `payload`); None
/// once the connection has ended.
fn next_request(conn: &Conn, payload: &mut Vec<u8>) -> Option<Job> {
    let mut s = conn.reader.lock().unwrap_or_else(|p| p.into_inner());
    conn.await_room();
    if conn.ended() {
        return None;
    }
    match read_request(&mut s, payload) {
        Ok(Some(job)) => Some(job),
        Ok(None) => {
            conn.said_disconnect();
            None
        }
        Err(e) => {
            // A client that broke the protocol is not read again; nor is
            // it waited for to read the replies still queued for it.
            if e.kind() == io::ErrorKind::InvalidData {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
            conn.end(Some(e));
            None
        }
    }
}

/// One request off the wire; None at Disconnect.
fn read_request(s: &mut UnixStream, payload: &mut Vec<u8>) -> io::Result<Option<Job>> {
    let mut header = [0u8; proto::REQUEST_LEN];
    s.read_exact(&mut header)?;
    let req = proto::parse_request(&header).map_err(protocol)?;
    if req.command == Command::Disconnect {
        return Ok(None);
    }
    let error = if req.command == Command::Write {
        take_payload(s, &req, payload)?
    } else {
        None
    };
    Ok(Some(Job { req, error }))
}

fn worker(export: &Export, conn: &Arc<Conn>) {
    let mut b = Buffers::new();
    while let Some(Job { req, error }) = next_request(conn, &mut b.payload) {
        let began = Instant::now();
        if error.is_none() && req.command == Command::Write {
            match write_refused(export, &req) {
                None => {
                    start_write(export, conn, &req, &mut b.payload, began);
                    continue;
                }
                Some(code) => {
                    if !reply(export, conn, &req, began, code, &mut b.reply, 0) {
                        return;
                    }
                    continue;
                }
            }
        }
        let (code, data) = match error {
            Some(e) => (e, 0),
            None => run(export, &req, &mut b),
        };
        if !reply(export, conn, &req, began, code, &mut b.reply, data) {
            return;
        }
    }
}

/// Answers a request run here; false once the connection broke.
fn reply(
    export: &Export,
    conn: &Conn,
    req: &Request,
    began: Instant,
    code: u32,
    buf: &mut [u8],
    data: usize,
) -> bool {
    let kind = match req.command {
        Command::Read => Kind::Read,
        Command::Write => Kind::Write,
        Command::Flush => Kind::Flush,
        _ => Kind::Other,
    };
    export.latency.record(kind, began.elapsed());
    buf[..16].copy_from_slice(&proto::simple_reply(code, req.cookie));
    conn.reply(&buf[..16 + data])
}

/// Runs one request; returns the NBD error (0: success) and how many data
/// bytes follow the reply header in the buffer.
fn run(export: &Export, req: &Request, b: &mut Buffers) -> (u32, usize) {
    match req.command {
        Command::Read => match read(export, req, &mut b.reply) {
            Ok(n) => (0, n),
            Err(e) => (e, 0),
        },
        other => (execute(export, other, req), 0),
    }
}

fn read(export: &Export, req: &Request, buf: &mut Vec<u8>) -> Result<usize, u32> {
    if req.length > proto::MAX_PAYLOAD {
        return Err(proto::EOVERFLOW);
    }
    if !proto::in_range(req.offset, req.length, export.backend.size()) {
        return Err(proto::EINVAL);
    }
    let n = req.length as usize;
    grow(buf, 16 + n);
    export
        .backend
        .read_at(&mut buf[16..16 + n], req.offset)
        .map_err(|e| errno(&e))?;
    Ok(n)
}

fn grow(buf: &mut Vec<u8>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0);
        lock_in_memory(buf);
    }
}

/// Keeps a request buffer resident: if the kernel had to page it in while
/// writing back dirty pages of our own device, it could wait on itself.
/// Best effort: beyond RLIMIT_MEMLOCK (without CAP_IPC_LOCK) it stays
/// pageable, which is how every userspace block server starts.
fn lock_in_memory(buf: &mut [u8]) {
    let Some(ptr) = std::ptr::NonNull::new(buf.as_mut_ptr().cast()) else {
        return;
    };
    // SAFETY: the range is exactly the buffer's, which lives as long as
    // the connection; munlock happens when it is freed (the kernel unlocks
    // pages that are unmapped).
    let _ = unsafe { nix::sys::mman::mlock(ptr, buf.len()) };
}

/// Takes a write's payload off the wire whatever happens (or the stream
/// would lose its framing) into `payload`, without zeroing it first.
/// Returns the NBD error if the request cannot be run at all.
fn take_payload(
    s: &mut UnixStream,
    req: &Request,
    payload: &mut Vec<u8>,
) -> io::Result<Option<u32>> {
    let n = req.length as usize;
    payload.clear();
    if req.length > proto::MAX_PAYLOAD {
        payload.resize(64 << 10, 0);
        lock_in_memory(payload);
        discard(s, u64::from(req.length), payload)?;
        return Ok(Some(proto::EOVERFLOW));
    }
    let had = payload.capacity();
    crate::host::recv::recv_exact_into(s, payload, n)?;
    if payload.capacity() != had {
        lock_in_memory(payload);
    }
    Ok(None)
}

/// Why a write cannot run (its NBD error), if it cannot.
fn write_refused(export: &Export, req: &Request) -> Option<u32> {
    if export.backend.read_only() {
        Some(proto::EPERM)
    } else if !proto::in_range(req.offset, req.length, export.backend.size()) {
        Some(proto::ENOSPC)
    } else {
        None
    }
}

/// Gives the payload to the backend; the thread that completes the write
/// answers it. A fresh buffer takes the payload's place.
fn start_write(
    export: &Export,
    conn: &Arc<Conn>,
    req: &Request,
    payload: &mut Vec<u8>,
    began: Instant,
) {
    let fua = req.flags & proto::CMD_FLAG_FUA != 0;
    let len = payload.len();
    let data = std::mem::replace(payload, conn.started(len));
    let (c, latency, cookie) = (Arc::clone(conn), Arc::clone(&export.latency), req.cookie);
    let done = WriteDone::new(move |result, back| {
        latency.record(Kind::Write, began.elapsed());
        let code = result.map_or_else(|e| errno(&e), |()| 0);
        c.give_back(back);
        c.reply_soon(&proto::simple_reply(code, cookie));
        c.answered(len);
    });
    export.backend.write_then(data, req.offset, fua, done);
}

fn discard(s: &mut UnixStream, mut left: u64, buf: &mut [u8]) -> io::Result<()> {
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        s.read_exact(&mut buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn execute(export: &Export, command: Command, req: &Request) -> u32 {
    let b = &export.backend;
    let fua = req.flags & proto::CMD_FLAG_FUA != 0;
    let ranged = |f: &dyn Fn() -> io::Result<()>| {
        if b.read_only() {
            proto::EPERM
        } else if !proto::in_range(req.offset, req.length, b.size()) {
            proto::EINVAL
        } else {
            f().map_or_else(|e| errno(&e), |()| 0)
        }
    };
    let len = u64::from(req.length);
    match command {
        Command::Flush => b.flush().map_or_else(|e| errno(&e), |()| 0),
        Command::Trim => ranged(&|| {
            b.trim(req.offset, len)?;
            if fua { b.flush() } else { Ok(()) }
        }),
        Command::WriteZeroes => {
            let may_punch = req.flags & proto::CMD_FLAG_NO_HOLE == 0;
            ranged(&|| b.write_zeroes(req.offset, len, may_punch, fua))
        }
        _ => proto::EINVAL,
    }
}

/// The NBD error for an I/O error: the protocol has a few errnos; the rest
/// are EIO.
fn errno(e: &io::Error) -> u32 {
    match e.raw_os_error() {
        Some(nix::libc::ENOSPC) => proto::ENOSPC,
        Some(nix::libc::EPERM) | Some(nix::libc::EROFS) | Some(nix::libc::EBADF) => proto::EPERM,
        Some(nix::libc::EOPNOTSUPP) => proto::ENOTSUP,
        Some(nix::libc::EINVAL) => proto::EINVAL,
        _ => proto::EIO,
    }
}
