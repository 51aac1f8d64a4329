//! A simulated world for two replica cores: disks that keep what a
//! finished write put there (a crash of the daemon loses only what was
//! still in flight, which lands or not by chance), metadata areas, a TCP
//! link that delivers in order until it breaks, and a client on the
//! primary whose writes are stamped so any sector tells which write put it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

use duet::replication::activity_log::Extent;
use duet::replication::bitmap::DirtyBitmap;
use duet::replication::core::{
    Action, Attached, Buf, Event, Input, MetaWrite, Msg, Protocol, Replica, ReqId, Settings,
};
use duet::replication::generation::Generations;
use duet::replication::split_brain::Policies;
use duet::replication::states::{Connection, DiskState, Replication, Role};
use duet::testkit::SplitMix64;
use duet::types::{NodeId, Timestamp};

pub const SIZE: u64 = 16 << 20;
pub const SECTOR: u64 = 512;
const GRAN: u32 = 4096;

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
    pub disk: Vec<u8>,
    pub meta: Meta,
    bufs: HashMap<Buf, Vec<u8>>,
    /// Bumped on crash: completions of an older run are void.
    run: u64,
    /// Writes in flight (token -> what), for a crash to land or lose.
    inflight: BTreeMap<u64, Pending>,
    next_io: u64,
}

#[derive(Clone)]
enum Pending {
    Data(u64, Vec<u8>),
    Meta(MetaWrite),
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
    // The client and its oracle.
    next_write: u64,
    pub outstanding: HashMap<(usize, u64), ClientOp>,
    /// Per sector: the newest acknowledged write's id.
    pub acked: Vec<u64>,
    pub acked_writes: u64,
    /// A write was answered while the node saw no peer (it started a
    /// generation of its own), since the last reunion.
    pub wrote_apart: [bool; 2],
    pub events_seen: Vec<(usize, Event)>,
    pub violations: Vec<String>,
    pending_reads: HashMap<(usize, Buf), (u64, u64)>,
    /// Off where failovers during partitions may legitimately lose writes.
    pub check_reads: bool,
    /// Nodes that hold every acknowledged write, as the primary knows it:
    /// a write answered while the primary did not see its peer connected
    /// with an UpToDate disk leaves the peer behind.
    pub latest: [bool; 2],
    /// Data reads and writes of `failing_node` that fail, per mille (one
    /// disk goes bad; two at once would lose data whatever duet did).
    pub error_rate: u64,
    pub failing_node: usize,
    pub disk_failures: u64,
}

#[derive(Debug, Clone)]
pub enum ClientOp {
    Write {
        offset: u64,
        len: u32,
    },
    Read {
        offset: u64,
        len: u32,
        floor: Vec<u64>,
    },
    Flush,
}

