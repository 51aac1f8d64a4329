//! The NBD server: a unix socket (mode 0600), one thread per connection.
//! Block I/O is blocking by nature; a thread per client keeps each
//! request's path short (no executor hops) and reuses one buffer per
//! connection, so the hot path allocates nothing.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::export::backend::Backend;
use crate::export::proto::{self, Command, Request};

/// One export: a name (the replica's) and what it reads and writes.
#[derive(Clone)]
pub struct Export {
    pub name: String,
    pub backend: Arc<dyn Backend>,
    /// Connected clients right now (for D-Bus and status).
    pub clients: Arc<AtomicUsize>,
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
        Ok(Some((export, _))) => {
            export.clients.fetch_add(1, Ordering::SeqCst);
            if let Err(e) = transmission(&mut s, &export) {
                tracing::debug!(export = %export.name, error = %e, "NBD client gone");
            }
            export.clients.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "NBD handshake ended"),
    }
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
fn handshake(s: &mut UnixStream, exports: &Exports) -> io::Result<Option<(Export, u32)>> {
    s.write_all(&proto::greeting())?;
    let mut flags = [0u8; 4];
    s.read_exact(&mut flags)?;
    let client_flags = proto::parse_client_flags(flags).map_err(protocol)?;
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
                return Ok(Some((export.clone(), client_flags)));
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
                    return Ok(Some((export, client_flags)));
                }
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

/// Serves requests until the client disconnects or breaks the protocol.
fn transmission(s: &mut UnixStream, export: &Export) -> io::Result<()> {
    // Reply header and read data in one buffer, so a read is one write().
    // It grows to the largest request seen and is then reused: requests
    // allocate nothing once the client's I/O size has been seen.
    let mut buf = vec![0u8; 16 + (128 << 10)];
    lock_in_memory(&mut buf);
    loop {
        let mut header = [0u8; proto::REQUEST_LEN];
        s.read_exact(&mut header)?;
        let req = proto::parse_request(&header).map_err(protocol)?;
        if req.command == Command::Disconnect {
            return export.backend.flush();
        }
        let error = match req.command {
            Command::Read => match read(export, &req, &mut buf) {
                Ok(n) => {
                    buf[..16].copy_from_slice(&proto::simple_reply(0, req.cookie));
                    s.write_all(&buf[..16 + n])?;
                    continue;
                }
                Err(e) => e,
            },
            Command::Write => write(s, export, &req, &mut buf)?,
            other => execute(export, other, &req),
        };
        s.write_all(&proto::simple_reply(error, req.cookie))?;
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

/// Takes the payload off the wire whatever happens (or the stream would
/// lose its framing), then writes it if the request is valid. Returns the
/// NBD error, 0 for success.
fn write(s: &mut UnixStream, export: &Export, req: &Request, buf: &mut Vec<u8>) -> io::Result<u32> {
    if req.length > proto::MAX_PAYLOAD {
        discard(s, u64::from(req.length), buf)?;
        return Ok(proto::EOVERFLOW);
    }
    let n = req.length as usize;
    grow(buf, n);
    s.read_exact(&mut buf[..n])?;
    if export.backend.read_only() {
        return Ok(proto::EPERM);
    }
    if !proto::in_range(req.offset, req.length, export.backend.size()) {
        return Ok(proto::ENOSPC);
    }
    let fua = req.flags & proto::CMD_FLAG_FUA != 0;
    Ok(match export.backend.write_at(&buf[..n], req.offset, fua) {
        Ok(()) => 0,
        Err(e) => errno(&e),
    })
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
