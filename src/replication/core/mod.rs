//! The replica core: one replicated disk's state machine, pure. It takes
//! events (a client's write, a message from the peer, a disk completion,
//! the time) and returns actions (write this buffer there, send that,
//! answer the client). The shell (`crate::daemon::replica`) does the I/O;
//! the simulation (tests/replication_sim.rs) drives it against simulated
//! disks and networks.
//!
//! The rules, in DRBD's words:
//! - a write is mirrored to a connected peer whose disk can take it, and
//!   answered by protocol (A: written here; B: also received there; C:
//!   also written there);
//! - a block written without the peer's disk confirming it is marked in the
//!   dirty bitmap, persisted before the write is answered, and the first
//!   such write starts a new data generation;
//! - on connect, generations decide who syncs from whom (generation.rs) and
//!   bitmaps are merged; a split brain goes to the policies;
//! - overlapping operations run in arrival order (conflicts.rs).

mod admin;
mod conflicts;
mod datapath;
mod fence;
mod handshake;
pub mod io;
mod sync;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::replication::activity_log::{ActivityLog, Extent, Transaction};
use crate::replication::bitmap::DirtyBitmap;
use crate::replication::generation::{Generation, Generations};
use crate::replication::metadata::{
    AL_EXTENT, FLAG_CONSISTENT, FLAG_OUTDATED, FLAG_PEER_OUTDATED, FLAG_PRIMARY,
};
use crate::replication::split_brain::Policies;
use crate::replication::states::{Connection, DiskState, Replication, Role};
use crate::types::{NodeId, Timestamp};

pub use admin::Refused;
use conflicts::Conflicts;
pub use fence::{Answer, FenceInput, FenceStatus, FenceView};
pub use io::{AckKind, Action, Buf, Event, Input, MetaWrite, Msg, PeerState, ReqId};

/// When a write counts as done, and whether a Primary alone fences its
/// peer: the config's choices.
pub use crate::config::{Protocol, ReplicaFencing as Fencing};

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub local: NodeId,
    pub peer: NodeId,
    pub local_name: String,
    pub peer_name: String,
    pub protocol: Protocol,
    pub fencing: Fencing,
    pub policies: Policies,
    /// Detach the backing disk on an I/O error (else pass the error on).
    pub detach_on_error: bool,
    /// Usable bytes of the device.
    pub size: u64,
    pub granularity: u32,
    /// A peer silent this long is dropped.
    pub timeout: Duration,
    /// Resync bytes per second while clients write, and at most.
    pub rate_min: u64,
    pub rate_max: u64,
    /// Resync bytes in flight the controller keeps.
    pub fill_target: u64,
    pub al_capacity: usize,
}

/// What was read from the disk's metadata when it was attached.
#[derive(Debug, Clone)]
pub struct Attached {
    pub generations: Generations,
    pub flags: u32,
    pub bitmap: DirtyBitmap,
    /// The activity log's extents (marked dirty after a primary crash).
    pub al_extents: Vec<Extent>,
    pub al_seq: u64,
}

/// Largest block range one sync or verify request covers.
const SYNC_CHUNK: u64 = 256 << 10;
/// Bitmap words per 4 KiB metadata block.
const WORDS_PER_BLOCK: u64 = 512;
/// How long cleared bitmap bits may wait before being written.
const LAZY_BITMAP: Duration = Duration::from_secs(1);
/// Least time between two barriers (the peer's flush of the mirrored
/// writes it holds in its disk's cache). One after every burst made the
/// peer write back each write as it came; the writes that wait longer
/// for theirs only keep their activity-log extents longer, and are
/// marked out of sync all the same if the connection goes first.
const BARRIER_GAP: Duration = Duration::from_millis(5);

