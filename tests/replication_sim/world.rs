//! A simulated world for two replica cores: disks with a volatile write
//! cache, metadata areas, a TCP link that delivers in order until it
//! breaks, and a client on the primary whose writes are stamped so any
//! sector tells which write put it.
//!
//! The disk model. Each node has a durable image (what is on the media
//! for sure) and a cache of data writes that completed but are not yet
//! durable, in completion order; `disk` is what reads see, the durable
//! image with the cache over it.
//! - A completed `Flush` makes durable every write that completed before
//!   the flush was issued, which is all the core can know of (a write
//!   completing while the flush runs stays in the cache).
//! - A write with `fua` is durable when it completes, itself only (NBD's
//!   FUA; the earlier writes to the same sectors can no longer come back).
//! - Metadata writes are durable when `MetaDone` arrives (the shell syncs
//!   after each one). They do not make data durable: the daemon's shell
//!   syncs its one file after a metadata write, but the block may reach
//!   the media before the data written earlier does, so the core asks for
//!   a `Flush` first where a metadata write depends on data (DRBD's
//!   PREFLUSH).
//! - A crash of the daemon (`crash`) loses nothing that completed: the
//!   machine's cache survives. What was in flight lands or not by chance.
//! - A power cut (`power_cut`) loses the cache: each cached write, and each
//!   write in flight, survives whole, not at all, or sector by sector
//!   (disks promise only sectors to be atomic). Survivors land in
//!   completion order, so for any sector the result is its durable value or
//!   any one of its cached versions, and a later version that survives is
//!   never undone by an earlier one: a disk's cache writes each sector's
//!   versions back in order, and the power cut stops it anywhere. Metadata
//!   writes in flight land or not; a bitmap block may tear at a sector
//!   (superblock and activity log blocks are checksummed and slotted, so a
//!   torn one reads as the previous one: not landed).
//!
//! - A disk that dies (`disk_dies`, half of the failures when
//!   `disk_deaths` is on) loses its cache, as a page cache whose writeback
//!   fails, and fails every request, metadata writes too, until the heal.
//!
//! The membership. Heartbeats travel apart from the replication link (on
//! another link, as in the daemon): every `HEARTBEAT_US` each running node
//! hears what the other announced, unless `membership_ok` is false (a full
//! partition) or the other is down, and counts the other alive until
//! `DEADTIME_US` after it last heard it. Each round runs the daemon's
//! fencing relay (`duet::replication::fence`) for both nodes.
//!
//! The oracle. `acked` is, per sector, the newest acknowledged write the
//! client may expect to read back; `flushed[n]` the newest write node `n`
//! must hold durably because the client was told so (a flush or FUA write
//! answered while `n` held the write). Both are lowered when a promotion
//! makes a node's data the truth that was allowed to lose writes (see
//! `rebase`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use duet::membership::fence_records::FenceNote;
use duet::replication::activity_log::Extent;
use duet::replication::bitmap::DirtyBitmap;
use duet::replication::core::FenceStatus;
use duet::replication::core::{
    AckKind, Action, Attached, Buf, Event, Fencing, Input, MetaWrite, Msg, Protocol, Replica,
    ReqId, Settings,
};
use duet::replication::fence as relay;
use duet::replication::generation::Generations;
use duet::replication::split_brain::Policies;
use duet::replication::states::{Connection, DiskState, Replication, Role};
use duet::testkit::SplitMix64;
use duet::types::{NodeId, Timestamp};

pub const SIZE: u64 = 16 << 20;
pub const SECTOR: u64 = 512;
const SECTORS: usize = (SIZE / SECTOR) as usize;
const GRAN: u32 = 4096;
/// Bitmap words in one 512-byte sector: what a torn bitmap write keeps
/// or loses together.
const WORDS_PER_SECTOR: usize = 64;
/// How often heartbeats go, and how long a silent node counts alive: the
/// daemon's keepalive and deadtime, scaled like the link's timeout.
const HEARTBEAT_US: u64 = 2_000;
const DEADTIME_US: u64 = 300_000;
const REPLICA: &str = "r0";

#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub gens: Generations,
    pub flags: u32,
    pub bitmap: Vec<u64>,
    pub al: Vec<Extent>,
    pub al_seq: u64,
}

pub struct Node {
    pub r: Option<Replica>,
    /// The daemon's record that the disk failed and was not synced since
    /// (kept across restarts, as in its state directory).
    distrusted: bool,
    /// What reads see: the durable image with the cache over it.
    pub disk: Vec<u8>,
    /// What the media holds for sure: all a power cut leaves.
    pub durable: Vec<u8>,
    /// Completed data writes not yet durable, in completion order.
    cache: Vec<Cached>,
    /// Data writes completed so far: a flush covers those before it.
    completed: u64,
    /// The metadata (durable: metadata writes are synced).
    pub meta: Meta,
    bufs: HashMap<Buf, Vec<u8>>,
    /// Bumped on crash: completions of an older run are void.
    run: u64,
    /// I/O in flight (token -> what), for a crash to land or lose.
    inflight: BTreeMap<u64, Pending>,
    next_io: u64,
}

/// A completed write in the disk's cache.
struct Cached {
    /// Its number among the node's completed writes.
    n: u64,
    offset: u64,
    data: Vec<u8>,
    /// Per sector: false once a later durable write superseded it.
    live: Vec<bool>,
}

#[derive(Clone)]
enum Pending {
    Data {
        offset: u64,
        data: Vec<u8>,
        fua: bool,
    },
    Meta(MetaWrite),
    /// With the number of data writes completed when it was issued.
    Flush(u64),
}

