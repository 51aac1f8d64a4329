//! What the threads serving one NBD connection share: the two ends of
//! the stream, the replies waiting to be sent, and the writes in flight.
//!
//! A write is answered by whichever thread completes it: for a replica
//! under protocol C, the link's reader at the peer's acknowledgement.
//! Waking the worker that read the request to send the reply would cost a
//! wakeup per write. That thread must never wait for the client, or a
//! client that stops reading its replies would hold up replication: it
//! sends a reply only if the socket takes it now, else queues it for the
//! connection's sender thread.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use nix::sys::socket::{MsgFlags, send};

/// Write payload bytes in flight per connection above which no further
/// request is read until some are answered: what a client can pin (plus
/// the one request read before the check, up to 32 MiB).
const IN_FLIGHT_BYTES: usize = 64 << 20;
/// What a write counts for at least: each one in flight also holds
/// bookkeeping in the replica and a queued reply, so empty or tiny
/// writes are bounded in number too (at most 16384 in flight).
const WRITE_COST_MIN: usize = 4 << 10;
/// Answered writes' buffers kept for the next ones (not the larger ones).
const SPARE_BUFFERS: usize = 16;
const SPARE_MAX_LEN: usize = 4 << 20;
/// Queued replies beyond which the next request waits until they are
/// sent: a client that sends writes without reading their replies is
/// held back, as by a full socket, instead of growing the queue.
const OUTBOX_MAX: usize = 1 << 20;

pub struct Conn {
    pub reader: Mutex<UnixStream>,
    writer: Mutex<UnixStream>,
    /// Set once the client said Disconnect, went away or broke the
    /// protocol: nobody reads again.
    ended: AtomicBool,
    /// The first error that ended the connection.
    error: Mutex<Option<io::Error>>,
    /// The client said Disconnect: what was answered is flushed even if
    /// the client left before the last replies reached it.
    said_disconnect: AtomicBool,
    outbox: Mutex<Outbox>,
    outbox_ready: Condvar,
    flight: Mutex<Flight>,
    flight_moved: Condvar,
    spare: Mutex<Vec<Vec<u8>>>,
}

/// Whole replies (or the tail of one the socket took only part of), in
/// the order they must go out.
#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    /// Every reply is queued: the sender thread ends once it sent them.
    closing: bool,
}

#[derive(Default)]
struct Flight {
    writes: usize,
    bytes: usize,
    /// Someone waits for room or for the last write: only then is a
    /// completion worth a wakeup.
    waiting: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    pub fn new(s: &UnixStream) -> io::Result<Conn> {
        Ok(Conn {
            reader: Mutex::new(s.try_clone()?),
            writer: Mutex::new(s.try_clone()?),
            ended: AtomicBool::new(false),
            error: Mutex::new(None),
            said_disconnect: AtomicBool::new(false),
            outbox: Mutex::default(),
            outbox_ready: Condvar::new(),
            flight: Mutex::default(),
            flight_moved: Condvar::new(),
            spare: Mutex::default(),
        })
    }

    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    pub fn end(&self, error: Option<io::Error>) {
        self.ended.store(true, Ordering::SeqCst);
        if let Some(e) = error {
            lock(&self.error).get_or_insert(e);
        }
    }

    pub fn said_disconnect(&self) {
        self.said_disconnect.store(true, Ordering::SeqCst);
        self.end(None);
    }

    /// The error that ended the connection, unless the client said
    /// Disconnect.
    pub fn outcome(&self) -> io::Result<()> {
        match lock(&self.error).take() {
            Some(e) if !self.said_disconnect.load(Ordering::SeqCst) => Err(e),
            _ => Ok(()),
        }
    }

    /// A failed send ends the connection; whoever is reading wakes to the
    /// shut stream (its error comes second: this one is kept).
    fn broken(&self, w: &UnixStream, e: io::Error) {
        self.end(Some(e));
        let _ = w.shutdown(std::net::Shutdown::Both);
    }

    /// Sends a reply from a thread that may wait for the client (a worker
    /// answering what it ran), after the replies queued before it. False:
    /// the connection broke (its error is kept).
    pub fn reply(&self, reply: &[u8]) -> bool {
        let w = lock(&self.writer);
        let queued = std::mem::take(&mut lock(&self.outbox).bytes);
        match (&*w)
            .write_all(&queued)
            .and_then(|()| (&*w).write_all(reply))
        {
            Ok(()) => true,
            Err(e) => {
                self.broken(&w, e);
                false
            }
        }
    }

    /// Sends a reply from a thread that must not wait for the client: at
    /// once if the stream is free and the socket takes it whole, else
    /// through the sender thread.
    pub fn reply_soon(&self, reply: &[u8]) {
        // Held (if free) until the reply is queued: nothing can come
        // between a reply's head and its tail.
        let w = self.writer.try_lock().ok();
        let mut out = lock(&self.outbox);
        let mut left = reply;
        if let Some(w) = &w
            && out.bytes.is_empty()
        {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match send(w.as_raw_fd(), reply, flags) {
                Ok(n) => left = &reply[n.min(reply.len())..],
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    drop(out);
                    self.broken(w, e.into());
                    return;
                }
            }
        }
        if !left.is_empty() {
            out.bytes.extend_from_slice(left);
            self.outbox_ready.notify_one();
        }
    }

    /// The sender thread: sends queued replies, blocking on a client that
    /// reads slowly, until `close_outbox` and nothing is left.
    pub fn send_outbox(&self) {
        loop {
            {
                let mut out = lock(&self.outbox);
                while out.bytes.is_empty() && !out.closing {
                    out = self
                        .outbox_ready
                        .wait(out)
                        .unwrap_or_else(|p| p.into_inner());
                }
                if out.bytes.is_empty() {
                    return;
                }
            }
            self.reply(&[]);
        }
    }

    pub fn close_outbox(&self) {
        lock(&self.outbox).closing = true;
        self.outbox_ready.notify_all();
    }

    /// Waits until the replies queued are few and fewer write bytes are in
    /// flight than a client may pin.
    pub fn await_room(&self) {
        if lock(&self.outbox).bytes.len() > OUTBOX_MAX {
            self.reply(&[]);
        }
        let mut f = lock(&self.flight);
        while f.bytes >= IN_FLIGHT_BYTES && !self.ended() {
            f.waiting = true;
            f = self.flight_moved.wait(f).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Waits until every write started is answered.
    pub fn await_no_writes(&self) {
        let mut f = lock(&self.flight);
        while f.writes > 0 {
            f.waiting = true;
            f = self.flight_moved.wait(f).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A write of `len` bytes started; returns a buffer for the next
    /// request's payload.
    pub fn started(&self, len: usize) -> Vec<u8> {
        let mut f = lock(&self.flight);
        f.writes += 1;
        f.bytes += len.max(WRITE_COST_MIN);
        drop(f);
        lock(&self.spare).pop().unwrap_or_default()
    }

    /// A write of `len` bytes was answered; its buffer, if it came back,
    /// serves a later one.
    pub fn answered(&self, len: usize, buf: Option<Vec<u8>>) {
        if let Some(mut b) = buf.filter(|b| b.capacity() <= SPARE_MAX_LEN) {
            let mut spare = lock(&self.spare);
            if spare.len() < SPARE_BUFFERS {
                b.clear();
                spare.push(b);
            }
        }
        let mut f = lock(&self.flight);
        f.writes -= 1;
        f.bytes -= len.max(WRITE_COST_MIN);
        if std::mem::take(&mut f.waiting) {
            self.flight_moved.notify_all();
        }
    }
}