/// A client write in flight.
#[derive(Debug, Clone)]
struct AppWrite {
    offset: u64,
    len: u32,
    fua: bool,
    /// Extents still to admit into the activity log, and the log
    /// transaction (token) it waits for.
    al_todo: Vec<Extent>,
    al_admitted: Vec<Extent>,
    al_token: Option<u64>,
    /// No earlier overlapping operation runs or waits.
    free: bool,
    al_ready: bool,
    started: bool,
    local: Stage,
    peer: PeerStage,
    /// Bitmap flush generation that must be on disk first.
    bitmap_epoch: Option<u64>,
    answered: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Pending,
    Done(bool),
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerStage {
    /// Not mirrored: marked in the bitmap instead.
    NotSent,
    Sent(u64),
    Received(u64),
    /// Answered, and its sequence number.
    Written(bool, u64),
}

#[derive(Debug, Clone, Copy)]
struct AppFlush {
    local: Stage,
    /// Sequence of the Flush sent to the peer, until acknowledged.
    peer: Option<u64>,
    peer_ok: bool,
}

/// A mirrored write the peer wrote, maybe only into its disk's volatile
/// cache: until a flush there covers it, a power cut of the peer can lose
/// it. It keeps its activity-log extents meanwhile (after a crash here,
/// they are resynced from here), and is marked out of sync if the
/// connection goes first (DRBD's transfer log and barrier acks).
#[derive(Debug, Clone)]
struct Unstable {
    offset: u64,
    len: u32,
    extents: Vec<Extent>,
    /// Marked out of sync: the bitmap epoch that makes the mark durable;
    /// the extents are let go once it is.
    marked: Option<Option<u64>>,
}

/// A mirrored write of the peer's, on this disk.
#[derive(Debug, Clone, Copy)]
struct PeerWrite {
    offset: u64,
    len: u32,
    fua: bool,
    /// The sender had no disk to write it to when it sent it (as this
    /// side knew then): only this copy has it.
    only_copy: bool,
    bitmap_epoch: Option<u64>,
    written: Option<bool>,
}

pub struct Replica {
    s: Settings,
    role: Role,
    peer_role: Option<Role>,
    connection: Connection,
    replication: Replication,
    disk: DiskState,
    peer_disk: DiskState,
    gens: Generations,
    bitmap: DirtyBitmap,
    al: ActivityLog,
    crashed_primary: bool,
    /// An administrator paused the sync this side sends.
    sync_paused: bool,
    /// This side writes without the peer's disk in this generation.
    alone: bool,
    /// A demotion's flush of this disk: until it is done the superblock
    /// still says Primary, so that a power cut before it (the disk's cache
    /// losing writes the peer has) replays the activity log at restart.
    demote_flush: Option<u64>,
    /// Attached after a restart and not connected since, with no word
    /// that the peer is Outdated: the peer may have been promoted and
    /// written meanwhile, so this copy is only Consistent (DRBD's rule).
    /// Promotion needs the peer's generations, or `--force`.
    unconfirmed: bool,
    /// The disk failed while attached here. Its metadata may not say so
    /// (a failing disk takes no writes), and writes it answered may never
    /// have reached its media (a failed flush, a page cache whose
    /// writeback failed): the next disk attached is Inconsistent with
    /// every block out of sync, until a sync to it ends.
    distrusted: bool,
    discard_my_data: bool,
    primary_since: u64,
    peer: Option<PeerState>,
    rng: u64,
    now: Timestamp,
    next_token: u64,
    next_seq: u64,
    next_id: u64,
    /// Metadata writes data writes must wait for.
    gates: BTreeSet<u64>,
    /// The data flush a new generation's superblock waits for.
    alone_flush: Option<u64>,
    sb: SuperblockWrites,
    /// The failed disk's last metadata write: answers wait for it.
    failing: Option<u64>,
    failing_bitmap: BTreeSet<u64>,
    gated: Vec<Buf>,
    conflicts: Conflicts,
    app: BTreeMap<ReqId, AppWrite>,
    seq_to_req: HashMap<u64, ReqId>,
    flushes: HashMap<ReqId, AppFlush>,
    flush_tokens: HashMap<u64, ReqId>,
    reads: BTreeMap<ReqId, (u64, u32)>,
    peer_writes: BTreeMap<u64, PeerWrite>,
    /// Peer flushes waiting for earlier peer writes: seq -> local token.
    peer_flushes: BTreeMap<u64, Option<u64>>,
    /// The peer's reads waiting for its earlier writes to the same blocks:
    /// (id, offset, len, the last write's seq when the read came).
    peer_reads_waiting: Vec<(u64, u64, u32, Option<u64>)>,
    /// Activity-log transactions waiting for the flush before them: flush
    /// token -> (the transaction's token, the transaction).
    al_flushes: HashMap<u64, (u64, Transaction)>,
    /// Extents whose transaction is not on disk yet: extent -> its token.
    al_pending: HashMap<Extent, u64>,
    /// A crashed Primary's log extents are marked in the bitmap, maybe
    /// not on disk yet: no log transaction (which would drop them) before.
    al_recovered: bool,
    /// The bitmap epoch that puts them on disk.
    al_guard: Option<u64>,
    /// Written on the peer, not yet known durable there (by sequence).
    unstable: BTreeMap<u64, Unstable>,
    /// The flush this side sent to make them durable, while it runs.
    barrier: Option<u64>,
    /// When the last barrier was sent (None: none yet).
    barrier_at: Option<Timestamp>,
    bm: BitmapPersist,
    sync: sync::SyncState,
    handshake: handshake::Exchange,
    last_recv: Timestamp,
    last_send: Timestamp,
    counters: Counters,
    /// This node's fencing of its peer (fence.rs).
    fence: fence::PeerFence,
    /// The peer's request to outdate this disk, as taken here.
    outdating: Option<fence::Outdating>,
}

/// Figures shown on D-Bus and in `duetctl status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub written_bytes: u64,
    pub read_bytes: u64,
    pub al_writes: u64,
    pub bitmap_writes: u64,
    pub resynced_bytes: u64,
    /// Requests sent to the peer and not answered yet (DRBD's pending).
    pub pending: u64,
    /// The peer's requests received here and not answered yet (unacked).
    pub unacked: u64,
}

