//! Sealed frames the socket has not taken yet. Frame heads, MACs and
//! small payloads are copied into buffers of their own; a large payload
//! stays in the engine's buffer and goes out from there in the same
//! vectored send, so a replicated write is not copied on its way to the
//! peer (the kernel's copy into the socket aside).

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use socket2::Socket;

use crate::replication::core::Msg;
use crate::replication::wire::Sealer;

/// Payloads from this size on are sent from where they are; smaller
/// ones cost less copied than as one more piece of a send.
const SHARE_FROM: usize = 16 << 10;
/// Pieces per send at most.
const MAX_PIECES: usize = 64;

enum Piece {
    Own(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Own(v) => v,
            Piece::Shared(v) => v,
        }
    }
}

#[derive(Default)]
pub struct Unsent {
    pieces: VecDeque<Piece>,
    /// How much of the first piece went out already.
    done: usize,
}

impl Unsent {
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    pub fn clear(&mut self) {
        self.pieces.clear();
        self.done = 0;
    }

    /// Seals a frame onto the end.
    pub fn seal(&mut self, sealer: &mut Sealer, msg: &Msg, payload: Option<&Arc<Vec<u8>>>) {
        let (head, tag) = sealer.seal_parts(msg, payload.map(|p| p.as_slice()));
        self.copy(&head);
        match payload {
            Some(p) if p.len() >= SHARE_FROM => self.pieces.push_back(Piece::Shared(p.clone())),
            Some(p) => self.copy(p),
            None => {}
        }
        self.copy(&tag);
    }

    fn copy(&mut self, bytes: &[u8]) {
        match self.pieces.back_mut() {
            Some(Piece::Own(v)) => v.extend_from_slice(bytes),
            _ => self.pieces.push_back(Piece::Own(bytes.to_vec())),
        }
    }

    /// Sends what the socket takes; `wait`: all of it, blocking (up to the
    /// socket's write timeout). Ok(false): the socket is full.
    pub fn send(&mut self, sock: &Socket, wait: bool) -> io::Result<bool> {
        let mut flags = nix::libc::MSG_NOSIGNAL;
        if !wait {
            flags |= nix::libc::MSG_DONTWAIT;
        }
        while !self.pieces.is_empty() {
            let slices: Vec<IoSlice<'_>> = self
                .pieces
                .iter()
                .take(MAX_PIECES)
                .enumerate()
                .map(|(i, p)| {
                    IoSlice::new(if i == 0 {
                        &p.bytes()[self.done..]
                    } else {
                        p.bytes()
                    })
                })
                .collect();
            match sock.send_vectored_with_flags(&slices, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && !wait => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn advance(&mut self, mut n: usize) {
        while let Some(first) = self.pieces.front() {
            let left = first.bytes().len() - self.done;
            if n < left {
                self.done += n;
                return;
            }
            n -= left;
            self.done = 0;
            self.pieces.pop_front();
        }
    }
}

#[cfg(test)]
#[path = "unsent_tests.rs"]
mod tests;