enum Ev {
    Io {
        node: usize,
        run: u64,
        io: u64,
        input: Input,
    },
    Deliver {
        to: usize,
        conn: u64,
        msg: Msg,
        payload: Option<Vec<u8>>,
    },
    Down {
        node: usize,
        run: u64,
    },
    Up {
        node: usize,
        conn: u64,
    },
    /// A round of heartbeats, and the fencing relay on both nodes.
    Heartbeat,
}

/// Something a node was told it holds, not yet covered by a flush there.
enum Held {
    Write {
        stamp: u64,
        offset: u64,
        len: u32,
        id: u64,
    },
    /// Every sector, as `acked` was (a sync made the node whole).
    All { stamp: u64, ids: Rc<Vec<u64>> },
}

impl Held {
    fn stamp(&self) -> u64 {
        match self {
            Held::Write { stamp, .. } | Held::All { stamp, .. } => *stamp,
        }
    }
}

/// What the client was promised about one node's disk.
pub struct Promise {
    /// Per sector, the newest write this node holds (in its cache at
    /// least): its own acknowledged writes while Primary, the writes its
    /// peer heard it confirm as written while Secondary.
    pub holds: Vec<u64>,
    /// Per sector, the newest write this node holds durably: covered by a
    /// flush or FUA write answered to the client while it held it.
    pub flushed: Vec<u64>,
    /// Held since, in order, until a flush on this node covers them.
    log: Vec<Held>,
    /// A power cut since the pair was last in sync: only `flushed` is left.
    pub power_cut: bool,
    /// A crash of the daemon since the pair was last in sync: writes it
    /// had received and not yet written are gone (protocol B's risk).
    pub crashed: bool,
}

impl Promise {
    fn new() -> Promise {
        Promise {
            holds: vec![0; SECTORS],
            flushed: vec![0; SECTORS],
            log: Vec::new(),
            power_cut: false,
            crashed: false,
        }
    }
}

pub struct World {
    pub rng: SplitMix64,
    pub now: u64,
    pub nodes: [Node; 2],
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: HashMap<u64, Ev>,
    next_ev: u64,
    /// Current connection: its number, and whether each side got Up.
    pub conn: Option<u64>,
    conn_seq: u64,
    /// Down not yet delivered per node (no new connection before).
    down_pending: [bool; 2],
    pub link_ok: bool,
    last_delivery: [u64; 2],
    pub settings: Settings,
    tune: fn(&mut Settings),
    /// State changes are kept in `events_seen` too (a trace's reader
    /// wants them; the checks do not).
    pub trace_states: bool,
    // The client and its oracle.
    next_write: u64,
    pub outstanding: HashMap<(usize, u64), ClientOp>,
    /// Per sector: the newest acknowledged write's id (lowered when a
    /// promotion legitimately lost writes: see `rebase`).
    pub acked: Vec<u64>,
    pub acked_writes: u64,
    pub promise: [Promise; 2],
    stamp: u64,
    /// The primary's mirrored writes by (node, sequence): which write a
    /// peer's acknowledgement confirms.
    mirrored: HashMap<(usize, u64), (u64, u64, u32)>,
    pub power_cuts: u64,
    /// A write was answered while the node saw no peer (it started a
    /// generation of its own), since the last reunion.
    pub wrote_apart: [bool; 2],
    /// Handshakes each node completed (connected with replication on),
    /// and whether it is so now.
    pub reunions: [u64; 2],
    connected: [bool; 2],
    pub events_seen: Vec<(usize, Event)>,
    pub violations: Vec<String>,
    pending_reads: HashMap<(usize, Buf), (u64, u64)>,
    /// Off where failovers during partitions (or an administrator's
    /// forced pick) may legitimately lose writes: reads and durability
    /// are not checked then.
    pub check_data: bool,
    /// Nodes that hold every acknowledged write, as the primary knows it:
    /// a write answered while the primary did not see its peer connected
    /// with an UpToDate disk leaves the peer behind.
    pub latest: [bool; 2],
    /// Data reads and writes of `failing_node` that fail, per mille (one
    /// disk goes bad; two at once would lose data whatever duet did).
    pub error_rate: u64,
    pub failing_node: usize,
    pub disk_failures: u64,
    /// Whether a failure may kill the disk (`disk_dies`) rather than fail
    /// one request, and the disks dead until `revive_disks`.
    pub disk_deaths: bool,
    pub dead: [bool; 2],
    pub deaths: u64,
    /// Heartbeats flow (false: a full partition, or both links cut).
    pub membership_ok: bool,
    /// When each node last heard the other.
    heard_at: [Option<u64>; 2],
    /// What each node last heard the other announce (its membership's
    /// memory of the peer's record 5), and what each announces now.
    heard: [Vec<FenceNote>; 2],
    announced: [Vec<FenceNote>; 2],
    /// The relay had node `n` outdate its disk, and it confirmed so; until
    /// it is UpToDate again, connected.
    pub outdated_by_relay: [bool; 2],
    /// Writes answered while fencing, its way through (counted to check
    /// that the campaigns go through it).
    pub fenced_answers: u64,
}

#[derive(Debug, Clone)]
pub enum ClientOp {
    Write {
        offset: u64,
        len: u32,
        fua: bool,
        /// The connection, and whether the peer was in sync, when sent.
        conn: Option<u64>,
        in_sync: bool,
    },
    Read {
        offset: u64,
        len: u32,
        floor: Vec<u64>,
    },
    Flush {
        /// What the nodes held when it was sent is what it covers.
        stamp: u64,
        conn: Option<u64>,
        in_sync: bool,
    },
}

/// A replica's role, connection, replication, disk and peer disk.
pub type ReplicaState = (Role, Connection, Replication, DiskState, DiskState);