/// The superblock write in flight, and the one queued behind it (token and
/// content).
#[derive(Debug, Default)]
struct SuperblockWrites {
    writing: Option<u64>,
    next: Option<(u64, MetaWrite)>,
}

/// Bitmap blocks to write, and which flush made which blocks durable.
#[derive(Debug, Default)]
struct BitmapPersist {
    /// Blocks (of 512 words) changed since written; true if a write waits.
    dirty: BTreeMap<u64, bool>,
    since: Option<Timestamp>,
    /// The flush in progress: its epoch and tokens not yet done.
    flushing: Option<(u64, BTreeSet<u64>)>,
    /// Its block writes, waiting for a data flush (its token) first.
    preflush: Option<(u64, Vec<Action>)>,
    /// Bits cleared for synced blocks that no flush has covered yet.
    synced_unflushed: bool,
    epoch: u64,
    done_epoch: u64,
}

impl Replica {
    /// A replica with its disk attached (`Some`) or diskless. `seed` feeds
    /// the generation numbers (random in the daemon, fixed in tests).
    pub fn new(s: Settings, attached: Option<Attached>, seed: u64) -> Replica {
        let size = s.size;
        let g = s.granularity;
        let cap = s.al_capacity;
        let mut r = Replica {
            role: Role::Secondary,
            peer_role: None,
            connection: Connection::StandAlone,
            replication: Replication::Off,
            disk: DiskState::Diskless,
            peer_disk: DiskState::DUnknown,
            gens: Generations::fresh(),
            bitmap: DirtyBitmap::new(size, g),
            al: ActivityLog::new(cap, 0),
            crashed_primary: false,
            sync_paused: false,
            alone: false,
            unconfirmed: false,
            distrusted: false,
            demote_flush: None,
            discard_my_data: false,
            primary_since: 0,
            peer: None,
            rng: seed | 1,
            now: Timestamp::ZERO,
            next_token: 1,
            next_seq: 1,
            next_id: 1,
            gates: BTreeSet::new(),
            alone_flush: None,
            sb: SuperblockWrites::default(),
            failing: None,
            failing_bitmap: BTreeSet::new(),
            gated: Vec::new(),
            conflicts: Conflicts::default(),
            app: BTreeMap::new(),
            seq_to_req: HashMap::new(),
            flushes: HashMap::new(),
            flush_tokens: HashMap::new(),
            reads: BTreeMap::new(),
            peer_writes: BTreeMap::new(),
            peer_flushes: BTreeMap::new(),
            peer_reads_waiting: Vec::new(),
            al_flushes: HashMap::new(),
            al_pending: HashMap::new(),
            al_recovered: false,
            al_guard: None,
            unstable: BTreeMap::new(),
            barrier: None,
            barrier_at: None,
            bm: BitmapPersist::default(),
            sync: sync::SyncState::default(),
            handshake: handshake::Exchange::default(),
            last_recv: Timestamp::ZERO,
            last_send: Timestamp::ZERO,
            counters: Counters::default(),
            fence: fence::PeerFence::Idle,
            outdating: None,
            s,
        };
        if let Some(a) = attached {
            r.attach_metadata(a);
        }
        r
    }

    fn attach_metadata(&mut self, a: Attached) {
        self.gens = a.generations;
        self.bitmap = a.bitmap;
        self.al = ActivityLog::new(self.s.al_capacity, a.al_seq);
        self.disk = match (a.flags & FLAG_CONSISTENT != 0, a.flags & FLAG_OUTDATED != 0) {
            (true, false) => DiskState::UpToDate,
            (true, true) => DiskState::Outdated,
            (false, _) => DiskState::Inconsistent,
        };
        self.unconfirmed = self.disk == DiskState::UpToDate && a.flags & FLAG_PEER_OUTDATED == 0;
        if a.flags & FLAG_PEER_OUTDATED != 0 {
            // The peer confirmed its disk Outdated while this node was
            // Primary without it; true until they connect again.
            self.fence = fence::PeerFence::Outdated {
                generation: a.generations.current,
            };
            if !matches!(
                self.connection,
                Connection::Handshake | Connection::Connected
            ) {
                self.peer_disk = DiskState::Outdated;
            }
        }
        if a.flags & FLAG_PRIMARY != 0 {
            // Writes may have reached this disk and not the peer's: the
            // hot extents are resynced from here (or overwritten, if the
            // peer moved on).
            self.crashed_primary = true;
            for e in &a.al_extents {
                let (offset, len) = (e.0 * u64::from(AL_EXTENT), u64::from(AL_EXTENT));
                self.bitmap.mark(offset, len);
                // On disk soon: the log forgets these extents with the
                // next transactions, which wait for it, and a superblock
                // says Primary until then (`log_marks_pending`).
                self.bitmap_blocks_changed(offset, len, true);
            }
            self.al_recovered = !a.al_extents.is_empty();
        }
        // Bits may be set without a generation of their own (a crash
        // between the two writes); treat them as writes made alone.
        self.alone = !self.gens.bitmap.is_none();
        self.distrust_attached();
    }