pub fn settings(local: u16, protocol: Protocol) -> Settings {
    Settings {
        local: NodeId(local),
        peer: NodeId(1 - local),
        local_name: format!("node{}", local + 1),
        peer_name: format!("node{}", 2 - local),
        protocol,
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

fn stamp(write: u64, offset: u64, len: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(len as usize);
    for s in 0..u64::from(len) / SECTOR {
        let sector = offset / SECTOR + s;
        for _ in 0..SECTOR / 16 {
            v.extend_from_slice(&write.to_le_bytes());
            v.extend_from_slice(&sector.to_le_bytes());
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

impl World {
    pub fn new(seed: u64, protocol: Protocol) -> World {
        let node = |i: u16| Node {
            r: Some(Replica::new(
                settings(i, protocol),
                Some(attached(&Meta::default())),
                seed ^ u64::from(i + 1),
            )),
            disk: vec![0; SIZE as usize],
            meta: Meta::default(),
            bufs: HashMap::new(),
            run: 0,
            inflight: BTreeMap::new(),
            next_io: 0,
        };
        World {
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
            next_write: 1,
            outstanding: HashMap::new(),
            acked: vec![0; (SIZE / SECTOR) as usize],
            acked_writes: 0,
            wrote_apart: [false; 2],
            events_seen: Vec::new(),
            violations: Vec::new(),
            pending_reads: HashMap::new(),
            check_reads: true,
            latest: [true, false],
            error_rate: 0,
            failing_node: 0,
            disk_failures: 0,
        }
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
                buf, offset, len, ..
            } => {
                let data = self.nodes[n].bufs.get(&buf).cloned();
                match data {
                    Some(d) if d.len() == len as usize => self.io(
                        n,
                        Input::Written { buf, ok: true },
                        Some(Pending::Data(offset, d)),
                    ),
                    _ => self
                        .violations
                        .push(format!("node{n}: write of {buf:?} without its data")),
                }
            }
            Action::Flush { token } => self.io(n, Input::FlushDone { token, ok: true }, None),
            Action::Meta { token, write } => self.io(
                n,
                Input::MetaDone { token, ok: true },
                Some(Pending::Meta(write)),
            ),
            Action::Send { msg, payload } => self.send(n, msg, payload),
            Action::Release(buf) => {
                self.nodes[n].bufs.remove(&buf);
            }
            Action::Complete { req, ok } => self.complete(n, req, ok),
            Action::Drop { .. } => self.cut(),
            Action::Event(e) => {
                if e == Event::DiskFailed {
                    self.disk_failures += 1;
                }
                if e != Event::StateChanged {
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

    fn complete(&mut self, n: usize, req: ReqId, ok: bool) {
        let Some(op) = self.outstanding.remove(&(n, req.0)) else {
            self.violations
                .push(format!("node{n}: answer to unknown request {}", req.0));
            return;
        };
        match op {
            ClientOp::Write { offset, len } if ok => {
                self.acked_writes += 1;
                if self
                    .replica(n)
                    .is_some_and(|r| r.connection() != Connection::Connected)
                {
                    self.wrote_apart[n] = true;
                }
                let peer_in_sync = self.replica(n).is_some_and(|r| {
                    r.connection() == Connection::Connected
                        && matches!(
                            r.replication(),
                            Replication::Established | Replication::SyncSource
                        )
                        && r.peer_disk() == DiskState::UpToDate
                });
                // The primary holds it only if its own disk took it.
                self.latest[n] = self
                    .replica(n)
                    .is_some_and(|r| r.disk() == DiskState::UpToDate);
                if !peer_in_sync {
                    self.latest[1 - n] = false;
                }
                for s in offset / SECTOR..(offset + u64::from(len)) / SECTOR {
                    let a = &mut self.acked[s as usize];
                    *a = (*a).max(req.0);
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
                    if self.check_reads && id < floor[i] {
                        self.violations.push(format!(
                            "node{n}: read of sector {s} gave write {id}, older than acknowledged {}",
                            floor[i]
                        ));
                    }
                }
            }
            _ => {}
        }
        self.nodes[n].bufs.remove(&Buf::App(req));
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
        let input = if kind < 7 {
            self.nodes[n]
                .bufs
                .insert(Buf::App(req), stamp(id, offset, len));
            self.outstanding
                .insert((n, id), ClientOp::Write { offset, len });
            Input::Write {
                req,
                offset,
                len,
                fua: kind == 0,
            }
        } else if kind < 9 {
            let floor = (offset / SECTOR..offset / SECTOR + sectors)
                .map(|s| self.acked[s as usize])
                .collect();
            self.outstanding
                .insert((n, id), ClientOp::Read { offset, len, floor });
            Input::Read { req, offset, len }
        } else {
            self.outstanding.insert((n, id), ClientOp::Flush);
            Input::FlushReq { req }
        };
        self.feed(n, input);
    }

    pub fn client_load(&self, n: usize) -> usize {
        self.outstanding.keys().filter(|(m, _)| *m == n).count()
    }

    /// The daemon on `n` dies: what was in flight lands or not.
    pub fn crash(&mut self, n: usize) {
        let inflight = std::mem::take(&mut self.nodes[n].inflight);
        for (_, p) in inflight {
            if self.rng.below(2) == 0 {
                self.land(n, p);
            }
        }
        let node = &mut self.nodes[n];
        node.r = None;
        node.run += 1;
        node.bufs.clear();
        self.outstanding.retain(|(m, _), _| *m != n);
        self.pending_reads.retain(|(m, _), _| *m != n);
        if self.conn.is_some() {
            self.cut();
        }
        self.down_pending[n] = false;
    }

    pub fn restart(&mut self, n: usize, seed: u64) {
        let a = attached(&self.nodes[n].meta);
        let s = settings(n as u16, self.settings.protocol);
        self.nodes[n].r = Some(Replica::new(s, Some(a), seed));
    }

    fn land(&mut self, n: usize, p: Pending) {
        if let (Ok(t), Pending::Data(offset, d)) = (std::env::var("SIMTRACE"), &p) {
            let s: u64 = t.parse().unwrap_or(0) * SECTOR;
            if *offset <= s && s < offset + d.len() as u64 {
                eprintln!(
                    "{} node{n} lands write {} at {offset}+{}",
                    self.now,
                    sector_id(&d[(s - offset) as usize..], 0),
                    d.len()
                );
            }
        }
        let node = &mut self.nodes[n];
        match p {
            Pending::Data(offset, d) => {
                node.disk[offset as usize..offset as usize + d.len()].copy_from_slice(&d)
            }
            Pending::Meta(MetaWrite::Superblock { generations, flags }) => {
                node.meta.gens = generations;
                node.meta.flags = flags;
            }
            Pending::Meta(MetaWrite::Bitmap { first_word, words }) => {
                let need = first_word as usize + words.len();
                if node.meta.bitmap.len() < need {
                    node.meta.bitmap.resize(need, 0);
                }
                node.meta.bitmap[first_word as usize..need].copy_from_slice(&words);
            }
            Pending::Meta(MetaWrite::ActivityLog(t)) => {
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
                if let Some(p) = self.nodes[node].inflight.remove(&io) {
                    // A failed write may have landed or not.
                    if !fails || self.rng.below(2) == 0 {
                        self.land(node, p);
                    }
                }
                let input = match input {
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
                        let digest = u64::from(crc32c::crc32c(&data));
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
        }
    }

    pub fn state(&self, n: usize) -> Option<(Role, Connection, Replication, DiskState, DiskState)> {
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
