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

use crate::host::spares::Spares;
use std::cell::RefCell;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::sys::socket::{MsgFlags, send};

/// Write payload bytes in flight per connection above which no further
/// request is read until some are answered: what a client can pin (plus
/// the one request read before the check, up to 32 MiB).
const IN_FLIGHT_BYTES: usize = 64 << 20;
/// What a write counts for at least: each one in flight also holds
/// bookkeeping in the replica and a queued reply, so empty or tiny
/// writes are bounded in number too (at most 16384 in flight).
const WRITE_COST_MIN: usize = 4 << 10;
/// Answered writes' buffers kept for the next ones, up to as many bytes
/// as writes in flight may hold (not the larger buffers): a buffer that
/// finds the spares full is freed, and the next write beyond them
/// allocates and mlocks a fresh one (a third of the writes at depth 32
/// did, with room for 16 buffers).
const SPARE_BYTES: usize = IN_FLIGHT_BYTES;
const SPARE_MAX_LEN: usize = 4 << 20;
/// Queued reply bytes up to which a thread that must not wait sends the
/// queue itself.
const SEND_SOON_MAX: usize = 64 << 10;
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
    spare: Spares,
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

thread_local! {
    /// The connections whose replies this thread holds back, while it
    /// does (`hold_replies`).
    static HELD: RefCell<Option<Vec<Arc<Conn>>>> = const { RefCell::new(None) };
}

/// From now on, replies this thread sends with `reply_soon` wait in their
/// connection's outbox until `send_held`: a thread that answers a batch
/// of writes at once (the link's reader, with a read's worth of the
/// peer's acknowledgements) sends each client one reply for them all,
/// not one send per write.
pub fn hold_replies() {
    HELD.with(|h| {
        h.borrow_mut().get_or_insert_with(Vec::new);
    });
}

/// Sends what this thread held back since `hold_replies`, and holds no
/// more.
pub fn send_held() {
    send_held_so_far();
    HELD.with(|h| h.borrow_mut().take());
}

/// Sends what this thread held back so far, and goes on holding (before
/// it does something slow in the middle of a batch).
pub fn send_held_so_far() {
    let held = HELD.with(|h| h.borrow_mut().as_mut().map(std::mem::take));
    for c in held.into_iter().flatten() {
        c.send_soon(&[]);
    }
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
            spare: Spares::new(SPARE_BYTES, 0, SPARE_MAX_LEN),
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
    /// once, as far as the socket takes it, if the stream is free and few
    /// replies wait before it; what is left through the sender thread. On
    /// a thread holding replies back (`hold_replies`), it is queued until
    /// `send_held`.
    pub fn reply_soon(self: &Arc<Self>, reply: &[u8]) {
        let held = HELD.with(|h| match h.borrow_mut().as_mut() {
            Some(conns) => {
                if !conns.iter().any(|c| Arc::ptr_eq(c, self)) {
                    conns.push(Arc::clone(self));
                }
                true
            }
            None => false,
        });
        if held {
            lock(&self.outbox).bytes.extend_from_slice(reply);
        } else {
            self.send_soon(reply);
        }
    }

    /// `reply` after what the outbox holds: sent at once as far as the
    /// socket takes it if the stream is free and the outbox small, the
    /// rest by the sender thread. (A client that reads slowly has a long
    /// outbox: the sender thread moves it, not the link's reader.)
    fn send_soon(&self, reply: &[u8]) {
        // Held (if free) until the rest is queued: nothing can come
        // between a reply's head and its tail. With the stream held, the
        // outbox can go out from here: nobody else is halfway through a
        // send.
        let w = self.writer.try_lock().ok();
        let mut out = lock(&self.outbox);
        if out.bytes.is_empty() && reply.is_empty() {
            return;
        }
        out.bytes.extend_from_slice(reply);
        if let Some(w) = &w
            && out.bytes.len() <= SEND_SOON_MAX
        {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
            match send(w.as_raw_fd(), &out.bytes, flags) {
                Ok(n) => {
                    let n = n.min(out.bytes.len());
                    out.bytes.drain(..n);
                }
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    drop(out);
                    self.broken(w, e.into());
                    return;
                }
            }
        }
        if !out.bytes.is_empty() {
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
        self.spare.take().unwrap_or_default()
    }

    /// A write's buffer came back: it serves a later one. Given back
    /// before the write is answered, so that the client's next request,
    /// sent on the reply, finds it.
    pub fn give_back(&self, buf: Option<Vec<u8>>) {
        if let Some(b) = buf {
            self.spare.give_back(b);
        }
    }

    /// A write of `len` bytes was answered.
    pub fn answered(&self, len: usize) {
        let mut f = lock(&self.flight);
        f.writes -= 1;
        f.bytes -= len.max(WRITE_COST_MIN);
        if std::mem::take(&mut f.waiting) {
            self.flight_moved.notify_all();
        }
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
