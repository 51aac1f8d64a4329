//! The export's backend on a replica: every request goes through the
//! replica's engine (mirrored to the peer, answered by protocol), run by
//! the export's own thread.

use std::io;
use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};

use crate::daemon::replica::engine::{Client, Engine};
use crate::export::backend::{Backend, WriteDone, eio};

pub struct ReplicaBackend {
    pub engine: Arc<Engine>,
    pub size: u64,
}

/// Largest piece a zeroing request is cut into (one NBD request's worth).
const ZERO_CHUNK: u64 = 4 << 20;

impl ReplicaBackend {
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Client) -> io::Result<T> {
        let (tx, rx) = channel();
        self.engine.client(make(tx));
        rx.recv().map_err(|_| eio())
    }
}

impl Backend for ReplicaBackend {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        false
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let len = buf.len() as u32;
        let data = self
            .ask(|reply| Client::Read { offset, len, reply })?
            .ok_or_else(eio)?;
        if data.len() != buf.len() {
            return Err(eio());
        }
        buf.copy_from_slice(&data);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        let (tx, rx) = channel();
        let done = WriteDone::new(move |r, _| {
            let _ = tx.send(r);
        });
        self.write_then(buf.to_vec(), offset, fua, done);
        rx.recv().map_err(|_| eio())?
    }

    /// Answered by whichever thread completes the write (protocol C: the
    /// link's reader, at the peer's acknowledgement), after the engine's
    /// lock is let go.
    fn write_then(&self, data: Vec<u8>, offset: u64, fua: bool, done: WriteDone) {
        self.engine.client(Client::Write {
            offset,
            data,
            fua,
            done,
        });
    }

    fn flush(&self) -> io::Result<()> {
        let ok = self.ask(|reply| Client::Flush { reply })?;
        ok.then_some(()).ok_or_else(eio)
    }

    /// Trim does nothing: punching a hole on one side only would make the
    /// two disks differ, and reads after a trim may return anything.
    fn trim(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }

    fn write_zeroes(&self, offset: u64, len: u64, _may_punch: bool, fua: bool) -> io::Result<()> {
        let mut at = offset;
        let end = offset.checked_add(len).ok_or_else(eio)?;
        while at < end {
            let n = ZERO_CHUNK.min(end - at);
            self.write_at(&vec![0u8; n as usize], at, fua)?;
            at += n;
        }
        Ok(())
    }
}