    /// The daemon's record says the disk failed while attached here, in
    /// an earlier run: it is distrusted as if it failed in this one.
    pub fn distrust_disk(&mut self) {
        self.distrusted = true;
        self.distrust_attached();
    }

    /// Whether the disk failed here and has not been synced since (what
    /// the daemon keeps across restarts).
    pub fn disk_distrusted(&self) -> bool {
        self.distrusted
    }

    fn distrust_attached(&mut self) {
        if !self.distrusted || !self.has_disk() {
            return;
        }
        // The generations stay: they tell which peer can make it whole
        // (and a disk that was ahead is left to an administrator).
        self.disk = DiskState::Inconsistent;
        self.unconfirmed = false;
        self.bitmap.mark(0, self.s.size);
        self.bitmap_blocks_changed(0, self.s.size, false);
    }

    // ---- what the shell and the bus read ----

    pub fn role(&self) -> Role {
        self.role
    }
    pub fn peer_role(&self) -> Option<Role> {
        self.peer_role
    }
    pub fn connection(&self) -> Connection {
        self.connection
    }
    pub fn replication(&self) -> Replication {
        if self.sync_paused && self.syncing() {
            return Replication::PausedSync;
        }
        self.replication
    }
    pub fn disk(&self) -> DiskState {
        if self.unconfirmed && self.disk == DiskState::UpToDate {
            return DiskState::Consistent;
        }
        self.disk
    }
    pub fn peer_disk(&self) -> DiskState {
        self.peer_disk
    }
    pub fn generations(&self) -> Generations {
        self.gens
    }
    pub fn out_of_sync_bytes(&self) -> u64 {
        self.bitmap.dirty_bytes()
    }
    pub fn counters(&self) -> Counters {
        Counters {
            pending: self.seq_to_req.len() as u64,
            unacked: (self.peer_writes.len() + self.peer_flushes.len()) as u64,
            ..self.counters
        }
    }
    pub fn settings(&self) -> &Settings {
        &self.s
    }
    /// Fraction of the sync or verify done, while one runs.
    pub fn sync_progress(&self) -> Option<f64> {
        self.sync.progress(&self.replication)
    }
    /// Bytes a second over the last interval, while syncing.
    pub fn sync_speed(&self) -> Option<u64> {
        self.sync.speed(self.now)
    }
    /// The superblock flags this state implies.
    pub fn flags(&self) -> u32 {
        let mut f = 0;
        if matches!(self.disk, DiskState::UpToDate | DiskState::Outdated) {
            f |= FLAG_CONSISTENT;
        }
        if self.disk == DiskState::Outdated {
            f |= FLAG_OUTDATED;
        }
        if self.role == Role::Primary || self.log_marks_pending() || self.demote_flush.is_some() {
            f |= FLAG_PRIMARY;
        }
        if self.peer_known_outdated() {
            f |= FLAG_PEER_OUTDATED;
        }
        f
    }

    /// A crash as Primary left log extents marked in the bitmap, maybe not
    /// on disk yet: until they are, the superblock keeps saying Primary,
    /// so that a restart replays the log again.
    fn log_marks_pending(&self) -> bool {
        self.al_recovered || (self.al_guard.is_some() && !self.bitmap_durable(self.al_guard))
    }
    /// The shell should (keep) dialling or listening.
    pub fn wants_transport(&self) -> bool {
        self.connection == Connection::Connecting
    }

    /// When `Input::Tick` is next due.
    pub fn next_wakeup(&self) -> Option<Timestamp> {
        let mut t: Vec<Timestamp> = Vec::new();
        if matches!(
            self.connection,
            Connection::Handshake | Connection::Connected
        ) {
            t.push(self.last_recv + self.s.timeout);
            t.push(self.last_send + self.ping_interval());
        }
        if let Some(since) = self.bm.since {
            t.push(since + LAZY_BITMAP);
        }
        if self.barrier_due() {
            t.push(self.barrier_at.map_or(self.now, |at| at + BARRIER_GAP));
        }
        if let Some(at) = self.sync.budget_at(self.now) {
            t.push(at);
        }
        t.into_iter().min()
    }

