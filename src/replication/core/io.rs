//! What the replica core asks its shell to do, and what it is told back.
//! The core never touches data: buffers live in the shell, named by `Buf`,
//! and the core says which buffer to read into, write out or send.

use crate::replication::activity_log::Transaction;
use crate::replication::core::fence::FenceInput;
use crate::replication::generation::{Generation, Generations};
use crate::replication::states::{DiskState, Role};

/// An NBD request of the local client (the shell's handle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReqId(pub u64);

/// A data buffer held by the shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Buf {
    /// A local client's write (its data) or read (filled by a read).
    App(ReqId),
    /// The peer's mirrored write, by its sequence number.
    Peer(u64),
    /// A block range read for the sync, to send.
    ResyncOut(u64),
    /// A block range received from the sync, to write.
    ResyncIn(u64),
    /// Read to be checksummed by online verify.
    Verify(u64),
    /// Read for a diskless peer (it reads through us).
    PeerRead(u64),
}

/// What the core sends its peer. Payload-carrying messages name the buffer
/// beside them in `Action::Send`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// First words after connecting, and again when generations change.
    Hello(PeerState),
    /// Role or disk changed.
    Update {
        role: Role,
        disk: DiskState,
    },
    /// A chunk of the sender's dirty bitmap, 64 bits a word.
    Bitmap {
        first_word: u64,
        words: Vec<u64>,
        last: bool,
    },
    /// A mirrored write; payload: the data.
    Data {
        seq: u64,
        offset: u64,
        len: u32,
        fua: bool,
    },
    /// Flush everything written before it.
    Flush {
        seq: u64,
    },
    Ack {
        seq: u64,
        kind: AckKind,
        ok: bool,
    },
    /// A synced block range; payload: the data.
    ResyncData {
        id: u64,
        offset: u64,
        len: u32,
    },
    ResyncAck {
        id: u64,
        ok: bool,
    },
    /// The source has no more blocks: here is its generation to take.
    SyncDone {
        generations: Generations,
    },
    VerifyRequest {
        id: u64,
        offset: u64,
        len: u32,
        digest: u64,
    },
    VerifyReply {
        id: u64,
        equal: bool,
    },
    VerifyDone,
    /// A verify source asks its Primary peer to read a range first and
    /// send its digest (a VerifyRequest back): the digest then travels
    /// with the Primary's writes, so the source compares data that both
    /// sides hold at the same point of the write stream.
    VerifyAsk {
        id: u64,
        offset: u64,
        len: u32,
    },
    /// A diskless primary reads through its peer.
    ReadRequest {
        id: u64,
        offset: u64,
        len: u32,
    },
    /// Payload: the data when ok.
    ReadReply {
        id: u64,
        ok: bool,
    },
    Ping,
    PingAck,
    /// The sender's disk failed to take these blocks (it detaches): the
    /// receiver marks them, since only it has them now.
    OutOfSync {
        offset: u64,
        len: u32,
    },
    /// invalidate-remote: the sender's data wins. The receiver declares its
    /// own disk's data bad, as `invalidate` does there (Inconsistent, every
    /// block out of sync), and the handshake that follows makes it the
    /// target of a full sync from the sender.
    InvalidateRemote,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// Protocol B: in the peer's memory.
    Received,
    /// Protocols A, B and C: on the peer's disk (what frees the bitmap).
    Written,
    Flushed,
}

/// What a node says about itself on connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub generations: Generations,
    pub role: Role,
    pub disk: DiskState,
    /// Usable bytes.
    pub size: u64,
    pub granularity: u32,
    /// Set bits in its bitmap (split-brain "changes").
    pub dirty_blocks: u64,
    /// Wall clock (µs) when it last became primary; 0: not since the split.
    pub primary_since: u64,
    pub discard_my_data: bool,
    /// It crashed while primary: its activity log extents are in its bitmap.
    pub crashed_primary: bool,
}

/// A metadata write; the core waits for `Input::MetaDone` before data
/// writes that depend on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaWrite {
    Superblock {
        generations: Generations,
        flags: u32,
    },
    /// Bitmap words starting at `first_word` (whole 4 KiB blocks).
    Bitmap {
        first_word: u64,
        words: Vec<u64>,
    },
    ActivityLog(Transaction),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read `len` bytes at `offset` of the backing disk into `buf`.
    Read {
        buf: Buf,
        offset: u64,
        len: u32,
    },
    /// Write `buf` at `offset`.
    Write {
        buf: Buf,
        offset: u64,
        len: u32,
        fua: bool,
    },
    Flush {
        token: u64,
    },
    Meta {
        token: u64,
        write: MetaWrite,
    },
    Send {
        msg: Msg,
        payload: Option<Buf>,
    },
    /// The core is done with `buf`.
    Release(Buf),
    /// Answer the local client.
    Complete {
        req: ReqId,
        ok: bool,
    },
    /// Close the transport (the reason is for the log).
    Drop {
        reason: String,
    },
    Event(Event),
}

/// Something an administrator wants to read in the log. `Declined`: the
/// peer asked for something this node cannot do now (its
/// invalidate-remote, say); the reason says what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    StateChanged,
    SyncStarted {
        full: bool,
        bytes: u64,
    },
    SyncFinished {
        bytes: u64,
    },
    VerifyFinished {
        out_of_sync_bytes: u64,
    },
    SplitBrain {
        resolved: String,
    },
    Refused {
        reason: String,
    },
    Declined {
        reason: String,
    },
    DiskFailed,
    /// The connection to the peer is gone while Primary: its disk is to be
    /// outdated, under this request, before writes are answered.
    Fencing {
        generation: Generation,
    },
    /// The peer confirmed its disk Outdated: answers go on.
    PeerOutdated {
        generation: Generation,
    },
    /// Answers go on without the peer's confirmation (why: it is dead, or
    /// refused).
    FencedWithout {
        reason: String,
    },
    /// This disk was outdated at the peer's request.
    OutdatedByPeer {
        generation: Generation,
    },
    /// The peer's request to outdate this disk was refused.
    OutdateRefused {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The authenticated transport is up.
    TransportUp,
    TransportDown,
    Received {
        msg: Msg,
        payload: bool,
    },
    Write {
        req: ReqId,
        offset: u64,
        len: u32,
        fua: bool,
    },
    Read {
        req: ReqId,
        offset: u64,
        len: u32,
    },
    FlushReq {
        req: ReqId,
    },
    ReadDone {
        buf: Buf,
        ok: bool,
        digest: u64,
    },
    Written {
        buf: Buf,
        ok: bool,
    },
    FlushDone {
        token: u64,
        ok: bool,
    },
    MetaDone {
        token: u64,
        ok: bool,
    },
    /// What the membership brought back about fencing (fence.rs).
    Fence(FenceInput),
    /// Nothing happened; timers are due.
    Tick,
}