pub fn settings(local: u16, protocol: Protocol) -> Settings {
    Settings {
        local: NodeId(local),
        peer: NodeId(1 - local),
        local_name: format!("node{}", local + 1),
        peer_name: format!("node{}", 2 - local),
        protocol,
        fencing: Fencing::ResourceOnly,
        policies: Policies::default(),
        detach_on_error: true,
        size: SIZE,
        granularity: GRAN,
        timeout: Duration::from_millis(500),
        rate_min: 50 << 20,
        rate_max: 2 << 30,
        fill_target: 1 << 20,
        al_capacity: 2,
    }
}

/// A write's data: each sector holds (write id, sector number), repeated.
fn stamp(write: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    for (s, sec) in v.chunks_mut(SECTOR as usize).enumerate() {
        let sector = offset / SECTOR + s as u64;
        sec[..8].copy_from_slice(&write.to_le_bytes());
        sec[8..16].copy_from_slice(&sector.to_le_bytes());
        // Doubling copies: few calls (the tests run unoptimized).
        let mut filled = 16;
        while filled < sec.len() {
            let n = filled.min(sec.len() - filled);
            sec.copy_within(..n, filled);
            filled += n;
        }
    }
    v
}

/// The write id a sector holds (0: never written).
pub fn sector_id(disk: &[u8], sector: u64) -> u64 {
    let at = (sector * SECTOR) as usize;
    let mut b = [0u8; 8];
    b.copy_from_slice(&disk[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Copies the sectors of `data` for which `live` holds to `to` at
/// `offset`, in runs (one copy for a whole write, the common case).
fn copy_live(to: &mut [u8], offset: u64, data: &[u8], live: impl Fn(usize) -> bool) {
    let n = data.len() / SECTOR as usize;
    let mut i = 0;
    while i < n {
        if !live(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < n && live(i) {
            i += 1;
        }
        let (a, b) = (start * SECTOR as usize, i * SECTOR as usize);
        let at = offset as usize;
        to[at + a..at + b].copy_from_slice(&data[a..b]);
    }
}

fn sectors(offset: u64, len: u64) -> std::ops::Range<usize> {
    (offset / SECTOR) as usize..((offset + len) / SECTOR) as usize
}

impl World {
    /// A world whose replicas' settings `tune` changes (rates, say).
    pub fn tuned(seed: u64, protocol: Protocol, tune: fn(&mut Settings)) -> World {
        let tuned = |i: u16| {
            let mut s = settings(i, protocol);
            tune(&mut s);
            s
        };
        let node = |i: u16| Node {
            distrusted: false,
            r: Some(Replica::new(
                tuned(i),
                Some(attached(&Meta::default())),
                seed ^ u64::from(i + 1),
            )),
            disk: vec![0; SIZE as usize],
            durable: vec![0; SIZE as usize],
            cache: Vec::new(),
            completed: 0,
            meta: Meta::default(),
            bufs: HashMap::new(),
            run: 0,
            inflight: BTreeMap::new(),
            next_io: 0,
        };
        let mut w = World {
            rng: SplitMix64(seed),
            now: 0,
            nodes: [node(0), node(1)],
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_ev: 0,
            conn: None,
            conn_seq: 0,
            down_pending: [false; 2],
            link_ok: true,
            last_delivery: [0; 2],
            settings: settings(0, protocol),
            tune,
            trace_states: false,
            next_write: 1,
            outstanding: HashMap::new(),
            acked: vec![0; SECTORS],
            acked_writes: 0,
            promise: [Promise::new(), Promise::new()],
            stamp: 0,
            mirrored: HashMap::new(),
            power_cuts: 0,
            wrote_apart: [false; 2],
            reunions: [0; 2],
            connected: [false; 2],
            events_seen: Vec::new(),
            violations: Vec::new(),
            pending_reads: HashMap::new(),
            check_data: true,
            latest: [true, false],
            error_rate: 0,
            failing_node: 0,
            disk_failures: 0,
            disk_deaths: false,
            dead: [false; 2],
            deaths: 0,
            membership_ok: true,
            heard_at: [Some(0); 2],
            heard: Default::default(),
            announced: Default::default(),
            outdated_by_relay: [false; 2],
            fenced_answers: 0,
        };
        w.at(HEARTBEAT_US, Ev::Heartbeat);
        w
    }

    /// Node `n` counts its peer alive: heard within the deadtime.
    pub fn peer_alive(&self, n: usize) -> bool {
        self.heard_at[n].is_some_and(|t| self.now.saturating_sub(t) < DEADTIME_US)
    }

    /// A round of heartbeats: each running node hears the other (if it
    /// runs and the membership is not cut), then its relay feeds its core
    /// and says what it announces from now on.
    fn heartbeat(&mut self) {
        for n in 0..2 {
            let m = 1 - n;
            if self.membership_ok && self.nodes[m].r.is_some() {
                self.heard_at[n] = Some(self.now);
                self.heard[n] = self.announced[m].clone();
            }
        }
        for n in 0..2 {
            let Some(r) = self.nodes[n].r.as_ref() else {
                continue;
            };
            let heard = relay::about(&self.heard[n], REPLICA);
            let alive = self.peer_alive(n);
            for input in relay::inputs(&r.fence_view(), &heard, alive) {
                self.feed(n, Input::Fence(input));
            }
            let Some(r) = self.nodes[n].r.as_ref() else {
                continue;
            };
            let view = r.fence_view();
            if view
                .answer
                .is_some_and(|(_, a)| a == duet::replication::core::Answer::Outdated)
                && heard
                    .iter()
                    .any(|h| Some(h.generation) == view.answer.map(|a| a.0.0))
            {
                self.outdated_by_relay[n] = true;
            }
            self.announced[n] = relay::notes(REPLICA, &view, &heard);
        }
        self.at(HEARTBEAT_US, Ev::Heartbeat);
    }

    pub fn t(&self) -> Timestamp {
        Timestamp(Duration::from_micros(self.now))
    }

    fn at(&mut self, delay_us: u64, ev: Ev) {
        self.next_ev += 1;
        self.queue
            .push(Reverse((self.now + delay_us, self.next_ev)));
        self.events.insert(self.next_ev, ev);
    }

    pub fn replica(&self, n: usize) -> Option<&Replica> {
        self.nodes[n].r.as_ref()
    }

    /// Runs an admin call's result or an input's actions.
    pub fn feed(&mut self, n: usize, input: Input) {
        let t = self.t();
        let Some(r) = self.nodes[n].r.as_mut() else {
            return;
        };
        let actions = r.on(input, t);
        self.apply(n, actions);
    }

    pub fn apply(&mut self, n: usize, actions: Vec<Action>) {
        for a in actions {
            self.action(n, a);
        }
        // The daemon keeps this record in its state directory.
        if let Some(r) = &self.nodes[n].r {
            self.nodes[n].distrusted = r.disk_distrusted();
            // Counted at each step of the core: a checker that samples
            // between steps misses a reconnection within one.
            let connected =
                r.connection() == Connection::Connected && r.replication() != Replication::Off;
            if connected && !self.connected[n] {
                self.reunions[n] += 1;
            }
            self.connected[n] = connected;
            // Whole again (at once: a crash may follow before the next
            // heartbeat round): connected with an UpToDate disk.
            if r.connection() == Connection::Connected && r.disk() == DiskState::UpToDate {
                self.outdated_by_relay[n] = false;
            }
        }
    }

    fn io(&mut self, n: usize, input: Input, pending: Option<Pending>) {
        let node = &mut self.nodes[n];
        node.next_io += 1;
        let io = node.next_io;
        if let Some(p) = pending {
            node.inflight.insert(io, p);
        }
        let run = node.run;
        let d = 50 + self.rng.below(400);
        self.at(
            d,
            Ev::Io {
                node: n,
                run,
                io,
                input,
            },
        );
    }

    fn action(&mut self, n: usize, a: Action) {
        if std::env::var("SIMTRACE").is_ok()
            && !matches!(
                a,
                Action::Send {
                    msg: Msg::Ping | Msg::PingAck | Msg::Bitmap { .. },
                    ..
                }
            )
        {
            eprintln!("{} node{n} {:?}", self.now, a);
        }
        match a {
            Action::Read { buf, offset, len } => {
                // Read at completion time: the data then is what is read.
                self.pending_reads
                    .insert((n, buf), (offset, u64::from(len)));
                self.io(
                    n,
                    Input::ReadDone {
                        buf,
                        ok: true,
                        digest: 0,
                    },
                    None,
                )
            }
            Action::Write {
                buf,
                offset,
                len,
                fua,
            } => {
                let data = self.nodes[n].bufs.get(&buf).cloned();
                match data {
                    Some(data) if data.len() == len as usize => self.io(
                        n,
                        Input::Written { buf, ok: true },
                        Some(Pending::Data { offset, data, fua }),
                    ),
                    _ => self
                        .violations
                        .push(format!("node{n}: write of {buf:?} without its data")),
                }
            }
            Action::Flush { token } => {
                let before = self.nodes[n].completed;
                self.io(
                    n,
                    Input::FlushDone { token, ok: true },
                    Some(Pending::Flush(before)),
                )
            }
            Action::Meta { token, write } => self.io(
                n,
                Input::MetaDone { token, ok: true },
                Some(Pending::Meta(write)),
            ),
            Action::Send { msg, payload } => {
                if let (
                    Msg::Data {
                        seq, offset, len, ..
                    },
                    Some(Buf::App(req)),
                ) = (&msg, payload)
                {
                    self.mirrored.insert((n, *seq), (req.0, *offset, *len));
                }
                self.send(n, msg, payload)
            }
            Action::Release(buf) => {
                self.nodes[n].bufs.remove(&buf);
            }
            Action::Complete { req, ok } => self.complete(n, req, ok),
            Action::Drop { .. } => self.cut(),
            Action::Event(e) => {
                if e == Event::DiskFailed {
                    self.disk_failures += 1;
                }
                if e != Event::StateChanged || self.trace_states {
                    self.events_seen.push((n, e));
                }
            }
        }
    }

    fn send(&mut self, n: usize, msg: Msg, payload: Option<Buf>) {
        let Some(conn) = self.conn else { return };
        let data = match payload {
            Some(b) => match self.nodes[n].bufs.get(&b) {
                Some(d) => Some(d.clone()),
                None => {
                    self.violations
                        .push(format!("node{n}: sends {msg:?} without its buffer"));
                    return;
                }
            },
            None => None,
        };
        let to = 1 - n;
        let when = (self.now + 30 + self.rng.below(200)).max(self.last_delivery[to]);
        self.last_delivery[to] = when;
        let delay = when - self.now;
        self.at(
            delay,
            Ev::Deliver {
                to,
                conn,
                msg,
                payload: data,
            },
        );
    }

    /// Breaks the connection; each side hears of it a little later.
    pub fn cut(&mut self) {
        if self.conn.take().is_none() {
            return;
        }
        for n in 0..2 {
            self.down_pending[n] = true;
            let run = self.nodes[n].run;
            let d = 10 + self.rng.below(300);
            self.at(d, Ev::Down { node: n, run });
        }
    }

    /// Node `n` is Primary and sees its peer connected with an UpToDate
    /// disk taking its writes.
    fn peer_in_sync(&self, n: usize) -> bool {
        self.replica(n).is_some_and(|r| {
            r.connection() == Connection::Connected
                && matches!(
                    r.replication(),
                    Replication::Established | Replication::SyncSource
                )
                && r.peer_disk() == DiskState::UpToDate
        })
    }

    fn up_to_date(&self, n: usize) -> bool {
        self.replica(n)
            .is_some_and(|r| r.disk() == DiskState::UpToDate)
    }

    /// Node `m` holds write `id` (in its cache at least).
    fn holds(&mut self, m: usize, offset: u64, len: u32, id: u64) {
        for s in sectors(offset, u64::from(len)) {
            let h = &mut self.promise[m].holds[s];
            *h = (*h).max(id);
        }
    }

    /// Node `m` held write `id` when the client was answered: a flush on
    /// `m` sent later covers it.
    fn held(&mut self, m: usize, offset: u64, len: u32, id: u64) {
        self.stamp += 1;
        let stamp = self.stamp;
        self.promise[m].log.push(Held::Write {
            stamp,
            offset,
            len,
            id,
        });
    }

    /// The client was told write `id` is durable on node `m`: it must be on
    /// `m`'s media now.
    fn durable_now(&mut self, m: usize, offset: u64, len: u32, id: u64) {
        for s in sectors(offset, u64::from(len)) {
            self.durable_sector(m, s, id);
        }
    }

    fn durable_sector(&mut self, m: usize, s: usize, id: u64) {
        let f = &mut self.promise[m].flushed[s];
        *f = (*f).max(id);
        let have = sector_id(&self.nodes[m].durable, s as u64);
        if self.check_data && have < id {
            self.violations.push(format!(
                "node{}: write {id} on sector {s} was answered as durable there, but its media has {have}",
                m + 1
            ));
        }
    }

    /// A flush sent at `stamp` was answered and covered node `m`.
    fn covered(&mut self, m: usize, stamp: u64) {
        let log = &mut self.promise[m].log;
        let upto = log.iter().take_while(|h| h.stamp() <= stamp).count();
        let done: Vec<Held> = log.drain(..upto).collect();
        for h in done {
            match h {
                Held::Write {
                    offset, len, id, ..
                } => self.durable_now(m, offset, len, id),
                Held::All { ids, .. } => {
                    for (s, id) in ids.iter().enumerate() {
                        if *id > self.promise[m].flushed[s] {
                            self.durable_sector(m, s, *id);
                        }
                    }
                }
            }
        }
    }

    fn complete(&mut self, n: usize, req: ReqId, ok: bool) {
        let Some(op) = self.outstanding.remove(&(n, req.0)) else {
            self.violations
                .push(format!("node{n}: answer to unknown request {}", req.0));
            return;
        };
        let protocol = self.settings.protocol;
        let in_sync_now = self.peer_in_sync(n);
        let up = self.up_to_date(n);
        match op {
            ClientOp::Write {
                offset,
                len,
                fua,
                conn,
                in_sync,
            } if ok => {
                self.acked_writes += 1;
                if self
                    .replica(n)
                    .is_some_and(|r| r.connection() != Connection::Connected)
                {
                    self.wrote_apart[n] = true;
                    self.check_fenced(n);
                }
                // The primary holds it only if its own disk took it.
                self.latest[n] = up;
                if !in_sync_now {
                    self.latest[1 - n] = false;
                }
                for s in sectors(offset, u64::from(len)) {
                    let a = &mut self.acked[s];
                    *a = (*a).max(req.0);
                }
                if up {
                    self.holds(n, offset, len, req.0);
                    self.held(n, offset, len, req.0);
                }
                // B and C answer once the peer has the write: a flush that
                // reaches the peer later covers it there.
                if protocol != Protocol::A && in_sync_now {
                    self.held(1 - n, offset, len, req.0);
                }
                if fua {
                    if up {
                        self.durable_now(n, offset, len, req.0);
                    }
                    // Protocol C waits for the peer's FUA write; A and B
                    // only for its sending or receipt.
                    let same_link = conn.is_some() && conn == self.conn;
                    if protocol == Protocol::C && in_sync && in_sync_now && same_link {
                        self.durable_now(1 - n, offset, len, req.0);
                    }
                }
            }
            ClientOp::Read { offset, len, floor } if ok => {
                let data = self.nodes[n]
                    .bufs
                    .remove(&Buf::App(req))
                    .unwrap_or_default();
                for (i, s) in (offset / SECTOR..(offset + u64::from(len)) / SECTOR).enumerate() {
                    let id = if data.len() >= (i + 1) * SECTOR as usize {
                        sector_id(&data[i * SECTOR as usize..], 0)
                    } else {
                        0
                    };
                    if self.check_data && id < floor[i] {
                        self.violations.push(format!(
                            "node{n}: read of sector {s} gave write {id}, older than acknowledged {}",
                            floor[i]
                        ));
                    }
                }
            }
            ClientOp::Flush {
                stamp,
                conn,
                in_sync,
            } if ok => {
                if up {
                    self.covered(n, stamp);
                }
                // B and C answer a flush once the peer flushed too, if it
                // took the writes all along (the same connection).
                let same_link = conn.is_some() && conn == self.conn;
                if protocol != Protocol::A && in_sync && in_sync_now && same_link {
                    self.covered(1 - n, stamp);
                }
            }
            _ => {}
        }
        self.nodes[n].bufs.remove(&Buf::App(req));
    }

    /// A write was answered by `n`, apart from its peer: the peer must not
    /// be promotable with what it has, unless the membership declared it
    /// dead (or it refused, itself writing apart). Promotable: up,
    /// Secondary, apart, UpToDate.
    fn check_fenced(&mut self, n: usize) {
        let Some(status) = self.replica(n).map(|r| r.fence_status()) else {
            return;
        };
        if matches!(
            status,
            FenceStatus::PeerOutdated | FenceStatus::PeerUnreachable | FenceStatus::PeerRefused
        ) {
            self.fenced_answers += 1;
        }
        let promotable = self.replica(1 - n).is_some_and(|m| {
            m.role() == Role::Secondary
                && m.connection() != Connection::Connected
                && m.disk() == DiskState::UpToDate
        });
        let excused = matches!(
            status,
            FenceStatus::PeerUnreachable | FenceStatus::PeerRefused
        );
        if promotable && !excused {
            self.violations.push(format!(
                "node{} answered a write apart while node{}'s disk is UpToDate and promotable (fencing {status:?})",
                n + 1,
                2 - n
            ));
        }
    }

    /// The client on node `n` writes (or reads, or flushes).
    pub fn client(&mut self, n: usize) {
        let id = self.next_write;
        self.next_write += 1;
        let kind = self.rng.below(10);
        let sectors = 1 + self.rng.below(32);
        let offset = self.rng.below(SIZE / SECTOR - sectors) * SECTOR;
        let len = (sectors * SECTOR) as u32;
        let req = ReqId(id);
        let conn = self.conn;
        let in_sync = self.peer_in_sync(n);
        let input = if kind < 7 {
            self.nodes[n]
                .bufs
                .insert(Buf::App(req), stamp(id, offset, len));
            let fua = kind == 0;
            self.outstanding.insert(
                (n, id),
                ClientOp::Write {
                    offset,
                    len,
                    fua,
                    conn,
                    in_sync,
                },
            );
            Input::Write {
                req,
                offset,
                len,
                fua,
            }
        } else if kind < 9 {
            let floor = (offset / SECTOR..offset / SECTOR + sectors)
                .map(|s| self.acked[s as usize])
                .collect();
            self.outstanding
                .insert((n, id), ClientOp::Read { offset, len, floor });
            Input::Read { req, offset, len }
        } else {
            self.outstanding.insert(
                (n, id),
                ClientOp::Flush {
                    stamp: self.stamp,
                    conn,
                    in_sync,
                },
            );
            Input::FlushReq { req }
        };
        self.feed(n, input);
    }

    pub fn client_load(&self, n: usize) -> usize {
        self.outstanding.keys().filter(|(m, _)| *m == n).count()
    }

    /// The daemon on `n` dies: what was in flight lands or not; what
    /// completed stays in the machine's cache.
    pub fn crash(&mut self, n: usize) {
        let inflight = std::mem::take(&mut self.nodes[n].inflight);
        let inflight = if self.dead[n] {
            BTreeMap::new()
        } else {
            inflight
        };
        for (_, p) in inflight {
            if self.rng.below(2) == 0 {
                match p {
                    Pending::Data { offset, data, .. } => self.land(n, offset, data, false),
                    Pending::Meta(w) => self.land_meta(n, w),
                    Pending::Flush(_) => {}
                }
            }
        }
        self.promise[n].crashed = true;
        self.stop(n);
    }

    /// Node `n`'s disk dies (a cable, a controller): what its cache held
    /// never reaches the media (as a page cache's writeback that fails),
    /// and every request fails, metadata writes too, until `revive_disks`.
    /// The daemon saw those writes complete: only the failure tells it.
    fn disk_dies(&mut self, n: usize) {
        self.deaths += 1;
        self.dead[n] = true;
        let node = &mut self.nodes[n];
        node.cache.clear();
        node.disk.copy_from_slice(&node.durable);
    }

    /// Dead disks work again, with what their media held.
    pub fn revive_disks(&mut self) {
        self.dead = [false; 2];
    }

    /// The machine `n` loses power: its disk keeps the durable image and
    /// any part of what was cached or in flight (see the top comment).
    pub fn power_cut(&mut self, n: usize) {
        self.power_cuts += 1;
        let inflight = std::mem::take(&mut self.nodes[n].inflight);
        let inflight = if self.dead[n] {
            BTreeMap::new()
        } else {
            inflight
        };
        let mut candidates: Vec<(u64, Vec<u8>, Vec<bool>)> =
            std::mem::take(&mut self.nodes[n].cache)
                .into_iter()
                .map(|c| (c.offset, c.data, c.live))
                .collect();
        for (_, p) in inflight {
            match p {
                // Issued, maybe on the media already: after the cached
                // ones (all of which completed before).
                Pending::Data { offset, data, .. } => {
                    let live = vec![true; data.len() / SECTOR as usize];
                    candidates.push((offset, data, live))
                }
                Pending::Meta(MetaWrite::Bitmap { first_word, words }) => {
                    // A torn bitmap block: each sector old or new.
                    let mut kept = Vec::new();
                    for (i, chunk) in words.chunks(WORDS_PER_SECTOR).enumerate() {
                        if self.rng.below(2) == 0 {
                            kept.push((first_word + (i * WORDS_PER_SECTOR) as u64, chunk.to_vec()));
                        }
                    }
                    for (first_word, words) in kept {
                        self.land_meta(n, MetaWrite::Bitmap { first_word, words });
                    }
                }
                Pending::Meta(w) => {
                    if self.rng.below(2) == 0 {
                        self.land_meta(n, w);
                    }
                }
                Pending::Flush(_) => {}
            }
        }
        for (offset, data, mut live) in candidates {
            match self.rng.below(3) {
                0 => {}
                1 => live.fill(false),
                _ => live.iter_mut().for_each(|l| *l &= self.rng.below(2) == 0),
            }
            // A superseded version cannot come back over the durable write
            // that followed it (`live` is false there already).
            copy_live(&mut self.nodes[n].durable, offset, &data, |i| live[i]);
        }
        let node = &mut self.nodes[n];
        node.disk.copy_from_slice(&node.durable);
        let p = &mut self.promise[n];
        p.holds.copy_from_slice(&p.flushed);
        p.log.clear();
        p.power_cut = true;
        self.stop(n);
    }

    /// The daemon is gone (crash or power cut).
    fn stop(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.r = None;
        node.run += 1;
        node.bufs.clear();
        self.mirrored.retain(|(m, _), _| *m != n);
        self.outstanding.retain(|(m, _), _| *m != n);
        self.pending_reads.retain(|(m, _), _| *m != n);
        if self.conn.is_some() {
            self.cut();
        }
        self.down_pending[n] = false;
        // A new daemon starts with nothing heard or said; its peer forgets
        // the old incarnation's notes when it hears the new one.
        self.heard[n].clear();
        self.announced[n].clear();
        self.heard_at[n] = None;
    }

    pub fn restart(&mut self, n: usize, seed: u64) {
        if let Ok(t) = std::env::var("SIMTRACE") {
            let bit = t.parse::<u64>().unwrap_or(0) * SECTOR / u64::from(GRAN);
            let m = &self.nodes[n].meta;
            let marked = m
                .bitmap
                .get((bit / 64) as usize)
                .is_some_and(|w| w >> (bit % 64) & 1 == 1);
            eprintln!(
                "{} node{n} restarts: traced block marked {marked}, activity log {:?}, flags {}",
                self.now, m.al, m.flags
            );
        }
        let a = attached(&self.nodes[n].meta);
        let mut s = settings(n as u16, self.settings.protocol);
        (self.tune)(&mut s);
        let mut r = Replica::new(s, Some(a), seed);
        if self.nodes[n].distrusted {
            r.distrust_disk();
        }
        self.nodes[n].r = Some(r);
    }

    /// The pair is in sync with a Primary: both hold what the client may
    /// read (protocol A: the Secondary may lag by what is in flight).
    pub fn synced(&mut self, primary: usize) {
        let protocol = self.settings.protocol;
        self.stamp += 1;
        let ids = Rc::new(self.acked.clone());
        for m in 0..2 {
            let p = &mut self.promise[m];
            p.power_cut = false;
            p.crashed = false;
            if m == primary || protocol == Protocol::C {
                for (h, a) in p.holds.iter_mut().zip(ids.iter()) {
                    *h = (*h).max(*a);
                }
            }
            // A flush under B waits for the peer's earlier writes too.
            if m == primary || protocol != Protocol::A {
                p.log.push(Held::All {
                    stamp: self.stamp,
                    ids: ids.clone(),
                });
            }
        }
    }

    /// Node `n` was made Primary bound to hold only `want`: its data is the
    /// truth now. The client may read no newer, and the other node, which
    /// will sync from it, is bound to no newer either.
    pub fn rebase(&mut self, n: usize, want: &[u64]) {
        for (a, w) in self.acked.iter_mut().zip(want) {
            *a = (*a).min(*w);
        }
        let p = &mut self.promise[1 - n];
        for ((h, f), w) in p.holds.iter_mut().zip(p.flushed.iter_mut()).zip(want) {
            *h = (*h).min(*w);
            *f = (*f).min(*w);
        }
        p.log.clear();
    }

    /// A data write reaches the disk's cache (`durable`: FUA, on the media
    /// at once).
    fn land(&mut self, n: usize, offset: u64, data: Vec<u8>, durable: bool) {
        if let Ok(t) = std::env::var("SIMTRACE") {
            let s: u64 = t.parse().unwrap_or(0) * SECTOR;
            if offset <= s && s < offset + data.len() as u64 {
                eprintln!(
                    "{} node{n} lands write {} at {offset}+{}{}",
                    self.now,
                    sector_id(&data[(s - offset) as usize..], 0),
                    data.len(),
                    if durable { " (fua)" } else { "" }
                );
            }
        }
        let node = &mut self.nodes[n];
        node.completed += 1;
        let range = offset as usize..offset as usize + data.len();
        node.disk[range.clone()].copy_from_slice(&data);
        if !durable {
            let live = vec![true; data.len() / SECTOR as usize];
            node.cache.push(Cached {
                n: node.completed,
                offset,
                data,
                live,
            });
            return;
        }
        node.durable[range].copy_from_slice(&data);
        // Earlier cached versions of these sectors can no longer be what
        // the media ends up with.
        let (first, end) = (offset / SECTOR, (offset + data.len() as u64) / SECTOR);
        for c in &mut node.cache {
            let c_first = c.offset / SECTOR;
            for (i, live) in c.live.iter_mut().enumerate() {
                let s = c_first + i as u64;
                if first <= s && s < end {
                    *live = false;
                }
            }
        }
    }

    /// Writes completed before number `upto` reach the media.
    fn make_durable(&mut self, n: usize, upto: u64) {
        let node = &mut self.nodes[n];
        let count = node.cache.iter().take_while(|c| c.n <= upto).count();
        for c in node.cache.drain(..count) {
            copy_live(&mut node.durable, c.offset, &c.data, |i| c.live[i]);
        }
    }

    fn land_meta(&mut self, n: usize, w: MetaWrite) {
        let node = &mut self.nodes[n];
        match w {
            MetaWrite::Superblock { generations, flags } => {
                node.meta.gens = generations;
                node.meta.flags = flags;
            }
            MetaWrite::Bitmap { first_word, words } => {
                let need = first_word as usize + words.len();
                if node.meta.bitmap.len() < need {
                    node.meta.bitmap.resize(need, 0);
                }
                node.meta.bitmap[first_word as usize..need].copy_from_slice(&words);
            }
            MetaWrite::ActivityLog(t) => {
                if t.seq > node.meta.al_seq {
                    node.meta.al_seq = t.seq;
                    node.meta.al = t.extents;
                }
            }
        }
    }

    /// Runs events up to `until` (µs).
    pub fn run_until(&mut self, until: u64) {
        loop {
            self.maybe_connect();
            let next_tick = self
                .nodes
                .iter()
                .filter_map(|n| n.r.as_ref()?.next_wakeup())
                .map(|t| t.0.as_micros() as u64)
                .min();
            let next_ev = self.queue.peek().map(|Reverse((t, _))| *t);
            let next = match (next_ev, next_tick) {
                (Some(a), Some(b)) => a.min(b.max(self.now + 1)),
                (Some(a), None) => a,
                (None, Some(b)) => b.max(self.now + 1),
                (None, None) => {
                    self.now = self.now.max(until);
                    return;
                }
            };
            if next > until {
                self.now = until;
                return;
            }
            self.now = next.max(self.now);
            if next_ev == Some(next) {
                let Some(Reverse((_, id))) = self.queue.pop() else {
                    return;
                };
                if let Some(ev) = self.events.remove(&id) {
                    self.event(ev);
                }
            } else {
                for n in 0..2 {
                    let due = self.nodes[n]
                        .r
                        .as_ref()
                        .and_then(|r| r.next_wakeup())
                        .is_some_and(|t| t.0.as_micros() as u64 <= self.now);
                    if due {
                        self.feed(n, Input::Tick);
                    }
                }
            }
        }
    }

    fn maybe_connect(&mut self) {
        let wants = |n: &Node| n.r.as_ref().is_some_and(|r| r.wants_transport());
        if self.conn.is_none()
            && self.link_ok
            && !self.down_pending.iter().any(|d| *d)
            && wants(&self.nodes[0])
            && wants(&self.nodes[1])
        {
            self.conn_seq += 1;
            self.conn = Some(self.conn_seq);
            self.last_delivery = [self.now; 2];
            for n in 0..2 {
                let conn = self.conn_seq;
                self.at(100, Ev::Up { node: n, conn });
            }
        }
    }

    fn event(&mut self, ev: Ev) {
        match ev {
            Ev::Io {
                node,
                run,
                io,
                input,
            } => {
                if self.nodes[node].run != run {
                    return;
                }
                let fails = node == self.failing_node
                    && matches!(input, Input::Written { .. } | Input::ReadDone { .. })
                    && self.rng.below(1000) < self.error_rate;
                if fails && self.disk_deaths && !self.dead[node] && self.rng.below(2) == 0 {
                    self.disk_dies(node);
                }
                let dead = self.dead[node];
                let fails = fails || dead;
                match self.nodes[node].inflight.remove(&io) {
                    _ if dead => {}
                    // A failed write may have landed (in the cache) or not.
                    Some(Pending::Data { offset, data, fua })
                        if !fails || self.rng.below(2) == 0 =>
                    {
                        self.land(node, offset, data, fua && !fails)
                    }
                    Some(Pending::Meta(w)) => self.land_meta(node, w),
                    Some(Pending::Flush(before)) => self.make_durable(node, before),
                    Some(Pending::Data { .. }) | None => {}
                }
                let input = match input {
                    Input::FlushDone { token, .. } if dead => Input::FlushDone { token, ok: false },
                    Input::MetaDone { token, .. } if dead => Input::MetaDone { token, ok: false },
                    Input::Written { buf, .. } if fails => Input::Written { buf, ok: false },
                    Input::ReadDone { buf, .. } if fails => {
                        self.pending_reads.remove(&(node, buf));
                        Input::ReadDone {
                            buf,
                            ok: false,
                            digest: 0,
                        }
                    }
                    Input::ReadDone { buf, ok, .. } => {
                        let (offset, len) =
                            self.pending_reads.remove(&(node, buf)).unwrap_or((0, 0));
                        let data = self.nodes[node].disk[offset as usize..(offset + len) as usize]
                            .to_vec();
                        // Only online verify looks at it (and costs in
                        // an unoptimized build).
                        let digest = if matches!(buf, Buf::Verify(_)) {
                            u64::from(crc32c::crc32c(&data))
                        } else {
                            0
                        };
                        self.nodes[node].bufs.insert(buf, data);
                        Input::ReadDone { buf, ok, digest }
                    }
                    other => other,
                };
                self.feed(node, input);
            }
            Ev::Deliver {
                to,
                conn,
                msg,
                payload,
            } => {
                if self.conn != Some(conn) {
                    return;
                }
                if let Msg::Ack {
                    seq,
                    kind: AckKind::Written,
                    ok: true,
                } = msg
                    && let Some((id, offset, len)) = self.mirrored.remove(&(to, seq))
                {
                    // The peer has it in its cache: what protocol A's
                    // failover keeps.
                    self.holds(1 - to, offset, len, id);
                }
                let has = payload.is_some();
                if let Some(d) = payload {
                    let buf = match &msg {
                        Msg::Data { seq, .. } => Buf::Peer(*seq),
                        Msg::ResyncData { id, .. } => Buf::ResyncIn(*id),
                        Msg::ReadReply { id, .. } => Buf::App(ReqId(*id)),
                        _ => return self.violations.push(format!("payload on {msg:?}")),
                    };
                    self.nodes[to].bufs.insert(buf, d);
                }
                self.feed(to, Input::Received { msg, payload: has });
            }
            Ev::Down { node, run } => {
                if self.nodes[node].run == run {
                    self.down_pending[node] = false;
                    self.feed(node, Input::TransportDown);
                }
            }
            Ev::Up { node, conn } => {
                if self.conn == Some(conn) {
                    self.feed(node, Input::TransportUp);
                }
            }
            Ev::Heartbeat => self.heartbeat(),
        }
    }

    pub fn state(&self, n: usize) -> Option<ReplicaState> {
        self.replica(n).map(|r| {
            (
                r.role(),
                r.connection(),
                r.replication(),
                r.disk(),
                r.peer_disk(),
            )
        })
    }
}

pub fn attached(m: &Meta) -> Attached {
    let bytes: Vec<u8> = m.bitmap.iter().flat_map(|w| w.to_le_bytes()).collect();
    Attached {
        generations: m.gens,
        flags: m.flags,
        bitmap: DirtyBitmap::from_bytes(SIZE, GRAN, &bytes),
        al_extents: m.al.clone(),
        al_seq: m.al_seq,
    }
}