    fn ping_interval(&self) -> Duration {
        (self.s.timeout / 4).max(Duration::from_millis(10))
    }

    // ---- events ----

    /// Feeds one event at `now`.
    pub fn on(&mut self, input: Input, now: Timestamp) -> Vec<Action> {
        self.now = now.max(self.now);
        let mut out = Vec::new();
        if self.al_recovered {
            // The log's extents marked at attach go to disk now.
            self.al_recovered = false;
            self.al_guard = self.marked_epoch(0, self.s.size, &mut out);
        }
        match input {
            Input::TransportUp => self.transport_up(&mut out),
            Input::TransportDown => self.transport_down(&mut out),
            Input::Received { msg, payload } => {
                self.last_recv = self.now;
                self.received(msg, payload, &mut out)
            }
            Input::Write {
                req,
                offset,
                len,
                fua,
            } => self.app_write(req, offset, len, fua, &mut out),
            Input::Read { req, offset, len } => self.app_read(req, offset, len, &mut out),
            Input::FlushReq { req } => self.app_flush(req, &mut out),
            Input::ReadDone { buf, ok, digest } => self.read_done(buf, ok, digest, &mut out),
            Input::Written { buf, ok } => self.written(buf, ok, &mut out),
            Input::FlushDone { token, ok } => self.flush_done(token, ok, &mut out),
            Input::MetaDone { token, ok } => self.meta_done(token, ok, &mut out),
            Input::Fence(f) => self.fence_input(f, &mut out),
            Input::Tick => {}
        }
        self.timers(&mut out);
        self.sync_pump(&mut out);
        out
    }

    fn timers(&mut self, out: &mut Vec<Action>) {
        if matches!(
            self.connection,
            Connection::Handshake | Connection::Connected
        ) {
            if self.now.since(self.last_recv) >= self.s.timeout {
                self.drop_transport("the peer was silent too long", out);
                return;
            }
            if self.now.since(self.last_send) >= self.ping_interval() {
                self.send(Msg::Ping, None, out);
            }
            self.send_barrier(out);
        }
        if self
            .bm
            .since
            .is_some_and(|s| self.now.since(s) >= LAZY_BITMAP)
        {
            self.flush_bitmap(out);
        }
    }

    fn received(&mut self, msg: Msg, payload: bool, out: &mut Vec<Action>) {
        match msg {
            Msg::Hello(p) => self.hello(p, true, out),
            Msg::Update { role, disk } => self.peer_update(role, disk, out),
            Msg::Bitmap {
                first_word,
                words,
                last,
            } => self.bitmap_chunk(first_word, &words, last, out),
            Msg::Data {
                seq,
                offset,
                len,
                fua,
            } => self.peer_data(seq, offset, len, fua, payload, out),
            Msg::Flush { seq } => self.peer_flush(seq, out),
            Msg::Ack { seq, kind, ok } => self.ack(seq, kind, ok, out),
            Msg::ResyncData { id, offset, len } => self.resync_data(id, offset, len, out),
            Msg::ResyncAck { id, ok } => self.resync_ack(id, ok, out),
            Msg::SyncDone { generations } => self.sync_done(generations, out),
            Msg::VerifyRequest {
                id,
                offset,
                len,
                digest,
            } => self.verify_request(id, offset, len, digest, out),
            Msg::VerifyReply { id, equal } => self.verify_reply(id, equal, out),
            Msg::VerifyDone => self.verify_done_peer(out),
            Msg::VerifyAsk { id, offset, len } => self.verify_ask(id, offset, len, out),
            Msg::ReadRequest { id, offset, len } => self.peer_read(id, offset, len, out),
            Msg::ReadReply { id, ok } => self.read_reply(id, ok, out),
            Msg::OutOfSync { offset, len } => {
                // Marked like a write made alone: a new generation and the
                // bitmap on disk, so a later sync gives the peer's disk
                // these blocks.
                if self.has_disk() {
                    self.mark_out_of_sync(offset, u64::from(len), out);
                }
            }
            Msg::InvalidateRemote => self.invalidated_by_peer(out),
            Msg::Ping => self.send(Msg::PingAck, None, out),
            Msg::PingAck => {}
        }
    }

    // ---- shared helpers ----

    fn send(&mut self, msg: Msg, payload: Option<Buf>, out: &mut Vec<Action>) {
        if !matches!(
            self.connection,
            Connection::Handshake | Connection::Connected
        ) {
            return;
        }
        self.last_send = self.now;
        out.push(Action::Send { msg, payload });
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn fresh_generation(&mut self) -> Generation {
        // SplitMix64: good enough to make two generations never collide.
        loop {
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            if z != 0 {
                return Generation(z);
            }
        }
    }

    /// Writes the superblock; data writes wait for it when `gate`.
    fn write_superblock(&mut self, gate: bool, out: &mut Vec<Action>) {
        // Waiting for the flush before a new generation (`writing_alone`):
        // the superblock written after it carries this state too, and one
        // written now would put the new generation on disk first. The
        // writes wait at that flush's gate meanwhile.
        if !self.has_disk() || self.alone_flush.is_some() {
            return;
        }
        let write = MetaWrite::Superblock {
            generations: self.gens,
            flags: self.flags(),
        };
        let token = self.superblock(write, out);
        if gate {
            self.gates.insert(token);
        }
    }

    /// Issues a superblock write, or queues it behind the one in flight:
    /// two in flight may land in either order, and the older state landing
    /// last would be what a restart reads (a crashed Primary taken for a
    /// Secondary, its activity log ignored). Queued writes merge: the
    /// newest state is written once, under the first queued token.
    fn superblock(&mut self, write: MetaWrite, out: &mut Vec<Action>) -> u64 {
        if self.sb.writing.is_none() {
            let token = self.token();
            self.sb.writing = Some(token);
            out.push(Action::Meta { token, write });
            return token;
        }
        let token = match &self.sb.next {
            Some((t, _)) => *t,
            None => self.token(),
        };
        self.sb.next = Some((token, write));
        token
    }

    /// A superblock write finished: the queued one goes.
    fn superblock_done(&mut self, token: u64, out: &mut Vec<Action>) {
        if self.sb.writing != Some(token) {
            return;
        }
        self.sb.writing = None;
        if let Some((next, write)) = self.sb.next.take() {
            self.sb.writing = Some(next);
            out.push(Action::Meta { token: next, write });
        }
    }

    fn has_disk(&self) -> bool {
        matches!(
            self.disk,
            DiskState::UpToDate | DiskState::Inconsistent | DiskState::Outdated
        )
    }

    fn state_changed(&mut self, out: &mut Vec<Action>) {
        out.push(Action::Event(Event::StateChanged));
    }

    fn my_state(&self) -> PeerState {
        PeerState {
            generations: self.gens,
            role: self.role,
            disk: self.disk,
            size: self.s.size,
            granularity: self.s.granularity,
            dirty_blocks: self.bitmap.dirty_blocks(),
            primary_since: self.primary_since,
            discard_my_data: self.discard_my_data,
            crashed_primary: self.crashed_primary,
        }
    }

    fn send_update(&mut self, out: &mut Vec<Action>) {
        if self.connection == Connection::Connected {
            let (role, disk) = (self.role, self.disk);
            self.send(Msg::Update { role, disk }, None, out);
        }
    }

    /// The first write this side makes without the peer's disk starts a
    /// new generation, on disk before the write. The writes made with the
    /// peer are flushed first: they may be only in this disk's volatile
    /// cache, and a power cut after the new generation is on disk would
    /// make this copy the newer one, whose hot extents then overwrite the
    /// peer's (which had them) with what the cut left (simulation seed
    /// 1382). Data writes wait for both.
    fn writing_alone(&mut self, out: &mut Vec<Action>) {
        if self.alone {
            return;
        }
        self.alone = true;
        let fresh = self.fresh_generation();
        self.gens.new_generation(fresh);
        if !self.has_disk() {
            return;
        }
        // Once more before the last flush ended (the pair met and parted
        // again): this newer flush covers the writes since, and the
        // superblock waits for it instead.
        let token = self.token();
        self.gates.insert(token);
        if let Some(old) = self.alone_flush.replace(token) {
            self.gates.remove(&old);
        }
        out.push(Action::Flush { token });
    }

    /// The flush before a new generation: its superblock goes now (and
    /// gates the writes in its turn). True if it was that flush.
    fn alone_flushed(&mut self, token: u64, out: &mut Vec<Action>) -> bool {
        if self.alone_flush != Some(token) {
            return false;
        }
        self.alone_flush = None;
        self.write_superblock(true, out);
        self.outdate_persisted(out);
        self.ungate(token, out);
        true
    }

    /// Marks blocks the peer lacks; returns the bitmap epoch that makes
    /// the mark durable (a write waits for it) unless it is already.
    fn mark_out_of_sync(&mut self, offset: u64, len: u64, out: &mut Vec<Action>) -> Option<u64> {
        // A write the peer lacks starts a generation even on blocks marked
        // before (a crashed Primary's hot extents): else a peer that moved
        // on would sync over it, a split brain unseen.
        self.writing_alone(out);
        let before = self.bitmap.dirty_blocks();
        self.bitmap.mark(offset, len);
        if self.bitmap.dirty_blocks() != before {
            self.bitmap_blocks_changed(offset, len, true);
            let epoch = self.bm.epoch + 1;
            self.flush_bitmap(out);
            return Some(epoch);
        }
        self.marked_epoch(offset, len, out)
    }

    /// Bits set before may not be on disk yet (their block waits to be
    /// written, or is being written): the epoch that makes them durable,
    /// now urgent.
    fn marked_epoch(&mut self, offset: u64, len: u64, out: &mut Vec<Action>) -> Option<u64> {
        let (first, last) = self.bitmap_block_range(offset, len);
        let mut waiting = false;
        for (_, urgent) in self.bm.dirty.range_mut(first..=last) {
            *urgent = true;
            waiting = true;
        }
        if waiting {
            let epoch = self.bm.epoch + 1;
            self.flush_bitmap(out);
            return Some(epoch);
        }
        // Perhaps in the flush that runs (its blocks are not kept).
        self.bm.flushing.as_ref().map(|(epoch, _)| *epoch)
    }

    /// The bitmap blocks (of `WORDS_PER_BLOCK` words) a byte range's bits
    /// are in.
    fn bitmap_block_range(&self, offset: u64, len: u64) -> (u64, u64) {
        let g = u64::from(self.s.granularity);
        let first = offset / g / 64 / WORDS_PER_BLOCK;
        let last =
            offset.saturating_add(len.max(1) - 1).min(self.s.size) / g / 64 / WORDS_PER_BLOCK;
        (first, last)
    }

    fn bitmap_blocks_changed(&mut self, offset: u64, len: u64, urgent: bool) {
        let (first, last) = self.bitmap_block_range(offset, len);
        for b in first..=last {
            let e = self.bm.dirty.entry(b).or_insert(false);
            *e |= urgent;
        }
        if self.bm.since.is_none() {
            self.bm.since = Some(self.now);
        }
    }

    /// Starts writing the changed bitmap blocks unless a flush runs.
    fn flush_bitmap(&mut self, out: &mut Vec<Action>) {
        if self.bm.flushing.is_some() || self.bm.dirty.is_empty() || !self.has_disk() {
            return;
        }
        let words = self.bitmap.to_words();
        let blocks: Vec<u64> = std::mem::take(&mut self.bm.dirty).into_keys().collect();
        self.bm.since = None;
        self.bm.epoch += 1;
        let mut tokens = BTreeSet::new();
        let mut writes = Vec::new();
        for b in blocks {
            let first = b * WORDS_PER_BLOCK;
            let end = (first + WORDS_PER_BLOCK).min(words.len() as u64);
            if first >= end {
                continue;
            }
            let token = self.token();
            tokens.insert(token);
            self.counters.bitmap_writes += 1;
            writes.push(Action::Meta {
                token,
                write: MetaWrite::Bitmap {
                    first_word: first,
                    words: words[first as usize..end as usize].to_vec(),
                },
            });
        }
        if tokens.is_empty() {
            self.bm.done_epoch = self.bm.epoch;
            return;
        }
        self.bm.flushing = Some((self.bm.epoch, tokens));
        if self.replication == Replication::SyncTarget || self.bm.synced_unflushed {
            // Bits cleared for synced blocks must not reach the disk before
            // those blocks do: they may still be in its volatile cache, and
            // after a power cut only the bits would say they need a sync.
            // Also once the sync broke: the bits wait for their lazy write.
            self.bm.synced_unflushed = false;
            let token = self.token();
            self.bm.preflush = Some((token, writes));
            out.push(Action::Flush { token });
        } else {
            out.extend(writes);
        }
    }

    /// A flush finished: bitmap blocks waiting for it are written.
    fn bitmap_preflushed(&mut self, token: u64, out: &mut Vec<Action>) -> bool {
        if self.bm.preflush.as_ref().is_none_or(|(t, _)| *t != token) {
            return false;
        }
        if let Some((_, writes)) = self.bm.preflush.take() {
            out.extend(writes);
        }
        true
    }

    fn bitmap_durable(&self, epoch: Option<u64>) -> bool {
        self.failing.is_none() && epoch.is_none_or(|e| self.bm.done_epoch >= e)
    }

    fn meta_done(&mut self, token: u64, ok: bool, out: &mut Vec<Action>) {
        if !ok {
            self.disk_failed(out);
        }
        self.superblock_done(token, out);
        if self.failing_bitmap.remove(&token) && self.failing_bitmap.is_empty() {
            self.write_failed_superblock(out);
        }
        if self.failing == Some(token) {
            self.failing = None;
            self.bitmap_durable_now(out);
        }
        self.ungate(token, out);
        let flushed = self.bm.flushing.as_mut().and_then(|(epoch, tokens)| {
            (tokens.remove(&token) && tokens.is_empty()).then_some(*epoch)
        });
        if let Some(epoch) = flushed {
            self.bm.done_epoch = epoch;
            self.bm.flushing = None;
            self.bitmap_durable_now(out);
            if self.bm.dirty.values().any(|urgent| *urgent) {
                self.flush_bitmap(out);
            }
        }
        self.al_logged(token, out);
        self.outdate_persisted(out);
    }

    /// A gate's write or flush is done: the operations it held run once
    /// no gate is left.
    fn ungate(&mut self, token: u64, out: &mut Vec<Action>) {
        if self.gates.remove(&token) && self.gates.is_empty() {
            for buf in std::mem::take(&mut self.gated) {
                self.start_op(buf, out);
            }
        }
    }

    /// Runs an operation the conflict queue released, unless metadata it
    /// depends on is still being written.
    fn start_op(&mut self, buf: Buf, out: &mut Vec<Action>) {
        if !self.gates.is_empty() {
            self.gated.push(buf);
            return;
        }
        match buf {
            Buf::App(req) => self.app_free(req, out),
            Buf::Peer(seq) => self.peer_start(seq, out),
            Buf::ResyncOut(id) => self.resync_read_start(id, out),
            Buf::ResyncIn(id) => self.resync_write_start(id, out),
            Buf::Verify(id) => self.verify_read_start(id, out),
            Buf::PeerRead(_) => {}
        }
    }

    fn queue_op(&mut self, buf: Buf, offset: u64, len: u32, out: &mut Vec<Action>) {
        if self.conflicts.push(buf, offset, len) {
            self.start_op(buf, out);
        }
    }

    fn finish_op(&mut self, buf: Buf, out: &mut Vec<Action>) {
        for next in self.conflicts.finish(buf) {
            self.start_op(next, out);
        }
    }

    /// A disk I/O error: detach (go Diskless) unless configured to pass
    /// errors on.
    fn disk_failed(&mut self, out: &mut Vec<Action>) {
        if !self.s.detach_on_error || !self.has_disk() {
            return;
        }
        self.disk = DiskState::Failed;
        self.distrusted = true;
        out.push(Action::Event(Event::DiskFailed));
        // Whatever this disk still holds is not to be trusted: its metadata
        // (best effort: the disk is failing) says Inconsistent with every
        // block out of sync, keeping the generations, so attaching it
        // again means a full sync from an UpToDate peer, and a disk that
        // was ahead of its peer is left to an administrator. Answers wait
        // for the superblock.
        self.bitmap.mark(0, self.s.size);
        let words = self.bitmap.to_words();
        let mut pending = BTreeSet::new();
        for (i, chunk) in words.chunks(WORDS_PER_BLOCK as usize).enumerate() {
            let token = self.token();
            pending.insert(token);
            out.push(Action::Meta {
                token,
                write: MetaWrite::Bitmap {
                    first_word: i as u64 * WORDS_PER_BLOCK,
                    words: chunk.to_vec(),
                },
            });
        }
        // The superblock follows once the bitmap is on disk: Inconsistent
        // with a partly written bitmap would resync too little.
        let token = self.token();
        self.failing = Some(token);
        self.failing_bitmap = pending;
        // The failed disk's superblock is the last one: none queued before
        // it may follow.
        self.sb.next = None;
        if self.failing_bitmap.is_empty() {
            self.write_failed_superblock(out);
        }
        self.disk = DiskState::Diskless;
        self.gates.clear();
        // The epochs start over (and this disk no longer matters).
        self.al_guard = None;
        self.bm = BitmapPersist::default();
        if self.syncing() {
            self.fail_resync_acks(out);
            self.sync = sync::SyncState::default();
            self.replication = Replication::Established;
        }
        for buf in std::mem::take(&mut self.gated) {
            self.start_op(buf, out);
        }
        self.send_update(out);
        self.state_changed(out);
    }

    fn write_failed_superblock(&mut self, out: &mut Vec<Action>) {
        let Some(token) = self.failing else {
            return;
        };
        let write = MetaWrite::Superblock {
            generations: self.gens,
            flags: 0,
        };
        // Behind one in flight, as any superblock (under its own token:
        // answers wait for that one).
        if self.sb.writing.is_some() {
            self.sb.next = Some((token, write));
        } else {
            self.sb.writing = Some(token);
            out.push(Action::Meta { token, write });
        }
    }

    /// A sync or verify runs.
    fn syncing(&self) -> bool {
        !matches!(
            self.replication,
            Replication::Off | Replication::Established
        )
    }

    fn drop_transport(&mut self, reason: &str, out: &mut Vec<Action>) {
        out.push(Action::Drop {
            reason: reason.to_string(),
        });
        self.transport_down(out);
    }

    /// Stops trying to connect (split brain, unrelated data, refusal).
    fn refuse(&mut self, reason: String, out: &mut Vec<Action>) {
        out.push(Action::Event(Event::Refused {
            reason: reason.clone(),
        }));
        self.drop_transport(&reason, out);
        self.connection = Connection::StandAlone;
        self.state_changed(out);
    }
}

#[cfg(test)]
#[path = "../core_tests.rs"]
mod tests;
